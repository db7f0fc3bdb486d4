"""A leak in Chromium: a job prints its own value reversed (redaction misses it, the detector does not); the
job's page lists the finding over masked output; a rerun of the same versions is refused until overridden;
the env var list and page show it possibly compromised with the job; Rotate takes a new value; Dismiss
records why. No planted value (nor its reverse) in any page, URL, response, the log or the database."""
import re
import secrets

import pytest
from playwright.sync_api import expect

from devkit.browser import shot
from tests.dashboard.helpers import assert_nowhere, create_env_var, login, watch_page

pytestmark = pytest.mark.browser
NAME = "LEAKY_TOKEN"


def test_a_leaked_value_is_shown_refused_rotated_and_dismissed(dashboard, new_page):
    value, rotated = "leak-" + secrets.token_urlsafe(24), "new-" + secrets.token_urlsafe(24)
    page = new_page()
    seen = watch_page(page)
    login(page, dashboard, "alice")
    create_env_var(page, NAME, value, "printed backwards by a careless job")
    page.get_by_role("link", name="Run a job").click()
    page.get_by_label("Command").fill(f'''python3 -c "import os; print('x', os.environ['{NAME}'][::-1])"''')
    page.get_by_label(NAME).check()
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("state")).to_have_text("succeeded", timeout=30_000)
    job_url = page.url
    expect(page.get_by_test_id("output")).to_have_text("x [masked:own_value]")
    findings = page.get_by_test_id("findings").locator("tbody tr")
    expect(findings).to_have_count(1)
    expect(findings.first).to_contain_text("own_value")
    expect(findings.first).to_contain_text(NAME)
    shot(page, "40-leak-finding")

    # The same versions again: refused, naming the env var; the override is one tick away.
    page.get_by_role("button", name="Run again with the same versions").click()
    expect(page.get_by_test_id("rerun-error")).to_contain_text(f"env var {NAME} is possibly compromised")
    expect(page.get_by_test_id("allow-compromised")).to_be_visible()

    # The list and the env var's page say so, with the job; Rotate takes a new value.
    page.goto(f"{dashboard.url}/dashboard/env-vars")
    banner = page.get_by_test_id("compromised")
    expect(banner).to_contain_text(NAME)
    expect(banner).to_contain_text("possibly compromised")
    expect(page.get_by_test_id("compromised-badge")).to_have_count(1)
    shot(page, "41-compromised-list")
    banner.get_by_role("link", name=NAME).click()
    page.get_by_label("New value").fill(rotated)
    page.get_by_role("button", name="Rotate").click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"Rotated: .* versions 1 are marked compromised"))
    expect(page.get_by_test_id("compromised")).to_contain_text("Version 1: compromised")
    shot(page, "42-rotated")

    # Dismissing the finding records who and why.
    page.goto(job_url)
    page.get_by_label("Why is this a false positive?").fill("checked: a test value")
    page.get_by_role("button", name="Dismiss as false positive").click()
    expect(page).to_have_url(job_url)
    expect(page.get_by_test_id("findings")).to_contain_text("dismissed by you: checked: a test value")
    assert_nowhere((value, value[::-1], rotated), page, seen, dashboard)
