"""Shape: two kube-state-metrics replicas (kube-prometheus-stack's HA shape), each scraped as its own target.

Every kube_* series arrives twice, differing in `instance`. kube-prometheus-stack scrapes kube-state-metrics with
honorLabels: true, so a series without a `namespace`, `pod` or `container` of its own (kube_node_*, kube_pod_info has
no container, ...) also gets the replica's target labels: namespace="monitoring", pod="kube-state-metrics-...",
container="kube-state-metrics", plus service and endpoint. Nothing may be counted twice: the namespace totals are
the baseline's, and so are the pod counts (label coverage and sharding read them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.localprom import PrometheusServer
from demo.synthetic import Rewrite
from exporter.config.schema import parse_config
from exporter.core.attribution import coverage_by_pods
from exporter.core.window import parse_window
from exporter.engine.pipeline import Pipeline
from exporter.sources.prometheus import PrometheusClient
from exporter.vocab.labels import Metadata

from .scenarios import CORE_CONFIG
from .shapes import BASELINE_GPU_WASTE, REL, assert_baseline, relabel, served
from .test_allocate_core import run_allocate, window_arg

REPLICAS = (("10.0.1.5:8080", "kube-state-metrics-6d9f7-abcde"), ("10.0.2.7:8080", "kube-state-metrics-6d9f7-fghij"))
# The baseline's pods per namespace: team-a web, burst; team-b batch, api; team-c train, small; team-d besteffort;
# kube-system coredns.
PODS = {"team-a": 2, "team-b": 2, "team-c": 2, "team-d": 1, "kube-system": 1}


def ksm_target(labels: dict[str, str], instance: str, pod: str) -> dict[str, str]:
    """A kube-state-metrics series as one replica's target gives it under honorLabels: true: its own labels
    win, the target's fill those it lacks."""
    target = {"namespace": "monitoring", "pod": pod, "container": "kube-state-metrics",
              "service": "kube-state-metrics", "endpoint": "http"}
    return {**target, **labels, "instance": instance}


def is_ksm(_name: str, labels: dict[str, str]) -> bool:
    return labels.get("job") == "kube-state-metrics"


def team_label(labels: dict[str, str]) -> dict[str, str]:
    """team-a's pods carry the label team=alpha (kube_pod_labels' allow-listed column); no other pod does."""
    return {**labels, "label_team": "alpha"} if labels.get("namespace") == "team-a" else labels


def two_replicas() -> Rewrite:
    return relabel(is_ksm, lambda lb: [ksm_target(team_label(lb), instance, pod) for instance, pod in REPLICAS])


def shape_config(prom: PrometheusServer, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(dict(CORE_CONFIG, prometheus={"url": prom.url})))
    return path


def assert_gpu_waste(data: dict[str, Any]) -> None:
    for ns, waste in BASELINE_GPU_WASTE.items():
        assert data[ns]["gpuWasteCost"] == pytest.approx(waste, rel=REL), ns
    assert sum(v.get("gpuWasteCost", 0.0) for v in data.values()) == pytest.approx(1.0, rel=REL)


def assert_allocate_gives_the_baseline(prom: PrometheusServer, t0: int, tmp_path: Path) -> None:
    """`allocate` over the hour: the baseline's namespace totals and GPU waste."""
    data = run_allocate(shape_config(prom, tmp_path), window_arg(t0))["data"][0]
    assert_baseline(data)
    assert_gpu_waste(data)


def metadata(prom: PrometheusServer, t0: int) -> Metadata:
    """The pipeline's pod and namespace metadata for the hour, attributing by the `team` label."""
    cfg = parse_config(dict(CORE_CONFIG, prometheus={"url": prom.url}, attribution={"labels": {"team": "team"}}))
    fetcher = Pipeline(cfg, PrometheusClient(cfg.prometheus)).fetcher
    return fetcher.prometheus_metadata(parse_window(window_arg(t0), t0, 60))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    yield from served(tmp_path_factory, "shape-ksm-replicas", lambda _t0: two_replicas())


def test_two_replicas_give_the_baseline(replicas: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    assert_allocate_gives_the_baseline(*replicas, tmp_path)


def test_two_replicas_count_each_pod_once(replicas: tuple[PrometheusServer, int]) -> None:
    meta = metadata(*replicas)
    assert meta.pod_counts == PODS
    # team-a's 2 pods of the 8 carry the team label: 2 / 8.
    assert coverage_by_pods(meta, ["team"]) == {"team": pytest.approx(2 / 8, rel=REL)}
