""".env import without a server: python-dotenv's parsing as the import uses it (line numbers, quotes,
escapes, errors) and each entry's status against a real SQLite database holding the user's env vars."""
from types import SimpleNamespace

import pytest

from service.auth import Caller
from service.core.env_import import NO_EQUALS, UNPARSABLE, parse, plan
from service.db import EnvVar, make_engine, migrate, session_factory

pytestmark = pytest.mark.unit

# Line numbers on the left are the file's; the import must report the same ones.
TRICKY = "\n".join([
    "# a comment",                                   # 1
    'export API_KEY="line1',                         # 2
    'line2 = two # not a comment"',                  # 3
    "PLAIN=simple value   # a comment",              # 4
    r"SINGLE='literal \n $HOME'",                    # 5
    r'DQ="tab\tquote\" hash # eq = end  "',          # 6
    "",                                              # 7
    "1BAD=x",                                        # 8
    "PATH=/usr/bin",                                 # 9
    "LD_PRELOAD=/x.so",                              # 10
    "DUP=1",                                         # 11
    "DUP=2",                                         # 12
    "NOEQUALS",                                      # 13
    "EMPTY=",                                        # 14
    "EXISTING=new value",                            # 15
    'UNCLOSED="abc',                                 # 16
    "AFTER=ok",                                      # 17
]) + "\n"


def test_entries_carry_the_line_their_name_is_on_and_dotenv_values():
    got = [(p.line, p.name, p.value, p.problem) for p in parse(TRICKY)]
    assert got == [
        (2, "API_KEY", "line1\nline2 = two # not a comment", ""),
        (4, "PLAIN", "simple value", ""),
        (5, "SINGLE", "literal \\n $HOME", ""),  # single quotes: literal, no expansion
        (6, "DQ", 'tab\tquote" hash # eq = end  ', ""),
        (8, "1BAD", "x", ""),
        (9, "PATH", "/usr/bin", ""),
        (10, "LD_PRELOAD", "/x.so", ""),
        (11, "DUP", "1", ""),
        (12, "DUP", "2", ""),
        (13, None, None, NO_EQUALS),  # its text is not shown: it may be part of a value
        (14, "EMPTY", "", ""),
        (15, "EXISTING", "new value", ""),
        (16, None, None, UNPARSABLE),
        (17, "AFTER", "ok", ""),
    ]


@pytest.mark.parametrize("text,lines", [
    ("\n\n\nA=1\n", [4]),
    ("A=1\r\n\r\nB=2\r\n", [1, 3]),
    ("\ufeffA=1\n  # indented comment\n   B=2", [1, 3]),
    ('A="x\n\ny"\n\nB=2\n', [1, 5]),
])
def test_blank_lines_comments_and_line_endings_do_not_shift_the_line_numbers(text, lines):
    assert [p.line for p in parse(text)] == lines


def test_crlf_and_unicode_in_values_are_kept_as_written():
    (p,) = parse('K="a\r\nb ✓ 東京"\r\n')
    assert p.value == "a\r\nb ✓ 東京"


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path}/import.db"
    migrate(url)
    factory = session_factory(make_engine(url))
    with factory.begin() as s:
        s.add(EnvVar(id="id-existing", owner="alice", name="EXISTING"))
        s.add(EnvVar(id="id-bobs", owner="bob", name="PLAIN"))  # another user's: new for alice
        s.add(EnvVar(id="id-creating", owner="alice", name="AFTER", pending="create:x"))  # not there yet
    return factory


def _plan(sessions, text, decisions=None, max_bytes=64 * 1024):
    c = SimpleNamespace(settings=SimpleNamespace(value_max_bytes=max_bytes))
    with sessions() as s:
        return plan(s, c, Caller("alice", ""), text, decisions or {})  # type: ignore[arg-type]


def test_each_entry_gets_its_status_and_what_stops_the_import_is_named(sessions):
    p = _plan(sessions, TRICKY)
    assert [(e.line, e.name, e.status) for e in p.entries] == [
        (2, "API_KEY", "new"), (4, "PLAIN", "new"), (5, "SINGLE", "new"), (6, "DQ", "new"),
        (8, "1BAD", "invalid"), (9, "PATH", "reserved"), (10, "LD_PRELOAD", "reserved"), (11, "DUP", "new"),
        (12, "DUP", "duplicate"), (13, None, "invalid"), (14, "EMPTY", "new"), (15, "EXISTING", "existing"),
        (16, None, "invalid"), (17, "AFTER", "new")]
    existing = p.entries[11]
    assert existing.env_var_id == "id-existing" and existing.decision is None
    assert p.entries[8].reason == "is also on line 11"
    where = [w for w, _ in p.problems]
    assert where == [["text", 8], ["text", 9], ["text", 10], ["text", 12], ["text", 13], ["decisions", "EXISTING"],
                     ["text", 16]]
    assert "line 15: you already have EXISTING: choose skip or overwrite" in [m for _, m in p.problems]


def test_a_decided_file_of_valid_entries_is_ready_and_a_stray_decision_is_named(sessions):
    assert _plan(sessions, "NEW=1\nEXISTING=2\n", {"EXISTING": "skip"}).problems == []
    p = _plan(sessions, "NEW=1\n", {"TYPO": "overwrite"})
    assert p.problems == [(["decisions", "TYPO"], "TYPO is not a name in this file")]


def test_values_over_the_limit_or_with_nul_are_invalid_without_showing_them(sessions):
    p = _plan(sessions, 'BIG="' + "x" * 11 + '"\nNUL="a\x00b"\n', max_bytes=10)
    assert [(e.status, e.reason) for e in p.entries] == [
        ("invalid", "value is over 10 bytes (UTF-8), the limit of one value"),
        ("invalid", "value contains a NUL character (an environment cannot hold one)")]


def test_an_empty_file_and_too_many_entries_are_refused(sessions):
    assert _plan(sessions, "# only a comment\n").problems == [(["text"], "has no NAME=value entries")]
    from service.core import errors
    from service.core.env_import import MAX_ENTRIES

    with pytest.raises(errors.InvalidField, match=f"has {MAX_ENTRIES + 1} entries"):
        _plan(sessions, "".join(f"V{i}=x\n" for i in range(MAX_ENTRIES + 1)))
