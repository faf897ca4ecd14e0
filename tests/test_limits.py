"""Bounded requests (issue 13): window limit, lazy chunks, worker pool, deadline, read timeouts, HEAD, liveness.

Each test fails on the code before the limits: the oversized window grew the process until MemoryError,
every parallel request was computed, no request had a deadline, idle sockets were held forever, HEAD
answered 501 and /healthz timed a whole catch-up as one cycle.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from demo.localprom import PrometheusServer, backfill
from exporter.config.schema import parse_config
from exporter.core.coverage import Segment
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.serve.server import Exporter
from exporter.sources.prometheus import PrometheusClient

from .limits_stack import DAY, HOURLY_NODE, HOURLY_TEAM_A, Serve, day_cluster, limit_memory, proc_status
from .test_allocate_core import REL, window_arg

MIB = 1 << 20


@pytest.fixture(scope="module")
def day_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """A day and a half hour of history ending 10 minutes after T0 (an hour boundary 2 h ago)."""
    t0 = int(time.time()) // 3600 * 3600 - 2 * 3600
    root = tmp_path_factory.mktemp("day")
    backfill(day_cluster(), root / "data", t0 - DAY - 1800, t0 + 600, 60)
    with PrometheusServer(root / "data") as prom:
        yield prom, t0


def day_window(t0: int) -> str:
    return window_arg(t0 - DAY, 24)


def check_day(data: dict[str, dict[str, float]]) -> None:
    """The 24 h amounts worked out in limits_stack's docstring; the namespaces sum to the node (conservation)."""
    assert data["team-a"]["totalCost"] == pytest.approx(24 * HOURLY_TEAM_A, rel=REL)  # 1.20
    assert data["__idle__"]["totalCost"] == pytest.approx(24 * (HOURLY_NODE - HOURLY_TEAM_A), rel=REL)  # 4.56
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(24 * HOURLY_NODE, rel=REL)  # 5.76


def test_chunks_are_made_lazily() -> None:
    """A million one-minute chunks: the first three and the count, without a list of a million windows."""
    w = Window(0, 60 * 1_000_000, 60)
    tracemalloc.start()
    try:
        first = list(itertools.islice(w.chunks(60), 3))
        n = len(w.chunks(60))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(c.start, c.end) for c in first] == [(0, 60), (60, 120), (120, 180)]
    assert n == 1_000_000
    assert peak < MIB, peak
    # Midnight boundaries: 1.5 days from 12:00 in 1 h pieces = 12 + 24 + 0 -> 36; 5 h pieces: 3 + 5 = 8
    # (12:00-17:00-22:00-24:00, then 5+5+5+5+4).
    day = Window(DAY // 2, 2 * DAY, 60)
    assert len(day.chunks(3600, boundary=DAY)) == 36 == len(list(day.chunks(3600, boundary=DAY)))
    assert len(day.chunks(5 * 3600, boundary=DAY)) == 8 == len(list(day.chunks(5 * 3600, boundary=DAY)))


def test_oversized_window_is_refused_before_any_allocation(day_prom: tuple[PrometheusServer, int],
                                                           tmp_path: Path) -> None:
    prom, _t0 = day_prom
    with Serve(tmp_path, prom.url) as s:
        before = proc_status(s.pid)
        # A million years reaches back before 1970 and is refused for that, before any arithmetic.
        for window, reason in (("1000000y", "starts before 1970-01-01T00:00:00Z"),
                               ("0,99999999999", "longer than api.maxWindow (400d)"),
                               ("3650d", "longer than api.maxWindow (400d)")):
            r = requests.get(f"{s.url}/allocation/compute", params={"window": window}, timeout=10)
            assert r.status_code == 400, r.text
            assert reason in r.json()["message"], window
        after = proc_status(s.pid)
    grew = after["VmHWM"] - before["VmRSS"]
    print(f"\noversized window: RSS {before['VmRSS'] / MIB:.1f} MiB before, {after['VmRSS'] / MIB:.1f} MiB after, "
          f"peak {after['VmHWM'] / MIB:.1f} MiB")
    assert grew < 10 * MIB, grew


@pytest.mark.parametrize("window,reason", [
    ("3650d", "chargeback: error: window of 3650 days is longer than api.maxWindow (400d)"),
    ("1000000y", "chargeback: error: window '1000000y' starts before 1970-01-01T00:00:00Z"),
    ("99999999999999999999d", "chargeback: error: window '99999999999999999999d' starts before 1970"),
    ("9" * 60 + "y", "chargeback: error: window '" + "9" * 40 + "' starts before 1970"),
])
def test_allocate_refuses_huge_window_in_one_line(window: str, reason: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "exporter", "allocate", "--window", window,
                           "--prometheus-url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: limit_memory(1 << 30))
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stderr.startswith(reason) and proc.stderr.count("\n") == 1, proc.stderr


def test_absurd_duration_is_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "exporter", "allocate", "--window", "9" * 400 + "ms"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "invalid window" in proc.stderr


def test_fifty_parallel_requests_get_429_beyond_the_pool(day_prom: tuple[PrometheusServer, int],
                                                         tmp_path: Path) -> None:
    prom, t0 = day_prom
    with Serve(tmp_path, prom.url, api={"maxConcurrent": 4}) as s:
        before = proc_status(s.pid)
        start = threading.Barrier(50)

        def one(_i: int) -> requests.Response:
            start.wait()
            return requests.get(f"{s.url}/allocation/compute", params={"window": day_window(t0), "includeIdle": "true"},
                                timeout=120)

        with ThreadPoolExecutor(50) as pool:
            answers_it = pool.map(one, range(50))
            time.sleep(0.5)
            # The cheap endpoints are never refused, even with every API worker busy.
            for path in ("/metrics", "/healthz", "/readyz"):
                assert requests.get(f"{s.url}{path}", timeout=10).status_code in (200, 503), path
            assert requests.get(f"{s.url}/metrics", timeout=10).status_code == 200
            answers = list(answers_it)
        after = proc_status(s.pid)
    ok = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 429]
    assert len(ok) + len(busy) == 50, [a.status_code for a in answers]
    assert 4 <= len(ok) <= 8 and len(busy) >= 42, (len(ok), len(busy))
    for a in busy:
        assert a.headers["Retry-After"] == "5" and "api.maxConcurrent" in a.json()["message"]
    for a in ok:
        check_day(a.json()["data"][0])
    print(f"\n50 parallel 24 h requests: {len(ok)} computed, {len(busy)} got 429; RSS {before['VmRSS'] / MIB:.1f} MiB "
          f"before, {after['VmRSS'] / MIB:.1f} MiB after, peak {after['VmHWM'] / MIB:.1f} MiB")
    assert after["VmHWM"] - before["VmRSS"] < 100 * MIB


def test_deadline_answers_503_and_stops_querying(day_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = day_prom
    # 288 five-minute chunks of ~20 queries each take far longer than the 1 s deadline.
    with Serve(tmp_path, prom.url, api={"timeout": "1s", "maxConcurrent": 1}, allocation={"chunk": "5m"}) as s:
        began = time.monotonic()
        r = requests.get(f"{s.url}/allocation/compute", params={"window": day_window(t0), "includeIdle": "true"},
                         timeout=60)
        took = time.monotonic() - began
        assert r.status_code == 503, r.text[:300]
        assert "api.timeout (1s)" in r.json()["message"]
        assert took < 4, took
        time.sleep(1.5)  # the chunk in flight finishes; no other starts
        settled = s.queries()
        time.sleep(2)
        assert s.queries() == settled
        # The slot is free again: a 10-minute window (2 chunks) is computed. n1: 0.24/h / 6 = 0.04.
        r = requests.get(f"{s.url}/allocation/compute", params={"window": window_arg(t0 - 600, 1 / 6),
                                                                   "includeIdle": "true"}, timeout=60)
        assert r.status_code == 200, r.text[:300]
        data = r.json()["data"][0]
        assert data["team-a"]["totalCost"] == pytest.approx(HOURLY_TEAM_A / 6, rel=REL)
        assert sum(v["totalCost"] for v in data.values()) == pytest.approx(HOURLY_NODE / 6, rel=REL)


def test_sigterm_stops_a_running_computation(day_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """A pod being stopped does not wait for a long /allocation/compute to finish."""
    prom, t0 = day_prom
    with Serve(tmp_path, prom.url, allocation={"chunk": "5m"}) as s:
        pool = ThreadPoolExecutor(1)
        pending = pool.submit(requests.get, f"{s.url}/allocation/compute", params={"window": day_window(t0)},
                              timeout=60)
        time.sleep(1.5)
        assert s.proc is not None
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(8) == 0
        # The connection drops at exit, or the cancelled computation is answered 503 just before.
        with contextlib.suppress(requests.RequestException):
            assert pending.result().status_code == 503
        pool.shutdown()


def test_cancel_stops_parallel_chunks(day_prom: tuple[PrometheusServer, int]) -> None:
    """With 4 chunk workers, a cancel after the second chunk leaves at most 2 x 4 chunks in flight."""
    from exporter.engine.limits import Cancelled

    prom, t0 = day_prom
    cfg = parse_config({"prometheus": {"url": prom.url}, "allocation": {"chunk": "30m", "concurrency": 4}})
    one = Pipeline(cfg, PrometheusClient(cfg.prometheus))
    one.compute(Window(t0 - 1800, t0, 60))
    per_chunk = one.client.stats.queries
    pipeline = Pipeline(cfg, PrometheusClient(cfg.prometheus))
    cancel, seen = threading.Event(), []

    def progress(piece: Window) -> None:
        seen.append(piece)
        if len(seen) == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        pipeline.compute(Window(t0 - DAY, t0, 60), progress, cancel)  # 48 chunks
    assert len(seen) == 2
    assert pipeline.client.stats.queries <= (2 + 2 * 4) * per_chunk


def test_idle_connections_time_out(day_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, _t0 = day_prom
    with Serve(tmp_path, prom.url, api={"readTimeout": "1s"}) as s:
        idle_threads = proc_status(s.pid)["Threads"]
        socks = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(50)]
        try:
            time.sleep(0.5)
            held = proc_status(s.pid)["Threads"]
            assert held <= idle_threads + 16, (idle_threads, held)
            # Still answering at once: an idle connection costs no thread, and each is closed at its deadline.
            assert requests.get(f"{s.url}/healthz", timeout=15).status_code == 200
            for sk in socks:
                sk.settimeout(15)
                assert sk.recv(1) == b""  # closed by the server
        finally:
            for sk in socks:
                sk.close()
    print(f"\n50 idle connections: {idle_threads} threads before, {held} while held")


def test_head_and_nosniff(day_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, _t0 = day_prom
    with Serve(tmp_path, prom.url) as s:
        get = requests.get(f"{s.url}/metrics", timeout=10)
        head = requests.head(f"{s.url}/metrics", timeout=10)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
        assert int(head.headers["Content-Length"]) > 0
        for path in ("/metrics", "/healthz", "/readyz", "/nope", "/allocation/compute?window=bad"):
            for method in ("GET", "HEAD"):
                r = requests.request(method, f"{s.url}{path}", timeout=10)
                assert r.status_code != 501 and r.headers["X-Content-Type-Options"] == "nosniff", (method, path)
        post = requests.post(f"{s.url}/metrics", timeout=10)  # http.server's own error page
        assert post.status_code == 501 and post.headers["X-Content-Type-Options"] == "nosniff"


def test_liveness_tracks_progress_not_cycle_length(day_prom: tuple[PrometheusServer, int]) -> None:
    """A 6-chunk catch-up whose chunks take 400 s each (2,400 s, 4x the 600 s limit) stays alive;
    600 s with neither a chunk nor a finished cycle is dead."""
    prom, t0 = day_prom
    start = t0 - 6 * 3600
    raw = {"prometheus": {"url": prom.url}, "serve": {"interval": "60s", "start": window_arg(start, 0).split(",")[0]}}
    exporter = Exporter(parse_config(raw), until=window_arg(t0, 0).split(",")[0])
    now = [1_000_000.0]
    exporter.clock = lambda: now[0]
    exporter.progress_at = now[0]
    alive_during: list[bool] = []
    compute = exporter.pipeline.compute_chunk

    def slow_chunk(w: Window, segments: list[Segment] | None = None) -> object:
        now[0] += 400
        alive_during.append(exporter.healthy())
        return compute(w, segments)

    exporter.pipeline.compute_chunk = slow_chunk  # type: ignore[method-assign,assignment]
    try:
        exporter.run_once()
        assert exporter.health.up and exporter.ledger.frontier == t0
        assert alive_during == [True] * 6
        now[0] += 599
        assert exporter.healthy()
        now[0] += 2  # 601 s without progress
        assert not exporter.healthy()
        exporter.run_once()  # a finished cycle (nothing to accrue) is progress
        assert exporter.healthy()
    finally:
        exporter.close()
