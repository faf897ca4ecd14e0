"""A scrape gap (Prometheus restarted, a scrape failed): chunks inside it are still priced right.

The core scenario is backfilled with three minutes missing. The step integrals bridge the gap with
Prometheus' 5-minute lookback; label and price lookups must too, or a 1-minute chunk in the gap finds
no node labels or OpenCost prices and silently prices every node at default rates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill
from demo.synthetic import Cluster
from exporter.cli import main

from .scenarios import CORE_CONFIG, core_cluster, share_cluster
from .test_allocate_core import EXPECTED, NODES_TOTAL, REL, window_arg
from .test_sharing import BASE_SHARING, IDLE, NODES, assert_costs, totals
from .test_sharing import run as run_shared


def gapped(root: Path, cluster: Cluster, t0: int) -> Path:
    """The cluster's history with no sample between t0 + 10 min and t0 + 14 min."""
    backfill(cluster, root / "before", t0 - 1800, t0 + 600, 60)
    backfill(cluster, root / "after", t0 + 840, t0 + 3600, 60)
    data = root / "data"
    data.mkdir()
    for part in ("before", "after"):
        for block in (root / part).iterdir():
            block.rename(data / block.name)
    return data


@pytest.fixture(scope="module")
def gap_prom(tmp_path_factory: pytest.TempPathFactory, core_t0: int) -> Iterator[PrometheusServer]:
    with PrometheusServer(gapped(tmp_path_factory.mktemp("gap"), core_cluster(core_t0), core_t0)) as prom:
        yield prom


def test_minutes_inside_a_scrape_gap_keep_their_prices(gap_prom: PrometheusServer, core_t0: int,
                                                       tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**CORE_CONFIG, "prometheus": {"url": gap_prom.url},
                                   "allocation": {"chunk": "1m", "recordedRules": "off"}}))
    # Minutes 12 and 13 (t0 + 11 min .. t0 + 13 min) have no sample; the last ones, at minute 10, are
    # within the lookback.
    window = window_arg(core_t0 + 660, 2 / 60)
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window, "--format", "json"])
    assert res.exit_code == 0, res.output
    # Only n-default and n-spot are default-priced, as in every other minute (they have no other source).
    warnings = [line for line in res.stderr.splitlines() if "priced at default rates" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        "2 node(s) priced at default rates (no price-book rule, OpenCost metric or shipped price): n-default, n-spot")
    data = json.loads(res.stdout)["data"][0]
    # Request-bound namespaces cost exactly 2/60 of their hour. (Usage-bound ones shift a little: rate()
    # extrapolates less across the gap; idle takes the difference, so the total still holds.)
    for ns in ("team-c", "kube-system"):
        assert data[ns]["totalCost"] == pytest.approx(sum(EXPECTED[ns].values()) * 2 / 60, rel=REL), ns
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL * 2 / 60, rel=REL)


def test_metric_weights_inside_a_scrape_gap(tmp_path_factory: pytest.TempPathFactory, core_t0: int,
                                            tmp_path: Path) -> None:
    """Ingress weights for two 1-minute chunks in the gap: increase() over 5 minutes, not 1, finds them."""
    data = gapped(tmp_path_factory.mktemp("share-gap"), share_cluster(core_t0), core_t0)
    query = "sum by (exported_namespace) (increase(nginx_ingress_controller_requests[$window]))"
    sharing = {**BASE_SHARING, "policies": {"kube-system": {"split": "metric", "query": query,
                                                            "namespaceLabel": "exported_namespace"}}}
    with PrometheusServer(data) as prom:
        got = totals(run_shared((prom, core_t0 + 660), tmp_path, sharing, allocation={"chunk": "1m"},
                                extra=("--window", window_arg(core_t0 + 660, 2 / 60))))
    # As test_sharing's hour, for 2 minutes: requests 3, 1 and 1 per second split kube-system's 0.12/h.
    mon, f = 0.28, 2 / 60
    expected = {"payments": (0.24 + 0.12 * 3 / 5 + mon * 0.24 / 0.72) * f,
                "search": (0.12 + 0.12 * 1 / 5 + mon * 0.12 / 0.72) * f,
                "web": (0.24 + 0.12 * 1 / 5 + mon * 0.24 / 0.72) * f,
                "tools": (0.12 + mon * 0.12 / 0.72) * f, "__idle__": IDLE * f}
    assert_costs(got, expected, total=NODES * f)
