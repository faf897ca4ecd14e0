"""OpenCost-style windows (`24h`, `7d`, `today`, `lastmonth`, `RFC3339,RFC3339`).

Windows are aligned to the resolution step, so consecutive windows tile time with no
overlap and no gap: each evaluation step charges the resolution interval that ends at it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ConfigError


@dataclass(frozen=True)
class Window:
    """A half-open interval (start, end] in unix seconds, aligned to `step`."""

    start: int
    end: int
    step: int

    @property
    def seconds(self) -> int:
        return self.end - self.start

    def chunks(self, size: int, boundary: int | None = None) -> Chunks:
        """Pieces of at most `size` seconds (a multiple of step), oldest first, made as they are read.

        With `boundary`, no piece crosses a multiple of it (UTC midnight for budget periods).
        """
        return Chunks(self, size, boundary)


@dataclass(frozen=True)
class Chunks:
    """A window's pieces, lazily: a year of minutes must not become a list before the first query.

    `len()` is arithmetic, so progress bars and "catching up i/n" logs cost nothing.
    """

    window: Window
    size: int
    boundary: int | None = None

    def __iter__(self) -> Iterator[Window]:
        w, t = self.window, self.window.start
        while t < w.end:
            nxt = min(t + self.size, w.end)
            if self.boundary:
                nxt = min(nxt, (t // self.boundary + 1) * self.boundary)
            yield Window(t, nxt, w.step)
            t = nxt

    def __len__(self) -> int:
        start, end, b = self.window.start, self.window.end, self.boundary
        if end <= start:
            return 0
        if not b:
            return -(-(end - start) // self.size)
        first_end = (start // b + 1) * b
        if end <= first_end:
            return -(-(end - start) // self.size)
        last_start = (end - 1) // b * b  # the segment holding the last second
        whole = (last_start - first_end) // b
        return (-(-(first_end - start) // self.size) + whole * -(-b // self.size)
                + -(-(end - last_start) // self.size))


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def iso(ts: float) -> str:
    return _utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


LATEST = 253402300799  # 9999-12-31T23:59:59Z, the last instant datetime can print


def parse_instant(text: str, what: str = "time") -> float:
    """The one time parser for every flag, config key, API parameter and bill column.

    Unix seconds, or ISO 8601/RFC3339 (`2026-11-01T10:00:00Z`, `+02:00`, `2026-11-01`, the billing
    exports' `2026-11-01 00:00:00 UTC`). A time without a zone is UTC, never the machine's local time.
    """
    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        value = float(t)
    else:
        iso_text = t[:-4] + "+00:00" if t.upper().endswith(" UTC") else t
        if iso_text[-1:] in ("Z", "z"):
            iso_text = iso_text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(iso_text)
        except ValueError as e:
            raise ConfigError(f"invalid {what} {text!r}: use RFC3339 (2026-11-01T00:00:00Z; UTC when no zone "
                              "is given) or unix seconds") from e
        value = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    if not 0 <= value <= LATEST:
        raise ConfigError(f"invalid {what} {text!r}: out of range (1970 to 9999)")
    return value


def check_bounds(start: float, end: float, text: str) -> None:
    """Refuse a window outside 1970..9999 before any arithmetic or printing: `9999-12-31,9999-12-31` ends
    in the year 10000, which datetime cannot print (it was a 500)."""
    if not (math.isfinite(start) and math.isfinite(end)):  # unix seconds of 309+ digits are float infinity
        raise ConfigError(f"window {text[:40]!r} is out of range (1970 to 9999)")
    if start < 0:
        raise ConfigError(f"window {text[:40]!r} starts before 1970-01-01T00:00:00Z")
    if end > LATEST:
        raise ConfigError(f"window {text[:40]!r} ends after {iso(LATEST)}")


def _midnight(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


# Calendar windows that run up to now: in their first step (`today` at 00:00:30) they hold no step yet.
TO_DATE = ("today", "week", "month")


def parse_window(text: str, now: float, step: int, allow_empty: bool = False) -> Window:
    """Resolve an OpenCost window expression against `now` (UTC), aligned down to `step`.

    With `allow_empty`, a calendar window in its first step is an empty window (start == end) rather
    than an error: a cron job at midnight asks a fair question, whose answer is "nothing yet"."""
    t = text.strip().lower()
    cur = _utc(now)
    today = _midnight(cur)
    start: float
    end: float = now
    if t == "today":
        start = today.timestamp()
    elif t == "yesterday":
        start, end = (today - timedelta(days=1)).timestamp(), today.timestamp()
    elif t in ("week", "lastweek"):
        # OpenCost weeks start on Sunday.
        sunday = today - timedelta(days=(cur.weekday() + 1) % 7)
        start = sunday.timestamp()
        if t == "lastweek":
            start, end = (sunday - timedelta(days=7)).timestamp(), sunday.timestamp()
    elif t in ("month", "lastmonth"):
        first = today.replace(day=1)
        start = first.timestamp()
        if t == "lastmonth":
            prev = (first - timedelta(days=1)).replace(day=1)
            start, end = prev.timestamp(), first.timestamp()
    elif "," in t or re.fullmatch(r"\d+-\d+", t):  # OpenCost also takes unix pairs as `start-end`
        a, b = text.split("," if "," in t else "-", 1)
        start, end = parse_instant(a, "window bound"), parse_instant(b, "window bound")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", b.strip()):
            end += 86400  # a date-only end is a whole day: 2026-11-01,2026-11-30 is all of November
    else:
        try:
            dur = parse_duration(t)
        except ConfigError as e:
            raise ConfigError(
                f"invalid window {text!r}: use 24h, 7d, today, yesterday, week, lastweek, month, "
                "lastmonth, RFC3339,RFC3339, unix,unix or YYYY-MM-DD,YYYY-MM-DD"
            ) from e
        start = now - dur
    check_bounds(start, end, text)
    lo, hi = int(start // step * step), int(end // step * step)
    if hi <= lo and allow_empty and t in TO_DATE:
        return Window(lo, lo, step)
    if hi <= lo:
        raise ConfigError(f"window {text!r} is empty once aligned to the {step}s resolution")
    return Window(lo, hi, step)


PERIODS = ("daily", "weekly", "monthly")


def period_bounds(period: str, t: float) -> tuple[int, int]:
    """The calendar period (UTC) holding the interval that starts at t: [start, end).

    Weeks start on Monday (ISO 8601), as finance calendars do; months on the 1st.
    """
    day = _midnight(_utc(t))
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ConfigError(f"unknown budget period {period!r}: use daily, weekly or monthly")
    return int(start.timestamp()), int(end.timestamp())
