"""Finds secrets in a job's output that redaction (redaction.py) could not know: tokens the job fetched or
minted itself, private keys it read from a file, and the job's own values in forms redaction does not
search for (a long enough part of one, reversed, split over lines or writes, inside a longer base64).

It runs over the output *after* redaction, as a stream: `feed()` takes the output chunk by chunk, keeps the
last OVERLAP characters of what it saw (a secret split across two chunks is found whole) and `finish()`
returns every finding with its span in the whole output, so the caller can mask it. Nothing it returns
holds the secret: a finding has a keyed hash of it (`fingerprint`), the detector's name and the line.

Three kinds of detectors:
- shapes of well-known tokens, from detect-secrets (pinned in requirements.txt): its plugins' own regular
  expressions (AWS, GitHub, GitLab, Slack, JWT, private keys, basic-auth URLs, Stripe, SendGrid, OpenAI,
  PyPI, Discord, Azure storage, Square, npm); run only where a literal every match needs is present;
- high-entropy strings: our own (detect-secrets' entropy plugins only look inside quotes, as in code);
- near-matches of the job's own values: our own (no library knows the values).
"""
import base64
import bisect
import collections
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import ahocorasick_rs
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector

# A secret split between two chunks is found whole when it is at most this long (a 4096-bit RSA key in
# PEM is about 3.3 KB; a block is searched up to PEM_MAX characters).
PEM_MAX = 12_000
OVERLAP = PEM_MAX + 200
# The job's own values: any run of at least PARTIAL_MIN characters of a value is found (its K-grams at
# positions 0, K, 2K... are the needles: any run of 2K-1 characters holds one); shorter values only whole.
K = 8
PARTIAL_MIN = 16
NEAR_MIN = 8  # values shorter than this are left to redaction (too many chance matches)
# High entropy: tokens of the base64/base64url alphabet, at least ENTROPY_MIN_LENGTH long, holding upper
# case, lower case and digits, whose Shannon entropy (bits per character) is at least ENTROPY_THRESHOLD
# (lower for short tokens: see _high_entropy; tuned on the build-log corpus in tests/data/).
# Hex-only tokens are left out: commit ids, image and file digests fill every build log.
ENTROPY_MIN_LENGTH = 24
ENTROPY_THRESHOLD = 4.5
SWITCHES_MIN = 0.4  # and whose characters change class often, as random ones do (see _switches)
ENTROPY_MAX_LENGTH = 4096  # a longer run is judged (and masked) by its first 4096 characters
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{%d,%d}={0,2}" % (ENTROPY_MIN_LENGTH, ENTROPY_MAX_LENGTH))
# What precedes a digest in package managers' output (SRI integrity, Go's h1:, pip's --hash): not secrets.
_DIGEST_PREFIXES = ("sha1-", "sha256-", "sha384-", "sha512-", "h1:", "sha256:", "sha512:", "md5-")
_BLANKS = re.compile(r"\s+")


def _squeeze(text: str) -> str:
    """`text` without its blanks (str.split's: the same as \\s)."""
    return "".join(text.split())


_MARKER = "[masked:{}]"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern
    hints: tuple[str, ...]  # one of them is in every match: the pattern runs only where one is present (): always
    valid: Optional[Callable[[str], bool]] = None
    group: int = 0  # the part of the match that is the secret (the rest stays readable)


def _jwt_valid(token: str) -> bool:
    return JwtTokenDetector.is_formally_valid(token)


def _rules() -> list[Rule]:
    aws_ids, aws_secret = AWSKeyDetector.denylist
    return [
        Rule("aws_access_key_id", aws_ids, ("A3T", "ABIA", "ACCA", "AKIA", "ASIA")),
        Rule("aws_secret_access_key", aws_secret, ("aws", "AWS", "Aws"), group=1),
        *[Rule("github_token", p, ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")) for p in GitHubTokenDetector.denylist],
        # Fine-grained personal access tokens are newer than detect-secrets' rule: their documented shape.
        Rule("github_token", re.compile(r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"), ("github_pat_",)),
        *[Rule("gitlab_token", p, ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "GR1348941", "glcbt-", "glimt-",
                                   "glptt-", "glagent-", "gloas-")) for p in GitLabTokenDetector.denylist],
        *[Rule("slack_token", p, ("xox", "XOX", "Xox", "hooks.slack.com")) for p in SlackDetector.denylist],
        # detect-secrets' JWT pattern ends lazily (it would stop before the signature): made greedy so the
        # whole token is masked; its own validity check (two JSON parts) is kept.
        Rule("jwt", re.compile(JwtTokenDetector.denylist[0].pattern.removesuffix("*?") + "*"), ("eyJ",), _jwt_valid),
        # detect-secrets matches the BEGIN line only; the whole block is masked, up to its END line, or to
        # the end of the output when the job never printed one.
        Rule("private_key", re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]{0,%d}?-----END[A-Z0-9 ]{0,30}PRIVATE "
            r"KEY(?: BLOCK)?-----|[\s\S]{0,%d}\Z)" % (PEM_MAX, PEM_MAX)), ("PRIVATE KEY",)),
        *[Rule("private_key", p, (p.pattern,)) for p in PrivateKeyDetector.denylist
          if "PRIVATE KEY" not in p.pattern],  # PuTTY's header
        *[Rule("connection_string_password", p, ("://",), group=1) for p in BasicAuthDetector.denylist],
        *[Rule("stripe_key", p, ("k_live_",)) for p in StripeDetector.denylist],
        *[Rule("sendgrid_key", p, ("SG.",)) for p in SendGridDetector.denylist],
        *[Rule("openai_key", p, ("T3BlbkFJ",)) for p in OpenAIDetector.denylist],
        *[Rule("pypi_token", p, ("pypi-",)) for p in PypiTokenDetector.denylist],
        *[Rule("discord_token", p, ()) for p in DiscordBotTokenDetector.denylist],  # no literal: always run
        *[Rule("azure_storage_key", p, ("AccountKey=",)) for p in AzureStorageKeyDetector.denylist],
        *[Rule("square_oauth", p, ("sq0csp-",)) for p in SquareOAuthDetector.denylist],
        *[Rule("npm_token", p, ("_authToken",), group=2) for p in NpmDetector.denylist],
    ]


RULES = _rules()
# Every hint at once: one pass over a chunk tells which rules may match in it.
_HINTS = ahocorasick_rs.AhoCorasick(sorted({h for r in RULES for h in r.hints}))
DETECTORS = sorted({r.name for r in RULES} | {"high_entropy", "own_value"})


def fingerprint(key: bytes, owner: str, secret: str) -> str:
    """What a finding keeps of a secret, and what an env var's value is matched by: HMAC-SHA256 under the
    service's key (settings), per owner. Never the secret; without the key, guesses cannot be tested."""
    return hmac.new(key, owner.encode() + b"\0" + secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def shannon_entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in collections.Counter(text).values())


def _class(c: str) -> int:
    return 0 if c.islower() else 1 if c.isupper() else 2 if c.isdigit() else 3


def _switches(token: str) -> float:
    """How often the next character is of another class (lower, upper, digit, other): about 0.65 for random
    base64, 0.1-0.3 for words joined by separators (paths, package names, identifiers)."""
    classes = [_class(c) for c in token]
    return sum(a != b for a, b in zip(classes, classes[1:], strict=False)) / max(1, len(token) - 1)


_WORD_END = re.compile(r"[\s\"'<>()\[\]{},;=]")


def _path_like(text: str, start: int, end: int) -> bool:
    """The token is part of a path (or a URL's): in the blank-delimited word around it, a segment between
    slashes or dots is a lowercase word (usr, share, com, rst). Random base64 seldom has one; a secret
    missed that way may still match another detector."""
    if "/" not in text[start:end] and not (start and text[start - 1] in "/.") and not (end < len(text) and text[end] in "/."):
        return False
    before = text[max(0, start - 256):start]
    ends = [m.end() for m in _WORD_END.finditer(before)]
    word_start = start - len(before) + (ends[-1] if ends else 0)
    after = _WORD_END.search(text, end, end + 256)
    word = text[word_start:after.start() if after else min(len(text), end + 256)]
    return any(len(s) >= 3 and s.isalpha() and s.islower() for s in re.split(r"[/.]", word))


def _high_entropy(token: str) -> bool:
    token = token.rstrip("=")
    # Upper and lower case and a digit (checked in C first: most tokens of a log are lower-case hex)
    if token.islower() or token.isupper() or not any(map(str.isdigit, token)):
        return False
    # A random token of n characters has at most log2(n) bits per character: short ones are judged on that.
    threshold = min(ENTROPY_THRESHOLD, math.log2(len(token)) - 0.6)
    return shannon_entropy(token) >= threshold and _switches(token) >= SWITCHES_MIN


@dataclass(frozen=True)
class Finding:
    detector: str
    start: int  # the secret's span in the whole (redacted) output
    end: int
    line: int  # 1-based
    secret_hash: str
    env_var: Optional[str] = None  # the job's own env var (by name) it is a form of


def _b64_cores(data: bytes) -> set[str]:
    """The part of base64(anything + data + anything) that depends on `data` only, for each of the three
    alignments, in both alphabets: a value inside a longer encoded string (a suffix, JSON around it)."""
    out = set()
    for off in range(3):
        enc = base64.b64encode(b"\0" * off + data).decode()
        first, last = -(-8 * off // 6), 8 * (off + len(data)) // 6
        core = enc[first:last]
        if len(core) >= K:
            out |= {core, core.replace("+", "-").replace("/", "_")}
    return out


@dataclass
class _Needle:
    env_var: str
    value: str  # what the needle is a part of (the value, reversed, or an encoded form)
    at: int  # where the needle starts in it
    whole: bool  # only a match of the whole `value` counts


def _needles(values: dict[str, str]) -> list[tuple[str, _Needle]]:
    out: list[tuple[str, _Needle]] = []
    for name, value in values.items():
        if len(value.strip()) < NEAR_MIN:
            continue
        squeezed = _squeeze(value)  # the output is searched without its blanks: so is the value
        if len(squeezed) < PARTIAL_MIN:
            out.append((squeezed, _Needle(name, squeezed, 0, True)))
        else:
            out += [(squeezed[i:i + K], _Needle(name, squeezed, i, False)) for i in range(0, len(squeezed) - K + 1, K)]
        forms = {squeezed[::-1]}
        for text in {value, json.dumps(value)[1:-1]}:
            forms |= _b64_cores(text.encode())
        out += [(f, _Needle(name, f, 0, True)) for f in forms if len(f) >= NEAR_MIN and f != squeezed]
    return out


class LeakScanner:
    """One job's output, fed chunk by chunk (already redacted); `finish()` returns the findings."""

    def __init__(self, values: dict[str, str], key: bytes, owner: str, allowed: Iterable[str] = ()):
        self._key, self._owner, self._allowed = key, owner, frozenset(allowed)
        self._values = {n: v for n, v in values.items() if v}
        pairs = _needles(self._values)
        self._needles = [n for _, n in pairs]
        self._automaton = ahocorasick_rs.AhoCorasick([p for p, _ in pairs]) if pairs else None
        self._pending = ""  # the last OVERLAP characters seen, scanned again with the next chunk
        self._base = 0  # offset of _pending in the whole output
        self._lines_before = 0  # newlines before _base
        self._found: dict[tuple[str, int], Finding] = {}
        self._deferred = -1  # the earliest start, in the text being scanned, of a match left for the next chunk

    def feed(self, chunk: str) -> None:
        text = self._pending + chunk
        self._deferred = len(text)
        self._scan(text, final=False)
        # What the next chunk is scanned with: the last OVERLAP characters, and any match that may grow.
        cut = max(0, min(len(text) - OVERLAP, self._deferred))
        self._lines_before += text.count("\n", 0, cut)
        self._base += cut
        self._pending = text[cut:]

    def finish(self) -> list[Finding]:
        self._scan(self._pending, final=True)
        self._pending = ""
        # One finding per overlapping group of spans, covering all of them: a form of the job's own value
        # first (it names the env var), then a known shape, the longest, the first.
        found = sorted(self._found.values(), key=lambda f: (f.start, -f.end))
        groups: list[list[Finding]] = []
        for f in found:
            if groups and f.start < max(g.end for g in groups[-1]):
                groups[-1].append(f)
            else:
                groups.append([f])
        kept = []
        for g in groups:
            best = min(g, key=lambda f: (f.detector != "own_value", f.detector == "high_entropy", -(f.end - f.start),
                                         f.start))
            kept.append(Finding(best.detector, g[0].start, max(f.end for f in g), min(f.line for f in g),
                                best.secret_hash, best.env_var))
        return kept

    # --- scanning -------------------------------------------------------------------------------------------

    def _add(self, text: str, detector: str, start: int, end: int, secret: str, env_var: Optional[str] = None,
             final: bool = False) -> None:
        # A match reaching into the last OVERLAP characters may grow with the next chunk: found then (unless
        # it started so long ago that keeping it would let the carried text grow without bound).
        if not final and end > len(text) - OVERLAP and start >= len(text) - 2 * OVERLAP:
            self._deferred = min(self._deferred, start)
            return
        digest = fingerprint(self._key, self._owner, secret)
        if digest in self._allowed:
            return
        key = (detector, self._base + start)
        if key in self._found and self._found[key].end >= self._base + end:
            return
        line = self._lines_before + text.count("\n", 0, start) + 1
        self._found[key] = Finding(detector, self._base + start, self._base + end, line, digest, env_var)

    def _scan(self, text: str, final: bool) -> None:
        present = set(_HINTS.find_matches_as_strings(text))
        for rule in RULES:
            if rule.hints and not present.intersection(rule.hints):
                continue
            for m in rule.pattern.finditer(text):
                secret = m.group(rule.group)
                if secret and (rule.valid is None or rule.valid(secret)):
                    self._add(text, rule.name, m.start(rule.group), m.end(rule.group), secret, final=final)
        for m in _TOKEN.finditer(text):
            token = m.group(0)
            if (_high_entropy(token) and not text.endswith(_DIGEST_PREFIXES, max(0, m.start() - 8), m.start())
                    and not _path_like(text, m.start(), m.end())):
                self._add(text, "high_entropy", m.start(), m.end(), token, final=final)
        if self._automaton is not None:
            self._near(text, final)

    def _near(self, text: str, final: bool) -> None:
        squeezed = _squeeze(text)
        assert self._automaton is not None
        hits = self._automaton.find_matches_as_indexes(squeezed, overlapping=True)
        if not hits:
            return
        # Where a character of `squeezed` is in `text`: past each run of blanks, the offset grows by its length.
        # (Built only when something matched.)
        run_at, shift, total = [], [], 0
        for run in _BLANKS.finditer(text):
            total += run.end() - run.start()
            run_at.append(run.end() - total)  # where the next character is in `squeezed`
            shift.append(total)

        def original(i: int) -> int:
            j = bisect.bisect_right(run_at, i) - 1
            return i + (shift[j] if j >= 0 else 0)
        seen: set[tuple[str, int]] = set()
        for index, start, end in hits:
            needle = self._needles[index]
            left = right = 0
            if needle.whole:
                if end - start != len(needle.value):
                    continue
            else:  # grow the match both ways while it follows the value
                v, at = needle.value, needle.at
                while start - left > 0 and at - left > 0 and squeezed[start - left - 1] == v[at - left - 1]:
                    left += 1
                while end + right < len(squeezed) and at + K + right < len(v) and \
                        squeezed[end + right] == v[at + K + right]:
                    right += 1
                if (end + right) - (start - left) < min(PARTIAL_MIN, len(v)):
                    continue
            s, e = start - left, end + right
            if (needle.env_var, s) in seen:
                continue
            seen.add((needle.env_var, s))
            # Matched as a form of the value: the hash is the value's, so its env var is named by it.
            self._add(text, "own_value", original(s), original(e - 1) + 1, self._values[needle.env_var],
                      env_var=needle.env_var, final=final)


def mask(output: str, findings: list[Finding]) -> str:
    """`output` with each finding's span replaced by [masked:DETECTOR]."""
    parts, at = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < at:  # overlapping spans: the first one masked already covers it
            if f.end > at:
                at = f.end
            continue
        parts += [output[at:f.start], _MARKER.format(f.detector)]
        at = f.end
    parts.append(output[at:])
    return "".join(parts)


def excerpt(masked: str, line: int, detector: str, width: int = 160) -> str:
    """The finding's line of the masked output, around its marker, at most `width` characters."""
    lines = masked.split("\n", line)  # only as far as that line
    text = lines[line - 1] if len(lines) >= line else ""
    marker = _MARKER.format(detector)
    at = max(text.find(marker), 0)
    start = max(0, at - (width - len(marker)) // 2)
    return text[start:start + width]


def scan(output: str, values: dict[str, str], key: bytes, owner: str, allowed: Iterable[str] = (),
         chunk: int = 1 << 18) -> list[Finding]:
    """The findings of a whole output, fed in chunks as a stream would be."""
    scanner = LeakScanner(values, key, owner, allowed)
    for i in range(0, len(output), chunk):
        scanner.feed(output[i:i + chunk])
    return scanner.finish()
