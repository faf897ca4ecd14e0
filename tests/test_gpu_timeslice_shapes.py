"""Time-sliced GPUs in both of GFD's shapes, and OpenCost's running span, through /allocation and /assets.

One hour [t0, t0 + 1 h] at 1-minute steps. Two nodes, each one L4 time-sliced 4 ways (GFD's nvidia.com/gpu.count 1,
nvidia.com/gpu.replicas 4), priced by a rule at cpu 0.05/core-h, ram 0.006/GiB-h, gpu 2.0 per physical GPU-hour:
  ts-renamed  renameByDefault=true: 4 replicas advertised as nvidia.com/gpu.shared; pods request nvidia.com/gpu.shared
  ts-plain    renameByDefault=false: 4 replicas advertised as nvidia.com/gpu; pods request nvidia.com/gpu
Pods (one container, 0.5 core and 1 GiB requested, one replica each):
  renamed/a-0  ts-renamed  the whole hour              60 steps
  batch/b-0    ts-renamed  until t0 + 30 min (then Succeeded): steps t0+1m .. t0+30m, 30 steps, span [t0, t0+30m]
  plain/c-0    ts-plain    the whole hour
  plain/d-0    ts-plain    the whole hour

Cost (chargeback's, unchanged by the shape): a replica holds 1/4 of the L4.
  a-0 0.25 GPU x 1 h x 2.0 = 0.5; b-0 0.25 x 0.5 h x 2.0 = 0.25; c-0, d-0 0.5 each.
  GPU idle: ts-renamed 2.0 - 0.75 = 1.25; ts-plain 2.0 - 1.0 = 1.0.
  Each node 4 x 0.05 + 16 x 0.006 + 1 x 2.0 = 2.296; the cluster 4.592 = every namespace's cost with __idle__.
OpenCost's gpuHours (its suite's TestGPUCosts: max(container_gpu_allocation, nvidia.com/gpu request) x hours):
  renamed, batch: no nvidia.com/gpu request; container_gpu_allocation is the replica's 1/4:
    a-0 0.25 x 1 h = 0.25, over its 60 min gpuCount 0.25; b-0 0.25 x 0.5 h = 0.125, over its 30 min 0.25.
    Node ts-renamed: 0.375 GPU-h over [t0, t0+1h] = gpuCount 0.375 (all four replicas would make 1 = the L4).
  plain: the nvidia.com/gpu request of 1 per replica: c-0, d-0 1.0 GPU-h each; node ts-plain gpuCount 2.0, though
    OpenCost's node_gpu_count (and /assets gpuCount) is GFD's 1: that shape cannot agree, as on OpenCost itself.
Running span: b-0 start t0, end t0 + 30 min, minutes 30; its cpuCores 0.5 x 0.5 h / 0.5 h = 0.5 (was 0.25 over
the window); ramBytes 1 GiB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.clusters import GFD_COUNT, GFD_PRODUCT, GFD_REPLICAS, GFD_SHARING
from demo.localprom import PrometheusServer
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.core.window import iso

from .conftest import aligned_past, scenario_prom
from .test_allocate_core import REL, window_arg
from .test_assets_api import by_name, q

SHARED = "nvidia_com_gpu_shared"
GFD = {"node.kubernetes.io/instance-type": "g6.xlarge", GFD_PRODUCT: "NVIDIA-L4-SHARED", GFD_COUNT: "1",
       GFD_REPLICAS: "4", GFD_SHARING: "time-slicing"}
CONFIG: dict[str, Any] = {
    "pricing": {"rules": [{"match": {"node": "ts-*"}, "cpu": 0.05, "ram": 0.006, "gpu": 2.0}]},
    "attribution": {"source": "prometheus"},
}


def cluster(t0: int) -> Cluster:
    def pod(ns: str, name: str, node: str, end: int | None = None) -> Pod:
        renamed = node == "ts-renamed"
        c = Container("app", 0.5, 1 * GIB, 1, 0.25, 0.5 * GIB, gpu_resource=SHARED if renamed else "nvidia_com_gpu",
                      gpu_allocation=0.25 if renamed else None)
        return Pod(ns, name, node, (c,), end=end, owner=("Deployment", name[:1]))

    nodes = (Node("ts-renamed", 4, 16 * GIB, gpus=4, gpu_resource=SHARED, labels=GFD),
             Node("ts-plain", 4, 16 * GIB, gpus=4, labels=GFD))
    pods = (pod("renamed", "a-0", "ts-renamed"), pod("batch", "b-0", "ts-renamed", end=t0 + 1800),
            pod("plain", "c-0", "ts-plain"), pod("plain", "d-0", "ts-plain"))
    return Cluster(nodes, pods)


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    from exporter.serve.server import Exporter

    t0 = aligned_past()
    prom: PrometheusServer
    for prom in scenario_prom(tmp_path_factory, "gpu-ts-shapes", cluster(t0), t0):
        yield Exporter(parse_config({**CONFIG, "prometheus": {"url": prom.url}})), t0


def allocation(exporter: tuple[Any, int], **params: str) -> dict[str, Any]:
    ex, t0 = exporter
    data: dict[str, Any] = ex.allocation(q(window=window_arg(t0), **params))["data"][0]
    return data


def test_pods_carry_their_running_span_and_opencosts_gpu_hours(exporter: tuple[Any, int]) -> None:
    t0 = exporter[1]
    pods = allocation(exporter, aggregate="pod")
    got = {p: (a["start"], a["end"], a["minutes"], a["gpuHours"], a["gpuCount"], a["gpuCost"]) for p, a in pods.items()}
    assert got == {
        "a-0": (iso(t0), iso(t0 + 3600), 60.0, pytest.approx(0.25, rel=REL), pytest.approx(0.25, rel=REL),
                pytest.approx(0.5, rel=REL)),
        "b-0": (iso(t0), iso(t0 + 1800), 30.0, pytest.approx(0.125, rel=REL), pytest.approx(0.25, rel=REL),
                pytest.approx(0.25, rel=REL)),
        "c-0": (iso(t0), iso(t0 + 3600), 60.0, pytest.approx(1.0, rel=REL), pytest.approx(1.0, rel=REL),
                pytest.approx(0.5, rel=REL)),
        "d-0": (iso(t0), iso(t0 + 3600), 60.0, pytest.approx(1.0, rel=REL), pytest.approx(1.0, rel=REL),
                pytest.approx(0.5, rel=REL)),
    }
    b = pods["b-0"]
    assert (b["cpuCoreHours"], b["cpuCores"], b["cpuCoreRequestAverage"], b["ramBytes"]) == pytest.approx(
        (0.25, 0.5, 0.5, 1 * GIB), rel=REL)
    # gpuRequestAverage is the nvidia.com/gpu request only (TestGPUCosts' other half): none for a shared replica.
    shares = {p: (a["gpuAllocation"]["gpuRequestAverage"], a["gpuAllocation"]["isGPUShared"]) for p, a in pods.items()}
    assert shares == {"a-0": (0.0, True), "b-0": (0.0, True), "c-0": (1.0, True), "d-0": (1.0, True)}


def test_node_gpu_count_is_gpu_hours_over_the_nodes_span(exporter: tuple[Any, int]) -> None:
    t0 = exporter[1]
    nodes = allocation(exporter, aggregate="node")
    got = {n: (a["start"], a["end"], a["gpuHours"], a["gpuCount"]) for n, a in nodes.items()}
    assert got == {
        "ts-renamed": (iso(t0), iso(t0 + 3600), pytest.approx(0.375, rel=REL), pytest.approx(0.375, rel=REL)),
        "ts-plain": (iso(t0), iso(t0 + 3600), pytest.approx(2.0, rel=REL), pytest.approx(2.0, rel=REL))}
    ex = exporter[0]
    assets = by_name(ex.assets(q(window=window_arg(t0), filter='assetType:"node"'))["data"])
    # OpenCost's node gpuCount is GFD's physical count (1) in both shapes; the one L4 is what is priced.
    assert {n: (a["gpuCount"], a["physicalGpuCount"], a["gpuCost"]) for n, a in assets.items()} == {
        "Node/ts-renamed": (1.0, 1.0, pytest.approx(2.0, rel=REL)),
        "Node/ts-plain": (1.0, 1.0, pytest.approx(2.0, rel=REL))}


def test_cost_is_the_physical_share_in_both_shapes_and_conserved(exporter: tuple[Any, int]) -> None:
    ns = allocation(exporter, aggregate="namespace", includeIdle="true")
    assert {k: a["gpuCost"] for k, a in ns.items()} == pytest.approx(
        {"renamed": 0.5, "batch": 0.25, "plain": 1.0, "__idle__": 2.25}, rel=REL)
    assert sum(a["totalCost"] for a in ns.values()) == pytest.approx(2 * 2.296, rel=REL)


def test_topline_averages_over_each_allocations_minutes(exporter: tuple[Any, int]) -> None:
    """OpenCost's SummaryAllocation.Add: an average back to core-minutes over its allocation's minutes, summed, over
    the total's span. a-0, c-0, d-0 0.5 core x 60 min, b-0 0.5 x 30 min = 105 core-min over [t0, t0+1h]: 1.75 cores
    (summing the pods' averages would say 2.0); 1 GiB each likewise 3.5 GiB."""
    ex, t0 = exporter
    top = ex.allocation_summary(q(window=window_arg(t0), aggregate="pod"), topline=True)["data"]
    total = top["combined"]["allocations"]["total"]
    assert (top["numResults"], total["start"], total["end"]) == (4, iso(t0), iso(t0 + 3600))
    assert (total["cpuCoreRequestAverage"], total["ramByteRequestAverage"]) == pytest.approx((1.75, 3.5 * GIB), rel=REL)


def test_allocate_prints_the_same_span(exporter: tuple[Any, int], tmp_path: Path) -> None:
    """allocate's JSON is /allocation's (docs/cli.md): batch (b-0 alone) ran [t0, t0+30m], 0.125 GPU-h, gpuCount
    0.25."""
    ex, t0 = exporter
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "prometheus": {"url": ex.cfg.prometheus.url}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0), "--format", "json"])
    assert res.exit_code == 0, res.output
    batch = json.loads(res.stdout)["data"][0]["batch"]
    assert (batch["start"], batch["end"], batch["minutes"]) == (iso(t0), iso(t0 + 1800), 30.0)
    assert (batch["gpuHours"], batch["gpuCount"], batch["cpuCores"]) == pytest.approx((0.125, 0.25, 0.5), rel=REL)
