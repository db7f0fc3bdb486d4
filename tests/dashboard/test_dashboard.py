"""The dashboard as people use it, in Chromium: sign in through the identity provider, create, search,
edit and delete env vars, run a job with two of them and watch it finish with its output redacted; a
second person sees nothing of the first's; forms are CSRF-protected; no planted value ever reaches a
page, a URL, a response, the service's log or its database."""
import re

import pytest
from playwright.sync_api import expect

from devkit.browser import shot
from tests.dashboard.helpers import assert_nowhere, create_env_var, login, new_canary, watch_page

pytestmark = pytest.mark.browser


def test_a_user_manages_env_vars_and_runs_a_job(dashboard, new_page):
    canary, canary2, canary3 = new_canary(), new_canary(), new_canary()
    page = new_page()
    seen = watch_page(page)
    login(page, dashboard, "alice")
    expect(page.get_by_test_id("user")).to_have_text("alice")
    expect(page.get_by_role("heading", name="No env vars yet")).to_be_visible()
    shot(page, "01-empty-state")

    # Create: the value field is a masked input; nothing typed into it comes back.
    page.get_by_role("link", name="Create your first env var").click()
    value_input = page.get_by_label("Value")
    expect(value_input).to_have_attribute("type", "password")
    _create_filled = ("API_TOKEN", "the token of the deploy API", canary)
    page.get_by_label("Name").fill(_create_filled[0])
    page.get_by_label("Description").fill(_create_filled[1])
    value_input.fill(canary)
    shot(page, "02-new-env-var")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Created API_TOKEN.")
    create_env_var(page, "DB_PASSWORD", canary2, "database password")
    create_env_var(page, "UNUSED_FLAG", "on", "not used by the job")
    expect(page.locator("tbody tr")).to_have_count(3)
    shot(page, "03-list")

    # A bad name and a taken name: errors next to the field, the value never echoed back.
    page.get_by_role("link", name="New env var").click()
    page.get_by_label("Name").fill("1BAD")
    page.get_by_label("Value").fill(canary3)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#name-error")).to_contain_text("POSIX name")
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Value")).to_have_value("")
    shot(page, "04-field-error")
    page.get_by_label("Name").fill("API_TOKEN")
    page.get_by_label("Value").fill(canary3)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#name-error")).to_have_text("you already have an env var with this name")
    page.get_by_role("link", name="Cancel").click()

    # Search.
    page.get_by_label("Search names and descriptions").fill("database")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody")).to_contain_text("DB_PASSWORD")
    shot(page, "05-search")
    page.get_by_role("link", name="Clear").click()

    # Edit: the value is never pre-filled; a new one replaces it, the description changes.
    page.get_by_role("link", name="Edit DB_PASSWORD").click()
    expect(page.get_by_label("Value")).to_have_value("")
    expect(page.get_by_label("Value")).to_have_attribute("placeholder", "••••••••")
    page.get_by_label("Description").fill("the primary database's password")
    canary2 = new_canary()
    page.get_by_label("Value").fill(canary2)
    shot(page, "06-edit")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved DB_PASSWORD.")
    expect(page.locator("tbody")).to_contain_text("the primary database's password")

    # Delete asks first, naming the env var.
    page.get_by_role("link", name="Delete UNUSED_FLAG").click()
    expect(page.get_by_role("heading", name="Delete UNUSED_FLAG?")).to_be_visible()
    shot(page, "07-confirm-delete")
    page.get_by_role("button", name="Delete UNUSED_FLAG").click()
    expect(page.get_by_role("status")).to_have_text("Deleted UNUSED_FLAG.")
    expect(page.locator("tbody tr")).to_have_count(2)

    # A job with two env vars: the preview lists the selected names only.
    page.get_by_role("link", name="Run a job").click()
    script = ("import hashlib,os,time; time.sleep(1.5); "
              "print(os.environ['API_TOKEN']); print(os.environ['DB_PASSWORD']); "
              "print(hashlib.sha256(os.environb[b'API_TOKEN']).hexdigest())")
    page.get_by_label("Command").fill(f'python3 -c "{script}"')
    page.get_by_label("API_TOKEN").check()
    page.get_by_label("DB_PASSWORD").check()
    expect(page.locator("#selected-names")).to_have_text("API_TOKEN, DB_PASSWORD")
    shot(page, "08-new-job")
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(re.compile(r"/dashboard/executions/[0-9a-f-]+$"))
    expect(page.get_by_test_id("state")).to_have_text(re.compile("queued|running"))
    shot(page, "09-job-running")
    expect(page.get_by_test_id("state")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_test_id("exit-code")).to_have_text("0")
    output = page.get_by_test_id("output").inner_text()
    assert "[redacted:API_TOKEN]" in output and "[redacted:DB_PASSWORD]" in output
    import hashlib

    assert hashlib.sha256(canary.encode()).hexdigest() in output  # the job really had the value
    shot(page, "10-job-finished")

    # The Jobs page lists it with its state, env var names and times, links to it, and filters by state.
    job_url = page.url
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    rows = page.get_by_test_id("jobs").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("succeeded")
    expect(rows.first).to_contain_text("API_TOKEN, DB_PASSWORD")
    expect(rows.first.locator("td").nth(4)).not_to_have_text("—")  # started
    shot(page, "11-jobs")
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.get_by_text("No job is failed.")).to_be_visible()
    page.get_by_label("State").select_option("succeeded")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link").click()
    expect(page).to_have_url(job_url)

    # No planted value anywhere: pages, URLs (so history), responses, the service's log, its database.
    values = (canary, canary2, canary3)
    assert_nowhere(values, page, seen, dashboard)


def test_a_second_user_sees_none_of_the_first_users_env_vars(dashboard, new_page):
    alice = new_page()
    login(alice, dashboard, "alice")
    create_env_var(alice, "ALICE_ONLY", new_canary())
    alice_edit = alice.get_by_role("link", name="Edit ALICE_ONLY").get_attribute("href")

    bob = new_page()
    login(bob, dashboard, "bob")
    expect(bob.get_by_test_id("user")).to_have_text("bob")
    expect(bob.get_by_role("heading", name="No env vars yet")).to_be_visible()
    bob.get_by_role("link", name="Run a job").click()
    expect(bob.locator("input[name=env_var_ids]")).to_have_count(0)
    # Alice's env var's own URL is not found for bob, exactly like an unknown one.
    response = bob.goto(f"{dashboard.url}{alice_edit}")
    assert response.status == 404
    assert "ALICE_ONLY" not in bob.content()
    shot(bob, "11-second-user")


def test_every_form_needs_the_sessions_csrf_token(dashboard, new_page):
    page = new_page()
    login(page, dashboard, "alice")
    api = page.context.request
    forged = api.post(f"{dashboard.url}/dashboard/env-vars/new",
                      form={"name": "FORGED", "value": "x", "csrf_token": "not-the-token"}, max_redirects=0)
    assert forged.status == 403
    missing = api.post(f"{dashboard.url}/dashboard/executions/new", form={"command": "true"}, max_redirects=0)
    assert missing.status == 403
    page.reload()
    assert "FORGED" not in page.content()
    # With the page's own token the same request works: the token, not the cookie, was missing.
    token = page.locator("form.who input[name=csrf_token]").get_attribute("value")
    ok = api.post(f"{dashboard.url}/dashboard/env-vars/new",
                  form={"name": "WITH_TOKEN", "value": "x", "csrf_token": token}, max_redirects=0)
    assert ok.status == 303


def test_session_cookie_is_httponly_samesite_and_pages_are_not_stored(dashboard, new_page):
    page = new_page()
    login(page, dashboard, "alice")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "envvars_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/dashboard"
    assert cookie["secure"] is False  # plain HTTP on loopback; Secure whenever the dashboard's URL is https
    response = page.goto(f"{dashboard.url}/dashboard/env-vars/new")
    headers = response.headers
    assert headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the session


def test_secret_fields_are_cleared_when_the_page_is_left_and_shown_again(dashboard, new_page):
    page = new_page()
    login(page, dashboard, "alice", "/dashboard/env-vars/new")
    page.get_by_label("Name").fill("TYPED")
    page.get_by_label("Value").fill(new_canary())
    page.get_by_role("link", name="Cancel").click()
    page.go_back()
    expect(page.get_by_label("Value")).to_have_value("")


def test_sign_out_ends_the_session_and_a_forged_cookie_is_no_session(dashboard, new_page):
    page = new_page()
    login(page, dashboard, "alice")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    response = page.context.request.get(f"{dashboard.url}/dashboard/env-vars", max_redirects=0)
    assert response.status == 303 and response.headers["location"].startswith("/dashboard/login")
    page.context.add_cookies([{"name": "envvars_session", "value": "gAAAAAforged", "domain": "127.0.0.1",
                               "path": "/dashboard"}])
    response = page.context.request.get(f"{dashboard.url}/dashboard/env-vars", max_redirects=0)
    assert response.status == 303


def test_login_returns_to_the_page_asked_for_and_refuses_a_replayed_callback(dashboard, new_page):
    page = new_page()
    callbacks = []
    page.on("request", lambda r: callbacks.append(r.url) if "/dashboard/callback" in r.url else None)
    login(page, dashboard, "bob", "/dashboard/executions/new")
    expect(page.get_by_role("heading", name="Run a job")).to_be_visible()
    # The code was used once and the login attempt is over: replaying the callback signs no one in.
    replay = new_page()
    response = replay.goto(callbacks[0])
    assert response.status == 400
    expect(replay.get_by_role("heading", name="Sign-in expired")).to_be_visible()


def test_every_page_passes_axe_accessibility_checks(dashboard, new_page):
    """axe-core (the engine of most accessibility checkers) on each kind of page, errors shown included."""
    from axe_playwright_python.sync_playwright import Axe

    axe, page = Axe(), new_page()
    login(page, dashboard, "bob")
    pages = {"list (empty)": None}
    create_env_var(page, "AXE_CHECK", new_canary(), "for the accessibility check")
    env_id = page.get_by_role("link", name="Edit AXE_CHECK").get_attribute("href").rsplit("/", 1)[1]
    pages.update({"list": "/dashboard/env-vars", "new": "/dashboard/env-vars/new",
                  "edit": f"/dashboard/env-vars/{env_id}", "delete": f"/dashboard/env-vars/{env_id}/delete",
                  "job form": "/dashboard/executions/new", "jobs (none)": "/dashboard/executions"})
    found = {}
    for name, path in pages.items():
        if path:
            page.goto(f"{dashboard.url}{path}")
        found[name] = axe.run(page).response["violations"]
    page.goto(f"{dashboard.url}/dashboard/env-vars/new")
    page.get_by_role("button", name="Save").click()  # every field in error
    found["new, with errors"] = axe.run(page).response["violations"]
    page.goto(f"{dashboard.url}/dashboard/executions/new")
    page.get_by_label("Command").fill('python3 -c "import time; time.sleep(5)"')
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("state")).to_have_text(re.compile("queued|running"))
    found["job status, running"] = axe.run(page).response["violations"]
    page.goto(f"{dashboard.url}/dashboard/executions")
    expect(page.get_by_test_id("jobs").locator("tbody tr")).to_have_count(1)
    found["jobs"] = axe.run(page).response["violations"]
    problems = {name: [(v["id"], v["impact"], v["help"]) for v in violations]
                for name, violations in found.items() if violations}
    assert problems == {}
    # The checker does see a page's faults: a field stripped of its label is one.
    page.goto(f"{dashboard.url}/dashboard/executions/new")
    page.evaluate("document.querySelector('label[for=timeout]').remove()")
    assert "label" in {v["id"] for v in axe.run(page).response["violations"]}
