"""OpenCost window expressions, resolved by hand against a fixed 'now'."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from exporter.config.schema import Prometheus, parse_config
from exporter.core.window import Window, parse_window
from exporter.engine.pipeline import Pipeline
from exporter.sources.prometheus import PrometheusClient
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ConfigError


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


NOW = ts("2026-11-26T21:37:42")  # a Thursday


@pytest.mark.parametrize("expr,start,end", [
    ("24h", "2026-11-25T21:37:00", "2026-11-26T21:37:00"),
    ("7d", "2026-11-19T21:37:00", "2026-11-26T21:37:00"),
    ("today", "2026-11-26T00:00:00", "2026-11-26T21:37:00"),
    ("yesterday", "2026-11-25T00:00:00", "2026-11-26T00:00:00"),
    ("week", "2026-11-22T00:00:00", "2026-11-26T21:37:00"),  # OpenCost weeks start on Sunday
    ("lastweek", "2026-11-15T00:00:00", "2026-11-22T00:00:00"),
    ("month", "2026-11-01T00:00:00", "2026-11-26T21:37:00"),
    ("lastmonth", "2026-10-01T00:00:00", "2026-11-01T00:00:00"),
    ("2026-11-01T00:00:00Z,2026-11-02T06:30:00Z", "2026-11-01T00:00:00", "2026-11-02T06:30:00"),
])
def test_windows(expr: str, start: str, end: str) -> None:
    assert parse_window(expr, NOW, 60) == Window(ts(start), ts(end), 60)


def test_lastmonth_across_a_year_boundary() -> None:
    w = parse_window("lastmonth", ts("2027-01-15T10:00:00"), 60)
    assert (w.start, w.end) == (ts("2026-12-01T00:00:00"), ts("2027-01-01T00:00:00"))


def test_chunks_tile_the_window() -> None:
    w = Window(0, 3600 * 2 + 600, 60)
    assert [(c.start, c.end) for c in w.chunks(3600)] == [(0, 3600), (3600, 7200), (7200, 7800)]


def test_the_engine_cuts_windows_at_whole_chunks() -> None:
    """`2d` at 21:37 (minute-aligned) and a minute later: chunks end on the hour, so the two share the 47 whole
    hours 22:00 on 24 Nov .. 21:00 on 26 Nov; only the first and last pieces differ. 48 h from 21:37 is
    49 pieces: 23 minutes, 47 hours, 37 minutes."""
    pipeline = Pipeline(parse_config({"prometheus": {"url": "http://127.0.0.1:9"}}),
                        PrometheusClient(Prometheus(url="http://127.0.0.1:9")))
    first, later = (list(pipeline.chunks(parse_window("2d", t, 60))) for t in (NOW, NOW + 60))
    assert len(first) == 49 == len(later)
    assert (first[0].start, first[0].end) == (ts("2026-11-24T21:37:00"), ts("2026-11-24T22:00:00"))
    assert (first[-1].start, first[-1].end) == (ts("2026-11-26T21:00:00"), ts("2026-11-26T21:37:00"))
    assert first[1:-1] == later[1:-1] and all(c.seconds == 3600 for c in first[1:-1])
    assert (later[0].start, later[-1].end) == (ts("2026-11-24T21:38:00"), ts("2026-11-26T21:38:00"))
    assert len(pipeline.chunks(parse_window("2d", NOW, 60))) == 49


@pytest.mark.parametrize("bad", ["", "5", "1x", "-1h", "yesterdayish", "2026-13-01T00:00:00Z,2026-11-02T00:00:00Z"])
def test_bad_windows_name_the_input(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid"):
        parse_window(bad, NOW, 60)


def test_empty_window_is_an_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        parse_window("2026-11-01T00:00:10Z,2026-11-01T00:00:20Z", NOW, 60)


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration("7d") == 604800 and parse_duration("90s") == 90
