"""Prometheus durations (`90s`, `1h30m`, `7d`) as whole seconds, and back."""

from __future__ import annotations

import re

from exporter.vocab.errors import ConfigError

_MILLIS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}
_MAX_DURATION_CHARS = 64  # 10**60 days still parses (and fails a window limit by name); floats stop near 1e308
_DURATION = re.compile(r"^((\d+)(ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> int:
    """Prometheus duration (`90s`, `1h30m`, `7d`) to whole seconds."""
    t = text.strip()
    if not _DURATION.match(t):
        raise ConfigError(f"invalid duration {text!r}: use Prometheus form such as 30s, 5m, 1h30m, 7d")
    if len(t) > _MAX_DURATION_CHARS:  # int() of a huge digit string is slow, and the result is no window
        raise ConfigError(f"invalid duration {text[:20]!r}...: longer than {_MAX_DURATION_CHARS} characters")
    # Whole milliseconds in integers: no float to overflow, however many digits.
    millis = sum(int(n) * _MILLIS[u] for n, u in _PART.findall(t))
    if millis <= 0 or millis % 1000:
        raise ConfigError(f"invalid duration {text!r}: must be a positive whole number of seconds")
    return millis // 1000


def format_duration(seconds: int) -> str:
    """Whole seconds to the shortest Prometheus duration (`3600` -> `1h`)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
