"""Helpers shared by the dashboard's tests (fixtures stay in conftest.py): what the `dashboard` fixture
yields, signing in, and what several test modules do in the browser: plant canaries, watch every request
and response, create an env var through the form, and search everywhere for a planted value."""
import re
import secrets

from playwright.sync_api import expect

from devkit.browser import sign_in


class Dashboard:
    def __init__(self, url: str, vault_url: str, vault_token: str, issuer: str, passwords: dict, log_path: str,
                 db_path: str):
        self.url, self.vault_url, self.vault_token, self.issuer = url, vault_url, vault_token, issuer
        self.passwords, self.log_path, self.db_path = passwords, log_path, db_path

    def log_text(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def login(page, dashboard: Dashboard, user: str, path: str = "/dashboard/env-vars") -> None:
    sign_in(page, dashboard.url, dashboard.vault_url, user, dashboard.passwords[user], path)


def new_canary() -> str:
    return f"canary-{secrets.token_hex(12)}"


def watch_page(page) -> dict:
    """Every request URL and response body the page sees."""
    seen = {"urls": [], "bodies": []}
    page.on("request", lambda r: seen["urls"].append(r.url))

    def on_response(r):
        seen["urls"].append(r.url)
        try:
            seen["bodies"].append(r.body())
        except Exception:  # noqa: BLE001, S110 (redirects have no body)
            pass

    page.on("response", on_response)
    return seen


def assert_nowhere(values, page, seen: dict, dashboard) -> None:
    """No planted value anywhere: the page, URLs (so history), responses, the service's log, its database."""
    with open(dashboard.db_path, "rb") as f:
        database = f.read()
    for v in values:
        assert v not in page.content()
        assert not any(v in u for u in seen["urls"]), "a value reached a URL"
        assert not any(v.encode() in b for b in seen["bodies"]), "a value reached a response"
        assert v not in dashboard.log_text()
        assert v.encode() not in database


def create_env_var(page, name: str, value: str, description: str = "") -> None:
    page.get_by_role("link", name=re.compile("New env var|Create your first env var")).first.click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Description").fill(description)
    page.get_by_label("Value").fill(value)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(f"Created {name}.")
