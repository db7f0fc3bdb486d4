"""What a job's stored output hides: every injected value, every line of a multiline one, and the forms a
job (or a tool it runs) commonly prints them in: base64 (standard and URL-safe, with and without padding),
hex (lower and upper case), percent-encoding (`%20` and `+` for spaces) and JSON string escapes. Each
becomes `[redacted:NAME]`.

A value or line shorter than MIN_CHARS characters (blanks aside) is not searched for: strings of 1-3
characters ("on", "1", "dev") occur in ordinary output all the time, and replacing each occurrence would
garble the output and show where the value's characters are. Such env vars are named on the job instead
(`unredacted_env_vars`). Not caught: a value split across lines of output, transformed otherwise, or
encoded together with other bytes (base64 of a longer string aligns it differently)."""
import base64
import json
import re
import urllib.parse

MIN_CHARS = 4


def too_short(value: str) -> bool:
    return len(value.strip()) < MIN_CHARS


def encoded_forms(text: str) -> set[str]:
    """`text` and its encoded forms, those of at least MIN_CHARS characters."""
    raw = text.encode("utf-8")
    b64, url = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    forms = {text, b64, b64.rstrip("="), url, url.rstrip("="), raw.hex(), raw.hex().upper(),
             urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text, safe=""),
             json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    return {f for f in forms if len(f) >= MIN_CHARS}


def unredacted(values: dict[str, str]) -> list[str]:
    """The env vars whose value is too short to be searched for in the output."""
    return sorted(name for name, value in values.items() if value and too_short(value))


def redact(output: str, values: dict[str, str]) -> str:
    """`output` with every form of every value (and of each line of a multiline one) replaced."""
    names: dict[str, str] = {}
    for name, value in values.items():
        if too_short(value):
            continue
        texts = {value} | {line for line in value.splitlines() if not too_short(line)}
        for form in set().union(*(encoded_forms(t) for t in texts)):
            names.setdefault(form, name)
    if not names:
        return output
    # One pass; at each position the longest form wins (one value inside another never leaks the rest).
    pattern = re.compile("|".join(re.escape(f) for f in sorted(names, key=len, reverse=True)))
    return pattern.sub(lambda m: f"[redacted:{names[m.group(0)]}]", output)
