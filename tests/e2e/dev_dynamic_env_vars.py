"""The dev stack's dynamic env var path in a real browser, on the stack the dev-mode test deployed (no
deploy of its own): alice (granted `readonly`) declares one in the dashboard, runs a job that logs in to the
stack's PostgreSQL with it, sees the login redacted and the credential's provenance on the job page; the
role is gone from pg_roles after the job; bob's declaration is refused naming the role."""
import base64
import os
import re
import shlex
import time

from playwright.sync_api import expect

from devkit.browser import shot
from infra.postgres_docker import SOCKET_DIR

HOLD_SECONDS = 10  # how long the job keeps running once logged in
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pg_probe.py")


def _probe_command() -> str:
    """The job's command: the standard-library client (pg_probe.py), as one line the job form takes."""
    with open(PROBE, "rb") as f:
        code = base64.b64encode(f.read()).decode()
    return shlex.join(["python3", "-c", f"import base64; exec(base64.b64decode('{code}'))", str(HOLD_SECONDS)])


def pg_roles(engine, container_name: str) -> list[str]:
    """Every role of the stack's PostgreSQL, read as its superuser through the container's own socket."""
    r = engine.containers.get(container_name).exec_run(
        ["psql", "-h", SOCKET_DIR, "-d", "postgres", "-Atc", "select rolname from pg_roles"], user="postgres")
    assert r.exit_code == 0, r.output.decode(errors="replace")
    return r.output.decode().split()


def check_dynamic_env_var_in_dashboard(alice_page, bob_page, out: dict, engine) -> None:
    """`alice_page`: signed in as alice; `bob_page`: signed in as bob; `out`: the stack's outputs."""
    url, container = out["service_url"], out["postgres_container"]
    before = set(pg_roles(engine, container))
    page = alice_page
    page.goto(f"{url}/dashboard/dynamic-env-vars")
    page.locator("#name").fill("APP_DB")
    page.locator("#role").fill("readonly")
    page.locator("#env").fill("PGUSER={{username}}\nPGPASSWORD={{password}}")
    page.get_by_role("button", name="Declare").click()
    row = page.get_by_test_id("dynamic-row")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("kind")).to_have_text("dynamic")
    expect(row.get_by_test_id("role")).to_have_text("readonly")

    page.goto(f"{url}/dashboard/executions/new")
    page.locator("#command").fill(_probe_command())
    page.locator("#timeout").fill("60")
    page.locator("[data-testid=dynamic-choices] input[type=checkbox]").check()
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r".*/dashboard/executions/[^/]+$"))
    # While the job runs, its login is a role of the database (Vault's name for it: v-<who>-readonly-...).
    minted: set[str] = set()
    deadline = time.monotonic() + 60
    while not minted and time.monotonic() < deadline:
        minted = {r for r in set(pg_roles(engine, container)) - before if "readonly" in r}
        time.sleep(0.5)
    assert len(minted) == 1, f"no login of the role readonly appeared during the job: {minted}"
    expect(page.get_by_test_id("state")).to_have_text("succeeded", timeout=90_000)
    output = page.get_by_test_id("output").inner_text()
    # The job logged in as exactly that login, and its output shows it only redacted.
    assert "current_user: [redacted:PGUSER]" in output and minted.pop() not in output, output
    # Provenance: the role, the lease and its job token's accessor, issue and revoke times; never a value.
    cred = page.get_by_test_id("credential")
    expect(cred.get_by_test_id("credential-role")).to_have_text("readonly")
    expect(cred.get_by_test_id("lease-id")).to_contain_text("database/creds/readonly/")
    expect(cred.get_by_test_id("revoked-at")).not_to_have_text("—", timeout=30_000)
    shot(page, "dev-stack-dynamic-job")
    # The login is gone once the job has ended.
    after = set(pg_roles(engine, container))
    assert after - before == set(), after - before
    page.goto(f"{url}/dashboard/activity")
    expect(page.locator("main")).to_contain_text("Credential issued")
    expect(page.locator("main")).to_contain_text("Credential revoked")

    # bob is not granted the role: Vault says so, the form names the role.
    bob_page.goto(f"{url}/dashboard/dynamic-env-vars")
    bob_page.locator("#name").fill("APP_DB")
    bob_page.locator("#role").fill("readonly")
    bob_page.get_by_role("button", name="Declare").click()
    expect(bob_page.locator("#role-error")).to_contain_text("readonly")
    expect(bob_page.get_by_test_id("dynamic-row")).to_have_count(0)
    shot(bob_page, "dev-stack-dynamic-refused")
