"""Provenance and expiry in Chromium (issue 16, items 2 and 4): the form's expiry field, the list's Expires
and Last used columns and its expiring filter, the job page's versions, its note naming a value too short
to be redacted, and Run again with the same or the latest versions; no planted value reaches a page, a
URL, a response, the service's log or its database."""
import datetime
import hashlib
import re
import secrets
import sqlite3

import hvac
import pytest
from playwright.sync_api import expect

from devkit.browser import shot
from tests.dashboard.helpers import assert_nowhere, login, new_canary, watch_page

pytestmark = pytest.mark.browser
PRINT = ("import hashlib,os; print('sha', hashlib.sha256(os.environb[b'PROV_TOKEN']).hexdigest()); "
         "print(os.environ['PROV_TOKEN']); print(os.environ['PROV_SHORT'])")


def _local(t: datetime.datetime) -> str:
    """As a datetime-local input takes it (the form reads it as UTC)."""
    return t.strftime("%Y-%m-%dT%H:%M")


def _row(page, name: str):
    return page.locator("tbody tr", has=page.locator("code", has_text=re.compile(f"^{name}$")))


def test_expiry_field_list_columns_job_versions_and_run_again(dashboard, new_page):
    first, second, rejected = new_canary(), new_canary(), new_canary()
    suffix = secrets.token_hex(3).upper()
    token, short, plain = f"PROV_TOKEN_{suffix}", f"PROV_SHORT_{suffix}", f"PROV_PLAIN_{suffix}"
    page = new_page()
    seen = watch_page(page)
    login(page, dashboard, "alice")
    now = datetime.datetime.now(datetime.timezone.utc)

    # The expiry field: a past date is refused next to the field, the value never echoed back.
    page.goto(f"{dashboard.url}/dashboard/env-vars/new")
    page.get_by_label("Name").fill(token)
    page.get_by_label("Value").fill(rejected)
    page.get_by_label("Expires").fill(_local(now - datetime.timedelta(days=1)))
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#expires_at-error")).to_have_text("must be in the future")
    expect(page.get_by_label("Expires")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Value")).to_have_value("")
    in_three_days = (now + datetime.timedelta(days=3)).replace(second=0, microsecond=0)
    page.get_by_label("Expires").fill(_local(in_three_days))
    page.get_by_label("Value").fill(first)
    shot(page, "prov-01-expiry-field")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(f"Created {token}.")
    for name, value in ((short, "on"), (plain, new_canary())):
        page.get_by_role("link", name="New env var").click()
        page.get_by_label("Name").fill(name)
        page.get_by_label("Value").fill(value)
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_have_text(f"Created {name}.")

    # The list: Expires and Last used columns; the filter keeps only what expires within 7 days.
    expect(_row(page, token).get_by_test_id("expires")).to_contain_text(in_three_days.strftime("%Y-%m-%d %H:%M UTC"))
    expect(_row(page, plain).get_by_test_id("expires")).to_have_text("never")
    expect(_row(page, token).get_by_test_id("last-used")).to_have_text("never")
    page.get_by_test_id("expiring-filter").check()
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"expiring=1"))
    expect(_row(page, token)).to_have_count(1)
    expect(_row(page, plain)).to_have_count(0)
    shot(page, "prov-02-expiring-filter")
    page.get_by_role("link", name="Clear").click()

    # The edit form shows the expiry; saving a new value leaves it as it was.
    page.get_by_role("link", name=f"Edit {token}").click()
    expect(page.get_by_label("Expires")).to_have_value(_local(in_three_days))
    page.goto(f"{dashboard.url}/dashboard/executions/new")

    # A job with both: the page names each env var with its version, and the short one as not redacted.
    page.get_by_label("Command").fill(f'python3 -c "{PRINT.replace("PROV_TOKEN", token).replace("PROV_SHORT", short)}"')
    page.get_by_label(token).check()
    page.get_by_label(short).check()
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("state")).to_have_text("succeeded", timeout=30_000)
    first_job = page.url
    expect(page.get_by_test_id("env-vars")).to_contain_text(f"{token} version 1")
    expect(page.get_by_test_id("env-vars")).to_contain_text(f"{short} version 1")
    expect(page.get_by_test_id("unredacted")).to_contain_text(short)
    expect(page.get_by_test_id("unredacted")).not_to_contain_text(token)
    assert f"sha {hashlib.sha256(first.encode()).hexdigest()}" in page.get_by_test_id("output").inner_text()
    shot(page, "prov-03-job-versions")

    # A new value (version 2), then Run again: with the same versions the job has the first value, with
    # the latest the second, each proven by the hash the job printed.
    page.goto(f"{dashboard.url}/dashboard/env-vars")
    page.get_by_role("link", name=f"Edit {token}").click()
    page.get_by_label("Value").fill(second)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(f"Saved {token}.")
    expect(_row(page, token).get_by_test_id("expires")).to_contain_text(in_three_days.strftime("%Y-%m-%d %H:%M UTC"))
    page.goto(first_job)
    page.get_by_role("button", name="Run again with the same versions").click()
    expect(page).not_to_have_url(first_job)
    expect(page.get_by_test_id("state")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_test_id("env-vars")).to_contain_text(f"{token} version 1")
    assert f"sha {hashlib.sha256(first.encode()).hexdigest()}" in page.get_by_test_id("output").inner_text()
    page.goto(first_job)
    page.get_by_role("button", name="Run again", exact=True).click()
    expect(page.get_by_test_id("state")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_test_id("env-vars")).to_contain_text(f"{token} version 2")
    assert f"sha {hashlib.sha256(second.encode()).hexdigest()}" in page.get_by_test_id("output").inner_text()
    latest_job = page.url
    shot(page, "prov-04-run-again")

    # Last used: that job, linked from the list.
    page.goto(f"{dashboard.url}/dashboard/env-vars")
    last_used = _row(page, token).get_by_test_id("last-used")
    expect(last_used).not_to_have_text("never")
    last_used.get_by_role("link").click()
    expect(page).to_have_url(latest_job)

    # Version 1 destroyed: the same versions cannot run again, and the job's page says which env var.
    page.goto(f"{dashboard.url}/dashboard/env-vars")
    env_id = page.get_by_role("link", name=f"Edit {token}").get_attribute("href").rsplit("/", 1)[1]
    with sqlite3.connect(dashboard.db_path) as db:
        owner = db.execute("select owner from env_vars where id = ?", (env_id,)).fetchone()[0]
    hvac.Client(url=dashboard.vault_url, token=dashboard.vault_token).secrets.kv.v2.destroy_secret_versions(
        path=f"users/{owner}/{env_id}", versions=[1], mount_point="secret")
    page.goto(first_job)
    page.get_by_role("button", name="Run again with the same versions").click()
    expect(page.get_by_test_id("rerun-error")).to_contain_text(f"version 1 of env var {token}")
    expect(page).to_have_url(re.compile(f"{first_job}/rerun$"))
    shot(page, "prov-05-run-again-refused")

    # An env var past its expiry cannot be chosen for a job: the form says since when (its expiry set in
    # the past behind the service's back: the form refuses a past date).
    page.goto(f"{dashboard.url}/dashboard/env-vars")
    plain_id = page.get_by_role("link", name=f"Edit {plain}").get_attribute("href").rsplit("/", 1)[1]
    with sqlite3.connect(dashboard.db_path) as db:
        db.execute("update env_vars set expires_at = '2026-01-02 03:04:00.000000' where id = ?", (plain_id,))
    page.goto(f"{dashboard.url}/dashboard/executions/new")
    expect(page.get_by_label(plain)).to_be_disabled()
    expect(page.locator("label", has=page.get_by_label(plain)).get_by_test_id("expired")).to_have_text(
        "expired 2026-01-02 03:04 UTC")
    expect(page.get_by_label(token)).to_be_enabled()
    shot(page, "prov-06-expired-not-selectable")

    assert_nowhere((first, second, rejected), page, seen, dashboard)
