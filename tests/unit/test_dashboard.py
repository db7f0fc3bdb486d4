"""The dashboard's pieces that need no server: PKCE, its cookies, where a login may send the browser back."""
import pytest

from service.auth.oidc import LoginAttempt
from service.auth.session import CookieCodec
from service.ui.login import _safe_next
from service.ui.pages import HOME, field_errors

pytestmark = pytest.mark.unit


def test_pkce_challenge_is_rfc_7636_s256():
    attempt = LoginAttempt("s", "n", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")  # RFC 7636, appendix B
    assert attempt.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    a, b = LoginAttempt.new(), LoginAttempt.new()
    assert len({a.state, a.nonce, a.verifier, b.state, b.nonce, b.verifier}) == 6 and len(a.verifier) >= 43


def test_cookies_are_unreadable_and_refused_when_tampered_with_foreign_or_expired():
    codec = CookieCodec("key-one")
    cookie = codec.dump({"t": "id-token", "c": "csrf"})
    assert "id-token" not in cookie and codec.load(cookie, 60) == {"t": "id-token", "c": "csrf"}
    assert codec.load(cookie[:-4] + "AAAA", 60) is None
    assert CookieCodec("key-two").load(cookie, 60) is None
    assert codec.load(cookie, -1) is None  # older than its max age
    assert codec.load("", 60) is None and codec.load("not a cookie", 60) is None
    assert CookieCodec("").load(CookieCodec("").dump({}), 60) is None  # no key: one per process


@pytest.mark.parametrize("target, expected", [
    ("/dashboard/executions/new", "/dashboard/executions/new"),
    ("/dashboard/env-vars?q=db&page=2", "/dashboard/env-vars?q=db&page=2"),
    ("https://evil.example/dashboard", HOME), ("//evil.example/x", HOME), ("/api/v2/user/env-vars", HOME),
    ("/dashboard//evil.example", HOME), ("", HOME), (None, HOME), ("/dashboard\\evil", HOME),
])
def test_login_returns_only_to_a_dashboard_page(target, expected):
    assert _safe_next(target) == expected


def test_field_errors_name_the_field_in_the_apis_words():
    errors = field_errors([
        {"loc": ("body", "name"), "msg": "Value error, must be a POSIX name", "type": "value_error", "input": "x"},
        {"loc": ("description",), "msg": "String should have at most 1024 characters", "type": "string_too_long"},
        {"loc": ("name",), "msg": "String should have at least 1 character", "type": "string_too_short"},
    ])
    assert errors == {"name": "must be a POSIX name", "description": "String should have at most 1024 characters"}
    assert field_errors([{"loc": ("name",), "msg": "String should have at least 1 character",
                          "type": "string_too_short"}]) == {"name": "is required"}


@pytest.mark.parametrize("page,pages,links", [(1, 1, []), (1, 3, ["Next"]), (2, 3, ["Previous", "Next"]),
                                              (3, 3, ["Previous"])])
def test_the_pager_keeps_the_pages_filter_in_its_links(page, pages, links):
    import html as markup
    import re

    from service.ui.pages import templates

    pager = templates.env.get_template("_macros.html").module.pager  # type: ignore[attr-defined]
    html = str(pager(page, pages, {"status": "failed"}))
    found = dict((text, href) for href, text in re.findall(r'<a href="([^"]+)">(\w+)</a>', html))
    assert list(found) == links
    for text, href in found.items():
        assert markup.unescape(href) == f"?status=failed&page={page - 1 if text == 'Previous' else page + 1}"
    assert (f"Page {page} of {pages}" in html) == (pages > 1)
