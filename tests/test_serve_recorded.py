"""serve in steady state reads the mixin's recorded series, one-minute cycle by cycle.

Its cycles are single steps; wherever the rules' heartbeat covers a step, the step is read from the
recorded per-(namespace, node) series, so the per-container work is the rule engine's, once per
interval. Amounts are the hand-worked ones of test_allocate_core (steady pods; team-b's batch is
counted as the recorded path counts it, see test_recorded), and conservation holds.
"""

from __future__ import annotations

import pytest

from demo.localprom import PrometheusServer
from exporter.config.schema import parse_config
from exporter.serve.server import Exporter

from .scenarios import CORE_CONFIG
from .test_allocate_core import EXPECTED, NODES_TOTAL, REL
from .test_non_finite import accrue, namespaces
from .test_recorded import recorded_prom  # noqa: F401  (the fixture: rules backfilled from t0 - 10 min)
from .test_serve import iso

STEADY = ("team-a", "team-c", "team-d", "kube-system")


def test_serve_cycles_read_the_recorded_series(recorded_prom: PrometheusServer,  # noqa: F811
                                               core_t0: int) -> None:
    cfg = parse_config(dict(CORE_CONFIG, prometheus={"url": recorded_prom.url, "retries": 0},
                            allocation={"chunk": "1m"},
                            serve={"lag": "3m", "start": iso(core_t0), "exposeNewSeriesFor": "0s"}))
    exporter = Exporter(cfg)
    try:
        accrue(exporter, core_t0 + 1200)  # the rules ran at every minute of (t0, t0 + 20 min]
        assert exporter.ledger.watermark == core_t0 + 1200
        assert exporter.pipeline.fetcher.sources == {"recorded": 20}  # 20 one-step chunks, none read raw
        got = namespaces(exporter.ledger.counters)
        # A third of the hour: steady namespaces accrue a third of their hand-worked hour.
        for ns in STEADY:
            assert got[ns] == pytest.approx(sum(EXPECTED[ns].values()) / 3, rel=REL), ns
        assert sum(got.values()) == pytest.approx(NODES_TOTAL / 3, rel=REL)  # conservation
    finally:
        exporter.close()
