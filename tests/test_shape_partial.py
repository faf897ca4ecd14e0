"""Shape: a partial answer with `warnings` (issue 23), on the baseline (tests/shapes.py).

A proxy in front of the baseline Prometheus stands in for Thanos Query with a store down: for queries
evaluated in the second half hour it drops every other series and adds a `warnings` entry (or
VictoriaMetrics cluster's `isPartial: true`). On main that half was costed from half the series, with
exit 0 and no word: the hour's total fell from 9.269154 to 4.72941. Now the half hour it concerns is
uncovered (a coverage entry, the query-error counter, one warning line) and the first half hour, which
the proxy leaves alone, is costed exactly. A warning on the first try only (a store back within the
client's retries) gives exactly the baseline.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from demo.localprom import PrometheusServer
from exporter.config.schema import Config
from exporter.core.allocation import CostResult
from exporter.core.names import IDLE
from exporter.core.window import Window, iso
from exporter.engine.pipeline import Pipeline, command_pipeline
from exporter.outputs.formatters import allocation_response
from exporter.outputs.opencost_api import AggKey
from exporter.outputs.podrows import PodGranularity
from exporter.serve.accrual import Ledger
from exporter.serve.collector import ChargebackCollector, Health
from exporter.sources.podsteps import BY_CONTAINER
from exporter.sources.promanswer import PartialAnswer
from exporter.sources.prometheus import PrometheusClient
from exporter.vocab.errors import PrometheusError

from .conftest import aligned_past
from .console import CHARGEBACK
from .nanproxy import NanProxy
from .scenarios import CORE_CONFIG
from .shapes import REL, assert_baseline, shape_prom
from .test_allocate_core import D_CPU, D_RAM, D_SPOT_CPU, D_SPOT_RAM, NODES_TOTAL, T_CPU, T_RAM, window_arg

HALF = 1800
STORE_DOWN = "receive series from Addr: store-2:10901: rpc error: code = Unavailable"

# ---- the first half hour (T0, T0+30m], by hand from scenarios.core_cluster ---------------------------
# Constant pods cost half their hour (test_allocate_core.EXPECTED). team-b's batch (2 cores, 4 GiB on
# n-spot) runs exactly this half hour, next to api (0.5 core, 1 GiB): 2.5 cores and 5 GiB for 0.5 h.
FIRST_HALF = {
    "team-a": {"cpu": 4 * 0.04 * 0.5, "memory": 3 * 0.005 * 0.5, "gpu": 0.0},
    "team-b": {"cpu": 2.5 * 0.5 * D_SPOT_CPU, "memory": 5 * 0.5 * D_SPOT_RAM, "gpu": 0.0},
    "team-c": {"cpu": (4 * 0.05 + 0.5 * T_CPU) * 0.5, "memory": (32 * 0.006 + 2 * T_RAM) * 0.5, "gpu": 2.0 * 0.5},
    "team-d": {"cpu": 0.25 * D_CPU * 0.5, "memory": 0.25 * D_RAM * 0.5, "gpu": 0.0},
    "kube-system": {"cpu": 0.25 * D_CPU * 0.5, "memory": 0.25 * D_RAM * 0.5, "gpu": 0.0},
    # Idle: n-spot has 8 - 2.5 cores and 32 - 5 GiB free; the other nodes as in EXPECTED, for 0.5 h.
    IDLE: {"cpu": (8 - 2.5) * 0.5 * D_SPOT_CPU + ((8 - 4) * 0.05 + (2 - 0.5) * T_CPU + (2 - 0.5) * D_CPU) * 0.5,
           "memory": (32 - 5) * 0.5 * D_SPOT_RAM
           + ((16 - 3) * 0.005 + (64 - 32) * 0.006 + (8 - 2) * T_RAM + (4 - 0.5) * D_RAM) * 0.5,
           "gpu": (4 - 1) * 2.0 * 0.5},
}


class PartialProxy(NanProxy):
    """Answers for queries evaluated in (after, until] lose every other series and say so, as Thanos Query
    does with a store down (`warnings`) or VictoriaMetrics cluster with a vmstorage down (`isPartial`).
    `first_only`: only the first time each query is asked (a store back before the client's retry)."""

    def __init__(self, upstream: str, after: float, until: float, first_only: bool = False,
                 is_partial: bool = False, query_has: tuple[str, ...] = ()) -> None:
        super().__init__(upstream)
        self.after, self.until, self.first_only, self.is_partial = after, until, first_only, is_partial
        self.query_has = query_has  # only queries holding each of these
        self.seen: set[tuple[str, float]] = set()
        self.partial_answers = 0
        self.params: list[dict[str, list[str]]] = []

    def __enter__(self) -> PartialProxy:
        super().__enter__()
        return self

    def rewrite(self, params: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        self.params.append(params)
        query, at = params.get("query", [""])[0], float(params.get("time", ["0"])[0])
        if not self.after < at <= self.until or body.get("status") != "success" or \
                not all(s in query for s in self.query_has):
            return body
        if self.first_only:
            if (query, at) in self.seen:
                return body
            self.seen.add((query, at))
        self.partial_answers += 1
        body["data"]["result"] = body["data"]["result"][::2]
        if self.is_partial:
            body["isPartial"] = True
        else:
            body["warnings"] = [STORE_DOWN]
        return body


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    prom = shape_prom(tmp_path_factory.mktemp("shape-partial"), t0)
    try:
        yield prom, t0
    finally:
        prom.stop()


def config(url: str, **prometheus: Any) -> dict[str, Any]:
    # Two chunks of 30 minutes: the proxy's half hour is one of them.
    return dict(CORE_CONFIG, prometheus={"url": url, **prometheus}, allocation={"chunk": "30m"})


def pipeline_for(url: str, monkeypatch: pytest.MonkeyPatch, **prometheus: Any) -> Pipeline:
    monkeypatch.setattr("exporter.sources.prometheus.RETRY_BACKOFF_SECONDS", 0.01)  # retries, not waits
    cfg = Config.model_validate(config(url, **prometheus))
    return command_pipeline(cfg, PrometheusClient(cfg.prometheus))


def by_namespace(result: CostResult) -> dict[str, Any]:
    """The result as `allocate --format json` shows it, per namespace."""
    data: dict[str, Any] = allocation_response(result, ["namespace"], ())["data"][0]
    return data


def assert_first_half(data: dict[str, Any]) -> None:
    assert set(data) == set(FIRST_HALF)
    for ns, exp in FIRST_HALF.items():
        assert data[ns]["cpuCost"] == pytest.approx(exp["cpu"], rel=REL), ns
        assert data[ns]["ramCost"] == pytest.approx(exp["memory"], rel=REL), ns
        assert data[ns]["gpuCost"] == pytest.approx(exp["gpu"], rel=REL, abs=1e-12), ns
    # Conservation: the namespaces (idle included) add up to the nodes' cost of the half hour covered.
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL / 2, rel=REL)


def test_cli_costs_the_whole_half_and_names_the_partial_one(baseline: tuple[PrometheusServer, int],
                                                            tmp_path: Path) -> None:
    prom, t0 = baseline
    with PartialProxy(prom.url, t0 + HALF, t0 + 2 * HALF) as proxy:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump(config(proxy.url)))
        run = subprocess.run([CHARGEBACK, "allocate", "--config", str(cfg), "--window", window_arg(t0),
                              "--format", "json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # The first query of the second half hour, asked three times (two retries), then left: nothing of it is costed.
    assert proxy.partial_answers == 3
    body = json.loads(run.stdout)
    assert_first_half(body["data"][0])
    coverage = body["coverage"]
    assert coverage["windowSeconds"] == 3600 and coverage["coveredSeconds"] == HALF
    [gap] = coverage["uncovered"]
    assert (gap["start"], gap["end"]) == (iso(t0 + HALF), iso(t0 + 2 * HALF))
    assert gap["source"] == "prometheus" and STORE_DOWN in gap["reason"]
    said = [line for line in run.stderr.splitlines() if "answered only in part" in line]
    assert len(said) == 1 and STORE_DOWN in said[0], run.stderr
    assert any("uncovered" in line and "costs cover 0.50h of 1h" in line for line in run.stderr.splitlines())


def test_partial_half_is_uncovered_counted_and_warned_once(baseline: tuple[PrometheusServer, int],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    prom, t0 = baseline
    with PartialProxy(prom.url, t0 + HALF, t0 + 2 * HALF) as proxy:
        pipeline = pipeline_for(proxy.url, monkeypatch)
        result = pipeline.compute(Window(t0, t0 + 2 * HALF, 60))
    assert_first_half(by_namespace(result))
    [gap] = result.coverage.uncovered
    assert (gap.start, gap.end, gap.source) == (t0 + HALF, t0 + 2 * HALF, "prometheus")
    assert result.coverage.covered_seconds == HALF
    assert pipeline.warnings.counts()["partial_answer"] == 1
    # The counter: one query failed as partial, after its two retries.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChargebackCollector(Ledger(), Health(), pipeline.client.stats, pipeline))
    errors = "chargeback_prometheus_query_errors_total"
    assert registry.get_sample_value(errors, {"reason": "partial_response"}) == 1
    assert registry.get_sample_value(errors, {"reason": "query_error"}) == 0


def test_victoriametrics_is_partial_is_a_partial_answer(baseline: tuple[PrometheusServer, int],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    prom, t0 = baseline
    with PartialProxy(prom.url, t0 + HALF, t0 + 2 * HALF, is_partial=True) as proxy:
        pipeline = pipeline_for(proxy.url, monkeypatch)
        result = pipeline.compute(Window(t0, t0 + 2 * HALF, 60))
    assert [(iv.start, iv.end) for iv in result.coverage.uncovered] == [(t0 + HALF, t0 + 2 * HALF)]
    assert "isPartial: true" in result.coverage.uncovered[0].reason
    assert_first_half(by_namespace(result))


def test_a_warning_on_the_first_try_only_gives_the_baseline(baseline: tuple[PrometheusServer, int],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    prom, t0 = baseline
    with PartialProxy(prom.url, t0 + HALF, t0 + 2 * HALF, first_only=True) as proxy:
        pipeline = pipeline_for(proxy.url, monkeypatch)
        result = pipeline.compute(Window(t0, t0 + 2 * HALF, 60))
    assert proxy.partial_answers > 10  # every query of the second half hour was answered in part once
    assert not result.coverage.uncovered and result.coverage.covered_seconds == 3600
    assert "partial_answer" not in pipeline.warnings.counts()
    assert pipeline.client.stats.errors_by_reason.get("partial_response", 0) == 0
    assert_baseline(by_namespace(result))


def test_serve_fails_the_cycle_rather_than_leave_history_uncovered(baseline: tuple[PrometheusServer, int],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve's accrual is retried next cycle (as with Prometheus unreachable): a counter never skips a piece
    for a store that is briefly away."""
    prom, t0 = baseline
    with PartialProxy(prom.url, t0 + HALF, t0 + 2 * HALF) as proxy:
        pipeline = pipeline_for(proxy.url, monkeypatch)
        pipeline.partial_fails = True
        with pytest.raises(PartialAnswer, match="answered only in part"):
            pipeline.compute_chunk(Window(t0 + HALF, t0 + 2 * HALF, 60))


def test_deny_sends_partial_response_false_on_every_query(baseline: tuple[PrometheusServer, int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    prom, t0 = baseline
    with PartialProxy(prom.url, 0, 0) as proxy:  # a plain proxy that records what it is asked
        pipeline = pipeline_for(proxy.url, monkeypatch, partialResponse="deny")
        pipeline.compute(Window(t0, t0 + HALF, 60))
    assert len(proxy.params) > 10
    for params in proxy.params:
        assert params.get("partial_response") == ["false"] and params.get("deny_partial_response") == ["1"], params


def test_pod_rows_answered_in_part_end_the_run(baseline: tuple[PrometheusServer, int],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Pod-level rows go out batch by batch (one namespace a batch here): once a batch is handed on, a
    later batch answered in part can be neither left out nor read again, so it is a one-line error, never
    a pod table with a batch missing or one counted twice."""
    prom, t0 = baseline
    with PartialProxy(prom.url, float("-inf"), float("inf"), query_has=(BY_CONTAINER, '"team-c"')) as proxy:
        pipeline = pipeline_for(proxy.url, monkeypatch)
        grain = PodGranularity([AggKey("namespace")], None, True, (), "cluster", batch_pods=1)
        with pytest.raises(PrometheusError, match=r"answered only in part.*pod-level rows") as caught:
            pipeline.compute(Window(t0, t0 + HALF, 60), granularity=grain)
    assert not isinstance(caught.value, PartialAnswer) and "\n" not in str(caught.value)
    assert proxy.partial_answers == 3  # asked, retried twice, then the error
