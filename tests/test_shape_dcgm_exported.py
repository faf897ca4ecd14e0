"""Shape: dcgm-exporter scraped as its Helm chart scrapes it by default (a ServiceMonitor with honorLabels: false).

The target's labels win: `namespace`, `pod` and `container` name the exporter's own pod (gpu-operator /
nvidia-dcgm-exporter-...), plus `service`, `endpoint` and job="nvidia-dcgm-exporter", and the workload dcgm-exporter
saw on a GPU arrives as `exported_namespace`, `exported_pod` and `exported_container`. A GPU no pod holds carries
the exporter's labels only. The exporter's pod runs on n-gpu (kube-state-metrics exports it; BestEffort, it requests
nothing and is costed nothing). GPU waste is read from the exported labels: the baseline's, exactly. With
honorLabels: true the series are the generator's own (tests/test_shape_baseline.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from demo.localprom import PrometheusServer
from demo.synthetic import Cluster, Container, Pod, Rewrite

from .shapes import baseline_cluster, relabel, served
from .test_shape_ksm_replicas import assert_allocate_gives_the_baseline

EXPORTER = Pod("gpu-operator", "nvidia-dcgm-exporter-x7k2p", "n-gpu", (Container("nvidia-dcgm-exporter"),))
TARGET = {"namespace": EXPORTER.namespace, "pod": EXPORTER.name, "container": "nvidia-dcgm-exporter",
          "service": "nvidia-dcgm-exporter", "endpoint": "gpu-metrics", "job": "nvidia-dcgm-exporter",
          "instance": "10.0.3.4:9400"}


def not_honored(labels: dict[str, str]) -> list[dict[str, str]]:
    """Prometheus with honor_labels: false renames each scraped label the target also sets to exported_<name>."""
    out = {("exported_" + k if k in TARGET else k): v for k, v in labels.items()}
    return [{**out, **TARGET}]


def exported() -> Rewrite:
    def is_dcgm(name: str, _labels: dict[str, str]) -> bool:
        return name.startswith("DCGM_")
    drop_exporter_cadvisor = relabel(lambda name, lb: name.startswith("container_") and lb.get("pod") == EXPORTER.name,
                                     lambda lb: [])
    dcgm = relabel(is_dcgm, not_honored)
    return lambda rows: dcgm(drop_exporter_cadvisor(rows))


def with_exporter(t0: int) -> Cluster:
    base = baseline_cluster(t0)
    return replace(base, pods=(*base.pods, EXPORTER))


@pytest.fixture(scope="module")
def dcgm_exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    yield from served(tmp_path_factory, "shape-dcgm-exported", lambda _t0: exported(), with_exporter)


def test_exported_labels_give_the_baseline_gpu_waste(dcgm_exported: tuple[PrometheusServer, int],
                                                     tmp_path: Path) -> None:
    assert_allocate_gives_the_baseline(*dcgm_exported, tmp_path)
