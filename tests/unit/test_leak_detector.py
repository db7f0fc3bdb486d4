"""The leak detector (service/leak_detector.py) as an attacker's output would meet it: each shape of
token (synthetic ones in the real formats), the job's own values transformed, split over writes and chunks;
masked output and findings never holding the secret; and a benign build log without false positives."""
import base64
import gzip
import json
import os
import random
import secrets
import string

import pytest

from service.executor.redaction import redact
from service.leak_detector import OVERLAP, LeakScanner, excerpt, fingerprint, mask, scan

pytestmark = pytest.mark.unit
KEY = b"test-key"
CORPUS = os.path.join(os.path.dirname(__file__), "..", "data", "build-log.txt.gz")
ALNUM = string.ascii_letters + string.digits
_RANDOM = random.Random(38)  # the same synthetic secrets every run: a test that fails, fails again


def _rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_RANDOM.choice(alphabet) for _ in range(n))


def _jwt() -> str:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': _rand(8), 'exp': 2000000000})}.{_rand(43)}"


def _pem(kind: str = "RSA ") -> str:
    body = "\n".join(base64.b64encode(_RANDOM.randbytes(48)).decode() for _ in range(26))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


# (detector, the secret, the line printing it): synthetic values in each provider's documented format.
def _shapes():
    gh_pat = f"github_pat_{_rand(22)}_{_rand(59)}"
    return [
        ("aws_access_key_id", "AKIA" + _rand(16, string.ascii_uppercase + string.digits), "AWS_ACCESS_KEY_ID={}"),
        ("aws_secret_access_key", _rand(40, ALNUM + "/+"), 'aws_secret_access_key = "{}"'),
        ("github_token", "ghp_" + _rand(36), "token {}"),
        ("github_token", gh_pat, "GH_TOKEN={}"),
        ("gitlab_token", "glpat-" + _rand(20, ALNUM + "_-"), "PRIVATE-TOKEN: {}"),
        ("slack_token", f"xoxb-{_rand(11, string.digits)}-{_rand(12, string.digits)}-{_rand(24).lower()}", "slack={}"),
        ("jwt", _jwt(), "Authorization: Bearer {}"),
        ("private_key", _pem(), "{}"),
        ("private_key", _pem("OPENSSH "), "{}"),
        ("connection_string_password", _rand(20), "DATABASE_URL=postgresql://app:{}@db.internal:5432/app"),
        ("stripe_key", "sk_live_" + _rand(24), "stripe {}"),
        ("high_entropy", base64.urlsafe_b64encode(_RANDOM.randbytes(30)).decode(), "minted: {}"),
    ]


@pytest.mark.parametrize("detector,secret,line", _shapes(), ids=lambda x: x if isinstance(x, str) and len(x) < 30 else "")
def test_each_shape_is_found_masked_and_never_kept(detector, secret, line):
    output = f"step 1\n{line.format(secret)}\nstep 3\n"
    findings = scan(output, {}, KEY, "alice")
    assert [f.detector for f in findings] == [detector], findings
    f = findings[0]
    assert f.line == 2 and f.secret_hash == fingerprint(KEY, "alice", secret)
    masked = mask(output, findings)
    assert secret not in masked and f"[masked:{detector}]" in masked and masked.startswith("step 1\n")
    assert secret not in repr(f) and secret[:12] not in excerpt(masked, f.line, f.detector)


@pytest.mark.parametrize("detector,secret,line", _shapes(), ids=lambda x: x if isinstance(x, str) and len(x) < 30 else "")
def test_a_secret_split_between_two_chunks_is_found_whole(detector, secret, line):
    output = "x" * 1000 + "\n" + line.format(secret) + "\nend\n"
    at = output.index(secret)
    for cut in sorted({at, at + 1, at + len(secret) // 2, at + len(secret) - 1}):
        scanner = LeakScanner({}, KEY, "alice")
        scanner.feed(output[:cut])
        scanner.feed(output[cut:])
        findings = scanner.finish()
        assert [f.detector for f in findings] == [detector], (cut, findings)
        assert secret not in mask(output, findings)


def test_a_pem_block_over_many_small_chunks_and_one_without_its_end():
    pem = _pem()
    output = "a" * (OVERLAP + 500) + "\n" + pem + "\ndone\n"
    scanner = LeakScanner({}, KEY, "bob")
    for i in range(0, len(output), 700):
        scanner.feed(output[i:i + 700])
    findings = scanner.finish()
    masked = mask(output, findings)
    assert [f.detector for f in findings] == ["private_key"] and masked.endswith("\n[masked:private_key]\ndone\n")
    assert findings[0].line == 2
    cut = pem[:len(pem) // 2]  # the job died mid-key: masked to the end of the output
    assert mask(cut, scan(cut, {}, KEY, "bob")) == "[masked:private_key]"


VALUE = "s3cr3t-" + _rand(32, ALNUM + "-_") + "x"  # 40 characters: its base64 is not aligned on 3 bytes


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("name,output", ids=lambda x: x if " " in x else "", argvalues=[
    ("split over two writes", f"{VALUE[:13]}\n{VALUE[13:]}\n"),
    ("reversed", f"{VALUE[::-1]}\n"),
    ("base64 split over two writes", f"{_b64(VALUE)[:11]}\n{_b64(VALUE)[11:]}\n"),
    ("base64 of the value with a suffix", f"{_b64(VALUE + ':build-42')}\n"),
    ("JSON in base64", _b64(json.dumps({"user": "ci", "token": VALUE, "n": 1})) + "\n"),
    ("a part of it", f"prefix {VALUE[5:24]} suffix\n"),
    ("base64url with a prefix", base64.urlsafe_b64encode(("xy" + VALUE).encode()).decode() + "\n"),
])
def test_forms_of_the_jobs_own_value_redaction_misses(name, output):
    redacted = redact(output, {"API_TOKEN": VALUE})
    assert redacted == output, "redaction catches this one: not a test of the detector"
    findings = scan(redacted, {"API_TOKEN": VALUE}, KEY, "carol")
    assert [(f.detector, f.env_var) for f in findings] == [("own_value", "API_TOKEN")], name
    assert findings[0].secret_hash == fingerprint(KEY, "carol", VALUE)  # so the env var is matched by it
    masked = mask(redacted, findings)
    assert VALUE[5:21] not in masked.replace("\n", "")


def test_the_value_with_a_suffix_is_redacted_and_the_rest_is_no_finding():
    output = redact(f"{VALUE}-suffix\n", {"API_TOKEN": VALUE})
    assert output == "[redacted:API_TOKEN]-suffix\n" and scan(output, {"API_TOKEN": VALUE}, KEY, "c") == []


def test_short_values_and_ordinary_words_of_a_value_are_not_findings():
    values = {"MODE": "prod", "PASSWORD": "correct horse battery staple"}
    assert scan("running in prod mode, the horse is correct\n", values, KEY, "d") == []


def test_a_dismissed_hash_is_not_found_again():
    token = "ghp_" + _rand(36)
    assert scan(f"t {token}\n", {}, KEY, "erin", allowed={fingerprint(KEY, "erin", token)}) == []
    assert len(scan(f"t {token}\n", {}, KEY, "frank", allowed={fingerprint(KEY, "erin", token)})) == 1


def test_hashes_are_keyed_per_owner():
    assert fingerprint(KEY, "a", "x") != fingerprint(KEY, "b", "x") != fingerprint(b"other", "a", "x")


def test_a_benign_build_log_yields_no_false_positive():
    """The corpus shipped in tests/data: a Go binary's module list (h1: hashes), package lists and
    metadata (hex and base64 digests, descriptions, URLs), thousands of file paths: 4.8 MB, 105,632 lines.
    Measured 2026-12-07: 1 finding, a GHC package id with a base62 hash (Agda-2.6.2.2-7KnEK...)."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        corpus = f.read()
    lines = corpus.count("\n")
    findings = scan(corpus, {"SOME_TOKEN": secrets.token_urlsafe(24)}, KEY, "ci")
    print(f"benign corpus: {len(findings)} findings in {lines} lines ({len(corpus) / 1e6:.1f} MB)")
    assert lines > 100_000
    assert [corpus[f.start:f.end] for f in findings] == ["2-7KnEKyKhaJHFPwDzdI3vIK"]
