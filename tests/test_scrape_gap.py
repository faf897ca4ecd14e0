"""A scrape gap (Prometheus restarted, a scrape failed): chunks inside it are still priced right.

The core scenario is backfilled with three minutes missing. The step integrals bridge the gap with
Prometheus' 5-minute lookback; label and price lookups must too, or a 1-minute chunk in the gap finds
no node labels or OpenCost prices and silently prices every node at default rates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from exporter.cli import main
from exporter.localprom import PrometheusServer, backfill

from .scenarios import CORE_CONFIG, core_cluster
from .test_allocate_core import EXPECTED, NODES_TOTAL, REL, run_allocate, window_arg


@pytest.fixture(scope="module")
def gap_prom(tmp_path_factory: pytest.TempPathFactory, core_t0: int) -> Iterator[PrometheusServer]:
    root = tmp_path_factory.mktemp("gap")
    cluster = core_cluster(core_t0)
    backfill(cluster, root / "before", core_t0 - 1800, core_t0 + 600, 60)  # samples up to t0 + 10 min
    backfill(cluster, root / "after", core_t0 + 840, core_t0 + 3600, 60)  # and again from t0 + 14 min
    data = root / "data"
    data.mkdir()
    for part in ("before", "after"):
        for block in (root / part).iterdir():
            block.rename(data / block.name)
    with PrometheusServer(data) as prom:
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
    data = run_allocate(cfg, window)["data"][0]
    # Request-bound namespaces cost exactly 2/60 of their hour. (Usage-bound ones shift a little: rate()
    # extrapolates less across the gap; idle takes the difference, so the total still holds.)
    for ns in ("team-c", "kube-system"):
        assert data[ns]["totalCost"] == pytest.approx(sum(EXPECTED[ns].values()) * 2 / 60, rel=REL), ns
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL * 2 / 60, rel=REL)
