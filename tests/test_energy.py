"""Energy and carbon per namespace on a real Prometheus (issue 26): Kepler's joules (both metric generations),
the Cloud Carbon Footprint estimate on a node without Kepler, idle energy, carbon at two grid intensities, and
conservation (the namespaces, __idle__ included, add up to the nodes). Every figure is worked out by hand.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.energy import kepler_node, kepler_pod, with_kepler
from demo.localprom import PrometheusServer
from demo.run import energy_table
from demo.synthetic import GIB, Cluster, Container, Node, Pod, Series
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.outputs.formatters import allocation_response
from exporter.serve.server import Exporter
from exporter.sources.prometheus import PrometheusClient

from .conftest import aligned_past, scenario_at, scenario_prom
from .test_allocate_core import run_allocate, window_arg

REL = 1e-9
H = 3600  # the window, seconds
PUE = 1.135  # AWS, Cloud Carbon Footprint's coefficient (the nodes carry EKS labels)
US_EAST_1, EU_NORTH_1, US_WEST_2 = 379.069, 8.8, 322.167  # gCO2e/kWh, the shipped (CCF) table
REGION, NG = "topology.kubernetes.io/region", "eks.amazonaws.com/nodegroup"


def energy_cluster(t0: int) -> Cluster:
    """n-kepler: Kepler 0.10+ (zones package, dram, and core, which is inside package and must not count);
    n-legacy: Kepler 0.7-0.9 (per-component counters, modes dynamic and idle); n-est: no Kepler."""
    nodes = (Node("n-kepler", 4, 16 * GIB, labels={REGION: "us-east-1", NG: "ng"}),
             Node("n-legacy", 4, 16 * GIB, labels={REGION: "eu-north-1", NG: "ng"}),
             Node("n-est", 2, 4 * GIB, labels={REGION: "us-west-2", NG: "ng"}))
    app = Container("app", 1, 1 * GIB, 0, 1, 1 * GIB)
    pods = (Pod("team-a", "web", "n-kepler", (app,)), Pod("team-b", "api", "n-kepler", (app,)),
            Pod("team-a", "old", "n-legacy", (app,)), Pod("team-c", "calc", "n-est", (app,)))
    extra: tuple[Series, ...] = (
        *kepler_node("n-kepler", {"package": 50, "dram": 10, "core": 30}),
        *kepler_pod("team-a", "web", "n-kepler", {"package": 20, "dram": 4, "core": 15}),
        *kepler_pod("team-b", "api", "n-kepler", {"package": 6}),
        # Kepler's own bucket for host processes: no pod of it in the cluster, so its joules are idle.
        *kepler_pod("system", "system_processes", "n-kepler", {"package": 5}),
        *kepler_node("n-legacy", {"package": 30, "dram": 8}, legacy=True),
        Series("kepler_node_package_joules_total", {"instance": "n-legacy", "mode": "idle"}, 10, 1e6),
        *kepler_pod("team-a", "old", "n-legacy", {"package": 12, "dram": 3}, legacy=True),
        *kepler_pod("team-a", "old", "n-legacy", {"package": 5}, legacy=True, mode="idle"),  # Kepler's idle share
        # A live grid-intensity exporter's gauges (gCO2e/kWh) for two of the three regions.
        Series("grid_intensity_gco2_per_kwh", {"zone_key": "us-east-1"}, 0, 500),
        Series("grid_intensity_gco2_per_kwh", {"zone_key": "eu-north-1"}, 0, 20),
    )
    return Cluster(nodes, pods, extra=extra)


@pytest.fixture(scope="module")
def energy_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    yield from scenario_at(tmp_path_factory, "energy", energy_cluster)


def allocate(prom: PrometheusServer, t0: int, tmp_path: Path, **cfg: Any) -> dict[str, Any]:
    path = tmp_path / "energy.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, **cfg}))
    data: dict[str, Any] = run_allocate(path, window_arg(t0))["data"][0]
    return data


# ---- by hand, watts x 3600 s x PUE -----------------------------------------------------------------
# n-kepler (0.10+): node package 50 + dram 10 = 60 W; team-a 20 + 4 = 24 W, team-b 6 W; idle 30 W.
# n-legacy (0.7): node package 30 (dynamic) + 10 (idle) + dram 8 = 48 W; team-a dynamic 12 + 3 = 15 W
# (its 5 W of Kepler's idle share is idle, not its own); idle 33 W.
# n-est (CCF, AWS average 0.74..3.5 W per vCPU, 0.392 W/GiB): 2 vCPUs at 1 core used, 4 GiB:
# node 0.74*2 + (3.5-0.74)*1 + 0.392*4 = 5.808 W; team-c (3.5-0.74)*1 + 0.392*1 = 3.152 W; idle 2.656 W.
WATTS: dict[str, dict[str, float]] = {
    "team-a": {"n-kepler": 24, "n-legacy": 15}, "team-b": {"n-kepler": 6}, "team-c": {"n-est": 3.152},
    "__idle__": {"n-kepler": 30, "n-legacy": 33, "n-est": 2.656}}
NODE_WATTS = 60 + 48 + 5.808


def joules(watts: float) -> float:
    return watts * H * PUE


def grams(per_node: Mapping[str, float], intensity: Mapping[str, float]) -> float:
    # J / 3.6e6 = kWh; over one hour that is W x PUE / 1000.
    return sum(w * PUE / 1000 * intensity[n] for n, w in per_node.items())


SHIPPED = {"n-kepler": US_EAST_1, "n-legacy": EU_NORTH_1, "n-est": US_WEST_2}


def test_energy_and_carbon_per_namespace(energy_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = energy_prom
    data = allocate(prom, t0, tmp_path)
    assert set(data) == set(WATTS)  # Kepler's "system" bucket is no namespace: its 5 W are n-kepler's idle
    for ns, per_node in WATTS.items():
        assert data[ns]["energyJoules"] == pytest.approx(joules(sum(per_node.values())), rel=REL), ns
        assert data[ns]["energyKWh"] == pytest.approx(sum(per_node.values()) * PUE / 1000, rel=REL), ns
        assert data[ns]["carbonGrams"] == pytest.approx(grams(per_node, SHIPPED), rel=REL), ns
        assert data[ns]["carbonCost"] == pytest.approx(grams(per_node, SHIPPED) / 1000, rel=REL), ns
    # team-a from Kepler alone: 24 W on n-kepler + 15 W on n-legacy = 39 W x 3600 s x 1.135 = 159354 J.
    assert data["team-a"]["energyJoules"] == pytest.approx(159354.0, rel=REL)
    # Conservation: namespaces, __idle__ included, add up to the nodes, for energy and carbon.
    assert sum(v["energyJoules"] for v in data.values()) == pytest.approx(joules(NODE_WATTS), rel=REL)
    node_grams = (60 * US_EAST_1 + 48 * EU_NORTH_1 + 5.808 * US_WEST_2) * PUE / 1000
    assert sum(v["carbonGrams"] for v in data.values()) == pytest.approx(node_grams, rel=REL)


def test_estimated_node_and_a_second_grid_intensity(energy_prom: tuple[PrometheusServer, int],
                                                     tmp_path: Path) -> None:
    """A CPU family from a rule, and configured intensities over the shipped table."""
    prom, t0 = energy_prom
    data = allocate(prom, t0, tmp_path, energy={
        "nodes": [{"match": {"node": "n-est"}, "family": "cascade-lake"}],
        "gridIntensity": {"us-east-1": 200, "eu-north-1": 100, "us-west-2": 50}})
    # n-est as Cascade Lake (CCF: 0.64..3.97 W per vCPU): node 0.64*2 + 3.33*1 + 0.392*4 = 6.178 W;
    # team-c 3.33 + 0.392 = 3.722 W; idle 0.64*2 + 0.392*3 = 2.456 W.
    assert data["team-c"]["energyJoules"] == pytest.approx(joules(3.722), rel=REL)
    intensity = {"n-kepler": 200, "n-legacy": 100, "n-est": 50}
    watts: dict[str, dict[str, float]] = {
        **WATTS, "team-c": {"n-est": 3.722}, "__idle__": {"n-kepler": 30, "n-legacy": 33, "n-est": 2.456}}
    for ns, per_node in watts.items():
        assert data[ns]["carbonGrams"] == pytest.approx(grams(per_node, intensity), rel=REL), ns
    # team-a: (24 x 200 + 15 x 100) x 1.135 / 1000 = 7.1505 g.
    assert data["team-a"]["carbonGrams"] == pytest.approx(7.1505, rel=REL)
    node_grams = (60 * 200 + 48 * 100 + 6.178 * 50) * PUE / 1000
    assert sum(v["carbonGrams"] for v in data.values()) == pytest.approx(node_grams, rel=REL)


def test_idle_energy_follows_the_idle_sharing_policy(energy_prom: tuple[PrometheusServer, int],
                                                    tmp_path: Path) -> None:
    """sharing.shareIdle per node: each node's idle energy goes to its tenants by their energy there."""
    prom, t0 = energy_prom
    data = allocate(prom, t0, tmp_path, sharing={"shareIdle": True, "idleByNode": True})
    # n-kepler idle 30 W by 24:6 -> team-a +24, team-b +6; n-legacy 33 W -> team-a; n-est 2.656 W -> team-c.
    assert data["team-a"]["energyJoules"] == pytest.approx(joules(24 + 24 + 15 + 33), rel=REL)
    assert data["team-b"]["energyJoules"] == pytest.approx(joules(6 + 6), rel=REL)
    assert data["team-c"]["energyJoules"] == pytest.approx(joules(5.808), rel=REL)
    assert data.get("__idle__", {}).get("energyJoules", 0.0) == 0.0
    assert sum(v["energyJoules"] for v in data.values()) == pytest.approx(joules(NODE_WATTS), rel=REL)
    # Carbon follows each node's intensity: team-a (48 x 379.069 + 48 x 8.8) x 1.135 / 1000.
    assert data["team-a"]["carbonGrams"] == pytest.approx((48 * US_EAST_1 + 48 * EU_NORTH_1) * PUE / 1000, rel=REL)


def test_energy_changes_no_cost(energy_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """Energy is a separate quantity: with it off, every cost is the same to the bit."""
    prom, t0 = energy_prom
    on = allocate(prom, t0, tmp_path)
    off = allocate(prom, t0, tmp_path, energy={"enabled": False})
    assert set(on) == set(off)
    for ns in on:
        assert on[ns]["totalCost"] == off[ns]["totalCost"], ns
        assert off[ns]["energyJoules"] == 0.0


def test_report_energy_column(energy_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """`chargeback report`: energy (kWh) and carbon (kg CO2e) per group, from the same computation."""
    prom, t0 = energy_prom
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}}))
    res = CliRunner().invoke(main, ["report", "--config", str(path), "--window", window_arg(t0), "--by", "namespace",
                                    "--format", "json", "--source", "computed"])
    assert res.exit_code == 0, res.output
    groups = {g["namespace"]: g for g in json.loads(res.stdout)["groups"]}
    for ns, per_node in WATTS.items():
        # kWh over one hour = W x PUE / 1000; team-a: 39 x 1.135 / 1000 = 0.044265 kWh.
        assert groups[ns]["energy_kwh"] == pytest.approx(sum(per_node.values()) * PUE / 1000, rel=REL), ns
        assert groups[ns]["carbon_kg_co2e"] == pytest.approx(grams(per_node, SHIPPED) / 1000, rel=REL), ns
    assert groups["team-a"]["energy_kwh"] == pytest.approx(0.044265, rel=REL)
    md = CliRunner().invoke(main, ["report", "--config", str(path), "--window", window_arg(t0), "--by", "namespace",
                                   "--source", "computed"]).stdout
    assert "## Energy and carbon" in md and "| team-a | 0.044 |" in md
    html = CliRunner().invoke(main, ["report", "--config", str(path), "--window", window_arg(t0), "--by",
                                     "namespace", "--source", "computed", "--format", "html"]).stdout
    assert "energy kWh" in html and "0.044" in html


def test_shared_namespace_energy_follows_its_cost(energy_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """team-b shared evenly: its 6 W on n-kepler goes 3 W to team-a and 3 W to team-c, as its cost does."""
    prom, t0 = energy_prom
    data = allocate(prom, t0, tmp_path, sharing={"shareNamespaces": ["team-b"], "shareSplit": "even"})
    assert "team-b" not in data
    assert data["team-a"]["energyJoules"] == pytest.approx(joules(39 + 3), rel=REL)
    assert data["team-c"]["energyJoules"] == pytest.approx(joules(3.152 + 3), rel=REL)
    # The moved joules keep n-kepler's intensity: team-c (3.152 x 322.167 + 3 x 379.069) x 1.135 / 1000.
    assert data["team-c"]["carbonGrams"] == pytest.approx((3.152 * US_WEST_2 + 3 * US_EAST_1) * PUE / 1000, rel=REL)
    assert sum(v["energyJoules"] for v in data.values()) == pytest.approx(joules(NODE_WATTS), rel=REL)


def test_focus_energy_columns(energy_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """FOCUS export: x_EnergyJoules and x_CarbonGramsCO2e on each group's cpu row, adding up to the nodes."""
    prom, t0 = energy_prom
    path = tmp_path / "focus.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0), "--format", "focus"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    energy = {r["ResourceName"]: float(r["x_EnergyJoules"]) for r in rows if r["x_EnergyJoules"]}
    assert {r["x_Resource"] for r in rows if r["x_EnergyJoules"]} == {"cpu"}
    for ns, per_node in WATTS.items():
        assert energy[ns] == pytest.approx(joules(sum(per_node.values())), rel=REL), ns
    carbon = sum(float(r["x_CarbonGramsCO2e"]) for r in rows if r["x_CarbonGramsCO2e"])
    assert carbon == pytest.approx((60 * US_EAST_1 + 48 * EU_NORTH_1 + 5.808 * US_WEST_2) * PUE / 1000, rel=REL)


@pytest.fixture(scope="module")
def demo_kepler_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int, Cluster]]:
    """`make demo`'s cluster with its Kepler: 0.10+ on two nodes, 0.7 on two, none on the rest."""
    from demo.clusters import demo_cluster

    t0 = aligned_past()
    cluster = with_kepler(demo_cluster(), ("ip-10-0-1-1", "ip-10-0-1-2"), ("ip-10-0-1-3", "ip-10-0-1-4"))
    for prom in scenario_prom(tmp_path_factory, "demo-kepler", cluster, t0):
        yield prom, t0, cluster


def test_demo_energy_by_team(demo_kepler_prom: tuple[PrometheusServer, int, Cluster], tmp_path: Path) -> None:
    """The demo's energy table: each node's source, a Kepler node's joules from the scenario's watts, and
    conservation over the teams (__idle__ included)."""
    prom, t0, cluster = demo_kepler_prom
    cfg = parse_config({"prometheus": {"url": prom.url}, "energy": {"gridIntensity": {"default": 379.069}}})
    result = Pipeline(cfg, PrometheusClient(cfg.prometheus)).compute(Window(t0, t0 + H, 60))
    e = result.energy
    assert {n: s for n, s in e.node_source.items() if s != "estimated"} == {
        "ip-10-0-1-1": "kepler", "ip-10-0-1-2": "kepler", "ip-10-0-1-3": "kepler-0.7", "ip-10-0-1-4": "kepler-0.7"}
    # ip-10-0-1-1 draws 30 + 6 W idle plus 4 W per core and 0.4 W per GiB its pods use (demo/energy.py).
    pods = [p for p in cluster.pods if p.node == "ip-10-0-1-1"]
    watts = 36 + sum(4 * c.cpu_usage + 0.4 * c.mem_usage / GIB for p in pods for c in p.containers)
    assert e.node_joules["ip-10-0-1-1"] == pytest.approx(joules(watts), rel=REL)
    data = allocation_response(result, ["team"], tuple(cfg.attribution.labels))["data"][0]
    assert sum(r["energyJoules"] for r in data.values()) == pytest.approx(sum(e.node_joules.values()), rel=REL)
    assert sum(r["carbonGrams"] for r in data.values()) == pytest.approx(
        sum(e.node_joules.values()) / 3.6e6 * 379.069, rel=REL)
    table = energy_table(result, tuple(cfg.attribution.labels))
    assert "energy kWh" in table and "kepler-0.7" in table


def test_live_grid_intensity_over_the_table(energy_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    """energy.intensityQuery: a series per region, used over the shipped table where it has the region."""
    prom, t0 = energy_prom
    data = allocate(prom, t0, tmp_path, energy={"intensityQuery": "grid_intensity_gco2_per_kwh",
                                                "intensityRegionLabel": "zone_key"})
    live = {"n-kepler": 500, "n-legacy": 20, "n-est": US_WEST_2}  # no live series for us-west-2: the table
    for ns, per_node in WATTS.items():
        assert data[ns]["carbonGrams"] == pytest.approx(grams(per_node, live), rel=REL), ns
    # team-a: (24 x 500 + 15 x 20) x 1.135 / 1000 = 13.9605 g.
    assert data["team-a"]["carbonGrams"] == pytest.approx(13.9605, rel=REL)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"energy": {"intensityQuery": "sum(("}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(bad), "--window", window_arg(t0)])
    assert res.exit_code == 2 and "energy.intensityQuery" in res.stderr and "not valid PromQL" in res.stderr


def test_opencost_allocation_api_energy(energy_prom: tuple[PrometheusServer, int]) -> None:
    """/allocation (OpenCost's API): the same figures by namespace, by node (idle included), and with the
    request's shareIdle, which re-shares idle energy as it does idle cost."""
    prom, t0 = energy_prom
    ex = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))
    try:
        def call(**params: str) -> dict[str, Any]:
            body: dict[str, Any] = ex.allocation({"window": [window_arg(t0)], **{k: [v] for k, v in params.items()}})
            return dict(body["data"][0])

        by_ns = call(aggregate="namespace", includeIdle="true")
        for ns, per_node in WATTS.items():
            assert by_ns[ns]["energyJoules"] == pytest.approx(joules(sum(per_node.values())), rel=REL), ns
            assert by_ns[ns]["carbonCost"] == pytest.approx(grams(per_node, SHIPPED) / 1000, rel=REL), ns
        by_node = call(aggregate="node")
        # n-kepler's tenants: team-a 24 W + team-b 6 W (idle is its own row, __idle__).
        assert by_node["n-kepler"]["energyJoules"] == pytest.approx(joules(30), rel=REL)
        shared = call(aggregate="namespace", includeIdle="true", shareIdle="true", idleByNode="true")
        assert shared["team-b"]["energyJoules"] == pytest.approx(joules(12), rel=REL)
        assert sum(v["energyJoules"] for v in shared.values()) == pytest.approx(joules(NODE_WATTS), rel=REL)
    finally:
        ex.close()
