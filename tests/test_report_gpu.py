"""The showback report on a GPU cluster (MIG slices, a time-sliced L4, whole H100s, dcgm-exporter 25 % busy):
top workloads and GPU waste are the engine's, worked by hand below; no second cost path.

One hour (T0, T0+1h], demo.clusters.gpu_nodes, every GPU container 25 % busy (dcgm-exporter's DCP field).
Prices: gpu-a100-mig cpu 0.04/core-h, ram 0.005/GiB-h, the A100 80GB at gpu.prices 3.5; gpu-l4-ts cpu 0.05,
ram 0.006, its one physical L4 at 0.56 (a rule); gpu-h100 OpenCost's cpu 0.03, ram 0.004, 6.0 per H100.
Every pod is a Deployment named after its container, labelled team=<namespace>; requests are allocated.

  workload                   CPU + RAM                        GPU                          total
  ml/deployment:trainer-mig  4 x 0.04 + 32 x 0.005 = 0.32      3g.40gb = 3/7 x 3.5 = 1.50     1.82
  ml/deployment:serving-l4   2 x (0.5 x 0.05 + 2 x 0.006) = 0.074  2/4 of the L4 x 0.56 = 0.28  0.354
  ml/deployment:trainer-h100 64 x 0.03 + 512 x 0.004 = 3.968   4 x 6 = 24                     27.968
  search/deployment:embed    2 x (1 x 0.04 + 8 x 0.005) = 0.16 2 x 1g.10gb = 2/7 x 3.5 = 1.0  1.16
  search/deployment:rerank   2 x 0.037 = 0.074                 2/4 of the L4 x 0.56 = 0.28    0.354
  data-eng/deployment:finetune 64 x 0.03 + 512 x 0.004 = 3.968     4 x 6 = 24            27.968

(On main the report priced each advertised L4 replica as a whole L4, 0.56, and missed MIG slices: 0.32.)

GPU waste = GPU cost x (observed - busy) / held: dcgm-exporter shows each L4 replica as one GPU seen all hour,
scaled to the quarter held, so waste = cost x 0.75 wherever dcgm-exporter sees the GPU; MIG slices are not
seen (no dcgm-exporter series for them here): no data is not idleness, waste 0.
  ml: trainer-h100 24 x 0.75 = 18, serving-l4 0.28 x 0.75 = 0.21, trainer-mig 0   -> 18.21
  search: rerank 0.28 x 0.75 = 0.21, embed 0                                     -> 0.21
  data-eng: finetune 24 x 0.75 = 18
Cluster: a100 node 12 x 0.04 + 170 x 0.005 + 3.5 = 4.83; L4 node 4 x 0.05 + 16 x 0.006 + 0.56 = 0.856;
H100 node 192 x 0.03 + 2048 x 0.004 + 48 = 61.952; total 67.638.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.clusters import gpu_nodes
from demo.localprom import PrometheusServer
from demo.synthetic import Cluster, with_dcgm
from exporter.cli import main

from .conftest import aligned_past, scenario_prom
from .test_allocate_core import REL, window_arg

IT = "node.kubernetes.io/instance-type"
CONFIG: dict[str, Any] = {
    "pricing": {"rules": [{"match": {IT: "a2-ultragpu-1g"}, "cpu": 0.04, "ram": 0.005},
                          {"match": {IT: "g6.xlarge"}, "cpu": 0.05, "ram": 0.006, "gpu": 0.56}]},
    "gpu": {"prices": {"a100-80gb": 3.5}},
    "attribution": {"source": "prometheus"},
}
WORKLOADS = {
    "ml": {"ml/deployment:trainer-h100": 27.968, "ml/deployment:trainer-mig": 1.82,
           "ml/deployment:serving-l4": 0.354},
    "search": {"search/deployment:embed": 1.16, "search/deployment:rerank": 0.354},
    "data-eng": {"data-eng/deployment:finetune": 27.968},
}
GPU_COST = {"ml": 1.5 + 0.28 + 24, "search": 1.0 + 0.28, "data-eng": 24.0}
GPU_WASTE = {"ml": 18 + 0.21, "search": 0.21, "data-eng": 18.0}
WORKLOAD_WASTE = {"ml/deployment:trainer-h100": 18.0, "ml/deployment:serving-l4": 0.21,
                  "ml/deployment:trainer-mig": 0.0, "search/deployment:rerank": 0.21,
                  "search/deployment:embed": 0.0, "data-eng/deployment:finetune": 18.0}
CLUSTER = 4.83 + 0.856 + 61.952


@pytest.fixture(scope="module")
def report_gpu_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    nodes, pods = gpu_nodes()
    for prom in scenario_prom(tmp_path_factory, "report_gpu", with_dcgm(Cluster(nodes, pods), 0.25), t0):
        yield prom, t0


@pytest.fixture(scope="module")
def report(report_gpu_prom: tuple[PrometheusServer, int], tmp_path_factory: pytest.TempPathFactory) -> Any:
    prom, t0 = report_gpu_prom
    path = tmp_path_factory.mktemp("report_gpu_cfg") / "c.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "prometheus": {"url": prom.url}}))
    res = CliRunner().invoke(main, ["report", "--config", str(path), "--window", window_arg(t0), "--by", "team",
                                    "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_top_workloads_are_the_engines(report: Any) -> None:
    assert report["addsUp"] and report["clusterTotal"] == pytest.approx(CLUSTER, rel=REL)
    groups = {g["team"]: g for g in report["groups"]}
    for team, want in WORKLOADS.items():
        got = {w["name"]: w["totalCost"] for w in groups[team]["workloads"]}
        assert got == pytest.approx(want, rel=REL), team
        # Largest first, and the text column rounds them.
        assert [w["name"] for w in groups[team]["workloads"]] == sorted(want, key=lambda k: -want[k])
        # A namespace's workloads add up to the namespace's amount in the engine's table (one namespace a team).
        assert sum(got.values()) == pytest.approx(groups[team]["namespaces"][team], rel=REL)
        assert groups[team]["total"] == pytest.approx(sum(want.values()), rel=REL)
    assert groups["ml"]["top_workloads"] == ("ml/deployment:trainer-h100 27.97; ml/deployment:trainer-mig 1.82; "
                                             "ml/deployment:serving-l4 0.35")


def test_gpu_waste_by_group_and_workload(report: Any) -> None:
    groups = {g["team"]: g for g in report["groups"]}
    for team in GPU_COST:
        assert groups[team]["gpu_cost"] == pytest.approx(GPU_COST[team], rel=REL), team
        assert groups[team]["gpu_waste"] == pytest.approx(GPU_WASTE[team], rel=REL), team
        for w in groups[team]["workloads"]:
            assert w["gpuWasteCost"] == pytest.approx(WORKLOAD_WASTE[w["name"]], abs=1e-9), w["name"]
    # Physical GPU-hours held: a 3g.40gb slice is 3/7 of the A100, an L4 replica a quarter of the L4.
    ml = {w["name"]: w for w in groups["ml"]["workloads"]}
    assert ml["ml/deployment:trainer-mig"]["gpuHours"] == pytest.approx(3 / 7, rel=REL)
    assert ml["ml/deployment:serving-l4"]["gpuHours"] == pytest.approx(0.5, rel=REL)  # two replicas
    assert ml["ml/deployment:serving-l4"]["gpuCost"] == pytest.approx(0.28, rel=REL)
    # Most waste first; trainer-mig wasted nothing seen, so it is not listed.
    assert groups["ml"]["top_gpu_waste_workloads"].startswith("ml/deployment:trainer-h100 18.00; "
                                                              "ml/deployment:serving-l4 0.21")
    assert "trainer-mig" not in groups["ml"]["top_gpu_waste_workloads"]
    assert report["gpuWasteTotal"] == pytest.approx(18.21 + 0.21 + 18, rel=REL)  # 36.42
