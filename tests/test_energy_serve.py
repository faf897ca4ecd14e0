"""Energy and carbon counters survive a SIGKILL as cost does: the same ledger, the same read-back (issue 26).

The energy scenario (tests/test_energy.py) served by `chargeback serve`, killed mid-window twice (once after
its work was scraped, once before), then run to the hour's end: the counters' increase is the hand-worked hour.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from demo.localprom import PrometheusServer, backfill, free_port

from .scenarios import WINDOW_SECONDS
from .test_energy import (
    EU_NORTH_1,
    NODE_WATTS,
    PUE,
    REL,
    SHIPPED,
    US_EAST_1,
    US_WEST_2,
    WATTS,
    energy_cluster,
    grams,
    joules,
)
from .test_serve import Stack, increase_by_series, iso, wait_for, wait_scraping


class EnergyStack(Stack):
    """Stack with the energy scenario in place of the core one (not super().__init__: it backfills the core)."""

    def __init__(self, root: Path, t0: int) -> None:
        self.t0, self.port, self.root = t0, free_port(), root
        backfill(energy_cluster(t0), root / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
        self.prom = PrometheusServer(root / "data", {"chargeback": f"127.0.0.1:{self.port}"}, "1s").start()
        wait_scraping(self.prom.url)
        self.config = root / "serve.yaml"
        self.config.write_text(yaml.safe_dump({
            "prometheus": {"url": self.prom.url}, "allocation": {"chunk": "10m"},
            "serve": {"interval": "1s", "lag": "3m", "listen": f"127.0.0.1:{self.port}",
                      # Longer than test_serve's 3 s: on a loaded machine a scrape can come later than that,
                      # and a new counter's first increase would be missed with its 0 sample.
                      "exposeNewSeriesFor": "10s"}}))
        self.procs: list[subprocess.Popen[str]] = []


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[EnergyStack]:
    s = EnergyStack(tmp_path, int(time.time()) // 3600 * 3600 - 3 * 3600)
    yield s
    s.close()


def test_energy_counters_survive_sigkill(stack: EnergyStack) -> None:
    t0 = stack.t0
    a = stack.serve("--start", iso(t0), "--until", iso(t0 + 1200))
    stack.wait_watermark(t0 + 1200)
    a.send_signal(signal.SIGKILL)
    a.wait()
    stack.set_scraping(False)  # B's work is never scraped: C must redo it, once
    b = stack.serve("--until", iso(t0 + 2400))
    wait_for(lambda: "catching up: 2/2" in (stack.root / "serve-1.log").read_text(), what="run B to accrue")
    b.send_signal(signal.SIGKILL)
    b.wait()
    stack.set_scraping(True)
    c = stack.serve("--until", iso(t0 + 3600))
    stack.wait_watermark(t0 + 3600)
    energy = increase_by_series(stack, "chargeback_namespace_energy_joules_total", "namespace")
    carbon = increase_by_series(stack, "chargeback_namespace_carbon_grams_total", "namespace")
    assert set(energy) == set(carbon) == set(WATTS)
    for ns, per_node in WATTS.items():  # by hand in tests/test_energy.py
        assert energy[ns] == pytest.approx(joules(sum(per_node.values())), rel=REL), ns
        assert carbon[ns] == pytest.approx(grams(per_node, SHIPPED), rel=REL), ns
    # The cluster counters are the nodes' totals; the namespaces, __idle__ included, add up to them.
    node_j = joules(NODE_WATTS)
    node_g = (60 * US_EAST_1 + 48 * EU_NORTH_1 + 5.808 * US_WEST_2) * PUE / 1000
    assert sum(energy.values()) == pytest.approx(node_j, rel=REL)
    assert sum(carbon.values()) == pytest.approx(node_g, rel=REL)
    cluster_j = _raw_increase(stack, "chargeback_cluster_energy_joules_total")
    cluster_g = _raw_increase(stack, "chargeback_cluster_carbon_grams_total")
    assert cluster_j == pytest.approx(node_j, rel=REL)
    assert cluster_g == pytest.approx(node_g, rel=REL)
    # Which source each node's energy came from, as a gauge.
    sources = {r["metric"]["node"]: r["metric"]["source"]
               for r in stack.query('chargeback_node_energy_source{job="chargeback"} == 1')}
    assert sources == {"n-kepler": "kepler", "n-legacy": "kepler-0.7", "n-est": "estimated"}
    c.send_signal(signal.SIGTERM)
    assert c.wait(15) == 0


def _raw_increase(stack: Stack, metric: str) -> float:
    """A label-less counter's reset-aware increase from raw samples."""
    rows = stack.query(f'{metric}{{job="chargeback"}}[15m]')
    total = 0.0
    for row in rows:
        values = [float(v) for _, v in row["values"]]
        total += sum(b - a if b >= a else b for a, b in itertools.pairwise(values))
    return total



