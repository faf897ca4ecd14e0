"""OpenCost's own quantities in /allocation, from the one engine, against a real Prometheus; amounts by hand.

Scenario (`fields_cluster`), the hour (t0, t0+1h], OpenCost's node prices cpu 0.10/core-h, ram 0.01/GiB-h,
gpu 2.0/GPU-h, policy `max` (the default):
  n1 (4 cores, 16 GiB: 0.40 + 0.16 = 0.56/h)
    alpha/hog   requests 2 cores 4 GiB, uses 3 cores 2 GiB, limits 4 cores 8 GiB: holds max = 3 cores, 4 GiB
    beta/svc    requests 2 cores 2 GiB, uses 1 core 1 GiB, limit 4 GiB (no CPU limit): holds 2 cores, 2 GiB
    cpu held 3 + 2 = 5 > 4 cores: chargeback charges both x 4/5 = 0.8 (alpha 2.4, beta 1.6 core-h);
    OpenCost's cpuCores/cpuCoreHours are what they held: 3 and 2.
    alpha 2.4 x 0.10 + 4 x 0.01 = 0.28; beta 1.6 x 0.10 + 2 x 0.01 = 0.18; idle ram (16 - 6) x 0.01 = 0.10
  n2 (8 cores, 32 GiB, one V100: 0.80 + 0.32 + 2.00 = 3.12/h), dcgm-exporter
    gamma/train-0, gamma/train-1: each requests 1 core 1 GiB (uses half) and 1 nvidia.com/gpu. Two requests
    on one GPU (stale): chargeback prices the one physical GPU (1 GPU-h, 2.00); OpenCost's gpuHours count
    the 2 requested. dcgm-exporter shows the GPU in train-0's hands, 50 % busy.
    gamma 2 x 0.10 + 2 x 0.01 + 2.00 = 2.22; idle cpu 6 x 0.10 + ram 30 x 0.01 = 0.90
  cluster 0.56 + 3.12 = 3.68 = 0.28 + 0.18 + 2.22 + (0.10 + 0.90)
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from demo.localprom import PrometheusServer
from demo.synthetic import Cluster, Container, Dcgm, Node, Pod
from exporter.config.schema import parse_config
from exporter.core.window import Window
from exporter.serve.server import Exporter

from .conftest import aligned_past, scenario_prom
from .test_allocate_core import window_arg

GIB = 1024**3
IT = "node.kubernetes.io/instance-type"
PRICES = {"cpu": 0.10, "ram": 0.01}
USAGE_REL = 1e-6  # cAdvisor usage is a rate over a counter of ~1e6: exact to about 1e-10
V100 = "Tesla V100-SXM2-16GB"


def fields_cluster() -> Cluster:
    nodes = (Node("n1", 4, 16 * GIB, labels={IT: "m5.xlarge"}, opencost=PRICES),
             Node("n2", 8, 32 * GIB, gpus=1, labels={IT: "p3.2xlarge"}, opencost={**PRICES, "gpu": 2.0},
                  dcgm=Dcgm(V100, 16384)))

    def trainer() -> Container:
        return Container("trainer", 1, 1 * GIB, 1, 0.5, 0.5 * GIB, gpu_util=0.5)

    pods = (Pod("alpha", "hog", "n1", (Container("app", 2, 4 * GIB, 0, 3, 2 * GIB, cpu_limit=4, mem_limit=8 * GIB),)),
            Pod("beta", "svc", "n1", (Container("app", 2, 2 * GIB, 0, 1, 1 * GIB, mem_limit=4 * GIB),)),
            Pod("gamma", "train-0", "n2", (trainer(),)),
            Pod("gamma", "train-1", "n2", (trainer(),)))
    return Cluster(nodes, pods)


@pytest.fixture(scope="module")
def fields_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "fields", fields_cluster(), t0):
        yield prom, t0


@pytest.fixture(scope="module")
def exporter(fields_prom: tuple[PrometheusServer, int]) -> Iterator[Exporter]:
    ex = Exporter(parse_config({"prometheus": {"url": fields_prom[0].url}, "attribution": {"source": "prometheus"},
                                "allocation": {"nodeLabels": [IT]}}))
    yield ex
    ex.close()


def call(exporter: Exporter, t0: int, **params: str) -> dict[str, Any]:
    query = {"window": [window_arg(t0)], "includeIdle": ["true"],
             **{k: [v] for k, v in params.items()}}
    data: dict[str, Any] = exporter.allocation(query)["data"][0]
    return data


def test_namespace_quantities_are_opencosts(exporter: Exporter, fields_prom: Any) -> None:
    data = call(exporter, fields_prom[1])
    alpha, beta, gamma = data["alpha"], data["beta"], data["gamma"]
    # Held before the overflow scale (OpenCost's max(request, usage)); charged after it.
    assert alpha["cpuCores"] == pytest.approx(3.0, rel=USAGE_REL)  # max(2 requested, 3 used)
    assert alpha["cpuCoreHours"] == pytest.approx(3.0, rel=USAGE_REL)
    assert alpha["chargedCpuCoreHours"] == pytest.approx(3.0 * 4 / 5, rel=USAGE_REL)  # 2.4
    assert beta["cpuCores"] == pytest.approx(2.0, rel=1e-9)  # max(2 requested, 1 used)
    assert beta["chargedCpuCoreHours"] == pytest.approx(2.0 * 4 / (3 + 2), rel=USAGE_REL)  # 1.6
    assert alpha["cpuCoreRequestAverage"] == pytest.approx(2.0, rel=1e-9)
    assert alpha["ramBytes"] == pytest.approx(4 * GIB, rel=1e-9) and alpha["ramByteHours"] == pytest.approx(4 * GIB)
    assert beta["ramBytes"] == pytest.approx(2 * GIB, rel=1e-9)
    # Limits: alpha 4 cores and 8 GiB; beta sets no CPU limit and 4 GiB.
    assert alpha["cpuCoreLimitAverage"] == pytest.approx(4.0, rel=1e-9)
    assert alpha["ramByteLimitAverage"] == pytest.approx(8 * GIB, rel=1e-9)
    assert beta["cpuCoreLimitAverage"] == 0.0
    assert beta["ramByteLimitAverage"] == pytest.approx(4 * GIB, rel=1e-9)
    # Cost stays chargeback's: alpha 2.4 x 0.10 + 4 x 0.01 = 0.28, beta 1.6 x 0.10 + 2 x 0.01 = 0.18.
    assert alpha["totalCost"] == pytest.approx(0.28, rel=USAGE_REL)
    assert beta["totalCost"] == pytest.approx(0.18, rel=USAGE_REL)
    # GPUs: two requested on one physical V100. OpenCost's gpuHours count requests, cost the one GPU held.
    assert gamma["gpuHours"] == pytest.approx(2.0, rel=1e-9) and gamma["gpuCount"] == pytest.approx(2.0, rel=1e-9)
    assert gamma["physicalGpuHours"] == pytest.approx(1.0, rel=1e-9)
    assert gamma["gpuCost"] == pytest.approx(2.0, rel=1e-9)
    assert gamma["totalCost"] == pytest.approx(2 * 0.10 + 2 * 0.01 + 2.0, rel=1e-9)  # 2.22
    assert gamma["gpuAllocation"] == {"gpuDevice": "", "gpuModel": "", "gpuUUID": "", "isGPUShared": True,
                                      "gpuUsageAverage": pytest.approx(0.5, rel=1e-9),  # train-0's GPU, 50 % busy
                                      "gpuRequestAverage": pytest.approx(2.0, rel=1e-9)}
    assert alpha["gpuAllocation"] is None  # no GPU
    # allocation.nodeLabels: the node's instance type reaches its allocations' labels, as OpenCost's.
    assert alpha["properties"]["labels"] == {"node_kubernetes_io_instance_type": "m5.xlarge"}
    assert gamma["properties"]["labels"] == {"node_kubernetes_io_instance_type": "p3.2xlarge"}
    # Conservation: 0.28 + 0.18 + 2.22 + idle (0.10 + 0.90) = the nodes' 3.68.
    assert data["__idle__"]["totalCost"] == pytest.approx(1.00, rel=USAGE_REL)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(0.56 + 3.12, rel=1e-9)


def test_container_gpu_fields_come_from_dcgm(exporter: Exporter, fields_prom: Any) -> None:
    data = call(exporter, fields_prom[1], aggregate="pod,container")
    seen, unseen = data["train-0/trainer"], data["train-1/trainer"]
    uuid = f"GPU-{zlib.crc32(b'n2/0'):08x}-0000-0000-0000-000000000000"  # demo/synthetic.dcgm_series' GPU 0
    # train-0 holds half the V100 (two requests on one GPU) and is the pod dcgm-exporter shows, 50 % busy.
    assert seen["gpuAllocation"] == {"gpuDevice": "nvidia0", "gpuModel": V100, "gpuUUID": uuid, "isGPUShared": True,
                                     "gpuUsageAverage": pytest.approx(0.5, rel=1e-9),
                                     "gpuRequestAverage": pytest.approx(1.0, rel=1e-9)}
    assert seen["rawAllocationOnly"]["gpuUsageMax"] == pytest.approx(0.5, rel=1e-9)
    assert seen["rawAllocationOnly"]["cpuCoreUsageMax"] == pytest.approx(0.5, rel=USAGE_REL)
    assert unseen["gpuAllocation"]["gpuDevice"] == "" and unseen["gpuAllocation"]["gpuUsageAverage"] == 0.0
    assert unseen["rawAllocationOnly"]["gpuUsageMax"] == 0.0
    assert seen["gpuHours"] == pytest.approx(1.0, rel=1e-9) and seen["physicalGpuHours"] == pytest.approx(0.5)
    # The containers' limits and held quantities, as the namespace rows: hog 4 cores, 3 held.
    hog = data["hog/app"]
    assert hog["cpuCoreLimitAverage"] == pytest.approx(4.0, rel=1e-9)
    assert hog["ramByteLimitAverage"] == pytest.approx(8 * GIB, rel=1e-9)
    assert hog["cpuCoreHours"] == pytest.approx(3.0, rel=USAGE_REL)
    assert hog["chargedCpuCoreHours"] == pytest.approx(2.4, rel=USAGE_REL)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(0.56 + 3.12, rel=1e-9)


def test_limits_are_read_only_where_allocations_are_printed(exporter: Exporter, fields_prom: Any) -> None:
    """Counters, reports and FOCUS never print a limit: their pipeline skips the limits read (14-22 s of
    Prometheus per serve cycle at 300k containers), with the same costs; the allocation doors read it."""
    from exporter.engine.pipeline import Pipeline
    from exporter.sources.prometheus import PrometheusClient

    t0 = fields_prom[1]
    window = Window(t0, t0 + 3600, 60)
    counted: list[str] = []
    client = PrometheusClient(exporter.cfg.prometheus)
    query = client.query

    def recording(expr: str, at: float) -> Any:
        counted.append(expr)
        return query(expr, at)

    client.query = recording  # type: ignore[method-assign]
    costs_only = Pipeline(exporter.cfg, client).compute(window)
    assert not any("kube_pod_container_resource_limits" in e for e in counted)
    assert all(line.cpu_limit_seconds == 0 for line in costs_only.table.values())
    counted.clear()
    printing = Pipeline(exporter.cfg, client)
    printing.running_spans = True
    printed = printing.compute(window)
    assert any("kube_pod_container_resource_limits" in e for e in counted)
    # alpha's pod: a 4-core limit for the hour = 14,400 core-seconds; the same costs either way
    assert sum(ln.cpu_limit_seconds for k, ln in printed.table.items() if k[0] == "alpha") == pytest.approx(14400)
    assert printed.costs == pytest.approx(costs_only.costs, rel=1e-12)
