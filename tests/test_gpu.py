"""GPU sharing modes priced by what each tenant holds, against a real Prometheus.

Scenario: synthetic_clusters.gpu_nodes (A100 MIG mixed, L4 time-sliced 4 ways and 8 whole H100s, both fully
requested) plus
four nodes below (A100 MIG single, a HAMi T4, an Inferentia2, two AMD GPUs), over one hour. Every
GPU amount is worked by hand in the comments; nothing here calls the cost code to get an expectation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.clusters import GFD_MIG, GFD_PRODUCT, gpu_nodes
from demo.localprom import PrometheusServer
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.core.allocation import CostResult
from exporter.core.names import IDLE
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.sources.prometheus import PrometheusClient

from .conftest import aligned_past, scenario_prom
from .test_allocate_core import REL, window_arg

IT = "node.kubernetes.io/instance-type"


def gpu_cluster(t0: int) -> Cluster:
    nodes, pods = gpu_nodes()
    extra_nodes = (
        # MIG single strategy: 2 A100 40GB, each cut into seven 1g.5gb, shown as 14 nvidia.com/gpu.
        Node("gpu-a100-single", 24, 170 * GIB, gpus=14, labels={
            IT: "a2-highgpu-2g", GFD_PRODUCT: "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", GFD_MIG: "single"}),
        # HAMi: one T4 split 10 ways, no GFD labels; a gpu.nodes rule tells the replicas and the model.
        Node("gpu-t4-hami", 4, 16 * GIB, gpus=10, labels={IT: "g4dn.xlarge", "gpu": "on"}),
        # Inferentia2: one device of two NeuronCores; OpenCost prices CPU and RAM but not the device.
        Node("inf2-0", 4, 16 * GIB, labels={IT: "inf2.xlarge"}, opencost={"cpu": 0.03, "ram": 0.004},
             resources={"aws_amazon_com_neuron": 1, "aws_amazon_com_neuroncore": 2}),
        # AMD: two GPUs, a price-book rule with an explicit GPU price.
        Node("amd-0", 8, 64 * GIB, labels={IT: "custom.amd"}, resources={"amd_com_gpu": 2}),
        # One whole GPU requested twice for the first half hour (a stale request): scaled per step.
        Node("gpu-over", 4, 16 * GIB, gpus=1, labels={IT: "custom.over"}),
    )

    def pod(ns: str, name: str, node: str, gpus: float = 0.0, end: int | None = None, **res: float) -> Pod:
        return Pod(ns, name, node, (Container("app", 1, 2 * GIB, gpus, 0.5, 1 * GIB, resources=res),), end=end)

    extra_pods = (
        pod("research", "probe-0", "gpu-a100-single", gpus=3),
        pod("infer", "hami-a", "gpu-t4-hami", gpus=1, nvidia_com_gpumem=4096, nvidia_com_gpucores=20),
        pod("infer", "hami-b", "gpu-t4-hami", gpus=1, nvidia_com_gpumem=8192, nvidia_com_gpucores=30),
        pod("infer", "neuron-0", "inf2-0", aws_amazon_com_neuroncore=1),
        pod("vision", "amd-0", "amd-0", amd_com_gpu=1),
        pod("batch-a", "over-a", "gpu-over", gpus=1),
        pod("batch-b", "over-b", "gpu-over", gpus=1, end=t0 + 1800),
    )
    return Cluster(nodes + extra_nodes, pods + extra_pods)


GPU_CONFIG: dict[str, Any] = {
    "pricing": {"rules": [
        {"match": {IT: "a2-ultragpu-1g"}, "cpu": 0.04, "ram": 0.005},  # GPU: gpu.prices a100-80gb
        {"match": {IT: "a2-highgpu-2g"}, "cpu": 0.04, "ram": 0.005},  # GPU: gpu.prices a100-40gb
        {"match": {IT: "g4dn.xlarge"}, "cpu": 0.05, "ram": 0.006},  # GPU: the shipped T4 price
        {"match": {"node": "amd-*"}, "cpu": 0.05, "ram": 0.006, "gpu": 2.0},
        {"match": {"node": "gpu-over"}, "cpu": 0.05, "ram": 0.006, "gpu": 1.0},
    ]},
    "gpu": {"prices": {"a100-80gb": 3.5, "a100-40gb": 2.8, "inferentia2": 0.5},
            "nodes": [{"match": {"gpu": "on"}, "replicas": 10, "model": "t4"}]},
    "attribution": {"source": "prometheus"},
}

# Per physical GPU-hour on each node, and the GPU cost of the hour:
# gpu-a100-mig   1 x A100 80GB at gpu.prices 3.5                          = 3.5
# gpu-l4-ts      1 x L4 at the shipped 0.56 (g6.xlarge's shipped 0.8048 split with the GPU first) = 0.56
# gpu-h100       8 x H100 at OpenCost's node_gpu_hourly_cost 6.0           = 48
# gpu-a100-single 14 MIG devices / 7 per GPU = 2 x A100 40GB at 2.8       = 5.6
# gpu-t4-hami    10 vGPUs / 10 replicas = 1 x T4 at the shipped 0.35       = 0.35
# inf2-0         1 Inferentia2 at gpu.prices 0.5                           = 0.5
# amd-0          2 x AMD at the rule's 2.0                                 = 4.0
# gpu-over       1 GPU at the rule's 1.0                                   = 1.0
NODE_GPU = {"gpu-over": 1.0, "gpu-a100-mig": 3.5, "gpu-l4-ts": 0.56, "gpu-h100": 48.0, "gpu-a100-single": 5.6,
            "gpu-t4-hami": 0.35, "inf2-0": 0.5, "amd-0": 4.0}

# What each tenant holds, and its cost:
# MIG mixed: 3g.40gb = 3/7 of the A100 (ml: 3/7 x 3.5 = 1.5); each 1g.10gb = 1/7 (search: 2/7 x 3.5 = 1.0);
#   the two free 1g.10gb slices are the node's idle: 3.5 - 1.5 - 1.0 = 1.0.
# L4 time-sliced: a replica = 1/4 GPU = 0.14 (ml 2 x 0.14 = 0.28, search 2 x 0.14 = 0.28, idle 0).
# H100: whole GPUs at 6.0 (ml 4 x 6 = 24, data-eng two pods of 2: 4 x 6 = 24, idle 0).
# MIG single: a 1g.5gb device = 1/7 of an A100 40GB (research 3/7 x 2.8 = 1.2, idle 5.6 - 1.2 = 4.4).
# HAMi T4 (16 GiB = 16384 MiB): hami-a max(4096/16384, 20/100) = 0.25 x 0.35 = 0.0875;
#   hami-b max(8192/16384, 30/100) = 0.5 x 0.35 = 0.175; idle 0.35 - 0.2625 = 0.0875.
# Inferentia2: a NeuronCore = 1/2 device (infer 0.5 x 0.5 = 0.25, idle 0.25).
# AMD: one of two GPUs (vision 2.0, idle 2.0).
# gpu-over: steps t0+60 .. t0+1800 (30) hold 2 requests on 1 GPU, each scaled to 0.5; then over-b has
#   succeeded and over-a holds the GPU alone for 30 steps. batch-a 30 x 0.5 + 30 x 1 = 45 min = 0.75,
#   batch-b 30 x 0.5 = 15 min = 0.25 (a whole-chunk scale would have given 2/3 and 1/3), idle 0.
GPU_COST = {
    "ml": 1.5 + 0.28 + 24,  # 25.78
    "search": 1.0 + 0.28,  # 1.28
    "data-eng": 24.0,
    "research": 1.2,
    "infer": 0.0875 + 0.175 + 0.25,  # 0.5125
    "vision": 2.0,
    "batch-a": 0.75,
    "batch-b": 0.25,
    IDLE: 1.0 + 4.4 + 0.0875 + 0.25 + 2.0,  # 7.7375
}
# Physical GPU-hours held: ml 3/7 + 2/4 + 4; search 2/7 + 2/4; data-eng 2 + 2.
GPU_HOURS = {"ml": 3 / 7 + 0.5 + 4, "search": 2 / 7 + 0.5, "data-eng": 4.0, "research": 3 / 7,
             "infer": 0.25 + 0.5 + 0.5, "vision": 1.0, "batch-a": 0.75, "batch-b": 0.25}


@pytest.fixture(scope="module")
def gpu_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "gpu", gpu_cluster(t0), t0):
        yield prom, t0


@pytest.fixture(scope="module")
def pipeline(gpu_prom: tuple[PrometheusServer, int]) -> Pipeline:
    cfg = parse_config({**GPU_CONFIG, "prometheus": {"url": gpu_prom[0].url}})
    return Pipeline(cfg, PrometheusClient(cfg.prometheus))


@pytest.fixture(scope="module")
def result(gpu_prom: tuple[PrometheusServer, int], pipeline: Pipeline) -> CostResult:
    t0 = gpu_prom[1]
    return pipeline.compute(Window(t0, t0 + 3600, 60))


def by_namespace(result: CostResult, field: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (ns, _node, _attrs), line in result.table.items():
        out[ns] = out.get(ns, 0.0) + getattr(line, field)
    return out


def test_each_sharing_mode_is_charged_what_it_holds(result: CostResult) -> None:
    gpu = by_namespace(result, "gpu_cost")
    for ns, want in GPU_COST.items():
        assert gpu.get(ns, 0.0) == pytest.approx(want, rel=REL), ns
    hours = by_namespace(result, "gpu_seconds")
    for ns, want in GPU_HOURS.items():
        assert hours[ns] / 3600 == pytest.approx(want, rel=REL), ns


def test_gpu_idle_per_node_and_conservation(result: CostResult) -> None:
    node_gpu = {node: c for (node, res), c in result.node_cost.items() if res == "gpu"}
    assert node_gpu == pytest.approx(NODE_GPU, rel=REL)
    idle = {node: line.gpu_cost for (ns, node, _a), line in result.table.items() if ns == IDLE and line.gpu_cost}
    # gpu-l4-ts and gpu-h100 are fully requested: no idle GPU cost there.
    assert idle == pytest.approx({"gpu-a100-mig": 1.0, "gpu-a100-single": 4.4, "gpu-t4-hami": 0.0875, "inf2-0": 0.25,
                                  "amd-0": 2.0}, rel=REL)
    # GPU conservation: 3.5 + 0.56 + 48 + 5.6 + 0.35 + 0.5 + 4.0 + 1.0 = 63.51 = sum of GPU_COST.
    assert sum(by_namespace(result, "gpu_cost").values()) == pytest.approx(63.51, rel=REL)
    # Whole-cluster conservation, every resource and idle included.
    assert sum(result.costs.values()) == pytest.approx(result.total_cost, rel=REL)
    assert sum(line.total_cost for line in result.table.values()) == pytest.approx(result.total_cost, rel=REL)


def test_no_warnings(result: CostResult, pipeline: Pipeline) -> None:
    """Every node priced by a rule, OpenCost or a shipped price; gpu-over's double request is scaled per step,
    so the whole-window safety net (a `gpu_overflow` warning) never fires."""
    assert result.total_cost > 0 and dict(pipeline.warnings.kinds) == {}


def test_nodes_know_their_model_and_physical_gpus(result: CostResult) -> None:
    got = {n: (f.gpu_model, f.gpus, f.gpu.mode if f.gpu else "") for n, f in result.nodes.items() if f.gpus}
    assert got == {"gpu-a100-mig": ("a100-80gb", 1, "mig-mixed"), "gpu-l4-ts": ("l4", 1, "time-slicing"),
                   "gpu-h100": ("h100", 8, "whole"), "gpu-a100-single": ("a100-40gb", 2, "mig-single"),
                   "gpu-t4-hami": ("t4", 1, "time-slicing"), "inf2-0": ("inferentia2", 1, "neuron"),
                   "amd-0": ("", 2, "accelerator"), "gpu-over": ("", 1, "whole")}
    assert result.rates["gpu-h100"].gpu == 6.0 and result.rates["gpu-l4-ts"].gpu == 0.56


def test_gpu_cost_per_pod(result: CostResult) -> None:
    """Per (namespace, node, pod, container): what pod-level rows split GPU cost by (one container a pod here)."""
    pods = {k[:3]: (round(v.gpu_seconds / 3600, 9), round(v.cost, 9)) for k, v in result.gpu_pods.items()}
    assert result.gpu_pods[("ml", "gpu-a100-mig", "trainer-mig-0", "trainer-mig")].gpu_seconds == pytest.approx(
        3 / 7 * 3600, rel=REL)
    assert pods[("search", "gpu-a100-mig", "embed-0")] == (round(1 / 7, 9), 0.5)  # 1/7 x 3.5
    assert pods[("ml", "gpu-a100-mig", "trainer-mig-0")] == (round(3 / 7, 9), 1.5)
    assert pods[("search", "gpu-l4-ts", "rerank-1")] == (0.25, 0.14)
    assert pods[("ml", "gpu-h100", "trainer-h100-0")] == (4.0, 24.0)
    assert pods[("data-eng", "gpu-h100", "finetune-0")] == (4.0, 24.0)  # 4 H100s x 6.0
    assert pods[("ml", "gpu-l4-ts", "serving-l4-1")] == (0.25, 0.14)
    assert pods[("infer", "gpu-t4-hami", "hami-b")] == (0.5, 0.175)
    assert pods[("batch-b", "gpu-over", "over-b")] == (0.25, 0.25)
    assert len(pods) == 16
    assert sum(v.cost for v in result.gpu_pods.values()) == pytest.approx(63.51 - GPU_COST[IDLE], rel=REL)


def test_allocate_json_shows_gpu_share(gpu_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = gpu_prom
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**GPU_CONFIG, "prometheus": {"url": prom.url}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["data"][0]
    assert data["search"]["gpuCost"] == pytest.approx(1.28, rel=REL)
    assert data["search"]["physicalGpuHours"] == pytest.approx(2 / 7 + 0.5, rel=REL)  # the devices held
    # OpenCost's gpuHours: nvidia.com/gpu requests, or a time-sliced nvidia.com/gpu.shared replica's physical share
    # where larger (gpu-l4-ts is renameByDefault=true): two replicas x 1/4 of the L4 x 1 h = 0.5; none of MIG's.
    assert data["search"]["gpuHours"] == pytest.approx(0.5, rel=REL)


def test_demo_shows_a_gpu_node_shared_by_two_teams(result: CostResult) -> None:
    from demo.run import gpu_sharing

    text = gpu_sharing(result)
    # gpu-a100-mig over the hour: ml holds 3/7 of the A100 (1.50), search two 1/7 slices (0.50 each), idle 1.00.
    assert "gpu-a100-mig: 1 x a100-80gb (mig-mixed) at 3.5/GPU-h, idle 1.00" in text
    assert "    ml         trainer-mig-0     0.429 GPU       1.50" in text
    assert "    search     embed-1           0.143 GPU       0.50" in text
    # gpu-l4-ts: every replica requested, ml two and search two at 0.25 GPU, 0.14 each: idle 0.
    assert "gpu-l4-ts: 1 x l4 (time-slicing) at 0.56/GPU-h, idle 0.00" in text
    assert "    ml         serving-l4-1      0.250 GPU       0.14" in text


def test_prices_command_names_the_gpu_model(gpu_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = gpu_prom
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**GPU_CONFIG, "prometheus": {"url": prom.url}}))
    res = CliRunner().invoke(main, ["prices", "--config", str(path), "--window", window_arg(t0), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["node"]: r for r in json.loads(res.stdout)}
    # gpu-l4-ts advertises 4 time-sliced GPUs: one physical L4 at 0.56 out of g6.xlarge's 0.8048.
    assert (rows["gpu-l4-ts"]["gpus"], rows["gpu-l4-ts"]["gpuModel"], rows["gpu-l4-ts"]["gpuMode"]) == (
        1, "l4", "time-slicing")
    assert rows["gpu-l4-ts"]["gpuShare"] == pytest.approx(0.56 / 0.8048, rel=REL)
    assert rows["gpu-a100-mig"]["gpuMode"] == "mig-mixed"


def test_hami_node_without_a_replica_count_warns(gpu_prom: tuple[PrometheusServer, int]) -> None:
    """Without the gpu.nodes rule, gpu-t4-hami's 10 advertised vGPUs look like 10 T4s: said, not silent."""
    prom, t0 = gpu_prom
    cfg = parse_config({**GPU_CONFIG, "gpu": {**GPU_CONFIG["gpu"], "nodes": []}, "prometheus": {"url": prom.url}})
    p = Pipeline(cfg, PrometheusClient(cfg.prometheus))
    r = p.compute(Window(t0, t0 + 3600, 60))
    assert r.nodes["gpu-t4-hami"].gpus == 10
    assert "node gpu-t4-hami: HAMi requests" in p.warnings.kinds["gpu_replicas_unknown"].last_message
    assert set(p.warnings.kinds) == {"gpu_replicas_unknown"}


def test_assets_gpu_count_is_opencosts_and_physical_beside_it(gpu_prom: tuple[PrometheusServer, int]) -> None:
    """/assets' gpuCount is the count OpenCost reads from Kubernetes (its node_gpu_count); the devices priced
    are chargeback's physicalGpuCount, and the cost does not change."""
    from exporter.serve.server import Exporter

    from .test_assets_api import by_name, q

    ex = Exporter(parse_config({**GPU_CONFIG, "prometheus": {"url": gpu_prom[0].url}}))
    got = by_name(ex.assets(q(window=window_arg(gpu_prom[1]), filter='assetType:"node"'))["data"])
    counts = {n[5:]: (a["gpuCount"], a["physicalGpuCount"]) for n, a in got.items() if a["physicalGpuCount"]}
    assert counts == {
        "gpu-a100-mig": (0.0, 1.0),  # MIG mixed: no nvidia.com/gpu advertised, OpenCost counts none; 1 A100
        "gpu-l4-ts": (1.0, 1.0),  # GFD's replicas label: OpenCost takes nvidia.com/gpu.count (1), not the 4 replicas
        "gpu-h100": (8.0, 8.0),  # whole GPUs: the advertised 8
        "gpu-a100-single": (14.0, 2.0),  # MIG single: 14 advertised 1g.5gb devices, 2 A100s
        "gpu-t4-hami": (10.0, 1.0),  # HAMi: 10 advertised vGPUs (no GFD label), 1 T4 by the gpu.nodes rule
        "inf2-0": (0.0, 1.0),  # OpenCost reads only NVIDIA's resources from Kubernetes
        "amd-0": (0.0, 2.0),
        "gpu-over": (1.0, 1.0),
    }
    # The cost is priced on the physical devices, as before (NODE_GPU's hand-worked hour).
    assert {n[5:]: a["gpuCost"] for n, a in got.items() if a["gpuCost"]} == pytest.approx(NODE_GPU, rel=REL)
