"""Per-container usage from kube-prometheus' recorded series, where they exist for the chunk.

Every kube-prometheus install records `node_namespace_pod_container:container_cpu_usage_seconds_total:
sum_rate5m` and `...:container_memory_working_set_bytes` (its k8s.rules group). Backfilled over the core
scenario with its own expressions, they must give the hand-worked amounts of test_allocate_core; where
they are missing, or the exporter's rate window is not theirs, the raw series are read as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill, backfill_rules
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.sources.prometheus import PrometheusClient

from .scenarios import CORE_CONFIG, WINDOW_SECONDS, core_cluster
from .test_allocate_core import EXPECTED, NODES_TOTAL, REL, window_arg

# kube-prometheus' k8s.rules (kubernetes-mixin), as it ships them.
KUBE_PROMETHEUS_RULES = {"groups": [{"name": "k8s.rules", "interval": "1m", "rules": [
    {"record": "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m",
     "expr": 'sum by (cluster, namespace, pod, container) (rate(container_cpu_usage_seconds_total{job="kubelet", '
             'metrics_path="/metrics/cadvisor", image!=""}[5m])) * on (cluster, namespace, pod) group_left(node) '
             'topk by (cluster, namespace, pod) (1, max by (cluster, namespace, pod, node) (kube_pod_info{node!=""}))'},
    {"record": "node_namespace_pod_container:container_memory_working_set_bytes",
     "expr": 'container_memory_working_set_bytes{job="kubelet", metrics_path="/metrics/cadvisor", image!=""} '
             '* on (cluster, namespace, pod) group_left(node) topk by (cluster, namespace, pod) (1, '
             'max by (cluster, namespace, pod, node) (kube_pod_info{node!=""}))'},
]}]}


@pytest.fixture(scope="module")
def kp_prom(tmp_path_factory: pytest.TempPathFactory, core_t0: int) -> Iterator[PrometheusServer]:
    root = tmp_path_factory.mktemp("kube-prometheus")
    backfill(core_cluster(core_t0), root / "data", core_t0 - 1800, core_t0 + WINDOW_SECONDS + 600, 60)
    rules = root / "k8s.rules.yaml"
    rules.write_text(yaml.safe_dump(KUBE_PROMETHEUS_RULES))
    prom = PrometheusServer(root / "data").start()
    try:
        backfill_rules(prom, rules, core_t0 - 600, core_t0 + WINDOW_SECONDS)
        yield prom
    finally:
        prom.stop()


def config(prom: PrometheusServer, **allocation: Any) -> dict[str, Any]:
    return {**CORE_CONFIG, "prometheus": {"url": prom.url}, "allocation": allocation}


def usage_sources(cfg: dict[str, Any], t0: int) -> dict[str, int]:
    pipeline = Pipeline(parsed := parse_config(cfg), PrometheusClient(parsed.prometheus))
    pipeline.compute(Window(t0, t0 + WINDOW_SECONDS, 60))
    return dict(pipeline.fetcher.steps.usage_sources)


def allocate(cfg: dict[str, Any], tmp_path: Path, window: str) -> dict[str, Any]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window, "--format", "json"])
    assert res.exit_code == 0, res.output
    data: dict[str, Any] = json.loads(res.stdout)["data"][0]
    return data


def assert_hand_worked(data: dict[str, Any]) -> None:
    for ns, exp in EXPECTED.items():
        assert data[ns]["cpuCost"] == pytest.approx(exp["cpu"], rel=REL), ns
        assert data[ns]["ramCost"] == pytest.approx(exp["memory"], rel=REL), ns
        assert data[ns]["gpuCost"] == pytest.approx(exp["gpu"], rel=REL, abs=1e-12), ns
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)  # conservation


def test_records_are_read_where_they_cover_the_chunk(kp_prom: PrometheusServer, core_t0: int,
                                                     tmp_path: Path) -> None:
    cfg = config(kp_prom)
    assert usage_sources(cfg, core_t0) == {"cpu:kube-prometheus": 1, "memory:kube-prometheus": 1}
    assert_hand_worked(allocate(cfg, tmp_path, window_arg(core_t0)))


def test_cpu_records_of_another_rate_window_are_not_read(kp_prom: PrometheusServer, core_t0: int,
                                                         tmp_path: Path) -> None:
    # sum_rate5m is a 5-minute rate: a 3m usageRateWindow reads the raw counters (memory has no window).
    cfg = config(kp_prom, usageRateWindow="3m")
    assert usage_sources(cfg, core_t0) == {"cpu:raw": 1, "memory:kube-prometheus": 1}
    assert_hand_worked(allocate(cfg, tmp_path, window_arg(core_t0)))


def test_without_records_the_raw_series_are_read(core_prom: PrometheusServer, core_t0: int,
                                                 tmp_path: Path) -> None:
    cfg = config(core_prom)
    assert usage_sources(cfg, core_t0) == {"cpu:raw": 1, "memory:raw": 1}
    assert_hand_worked(allocate(cfg, tmp_path, window_arg(core_t0)))


def test_records_missing_for_part_of_the_chunk_are_not_read(kp_prom: PrometheusServer, core_t0: int) -> None:
    # Recorded from t0 - 10 min only: the chunk (t0 - 30 min, t0] reads raw series. (Chunks are cut on the hour:
    # from t0 - 30 min to t0 + 30 min would be two, the second one recorded.)
    cfg = config(kp_prom, chunk="1h")
    pipeline = Pipeline(parsed := parse_config(cfg), PrometheusClient(parsed.prometheus))
    pipeline.compute(Window(core_t0 - 1800, core_t0, 60))
    assert pipeline.fetcher.steps.usage_sources == {"cpu:raw": 1, "memory:raw": 1}
