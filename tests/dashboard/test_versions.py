"""The edit page's history panel and a confirmed rollback, in Chromium: the versions listed with who saved
them, a rollback asked for and confirmed (a CSRF-protected form), the old value current again (a job
prints its hash), and no planted value in any page, URL, response, the service's log or its database."""
import hashlib
import re

import pytest
from playwright.sync_api import expect

from devkit.browser import shot
from tests.dashboard.helpers import assert_nowhere, create_env_var, login, new_canary, watch_page

pytestmark = pytest.mark.browser
NAME = "ROLLBACK_TOKEN"


def test_the_history_panel_lists_versions_and_a_confirmed_rollback_makes_an_old_value_current(dashboard, new_page):
    from axe_playwright_python.sync_playwright import Axe

    first, second = new_canary(), new_canary()
    page = new_page()
    seen = watch_page(page)
    login(page, dashboard, "alice")
    create_env_var(page, NAME, first, "rolled back in the browser")
    page.get_by_role("link", name=f"Edit {NAME}").click()
    page.get_by_label("Value").fill(second)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(f"Saved {NAME}.")

    # The history: newest first, who saved each, the current one marked and not offered for rollback.
    page.get_by_role("link", name=f"Edit {NAME}").click()
    edit_url = page.url
    rows = page.get_by_test_id("versions").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("current")
    expect(rows.nth(0)).to_contain_text("you")
    expect(rows.nth(0).get_by_role("link")).to_have_count(0)
    expect(rows.nth(1)).to_contain_text("kept")
    shot(page, "20-history")
    axe = Axe()
    found = {"edit with history": axe.run(page).response["violations"]}

    # Rollback asks first, naming the env var and the version; Cancel changes nothing.
    page.get_by_role("link", name="Roll back to version 1").click()
    expect(page.get_by_role("heading", name=f"Roll back {NAME} to version 1?")).to_be_visible()
    found["confirm rollback"] = axe.run(page).response["violations"]
    shot(page, "21-confirm-rollback")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(edit_url)
    expect(rows).to_have_count(2)
    page.get_by_role("link", name="Roll back to version 1").click()

    # The form needs the session's CSRF token, like every other one.
    forged = page.context.request.post(f"{edit_url}/rollback", form={"version": "1", "csrf_token": "not-it"},
                                       max_redirects=0)
    assert forged.status == 403
    page.get_by_role("button", name="Roll back to version 1").click()
    expect(page).to_have_url(re.compile(re.escape(edit_url) + r"\?rolled_back=1&version=3$"))
    expect(page.get_by_role("status")).to_have_text(
        "Rolled back to version 1: its value is now the current version, 3.")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("(rollback to version 1)")
    expect(rows.nth(0)).to_contain_text("current")
    shot(page, "22-rolled-back")

    # A version that cannot be rolled back to (the current one) is refused on the page, naming it.
    page.goto(f"{edit_url}/rollback?version=3")
    expect(page.locator("#rollback-error")).to_contain_text("version 3 cannot be rolled back to")

    # The job gets the first value again.
    page.get_by_role("link", name="Run a job").click()
    page.get_by_label("Command").fill(
        f"python3 -c \"import hashlib,os; print(hashlib.sha256(os.environb[b'{NAME}']).hexdigest())\"")
    page.get_by_label(NAME).check()
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("state")).to_have_text("succeeded", timeout=30_000)
    assert hashlib.sha256(first.encode()).hexdigest() in page.get_by_test_id("output").inner_text()

    problems = {name: [(v["id"], v["impact"], v["help"]) for v in violations]
                for name, violations in found.items() if violations}
    assert problems == {}
    assert_nowhere((first, second), page, seen, dashboard)
