"""Prometheus restarted in the middle of a 24 h `allocate`: the run retries through it and is exact.

Why correct rather than an error: every chunk query is idempotent over history that a restart keeps
(blocks and WAL), so retrying the failed query - not the chunk, not the run - gives the same answer.
`prometheus.retries: 4` spans 0.5 + 1 + 2 + 4 = 7.5 s of outage; the outage here is about 2 s.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import requests

from demo.localprom import PrometheusServer, backfill

from ..conftest import aligned_past
from ..console import CHARGEBACK
from ..scenarios import core_cluster
from ..test_allocate_core import D_SPOT_CPU, D_SPOT_RAM, EXPECTED, NODES_TOTAL, REL, window_arg
from .helpers import assert_costs, costs, write_config

HOURS = 24
# Hour 1 is the hand-worked hour of test_allocate_core. From hour 2 on the batch pod (2 cores, 4 GiB on
# n-spot for the first 30 minutes) has completed: team-b keeps only api (0.5 core, 1 GiB on n-spot), and
# the batch's half hour of 2 cores and 4 GiB at default spot rates goes to __idle__ instead.
BATCH_HALF_HOUR = 2 * 0.5 * D_SPOT_CPU + 4 * 0.5 * D_SPOT_RAM
LATER_HOUR = {ns: sum(exp.values()) for ns, exp in EXPECTED.items()}
LATER_HOUR["team-b"] = 0.5 * D_SPOT_CPU + 1 * D_SPOT_RAM
LATER_HOUR["__idle__"] += BATCH_HALF_HOUR
DAY = {ns: sum(EXPECTED[ns].values()) + (HOURS - 1) * LATER_HOUR[ns] for ns in EXPECTED}


def queries_answered(prom: PrometheusServer) -> int:
    """Instant queries this Prometheus process has answered, from its own /metrics (not a query)."""
    try:
        text = requests.get(f"{prom.url}/metrics", timeout=5).text
    except requests.RequestException:
        return 0
    found = re.search(r'prometheus_http_requests_total\{code="200",handler="/api/v1/query"\} (\d+)', text)
    return int(found.group(1)) if found else 0


def test_prometheus_restart_mid_allocate_gives_the_exact_day(tmp_path: Path) -> None:
    t0 = aligned_past(HOURS + 1)
    backfill(core_cluster(t0), tmp_path / "data", t0 - 1800, t0 + HOURS * 3600 + 600, 60)
    prom = PrometheusServer(tmp_path / "data").start()
    try:
        cfg = write_config(tmp_path, prom.url, retries=4)
        run = subprocess.Popen([CHARGEBACK, "--log-level", "INFO", "allocate", "--config", str(cfg), "--window",
                                window_arg(t0, HOURS), "--format", "json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while queries_answered(prom) < 150 and time.monotonic() < deadline:  # of about 550 for 24 chunks
            time.sleep(0.05)
        assert run.poll() is None, "allocate finished before the restart: nothing was tested"
        prom.stop()
        time.sleep(2)  # down for a while, as a rescheduled pod is
        prom.start()  # same port, same data directory
        out, err = run.communicate(timeout=120)
        after = queries_answered(prom)
    finally:
        prom.stop()
    assert after > 0, f"the restarted Prometheus answered nothing; allocate said: {err[-500:]}"
    # Refused, reset, cut mid-answer, or a 422 from a block closing under a stopping Prometheus, depending
    # on where the stop fell: in any case retried.
    assert re.search(r"Prometheus (at \S+ .*|query failed \(HTTP 422, execution\): .*block is closing.*); "
                     r"retry 1 of 4", err), err[-2000:]
    got = costs(subprocess.CompletedProcess(run.args, run.returncode, out, err))
    # 24 x NODES_TOTAL: conservation over the day, whatever moved between namespaces and __idle__.
    assert_costs(got, DAY, HOURS * NODES_TOTAL, REL)
    assert json.loads(out)["data"][0]["team-b"]["cpuCoreHours"] == 2 * 0.5 + 0.5 * HOURS  # batch 0.5 h + api 24 h
