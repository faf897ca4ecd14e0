"""Shapes: cAdvisor and kube-state-metrics scraped without honorLabels (dcgm-exporter's: test_shape_dcgm_exported.py).

* cAdvisor through the kubelet's Service endpoints (the operator's kubelet ServiceMonitor, honorLabels: false): the
  target is a Node, so only `namespace` is the target's (the Service's, kube-system) and cAdvisor's own becomes
  `exported_namespace`; `pod` and `container` stay. Unambiguous: read back, the baseline exactly.
* kube-state-metrics with honorLabels: false: every pod's `namespace`, `pod` and `container` become `exported_*`,
  and `namespace`/`pod` name its own pod, for every pod at once. Refused with a one-line error naming the shape and
  the fix, never costed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from demo.localprom import PrometheusServer
from exporter.cli import main

from .shapes import relabel, served
from .test_allocate_core import window_arg
from .test_shape_ksm_replicas import assert_allocate_gives_the_baseline, is_ksm, shape_config

KUBELET = {"namespace": "kube-system", "service": "kubelet", "endpoint": "https-metrics"}
KSM_POD = {"namespace": "monitoring", "pod": "kube-state-metrics-6d9f7-abcde", "container": "kube-state-metrics"}


def renamed(target: dict[str, str]) -> Callable[[dict[str, str]], list[dict[str, str]]]:
    """Prometheus with honor_labels: false: a scraped label the target also sets becomes exported_<name>."""
    def change(labels: dict[str, str]) -> list[dict[str, str]]:
        return [{**{("exported_" + k if k in target else k): v for k, v in labels.items()}, **target}]
    return change


@pytest.fixture(scope="module")
def cadvisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    rewrite = relabel(lambda name, lb: name.startswith("container_"), renamed(KUBELET))
    yield from served(tmp_path_factory, "shape-cadvisor-exported", lambda _t0: rewrite)


@pytest.fixture(scope="module")
def ksm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    yield from served(tmp_path_factory, "shape-ksm-exported", lambda _t0: relabel(is_ksm, renamed(KSM_POD)))


def test_cadvisor_without_honor_labels_gives_the_baseline(cadvisor: tuple[PrometheusServer, int],
                                                          tmp_path: Path) -> None:
    assert_allocate_gives_the_baseline(*cadvisor, tmp_path)


def test_ksm_without_honor_labels_is_refused_in_one_line(ksm: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = ksm
    res = CliRunner().invoke(main, ["allocate", "--config", str(shape_config(prom, tmp_path)), "--window",
                                    window_arg(t0), "--format", "json"])
    assert res.exit_code != 0 and res.stdout == ""
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("chargeback: error: kube-state-metrics series carry exported_namespace/exported_pod")
    assert "honorLabels: false" in line and "set honorLabels: true" in line
