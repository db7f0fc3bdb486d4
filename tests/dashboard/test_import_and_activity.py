"""The Import page and the Activity page in Chromium: paste a .env file, preview it (names and statuses only),
be refused until an existing name is decided, choose overwrite, import; upload a file with CR LF inside a
value; the values reach a job byte-exact (by hash); the activity lists it all, paged for a busy user. No planted value ever
reaches a page, a URL, a response, the service's log or its database; axe-core checks every state."""
import datetime
import hashlib
import os
import re
import secrets
import sqlite3
import uuid

import pytest
from playwright.sync_api import expect

from devkit.browser import ARTIFACTS
from tests.dashboard.helpers import assert_nowhere, create_env_var, login, new_canary, watch_page

pytestmark = pytest.mark.browser


def shot(page, name: str) -> None:
    """devkit.browser.shot, the pasted text masked: planted values stay out of the artifacts too."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True, mask=[page.locator("textarea")])


def _job_hashes(page, names: list[str]) -> str:
    """Runs a job printing the sha256 of each env var and returns its output."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Run a job").click()
    script = "import hashlib,os,sys; [print(n, hashlib.sha256(os.environb[n.encode()]).hexdigest()) for n in sys.argv[1:]]"
    page.get_by_label("Command").fill(f'python3 -c "{script}" ' + " ".join(names))
    for n in names:
        page.get_by_label(n).check()
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("state")).to_have_text("succeeded", timeout=30_000)
    return page.get_by_test_id("output").inner_text()


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_a_user_imports_a_env_file_and_follows_it_in_the_activity(dashboard, new_page):
    sfx = secrets.token_hex(3).upper()
    a, b, old, upload = f"IMP_A_{sfx}", f"IMP_B_{sfx}", f"IMP_OLD_{sfx}", f"IMP_FILE_{sfx}"
    c = [new_canary() for _ in range(7)]
    page = new_page()
    seen = watch_page(page)
    login(page, dashboard, "alice")
    create_env_var(page, old, c[0], "to be overwritten by the import")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import .env").click()
    expect(page.get_by_role("heading", name="Import a .env file")).to_be_visible()
    text = (f"# deploy settings\nexport {a}=\"{c[1]}\nsecond line = {c[2]} # kept\"\n"
            f"{b}='{c[3]} # literal'\n{old}={c[4]}\n")
    page.get_by_label("Paste the file").fill(text)
    page.get_by_role("button", name="Preview").click()
    rows = page.get_by_test_id("import-preview").locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_have_text(re.compile(rf"^\s*2\s+{a}\s+new\s+create\s*$"))
    expect(rows.nth(1)).to_have_text(re.compile(rf"^\s*4\s+{b}\s+new\s+create\s*$"))
    expect(rows.nth(2)).to_have_text(re.compile(rf"^\s*5\s+{old}\s+existing\s+{old} \(line 5\)\s+Skip\s+Overwrite\s*$"))
    expect(page.get_by_label("Paste the file")).to_have_value(text)  # still in the form, never sent back
    shot(page, "20-import-preview")

    # Import without deciding about the existing name: refused, nothing imported, the choice asked for.
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert").first).to_have_text("Nothing was imported: see the entries below.")
    expect(page.locator(".problems")).to_contain_text(f"you already have {old}: choose skip or overwrite")
    page.get_by_role("group", name=f"{old} (line 5)").get_by_label("Overwrite").check()
    shot(page, "21-import-decided")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_have_text("Imported the .env file: 2 created, 1 overwritten, 0 skipped.")
    expect(page.locator("tbody")).to_contain_text(a)

    # A reserved name refuses the whole file.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import .env").click()
    page.get_by_label("Paste the file").fill(f"FINE_{sfx}={c[5]}\nLD_PRELOAD={c[5]}\n")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_test_id("import-preview").locator("tbody tr").nth(1)).to_contain_text("reserved")
    shot(page, "22-import-refused")

    # An uploaded file keeps its bytes: CR LF inside a quoted value stays CR LF.
    page.get_by_label("Paste the file").fill("")
    page.get_by_label("Or upload it").set_input_files(files=[{
        "name": "prod.env", "mimeType": "text/plain", "buffer": f'{upload}="{c[6]}\r\nline two"\r\n'.encode()}])
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_have_text("Imported the .env file: 1 created, 0 overwritten, 0 skipped.")
    assert f"FINE_{sfx}" not in page.locator("tbody").inner_text()

    output = _job_hashes(page, [a, b, old, upload])
    for name, value in ((a, f"{c[1]}\nsecond line = {c[2]} # kept"), (b, f"{c[3]} # literal"), (old, c[4]),
                        (upload, f"{c[6]}\r\nline two")):
        assert f"{name} {_sha(value)}" in output, name

    # The activity: the imports, the env vars they wrote, the job and the env vars it was given; paged.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Activity").click()
    table = page.get_by_test_id("activity")
    expect(table.locator("tbody tr").first).to_contain_text("Job received its env vars")
    expect(table).to_contain_text("Imported a .env file")
    expect(table).to_contain_text(f"{upload}")
    expect(table).to_contain_text("Dashboard sign-in")
    shot(page, "23-activity")
    assert_nowhere(c, page, seen, dashboard)


def test_without_scripts_the_preview_asks_for_the_text_again_and_never_shows_it(dashboard, new_page):
    sfx = secrets.token_hex(3).upper()
    signed_in = new_page()
    login(signed_in, dashboard, "alice")  # the identity provider's page needs scripts; the dashboard does not
    page = new_page(java_script_enabled=False, storage_state=signed_in.context.storage_state())
    seen = watch_page(page)
    value = new_canary()
    text = f"NOJS_{sfx}=\"{value}\"\n"
    page.goto(f"{dashboard.url}/dashboard/import")
    page.get_by_label("Paste the file").fill(text)
    page.get_by_role("button", name="Preview").click()
    expect(page).to_have_url(re.compile(r"/dashboard/import/preview$"))
    expect(page.get_by_test_id("import-preview").locator("tbody tr")).to_have_text(
        re.compile(rf"^\s*1\s+NOJS_{sfx}\s+new\s+create\s*$"))
    expect(page.get_by_label("Paste the file")).to_have_value("")  # not sent back
    expect(page.locator("#import-again")).to_contain_text("paste it or choose it again")
    page.get_by_label("Paste the file").fill(text)
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_have_text("Imported the .env file: 1 created, 0 overwritten, 0 skipped.")
    assert not any(value.encode() in body for body in seen["bodies"])
    assert value not in page.content()


def test_another_user_sees_none_of_the_first_users_activity_and_pages_through_their_own(dashboard, new_page):
    sfx = secrets.token_hex(3).upper()
    alice = new_page()
    login(alice, dashboard, "alice")
    create_env_var(alice, f"ALICE_ACT_{sfx}", new_canary())
    bob = new_page()
    login(bob, dashboard, "bob", "/dashboard/activity")
    expect(bob.get_by_test_id("activity")).to_contain_text("Dashboard sign-in")
    assert f"ALICE_ACT_{sfx}" not in bob.content()
    # More events than a page holds, written straight into the service's database: through the forms they
    # would spend bob's rate limit, which the other tests of the run share.
    with sqlite3.connect(dashboard.db_path) as db:
        # bob's id is the issuer's `sub` (not his user name): the actor of the sign-in just made.
        (sub,) = db.execute("SELECT actor FROM audit_events WHERE action = 'sign_in.dashboard' "
                            "ORDER BY id DESC LIMIT 1").fetchone()
        db.executemany("INSERT INTO audit_events (at, actor, action, target, outcome, detail) "
                       "VALUES (?, ?, 'env_var.create', ?, 'ok', ?)",
                       [(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(sep=" "),
                         sub, str(uuid.uuid4()), f"name=PAGER_{sfx}_{i}") for i in range(50)])
    bob.reload()
    expect(bob.get_by_role("navigation", name="Pages")).to_contain_text("Page 1 of")
    newest = bob.get_by_test_id("activity").locator("tbody tr").first
    expect(newest).to_contain_text(f"PAGER_{sfx}_49")
    bob.get_by_role("link", name="Next").click()
    expect(bob).to_have_url(re.compile(r"/dashboard/activity\?page=2$"))
    expect(bob.get_by_test_id("activity").locator("tbody tr").first).to_be_visible()
    assert f"PAGER_{sfx}_49" not in bob.get_by_test_id("activity").inner_text()
    assert f"ALICE_ACT_{sfx}" not in bob.content()


def test_the_import_and_activity_pages_pass_axe_accessibility_checks(dashboard, new_page):
    from axe_playwright_python.sync_playwright import Axe

    sfx = secrets.token_hex(3).upper()
    axe, page = Axe(), new_page()
    login(page, dashboard, "bob", "/dashboard/env-vars")
    create_env_var(page, f"AXE_OLD_{sfx}", new_canary())
    found = {}
    page.goto(f"{dashboard.url}/dashboard/import")
    found["import"] = axe.run(page).response["violations"]
    page.get_by_role("button", name="Import").click()  # nothing pasted
    expect(page.get_by_role("alert")).to_contain_text("paste a .env file")
    found["import, error"] = axe.run(page).response["violations"]
    page.get_by_label("Paste the file").fill(f"AXE_NEW_{sfx}=1\nAXE_OLD_{sfx}=2\nPATH=3\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("import-preview").locator("tbody tr")).to_have_count(3)
    found["import, preview"] = axe.run(page).response["violations"]
    page.goto(f"{dashboard.url}/dashboard/activity")
    expect(page.get_by_test_id("activity")).to_be_visible()
    found["activity"] = axe.run(page).response["violations"]
    problems = {name: [(v["id"], v["impact"], v["help"]) for v in violations]
                for name, violations in found.items() if violations}
    assert problems == {}
