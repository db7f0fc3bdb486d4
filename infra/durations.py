"""Durations as Vault spells them (30s, 15m, 1h, 7d, 1h30m): the one parser of the stack config and the
Vault providers."""
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """`text` in seconds; ValueError for anything else, a bare number included."""
    parts = re.findall(r"(\d+)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"{text!r} is not a duration; use e.g. 30s, 15m, 1h, 7d")
    return sum(int(n) * UNITS[u] for n, u in parts)
