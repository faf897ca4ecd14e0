"""Live grid intensity step by step on a real Prometheus (issue 26): carbon is the sum over steps of that step's
energy times that step's intensity, not the mean intensity times the energy; a step without a live sample takes
the table's value and says so; the namespaces, __idle__ included, add up to the nodes. Worked out by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from demo.energy import kepler_node, kepler_pod
from demo.localprom import PrometheusServer
from demo.synthetic import GIB, Cluster, Container, Node, Pod, Series
from exporter.config.schema import parse_config
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.sources.prometheus import PrometheusClient

from .conftest import scenario_at
from .test_allocate_core import run_allocate, window_arg

REL = 1e-9
PUE = 1.135  # AWS (the nodes carry EKS labels)
REGION, NG = "topology.kubernetes.io/region", "eks.amazonaws.com/nodegroup"
# Each step's own sample only (no 5-minute lookback), so a step without a sample is one.
QUERY = "last_over_time(grid_intensity[59s])"


def live_cluster(t0: int) -> Cluster:
    """n-est (no Kepler, us-east-1): team-day runs 1 core for the first half hour only, team-flat 0.5 core
    all hour. n-kepler (us-east-1): Kepler, team-k 20 W of the node's 50 W, steady. n-gap (eu-west-1): no pod.
    us-east-1's live intensity is 200 g/kWh until t0+30m and 400 after; eu-west-1's is 50 until t0+20m and
    then has no sample (the config's table says 100)."""
    nodes = (Node("n-est", 2, 4 * GIB, labels={REGION: "us-east-1", NG: "ng"}),
             Node("n-kepler", 4, 16 * GIB, labels={REGION: "us-east-1", NG: "ng"}),
             Node("n-gap", 2, 4 * GIB, labels={REGION: "eu-west-1", NG: "ng"}))
    pods = (Pod("team-day", "day", "n-est", (Container("app", 1, 1 * GIB, 0, 1, 1 * GIB),), end=t0 + 1800),
            Pod("team-flat", "flat", "n-est", (Container("app", 0.5, 1 * GIB, 0, 0.5, 1 * GIB),)),
            Pod("team-k", "k", "n-kepler", (Container("app", 1, 1 * GIB, 0, 1, 1 * GIB),)))
    extra = (*kepler_node("n-kepler", {"package": 50}), *kepler_pod("team-k", "k", "n-kepler", {"package": 20}),
             Series("grid_intensity", {"region": "us-east-1"}, 0, 200, changes=((t0 + 1801, 400),)),
             Series("grid_intensity", {"region": "eu-west-1"}, 0, 50, changes=((t0 + 1201, None),)))
    return Cluster(nodes, pods, extra=extra)


@pytest.fixture(scope="module")
def live_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    yield from scenario_at(tmp_path_factory, "energy-live", live_cluster)


ENERGY = {"intensityQuery": QUERY, "gridIntensity": {"eu-west-1": 100}}

# ---- by hand: steps t0+1m .. t0+60m; a step charges the minute ending at it --------------------------------
# us-east-1: 200 g/kWh at steps 1..30 (t <= t0+30m), 400 at steps 31..60.
# n-est, CCF's AWS average (0.74..3.5 W per vCPU, 0.392 W/GiB), 2 vCPUs, 4 GiB:
#   team-day  2.76 x 1 + 0.392 x 1   = 3.152 W, steps 1..30 only
#   team-flat 2.76 x 0.5 + 0.392 x 1 = 1.772 W, every step
#   idle      0.74 x 2 + 0.392 x (4 - 2) = 2.264 W at steps 1..30, 0.74 x 2 + 0.392 x 3 = 2.656 W at 31..60
# kWh = W x 0.5 h x 1.135 / 1000 per half hour; grams = kWh x that half hour's intensity:
#   team-day  3.152 x 0.5 x 1.135 / 1000 x 200 = 0.357752 g (the mean intensity, 300, would say 0.536628 g)
#   team-flat 1.772 x 1.135 / 1000 x (0.5 x 200 + 0.5 x 400) = 0.603366 g
#   idle      1.135 / 1000 x (2.264 x 0.5 x 200 + 2.656 x 0.5 x 400) = 0.859876 g
#   node      1.135 / 1000 x (7.188 x 0.5 x 200 + 4.428 x 0.5 x 400) = 1.820994 g = the three above
# n-kepler, steady: team-k 20 W, idle 30 W, each at the mean of 200 and 400:
#   team-k 20 x 1.135 / 1000 x 300 = 6.81 g; idle 30 x 1.135 / 1000 x 300 = 10.215 g
# n-gap, idle 0.74 x 2 + 0.392 x 4 = 3.048 W; eu-west-1 live 50 at steps 1..20, none at 21..60 (table 100):
#   3.048 x 1.135 / 1000 x (20 x 50 + 40 x 100) / 60 = 0.28829 g
GRAMS = {"team-day": 0.357752, "team-flat": 0.603366, "team-k": 6.81,
         "__idle__": 0.859876 + 10.215 + 0.28829}
JOULES = {"team-day": 3.152 * 1800 * PUE, "team-flat": 1.772 * 3600 * PUE, "team-k": 20 * 3600 * PUE,
          "__idle__": ((2.264 + 2.656) * 1800 + 30 * 3600 + 3.048 * 3600) * PUE}


def test_carbon_is_summed_step_by_step(live_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = live_prom
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, "energy": ENERGY}))
    data = run_allocate(path, window_arg(t0))["data"][0]
    assert set(data) == set(GRAMS)
    for ns, grams in GRAMS.items():
        assert data[ns]["carbonGrams"] == pytest.approx(grams, rel=REL), ns
        assert data[ns]["energyJoules"] == pytest.approx(JOULES[ns], rel=REL), ns
    # Conservation: the namespaces, __idle__ included, add up to the nodes' grams worked out per node.
    assert sum(v["carbonGrams"] for v in data.values()) == pytest.approx(1.820994 + 6.81 + 10.215 + 0.28829, rel=REL)


def test_steps_without_a_live_sample_say_so(live_prom: tuple[PrometheusServer, int]) -> None:
    """The node-steps that fell back to the table are counted in a warning, and the cluster's grams are the
    per-node sums above (shared idle or not)."""
    prom, t0 = live_prom
    cfg = parse_config({"prometheus": {"url": prom.url}, "energy": ENERGY,
                        "sharing": {"shareIdle": True, "idleByNode": True}})
    pipeline = Pipeline(cfg, PrometheusClient(cfg.prometheus))
    result = pipeline.compute(Window(t0, t0 + 3600, 60))
    e = result.energy
    assert e is not None
    assert ("live grid intensity (energy.intensityQuery): no sample for region eu-west-1 at 40 of 60 node-steps; "
            "the table's 100 gCO2e/kWh used there") in pipeline.warnings.messages()
    assert not any("us-east-1" in m for m in pipeline.warnings.messages())
    assert e.node_grams["n-est"] == pytest.approx(1.820994, rel=REL)
    assert e.node_grams["n-gap"] == pytest.approx(0.28829, rel=REL)
    by_ns = e.by_namespace()
    # Idle shared per node by energy: n-est's idle grams go to team-day and team-flat, n-kepler's to team-k;
    # n-gap has no tenant and keeps its idle. The total is unchanged.
    assert by_ns["__idle__"][1] == pytest.approx(0.28829, rel=REL)
    assert by_ns["team-k"][1] == pytest.approx(6.81 + 10.215, rel=REL)
    assert sum(g for _j, g in by_ns.values()) == pytest.approx(1.820994 + 6.81 + 10.215 + 0.28829, rel=REL)
