"""The deployment-shape matrix: the exporter scraped by a PodMonitor and restarted with `serve.start` set.

A PodMonitor `chargeback` in namespace `monitoring` scrapes the exporter as job `monitoring/chargeback`, with
the target labels namespace, pod, container and endpoint, and honorLabels false: the exporter's own
`namespace` label arrives as `exported_namespace`. Exporter pod A accrues (t0, t0+30m] of the baseline and
is replaced by pod B (a new instance), which must continue from A's watermark, found by the
`chargeback_ledger` label the exporter owns (or, from a version before that label, by its absence), and
restore A's period-to-date sums.

By hand: the counters of A and B together rise by the baseline hour, test_allocate_core.EXPECTED per
namespace and NODES_TOTAL in all; B's daily period-to-date is the same hour (serve.start is t0, and the
hour lies in one UTC day).

On main (9b1b2e4) B looked for `job="chargeback"`, found no watermark, and accrued from serve.start again:
the counters rose by 13.903731 instead of NODES_TOTAL 9.269154 (team-a 0.2625 instead of 0.175): the first
half hour counted twice, with exit 0 and no warning.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from demo.localprom import PrometheusServer, backfill, free_port
from exporter.config.schema import Serve

from .conftest import aligned_past
from .scenarios import CORE_CONFIG, WINDOW_SECONDS
from .shapes import REL, baseline_cluster
from .test_allocate_core import EXPECTED, NODES_TOTAL, window_arg
from .test_failover import Served, publish
from .test_serve import wait_for

JOB = "monitoring/chargeback"


class PodMonitorScraper(PrometheusServer):
    """Scrapes each exporter pod as a PodMonitor does: job <namespace>/<name>, target labels, no honorLabels."""

    def __init__(self, data_dir: Path, pods: dict[str, int]) -> None:
        super().__init__(data_dir, {}, "1s")
        self.pods = pods

    def _config(self) -> dict[str, object]:
        cfg = super()._config()
        cfg["scrape_configs"] = [{"job_name": JOB, "honor_labels": False, "static_configs": [
            {"targets": [f"127.0.0.1:{port}"],
             "labels": {"namespace": "monitoring", "pod": pod, "container": "chargeback", "endpoint": "http"}}
            for pod, port in self.pods.items()]}]
        return cfg


class Stack:
    def __init__(self, root: Path, t0: int) -> None:
        self.t0 = t0
        backfill(baseline_cluster(t0), root / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
        self.ports = {"chargeback-a": free_port(), "chargeback-b": free_port(), "chargeback-c": free_port()}
        self.prom = PodMonitorScraper(root / "data", self.ports).start()
        self.config: dict[str, Any] = {
            **CORE_CONFIG, "prometheus": {"url": self.prom.url}, "attribution": {"source": "prometheus"},
            "allocation": {"chunk": "10m"},
            "serve": {"start": window_arg(t0).split(",")[0], "exposeNewSeriesFor": "10s"}}
        self.pods: list[Served] = []

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = requests.get(f"{self.prom.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def start(self, pod: str, **serve: Any) -> Served:
        """Start a pod once Prometheus scrapes its (still closed) port, so its first samples are its zeros."""
        instance = f"127.0.0.1:{self.ports[pod]}"
        wait_for(lambda: self.query(f'up{{job="{JOB}", instance="{instance}"}}'), what=f"{pod}'s scrape loop")
        config = {**self.config, "serve": {**self.config["serve"], **serve}}
        p = Served(self.ports[pod], config)
        self.pods.append(p)
        wait_for(lambda: self.query(f'up{{job="{JOB}", instance="{instance}"}} == 1'), what=f"{pod} scraped")
        return p

    def publish(self, p: Served, until: int) -> None:
        publish(self.query, p.ex, p.instance, until, f"{p.instance} to publish {until - self.t0}s")
    def close(self) -> None:
        for p in self.pods:
            p.close()  # the pods first: their servers stop before Prometheus does
        self.prom.stop()


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[Stack]:
    t0 = aligned_past()
    if t0 % 86400 == 82800:  # keep the hour in one UTC day, so the daily period-to-date is the hour
        t0 -= 3600
    s = Stack(tmp_path, t0)
    yield s
    s.close()


def increase_by_namespace(s: Stack) -> dict[str, float]:
    """Reset-aware increase of every pod's cost series from raw samples (each series' first sample, 0, is
    its base), by the exporter's namespace label (exported_namespace: the target's namespace displaced it)."""
    out: dict[str, float] = {}
    for row in s.query(f'chargeback_namespace_cost_total{{job="{JOB}"}}[15m]'):
        values = [float(v) for _, v in row["values"]]
        assert values[0] == 0.0, row["metric"]
        ns = row["metric"]["exported_namespace"]
        out[ns] = out.get(ns, 0.0) + sum(b - a if b >= a else b for a, b in itertools.pairwise(values))
    return out


@pytest.mark.parametrize("previous", ["default", ""])
def test_a_restart_under_a_podmonitor_continues_from_the_watermark(stack: Stack, previous: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A's watermark carries chargeback_ledger="default", or (previous "") no ledger label at all, as a
    version before the label wrote it: B, the upgrade, continues from that one too."""
    s, t0 = stack, stack.t0
    monkeypatch.setattr(Serve, "ledger", lambda _self: previous)  # an empty label value is no label
    a = s.start("chargeback-a")
    s.publish(a, t0 + 1800)
    [mark] = s.query("chargeback_accrued_until_timestamp_seconds")
    assert mark["metric"]["job"] == JOB and mark["metric"].get("chargeback_ledger", "") == previous
    a.close()
    s.pods.remove(a)
    monkeypatch.undo()

    b = s.start("chargeback-b")
    s.publish(b, t0 + 3600)
    got = increase_by_namespace(s)
    assert set(got) == set(EXPECTED)
    for ns, exp in EXPECTED.items():
        assert got[ns] == pytest.approx(sum(exp.values()), rel=REL), (ns, got[ns])
    assert sum(got.values()) == pytest.approx(NODES_TOTAL, rel=REL)
    # B restored A's period-to-date sums (read back by exported_namespace) and added its own half hour.
    daily: dict[str, float] = {}
    for metric in b.ex.registry.collect():
        for sample in metric.samples:
            if sample.name == "chargeback_period_cost" and sample.labels["period"] == "daily":
                daily[sample.labels["namespace"]] = daily.get(sample.labels["namespace"], 0.0) + sample.value
    assert set(daily) == set(EXPECTED)
    for ns, exp in EXPECTED.items():
        assert daily[ns] == pytest.approx(sum(exp.values()), rel=REL), ns


def test_another_ledgers_watermark_refuses_to_accrue_history_again(stack: Stack) -> None:
    """An exporter whose serve.clusterName changed (its ledger with it) finds no watermark of its own but
    one of `default`: with serve.start set it would accrue the hour again, so it refuses, in one line."""
    s, t0 = stack, stack.t0
    a = s.start("chargeback-a")
    s.publish(a, t0 + 600)
    c = s.start("chargeback-c", clusterName="renamed")
    c.ex.until = t0 + 3600
    c.ex.run_once()
    error = c.ex.health.last_error or ""
    assert not c.ex.health.up and c.ex.ledger.watermark is None
    assert "\n" not in error and "chargeback_ledger='renamed'" in error and "chargeback_ledger='default'" in error
    assert f"(job '{JOB}')" in error
