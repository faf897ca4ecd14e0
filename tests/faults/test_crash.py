"""Crash consistency: `serve` SIGKILLed at random points of its catch-up, restarted each time.

A real Prometheus scrapes it every second; each new process reads the last *scraped* watermark back and
accrues from there. Whatever was applied but not yet scraped when the process died is lost together
with the watermark that covered it, so it is accrued again, once. The counters summed over every
process's lifetime (reset-aware increase) must equal the hand-worked hour to the cent, and better.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import requests
import yaml

from ..test_allocate_core import EXPECTED, NODES_TOTAL, REL
from ..test_serve import Stack, increase_by_series, iso, wait_for
from .proxy import Fault, FaultProxy

KILLS = 6
SEED = 20261201


def accrued_until(stack: Stack) -> int | None:
    """The running process's own watermark, from /healthz (not /metrics: a second scraper here would
    take part in what Prometheus sees)."""
    try:
        return requests.get(f"http://127.0.0.1:{stack.port}/healthz", timeout=2).json().get("accruedUntil")  # type: ignore[no-any-return]
    except (requests.RequestException, ValueError):
        return None


def last_scraped(stack: Stack) -> float | None:
    rows = stack.query('max(last_over_time(chargeback_accrued_until_timestamp_seconds{job="chargeback"}[10m]))')
    return float(rows[0]["value"][1]) if rows else None


def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    t0 = int(time.time()) // 3600 * 3600 - 3 * 3600
    stack = Stack(tmp_path, t0)
    # 5 ms more per query (about 0.2 s per one-minute piece): the hour takes long enough to die in it.
    proxy = FaultProxy(stack.prom.url).add(Fault("slow", delay=0.005))
    try:
        with proxy.running() as url:
            cfg = yaml.safe_load(stack.config.read_text())
            cfg["allocation"]["chunk"] = "1m"  # sixty one-minute pieces: many places to die in
            # Each new process holds its new series at 0 before its first batch applies, and the batches computed
            # meanwhile then apply at once: 3 s, not the Stack's 10 s, or a process jumps past its kill point.
            cfg["serve"]["exposeNewSeriesFor"] = "3s"
            cfg["prometheus"]["url"] = url
            stack.config.write_text(yaml.safe_dump(cfg))
            rng = random.Random(SEED)
            # Kill i once the process has accrued past minute targets[i] (random in the i-th eighth of minutes
            # 2..50), after a random pause of up to 0.4 s: it dies mid-piece, mid-query or between scrapes.
            targets = [rng.randrange(2 + 8 * i, 10 + 8 * i) for i in range(KILLS)]
            kills: list[tuple[int, int]] = []  # (minute accrued by the process, minute scraped) at each kill
            for minute in targets:
                proc = stack.serve("--start", iso(t0), "--until", iso(t0 + 3600))
                wait_for(lambda m=minute: (accrued_until(stack) or 0) >= t0 + m * 60,
                         what=f"accrual past minute {minute}")
                time.sleep(rng.uniform(0, 0.4))
                own = accrued_until(stack) or t0
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills.append(((own - t0) // 60, int((last_scraped(stack) or t0) - t0) // 60))
            # Every process died inside the hour, and the dead ones published progress between them.
            assert all(own < 60 for own, _ in kills) and kills[-1][1] > 0, kills
            last = stack.serve("--start", iso(t0), "--until", iso(t0 + 3600))
            stack.wait_watermark(t0 + 3600)
        got = increase_by_series(stack, "chargeback_namespace_cost_total", "namespace")
        assert set(got) == set(EXPECTED)
        for ns, exp in EXPECTED.items():
            assert got[ns] == pytest.approx(sum(exp.values()), rel=REL), (ns, kills)
        assert sum(got.values()) == pytest.approx(NODES_TOTAL, rel=REL)
        cluster = increase_by_series(stack, "chargeback_cluster_cost_total", "resource")
        assert sum(cluster.values()) == pytest.approx(NODES_TOTAL, rel=REL)
        # A process killed before its first scrape published nothing, and the next one starts afresh; the last
        # ones resume from a scraped watermark.
        assert "watermark read back from Prometheus" in (tmp_path / f"serve-{KILLS}.log").read_text()
        last.send_signal(signal.SIGTERM)
        assert last.wait(15) == 0
        print("(accrued, scraped) minute at each SIGKILL:", kills)
    finally:
        stack.close()
