"""One time parser for flags, config keys, API parameters and bill columns: UTC without a zone, unix seconds."""

from __future__ import annotations

import calendar
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config.schema import parse_config
from exporter.core.window import parse_instant, parse_window
from exporter.serve.server import Exporter, _parse_time
from exporter.vocab.errors import ConfigError

# 2026-11-01T10:00:00Z, worked out independently of the code under test: timegm is UTC by definition.
T10 = calendar.timegm((2026, 11, 1, 10, 0, 0))
assert T10 == 1793527200  # 20758 days after 1970-01-01 (x 86400 = 1793491200) plus 10 h (36000)


@pytest.fixture()
def new_york() -> Iterator[None]:
    """The process's local zone is UTC-5 on 2026-11-01 (EST): a local reading of 10:00 would be 15:00Z."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_serve_and_allocate_read_a_zoneless_time_as_the_same_utc_instant(new_york: None) -> None:
    assert time.localtime(T10).tm_hour == 5  # the zone is in effect: 10:00Z is 05:00 in New York
    served = _parse_time("2026-11-01T10:00:00")  # serve --start / --until / serve.start
    window = parse_window("2026-11-01T10:00:00,2026-11-01T11:00:00", T10 + 86400, 60)  # allocate --window
    assert served == window.start == T10  # today's main: serve gave T10 + 5 * 3600 (15:00Z)


def test_serve_start_accepts_unix_seconds() -> None:
    cfg = parse_config({"attribution": {"source": "prometheus"}, "serve": {"start": str(T10)}})
    exporter = Exporter(cfg, until=str(T10 + 3600))
    try:
        assert (exporter.start, exporter.until) == (T10, T10 + 3600)
    finally:
        exporter.close()


@pytest.mark.parametrize("text", [
    "1793527200", "1793527200.0", "2026-11-01T10:00:00Z", "2026-11-01T10:00:00z", "2026-11-01T10:00:00.000Z",
    "2026-11-01T10:00:00+00:00", "2026-11-01T05:00:00-05:00", "2026-11-01T11:00:00+01:00",
    "2026-11-01T10:00:00", "2026-11-01 10:00:00", "2026-11-01 10:00:00 UTC",  # GCP's export format
])
def test_every_accepted_form_is_the_same_instant(text: str) -> None:
    assert parse_instant(text) == T10


def test_a_date_is_utc_midnight() -> None:
    assert parse_instant("2026-11-01") == T10 - 10 * 3600


@pytest.mark.parametrize(("text", "why"), [
    ("yesterday", "use RFC3339"), ("", "use RFC3339"), ("-5", "use RFC3339"), ("1e9", "use RFC3339"),
    ("99999999999999999999", "out of range"), ("1969-12-31T23:59:59Z", "out of range"),
])
def test_bad_times_are_one_line_errors(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_instant(text)


def test_serve_start_error_is_one_line(tmp_path: Path) -> None:
    chargeback = Path(sys.executable).parent / "chargeback"
    proc = subprocess.run([str(chargeback), "serve", "--listen", "127.0.0.1:0", "--start", "next tuesday"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": "America/New_York"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "chargeback: error: invalid time 'next tuesday': use RFC3339 (2026-11-01T00:00:00Z; UTC when no zone is "
        "given) or unix seconds")
    assert "Traceback" not in proc.stderr
