"""serve under hostile load on loopback (issue 25): slow drips and a burst of API requests must not starve
the probes, hold a thread per connection, or grow the process; and a request that drips in is cut off.

Hand-worked amounts of the 24 h window (tests/limits_stack.py): node n1 0.24/h -> 5.76; team-a 0.05/h ->
1.20; __idle__ 5.76 - 1.20 = 4.56 (conservation: 1.20 + 4.56 = 5.76).
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from demo.localprom import PrometheusServer

from .hostile import Drip, timed_get
from .limits_stack import DAY, HOURLY_NODE, HOURLY_TEAM_A, Serve, proc_status
from .test_allocate_core import REL, window_arg
from .test_limits import day_prom  # noqa: F401  (the fixture: a day of history on a real Prometheus)

RSS_LIMIT = 300 << 20
LOAD_SECONDS = 30.0


def test_probes_hold_under_slow_drips_and_an_api_burst(day_prom: tuple[PrometheusServer, int],  # noqa: F811
                                                       tmp_path: Path) -> None:
    """500 connections dripping a byte every 2 s (reopened when cut) and 50 concurrent 24 h /allocation
    requests: /healthz and /metrics each answer within 1 s throughout, RSS stays under 300 MB."""
    prom, t0 = day_prom
    with Serve(tmp_path, prom.url, api={"readTimeout": "5s"}) as s:
        threads_before = proc_status(s.pid)["Threads"]
        drip = Drip(s.port, 500, 2.0)
        drip.start()
        stop = threading.Event()
        probes: list[tuple[str, float | None, int | None]] = []
        rss: list[int] = []
        threads: list[int] = []

        def probe() -> None:
            while not stop.wait(0.25):
                for path in ("/healthz", "/metrics"):
                    probes.append((path, *timed_get(f"{s.url}{path}", 5)))
                status = proc_status(s.pid)
                rss.append(status["VmRSS"])
                threads.append(status["Threads"])

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        started = time.monotonic()
        try:
            time.sleep(3)  # the drips are open before the burst
            with ThreadPoolExecutor(50) as pool:
                answers = list(pool.map(
                    lambda _i: requests.get(f"{s.url}/allocation/compute",
                                            params={"window": window_arg(t0 - DAY, 24), "aggregate": "namespace",
                                                    "includeIdle": "true"},
                                            timeout=60), range(50)))
            while time.monotonic() - started < LOAD_SECONDS:
                time.sleep(0.5)
        finally:
            stop.set()
            prober.join(10)
            drip.close()
        peak = proc_status(s.pid)["VmHWM"]

    codes = sorted({a.status_code for a in answers})
    assert set(codes) <= {200, 429}, [a.text for a in answers if a.status_code not in (200, 429)][:3]
    ok = [a.json()["data"][0] for a in answers if a.status_code == 200]
    assert ok, codes  # maxConcurrent (4) computed, the rest were told to retry
    for alloc in ok:
        assert alloc["team-a"]["totalCost"] == pytest.approx(24 * HOURLY_TEAM_A, rel=REL)  # 1.20
        assert alloc["__idle__"]["totalCost"] == pytest.approx(24 * (HOURLY_NODE - HOURLY_TEAM_A), rel=REL)  # 4.56
        assert sum(a["totalCost"] for a in alloc.values()) == pytest.approx(24 * HOURLY_NODE, rel=REL)  # 5.76
    late = [(p, t, c) for p, t, c in probes if t is None or t > 1.0 or c != 200]
    assert len(probes) >= 40 and not late, late[:5]
    assert max(rss) < RSS_LIMIT and peak < RSS_LIMIT, (max(rss), peak)
    assert max(threads) <= threads_before + 60, (threads_before, max(threads))  # no thread per connection
    # The drips never finish a request: each is cut at readTimeout (5 s) and reopened.
    assert drip.closed_by_server >= 500, drip.closed_by_server
    assert all(4.0 <= t <= 9.0 for t in drip.lifetimes), (min(drip.lifetimes), max(drip.lifetimes))
    print(f"\n500 drips + 50 API requests ({len(ok)} computed, {len(answers) - len(ok)} x 429): "
          f"{len(probes)} probes, slowest {max(t for _, t, _ in probes if t is not None):.3f}s; "
          f"RSS max {max(rss) >> 20} MB, peak {peak >> 20} MB; threads {threads_before} -> {max(threads)}; "
          f"{drip.closed_by_server} drips cut after {min(drip.lifetimes):.1f}-{max(drip.lifetimes):.1f}s")


def test_a_dripped_request_is_cut_at_the_read_deadline(day_prom: tuple[PrometheusServer, int],  # noqa: F811
                                                      tmp_path: Path) -> None:
    """A head sent a byte every 0.3 s resets uvicorn's keep-alive timer; the read deadline (2 s) still
    closes it, and also after an answer on a kept-alive connection; a prompt request is answered."""
    prom, _t0 = day_prom
    with Serve(tmp_path, prom.url, api={"readTimeout": "2s"}) as s:
        for first in (b"", b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"):
            sk = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            opened, answered = time.monotonic(), b""
            if first:
                sk.sendall(first)
                while b"\r\n\r\n" not in answered:
                    answered += sk.recv(4096)
                assert answered.startswith(b"HTTP/1.1 200"), answered[:100]
                head, _, body = answered.partition(b"\r\n\r\n")
                length = int(next(v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n"))
                                  if k.lower() == b"content-length"))
                while len(body) < length:  # the whole answer, so what follows is the server closing
                    body += sk.recv(4096)
                opened = time.monotonic()
            closed_at = None
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 50:
                try:
                    sk.sendall(bytes([byte]))
                    sk.settimeout(0.3)
                    if sk.recv(1) == b"":
                        closed_at = time.monotonic()
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed_at = time.monotonic()
                    break
            sk.close()
            assert closed_at is not None, "the dripping connection was never closed"
            assert 1.8 <= closed_at - opened <= 3.5, closed_at - opened
