"""One engine behind every door: allocate (JSON, table, CSV, FOCUS), report, /allocation, /assets, MCP and
the counters of a real `chargeback serve`, on one scenario (scenarios.doors_cluster) against one Prometheus.

Hand-worked for the hour (t0, t0+1h]; allocation = requests (every container uses half of them):

gpu-mig  12 cores x 0.04 = 0.48, 96 GiB x 0.005 = 0.48, one A100 80GB x 3.5 (gpu.prices) = 3.5: 4.46
  ml trainer-0      4 cores 0.16 + 32 GiB 0.16 + 3g.40gb = 3/7 A100 x 3.5 = 1.5      = 1.82
  search embed-0    2 cores 0.08 + 16 GiB 0.08 + 1g.10gb = 1/7 A100 x 3.5 = 0.5      = 0.66
  idle              6 cores 0.24 + 48 GiB 0.24 + three free 1g.10gb = 3/7 x 3.5 = 1.5 = 1.98
gpu-ts   4 cores x 0.05 = 0.2, 16 GiB x 0.01 = 0.16, one L4 x 0.8 (gpu.prices) = 0.8: 1.16
  ml serving-0      1 core 0.05 + 4 GiB 0.04 + one of 4 replicas = 1/4 L4 x 0.8 = 0.2 = 0.29
  search rerank-0   the same                                                        = 0.29
  idle              2 cores 0.1 + 8 GiB 0.08 + two free replicas = 0.4             = 0.58
cpu-1    8 cores x 0.1 = 0.8, 32 GiB x 0.01 = 0.32: 1.12
  web frontend-0    2 cores 0.2 + 4 GiB 0.04 = 0.24 (pod label team=web-a)
  web legacy-0      1 core 0.1 + 4 GiB 0.04 = 0.14 (the namespace's team=web)
  ml notebook-0     1 core 0.1 + 8 GiB 0.08 = 0.18
  idle              4 cores 0.4 + 16 GiB 0.16 = 0.56
PVs (gp3 7.3 per GiB-month / 730 h = 0.01 per GiB-hour): pv-ml 100 GiB = 1.00 (ml), pv-web 50 GiB = 0.50 (web,
  to the namespace's owner, team web).

Namespaces: ml 1.82 + 0.29 + 0.18 + 1.00 = 3.29; search 0.66 + 0.29 = 0.95; web 0.24 + 0.14 + 0.50 = 0.88;
__idle__ 1.98 + 0.58 + 0.56 = 3.12. Sum 8.24 = nodes 4.46 + 1.16 + 1.12 + PVs 1.50 (conservation).
Teams: ml 3.29, search 0.95, web-a 0.24, web 0.14 + 0.50 = 0.64, __idle__ 3.12.
GPU waste (dcgm-exporter on gpu-ts only: MIG slices are not observed, which is no data, not idleness):
ml's replica 25 % busy: 0.2 x 0.75 = 0.15; search's 75 %: 0.2 x 0.25 = 0.05.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from demo.localprom import PrometheusServer, free_port
from exporter.cli import main
from exporter.core.names import IDLE, UNALLOCATED

from .conftest import aligned_past, scenario_prom
from .scenarios import DOORS_CONFIG, doors_cluster
from .test_allocate_core import REL, window_arg
from .test_mcp import session_calls
from .test_serve import iso, wait_for

GIB_H = 2**30  # byte-hours in a GiB-hour
NAMESPACES = {"ml": 3.29, "search": 0.95, "web": 0.88, IDLE: 3.12}
TEAMS = {"ml": 3.29, "search": 0.95, "web-a": 0.24, "web": 0.64, IDLE: 3.12}
CLUSTER = 8.24
# Workloads (controller aggregate): the pods' rows; volumes have no pod, so they stay __unallocated__ (0.5 + 1.0).
CONTROLLERS = {"deployment:trainer": 1.82, "deployment:embed": 0.66, "deployment:serving": 0.29,
               "deployment:rerank": 0.29, "deployment:frontend": 0.24, "deployment:legacy": 0.14,
               "deployment:notebook": 0.18, UNALLOCATED: 1.5, IDLE: 3.12}
PODS = {"trainer-0": 1.82, "embed-0": 0.66, "serving-0": 0.29, "rerank-0": 0.29, "frontend-0": 0.24,
        "legacy-0": 0.14, "notebook-0": 0.18, UNALLOCATED: 1.5, IDLE: 3.12}
# Quantities per namespace: core-hours, GiB-hours, physical GPU-hours; idle = capacity - allocated per node.
CORE_HOURS = {"ml": 4 + 1 + 1, "search": 2 + 1, "web": 2 + 1, IDLE: 6 + 2 + 4}  # capacity 12 + 4 + 8 = 24
GIB_HOURS = {"ml": 32 + 4 + 8, "search": 16 + 4, "web": 4 + 4, IDLE: 48 + 8 + 16}  # capacity 96 + 16 + 32 = 144
GPU_HOURS = {"ml": 3 / 7 + 1 / 4, "search": 1 / 7 + 1 / 4, "web": 0.0, IDLE: 3 / 7 + 2 / 4}  # capacity 2 GPUs
# OpenCost's gpuHours: requested nvidia.com/gpu units (one time-sliced replica each; MIG slices are not
# nvidia.com/gpu); idle's are its unused physical GPUs.
OPENCOST_GPU_HOURS = {"ml": 1.0, "search": 1.0, "web": 0.0, IDLE: 3 / 7 + 2 / 4}
GPU_COST = {"ml": 1.5 + 0.2, "search": 0.5 + 0.2, "web": 0.0, IDLE: 1.5 + 0.4}
PV_COST = {"ml": 1.0, "search": 0.0, "web": 0.5, IDLE: 0.0}
GPU_WASTE = {"ml": 0.15, "search": 0.05, "web": 0.0, IDLE: 0.0}


@pytest.fixture(scope="module")
def doors_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "doors", doors_cluster(t0), t0):
        yield prom, t0


@pytest.fixture(scope="module")
def config(doors_prom: tuple[PrometheusServer, int], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("doors-config") / "config.yaml"
    path.write_text(yaml.safe_dump({**DOORS_CONFIG, "prometheus": {"url": doors_prom[0].url}}))
    return path


class Serve:
    """A real `chargeback serve` that accrues the hour from serve.start and answers the API, MCP and /metrics."""

    def __init__(self, root: Path, prom_url: str, t0: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = {**DOORS_CONFIG, "prometheus": {"url": prom_url},
               "serve": {"interval": "1s", "listen": f"127.0.0.1:{self.port}", "start": iso(t0),
                         "exposeNewSeriesFor": "0s"}}
        (root / "serve.yaml").write_text(yaml.safe_dump(cfg))
        self.log = (root / "serve.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(root / "serve.yaml"),
                                      "--until", iso(t0 + 3600)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.accrued() == t0 + 3600, 120, "serve to accrue the hour")

    def metrics(self) -> str:
        try:
            return requests.get(f"{self.url}/metrics", timeout=5).text
        except requests.RequestException:
            return ""

    def accrued(self) -> float | None:
        for family in text_string_to_metric_families(self.metrics()):
            if family.name == "chargeback_accrued_until_timestamp_seconds":
                return family.samples[0].value
        return None

    def get(self, path: str, **params: str) -> dict[str, Any]:
        if path.startswith("/allocation"):  # these scenarios conserve with idle, which OpenCost shows when asked
            params = {"includeIdle": "true", **params}
        r = requests.get(f"{self.url}{path}", params=params, timeout=60)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def served(doors_prom: tuple[PrometheusServer, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = Serve(tmp_path_factory.mktemp("doors-serve"), doors_prom[0].url, doors_prom[1])
    yield s
    s.close()


def cli(config: Path, *args: str) -> str:
    res = CliRunner().invoke(main, [args[0], "--config", str(config), *args[1:]])
    assert res.exit_code == 0, res.output
    return res.stdout


def allocate_json(config: Path, t0: int, aggregate: str) -> dict[str, Any]:
    out = cli(config, "allocate", "--window", window_arg(t0), "--format", "json", "--aggregate", aggregate)
    return dict(json.loads(out)["data"][0])


def totals(data: dict[str, Any]) -> dict[str, float]:
    return {k: v["totalCost"] for k, v in data.items()}


def assert_amounts(got: dict[str, float], want: dict[str, float], door: str) -> None:
    assert set(got) == set(want), door
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=REL, abs=1e-12), f"{door}: {k}"
    assert sum(got.values()) == pytest.approx(CLUSTER, rel=REL), f"{door}: conservation"


def test_allocate_json_is_hand_worked(config: Path, doors_prom: tuple[PrometheusServer, int]) -> None:
    data = allocate_json(config, doors_prom[1], "namespace")
    assert_amounts(totals(data), NAMESPACES, "allocate json")
    for ns, row in data.items():
        assert row["cpuCoreHours"] == pytest.approx(CORE_HOURS[ns], rel=REL), ns
        assert row["ramByteHours"] == pytest.approx(GIB_HOURS[ns] * GIB_H, rel=REL), ns
        assert row["physicalGpuHours"] == pytest.approx(GPU_HOURS[ns], rel=REL), ns
        assert row["gpuHours"] == pytest.approx(OPENCOST_GPU_HOURS[ns], rel=REL), ns
        assert row["gpuCost"] == pytest.approx(GPU_COST[ns], rel=REL, abs=1e-12), ns
        assert row["pvCost"] == pytest.approx(PV_COST[ns], rel=REL, abs=1e-12), ns
        assert row["gpuWasteCost"] == pytest.approx(GPU_WASTE[ns], rel=REL, abs=1e-12), ns
    # Quantities are conserved as cost is: the namespaces and idle add up to the nodes' capacity.
    assert sum(r["cpuCoreHours"] for r in data.values()) == pytest.approx(24, rel=REL)
    assert sum(r["physicalGpuHours"] for r in data.values()) == pytest.approx(2, rel=REL)
    assert data["ml"]["pvByteHours"] == pytest.approx(100 * GIB_H, rel=REL)
    assert data["ml"]["gpuEfficiency"] == pytest.approx(0.25, rel=REL)
    assert data["search"]["gpuEfficiency"] == pytest.approx(0.75, rel=REL)
    assert data["web"]["cpuEfficiency"] == pytest.approx(0.5, rel=REL)
    assert_amounts(totals(allocate_json(config, doors_prom[1], "team")), TEAMS, "allocate json by team")


def test_table_csv_and_focus_agree_with_json(config: Path, doors_prom: tuple[PrometheusServer, int]) -> None:
    t0 = doors_prom[1]
    w = window_arg(t0)
    data = allocate_json(config, t0, "namespace")
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(cli(config, "allocate", "--window", w,
                                                                  "--format", "csv")))}
    assert set(rows) == set(data)
    for name, row in rows.items():  # every field of every row, as printed
        assert {k: (float(v) if k not in ("name", "start", "end") else v) for k, v in row.items()} == approx(
            data[name]), name
    table = cli(config, "allocate", "--window", w)
    printed = {line.split()[0]: float(line.split()[6]) for line in table.splitlines()[3:]}
    assert printed == {**{k: round(v, 4) for k, v in NAMESPACES.items()}, "TOTAL": CLUSTER}
    # allocate's node and cluster views hold idle: what each node (or the cluster) costs; volumes have no node.
    nodes = {"gpu-mig": 4.46, "gpu-ts": 1.16, "cpu-1": 1.12, UNALLOCATED: 1.5}
    views = (("namespace", NAMESPACES), ("team", TEAMS), ("node", nodes), ("cluster", {"cluster": CLUSTER}))
    for aggregate, want in views:
        assert_amounts(totals(allocate_json(config, t0, aggregate)), want, f"allocate json by {aggregate}")
        focus = list(csv.DictReader(io.StringIO(cli(config, "allocate", "--window", w, "--format", "focus",
                                                    "--focus-period", "window", "--aggregate", aggregate))))
        billed: dict[str, float] = {}
        for r in focus:
            billed[r["ResourceName"]] = billed.get(r["ResourceName"], 0.0) + float(r["BilledCost"])
        assert_amounts(billed, want, f"focus by {aggregate}")
        cores: dict[str, float] = {}
        for r in focus:
            if r["x_Resource"] == "cpu":
                cores[r["ResourceName"]] = cores.get(r["ResourceName"], 0.0) + float(r["ConsumedQuantity"])
        data = allocate_json(config, t0, aggregate)  # the same core-hours as allocate's rows, idle's included
        charged = {k: v["chargedCpuCoreHours"] for k, v in data.items() if v["chargedCpuCoreHours"]}
        assert cores == pytest.approx(charged, rel=REL)
        if aggregate == "namespace":
            assert cores == pytest.approx(CORE_HOURS, rel=REL)


def approx(item: dict[str, Any]) -> dict[str, Any]:
    return {k: pytest.approx(v, rel=REL, abs=1e-12) if isinstance(v, float) else v for k, v in item.items()}


def comparable(item: dict[str, Any]) -> dict[str, Any]:
    """The fields allocate's JSON and /allocation both carry (the API adds properties, window, zeros)."""
    return {k: v for k, v in item.items() if k not in ("properties", "window")}


def test_api_mcp_and_counters_agree_with_allocate(config: Path, doors_prom: tuple[PrometheusServer, int],
                                                  served: Serve) -> None:
    t0 = doors_prom[1]
    w = window_arg(t0)
    for aggregate, want in (("namespace", NAMESPACES), ("team", TEAMS)):
        api = served.get("/allocation", window=w, aggregate=aggregate)["data"][0]
        assert_amounts(totals(api), want, f"/allocation by {aggregate}")
        mine = allocate_json(config, t0, aggregate)
        for name, item in mine.items():  # every field allocate prints (two processes may add in another order)
            got = comparable(api[name])
            assert {k: got[k] for k in item} == approx(item), f"allocate vs /allocation: {name}"
    assert_amounts(totals(served.get("/allocation", window=w, aggregate="controller")["data"][0]), CONTROLLERS,
                   "/allocation by controller")
    pods = served.get("/allocation", window=w, aggregate="pod")["data"][0]
    assert_amounts(totals(pods), PODS, "/allocation by pod")
    # Physical GPU-hours per pod, as the namespace rows count them: a 3g.40gb slice is 3/7 of the A100, a
    # time-sliced replica 1/4 of the L4 (not the advertised unit).
    assert {p: pods[p]["physicalGpuHours"] for p in ("trainer-0", "embed-0", "serving-0", "rerank-0")} == pytest.approx(
        {"trainer-0": 3 / 7, "embed-0": 1 / 7, "serving-0": 0.25, "rerank-0": 0.25}, rel=REL)
    assets = served.get("/assets", window=w)["data"]  # OpenCost: one set, keyed by asset
    by_name = {v["properties"].get("name", k): v["totalCost"] for k, v in assets.items()}
    assert sum(by_name.values()) == pytest.approx(CLUSTER, rel=REL)
    for name, cost in (("gpu-mig", 4.46), ("gpu-ts", 1.16), ("cpu-1", 1.12), ("pv-ml", 1.0), ("pv-web", 0.5)):
        assert by_name[name] == pytest.approx(cost, rel=REL), name

    _, (ns, team) = asyncio.run(session_calls(f"{served.url}/mcp", [
        ("allocation", {"window": w, "aggregate": "namespace", "include_idle": True}),
        ("allocation", {"window": w, "aggregate": "team", "include_idle": True})]))
    api = served.get("/allocation", window=w, aggregate="namespace")["data"][0]
    mcp = ns.structured_content["data"][0]
    assert set(mcp) == set(api)
    for name, item in api.items():  # every field, properties and window included
        assert mcp[name] == approx(item), f"MCP vs /allocation: {name}"
    assert_amounts(totals(team.structured_content["data"][0]), TEAMS, "MCP allocation by team")

    by_ns: dict[str, float] = {}
    by_team: dict[str, float] = {}
    cluster = 0.0
    waste: dict[str, float] = {}
    node_idle: dict[str, float] = {}
    for family in text_string_to_metric_families(served.metrics()):
        for s in family.samples:
            if s.name == "chargeback_namespace_cost_total":
                by_ns[s.labels["namespace"]] = by_ns.get(s.labels["namespace"], 0.0) + s.value
                owner = s.labels["team"] if s.labels["namespace"] != IDLE else IDLE
                by_team[owner] = by_team.get(owner, 0.0) + s.value
            elif s.name == "chargeback_cluster_cost_total":
                cluster += s.value
            elif s.name == "chargeback_node_idle_cost_total":
                node_idle[s.labels["node"]] = node_idle.get(s.labels["node"], 0.0) + s.value
            elif s.name == "chargeback_namespace_gpu_waste_cost_total":
                waste[s.labels["namespace"]] = waste.get(s.labels["namespace"], 0.0) + s.value
    assert_amounts(by_ns, NAMESPACES, "counters by namespace")
    assert_amounts(by_team, TEAMS, "counters by team")
    assert cluster == pytest.approx(CLUSTER, rel=REL)
    assert waste == pytest.approx({"ml": 0.15, "search": 0.05}, rel=REL)
    assert node_idle == pytest.approx({"gpu-mig": 1.98, "gpu-ts": 0.58, "cpu-1": 0.56}, rel=REL)


def report_json(config: Path, t0: int, by: str) -> dict[str, Any]:
    out = cli(config, "report", "--window", window_arg(t0), "--by", by, "--format", "json", "--source", "computed")
    return dict(json.loads(out))


# Workloads per namespace: /allocation's namespace,controller rows (a namespace's volumes have no pod).
WORKLOADS = {"ml/deployment:trainer": 1.82, "ml/__unallocated__": 1.0, "ml/deployment:serving": 0.29,
             "ml/deployment:notebook": 0.18, "search/deployment:embed": 0.66, "search/deployment:rerank": 0.29,
             "web/__unallocated__": 0.5, "web/deployment:frontend": 0.24, "web/deployment:legacy": 0.14}


def test_report_agrees_with_allocate(config: Path, doors_prom: tuple[PrometheusServer, int], served: Serve) -> None:
    t0 = doors_prom[1]
    reports = {by: report_json(config, t0, by) for by in ("namespace", "team")}
    for by, want in (("namespace", NAMESPACES), ("team", TEAMS)):
        rep = reports[by]
        assert_amounts({g[by]: g["total"] for g in rep["groups"]}, want, f"report by {by}")
        assert rep["clusterTotal"] == pytest.approx(CLUSTER, rel=REL)
        # The daily chart: one (partial) day, the same groups.
        (day,) = rep["days"]
        assert_amounts(day["groups"], want, f"report's daily chart by {by}")
        # Top workloads are the engine's pod rows, as /allocation groups them, whichever way the report is cut.
        workloads = {w["name"]: w for g in rep["groups"] for w in g["workloads"]}
        assert {k: w["totalCost"] for k, w in workloads.items()} == pytest.approx(WORKLOADS, rel=REL), by
        assert {k: w["gpuWasteCost"] for k, w in workloads.items() if w["gpuWasteCost"]} == pytest.approx(
            {"ml/deployment:serving": 0.15, "search/deployment:rerank": 0.05}, rel=REL), by
        assert rep["gpuWasteTotal"] == pytest.approx(0.2, rel=REL)
    api = served.get("/allocation", window=window_arg(t0), aggregate="namespace,controller")["data"][0]
    assert {k: v["totalCost"] for k, v in api.items() if k != IDLE} == pytest.approx(WORKLOADS, rel=REL)
    groups = {g["namespace"]: g for g in reports["namespace"]["groups"]}
    assert groups["ml"]["top_workloads"] == ("ml/deployment:trainer 1.82; ml/__unallocated__ 1.00; "
                                            "ml/deployment:serving 0.29")
    assert groups["search"]["top_workloads"] == "search/deployment:embed 0.66; search/deployment:rerank 0.29"
    assert {ns: groups[ns]["gpu_waste"] for ns in ("ml", "search", "web")} == pytest.approx(
        {"ml": 0.15, "search": 0.05, "web": 0.0}, rel=REL)
    assert groups["ml"]["top_gpu_waste_workloads"] == "ml/deployment:serving 0.15"
    assert groups["search"]["top_gpu_waste_workloads"] == "search/deployment:rerank 0.05"


def test_report_unused_requests_follow_the_split(config: Path, doors_prom: tuple[PrometheusServer, int]) -> None:
    """By team, each of web's teams has its own pods' unused CPU: web-a's frontend requests 2 cores and uses 1
    (1 x 0.1 = 0.10), web's legacy 1 core using 0.5 (0.05); together web's 0.15, not 0.15 each."""
    groups = {g["team"]: g for g in report_json(config, doors_prom[1], "team")["groups"]}
    assert groups["web-a"]["unused_request_cost"] == pytest.approx(0.10, rel=REL)
    assert groups["web"]["unused_request_cost"] == pytest.approx(0.05, rel=REL)


@pytest.mark.parametrize("sharing", [{}, {"shareIdle": True}, {"shareIdle": True, "idleByNode": True},
                                     {"shareNamespaces": ["search"]}, {"shareNamespaces": ["web"], "shareIdle": True}])
def test_allocate_and_the_api_group_one_result_alike(doors_prom: tuple[PrometheusServer, int],
                                                     sharing: dict[str, Any]) -> None:
    """In one process, on one computed result: allocate's rows and /allocation's, under every sharing option,
    by namespace and by team, field for field and to the bit (the CLI's `__unattributed__` is the API's
    `__unallocated__`; none here)."""
    from exporter.config.schema import parse_config
    from exporter.core.window import Window
    from exporter.engine.pipeline import Pipeline
    from exporter.outputs.allocbody import response
    from exporter.outputs.formatters import allocation_response
    from exporter.outputs.opencost_api import parse_query
    from exporter.sources.prometheus import PrometheusClient

    prom, t0 = doors_prom
    cfg = parse_config({**DOORS_CONFIG, "prometheus": {"url": prom.url}, "sharing": sharing})
    result = Pipeline(cfg, PrometheusClient(cfg.prometheus)).compute(Window(t0, t0 + 3600, 60))
    for aggregate in ("namespace", "team"):
        mine = allocation_response(result, [aggregate], ("team",))["data"][0]
        q = parse_query({"window": [f"{t0},{t0 + 3600}"], "aggregate": [aggregate], "includeIdle": ["true"]},
                        cfg.attribution.labels,
                        t0 + 7200, 60)
        api = response([(q.sets[0], result)], q, ("team",), "cluster")["data"][0]
        assert set(mine) == set(api), (aggregate, sharing)
        for name, item in mine.items():
            assert {k: comparable(api[name])[k] for k in item} == item, (aggregate, sharing, name)
        assert sum(v["totalCost"] for v in mine.values()) == pytest.approx(CLUSTER, rel=REL)
    if sharing.get("shareIdle"):
        assert IDLE not in mine
