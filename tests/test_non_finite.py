"""NaN and +Inf from Prometheus never reach a cost or a counter (issue 12, problem 7).

A proxy in front of a real Prometheus rewrites answers of selected queries to NaN or +Inf; one
more Prometheus holds a real NaN sample. Amounts are worked out by hand from scenarios.core_cluster
(see test_allocate_core for the clean hour).
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, find_binary
from demo.synthetic import write_openmetrics
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.engine.pipeline import BillPrices
from exporter.serve.accrual import ClusterKey, CounterKey, NamespaceKey
from exporter.serve.server import Exporter

from .conftest import aligned_past
from .nanproxy import Inject, NanProxy
from .scenarios import CORE_CONFIG, WINDOW_SECONDS, core_cluster
from .test_allocate_core import (
    D_CPU,
    D_RAM,
    D_SPOT_CPU,
    D_SPOT_RAM,
    EXPECTED,
    IDLE,
    NODES_TOTAL,
    RATIO,
    REL,
    window_arg,
)
from .test_assets import STORAGE, TOTAL
from .test_assets import config as asset_config
from .test_serve import iso

# n-od with no finite CPU price falls to the next source, the shipped m5.xlarge price (0.192/h over 4 cores
# and 16 GiB, split like OpenCost), as n-total's t3.large is split in test_allocate_core.
S_RAM = 0.192 / (4 * RATIO + 16)
S_CPU = S_RAM * RATIO
N_OD = 4 * 0.04 + 16 * 0.005  # n-od's hour at its OpenCost prices: 0.24
N_SPOT = 8 * D_SPOT_CPU + 32 * D_SPOT_RAM  # n-spot's hour at default spot rates


def allocate(config: Path, window: str) -> tuple[dict[str, Any], str]:
    res = CliRunner().invoke(main, ["allocate", "--config", str(config), "--window", window, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["data"][0], res.stderr


def write_config(tmp_path: Path, url: str, **extra: Any) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**CORE_CONFIG, "prometheus": {"url": url, "retries": 0}, **extra}))
    return path


def total(data: dict[str, Any]) -> float:
    return float(sum(v["totalCost"] for v in data.values()))


def cost(data: dict[str, Any], ns: str) -> float:
    return float(data.get(ns, {}).get("totalCost", 0.0))


@pytest.fixture()
def proxy(core_prom: PrometheusServer) -> Iterator[NanProxy]:
    with NanProxy(core_prom.url) as p:
        yield p


CASES = {
    # A NaN CPU price: n-od is priced by the next source for the window (shipped m5.xlarge, 0.192/h).
    "price": (Inject("node_cpu_hourly_cost", {"node": "n-od", "price": "cpu"}),
              {"team-a": 4 * S_CPU + 3 * S_RAM}, NODES_TOTAL - N_OD + 0.192, 'node="n-od", price="cpu"'),
    # No finite capacity: n-od is not covered, so neither its cost nor team-a's share of it exists.
    "capacity": (Inject("kube_node_status_capacity", {"node": "n-od"}, "+Inf"),
                 {"team-a": 0.0, "__idle__": sum(IDLE.values()) - 13 * 0.005}, NODES_TOTAL - N_OD, 'node="n-od"'),
    # team-b's requests answer NaN: its allocation is left out and n-spot's capacity is idle instead.
    "requests": (Inject("kube_pod_container_resource_requests", {"namespace": "team-b"}),
                 {"team-b": 0.0, "__idle__": sum(IDLE.values()) + sum(EXPECTED["team-b"].values())}, NODES_TOTAL,
                 'namespace="team-b"'),
    # team-d's CPU usage answers +Inf: its CPU (usage-charged, no request) is idle; its memory stays.
    "usage": (Inject("container_cpu_usage_seconds_total", {"namespace": "team-d"}, "+Inf"),
              {"team-d": 0.25 * D_RAM, "__idle__": sum(IDLE.values()) + 0.25 * D_CPU}, NODES_TOTAL,
              'namespace="team-d"'),
    # Pod counts answer NaN (today: "cannot convert float NaN to integer"): costs do not depend on them.
    "counts": (Inject("kube_pod_labels", {"namespace": "team-a"}),
               {ns: sum(exp.values()) for ns, exp in EXPECTED.items()}, NODES_TOTAL, 'namespace="team-a"'),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_allocate_leaves_non_finite_answers_out(case: str, proxy: NanProxy, core_t0: int, tmp_path: Path) -> None:
    inject, expected, nodes_total, series = CASES[case]
    proxy.injects = [inject]
    data, stderr = allocate(write_config(tmp_path, proxy.url), window_arg(core_t0))
    assert inject.hits, "the proxy rewrote nothing"
    assert all(math.isfinite(v["totalCost"]) for v in data.values())
    for ns, amount in expected.items():
        assert cost(data, ns) == pytest.approx(amount, rel=REL, abs=1e-12), ns
    assert total(data) == pytest.approx(nodes_total, rel=REL)  # conservation over what is covered
    warned = [line for line in stderr.splitlines() if f"Prometheus answered {inject.value}" in line]
    assert warned and series in warned[0] and inject.query_has in stderr, stderr


def test_allocate_leaves_a_non_finite_volume_size_out(asset_prom: Any, tmp_path: Path) -> None:
    prom, t0 = asset_prom
    with NanProxy(prom.url, [Inject("kube_persistentvolume_capacity_bytes", {"persistentvolume": "pv-gp3"})]) as p:
        path = asset_config((p, t0), tmp_path)  # type: ignore[arg-type]
        res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0),
                                        "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["data"][0]
    # pv-gp3 (payments' 100 GiB) is not costed; the other volumes are.
    assert data["payments"]["pvCost"] == 0
    assert data["search"]["pvCost"] == pytest.approx(STORAGE["search"], rel=REL)
    assert total(data) == pytest.approx(TOTAL - STORAGE["payments"], rel=REL)
    assert 'persistentvolume="pv-gp3"' in res.stderr and "kube_persistentvolume_capacity_bytes" in res.stderr


def test_one_nan_sample_costs_one_step_not_the_window(tmp_path: Path) -> None:
    """A real NaN sample in the TSDB: the integrals drop that step on the server, and a warning names it."""
    t0 = aligned_past()
    # n-od's CPU capacity sample at T0+31m is NaN (as from a broken exporter); every other sample is clean.
    history = io.StringIO()
    write_openmetrics(core_cluster(t0), t0 - 1800, t0 + WINDOW_SECONDS + 600, 60, history)
    series = 'kube_node_status_capacity{job="kube-state-metrics",instance="ksm:8080",node="n-od",'
    text, n = re.subn(rf'^({re.escape(series)}[^ ]*resource="cpu"[^ ]*) [^ ]+ {t0 + 1860}$', rf"\1 NaN {t0 + 1860}",
                      history.getvalue(), flags=re.M)
    assert n == 1
    om, data_dir = tmp_path / "nan.om", tmp_path / "data"
    om.write_text(text)
    subprocess.run([find_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(om), str(data_dir)],
                   check=True, capture_output=True)
    with PrometheusServer(data_dir) as prom:
        data, stderr = allocate(write_config(tmp_path, prom.url), window_arg(t0))
    # n-od's CPU is not covered for 1 of 60 steps: 4 cores x 0.04 x 59/60, all allocated to team-a (overflowed).
    assert data["team-a"]["cpuCost"] == pytest.approx(4 * 0.04 * 59 / 60, rel=REL)
    assert data["team-a"]["ramCost"] == pytest.approx(3 * 0.005, rel=REL)
    assert total(data) == pytest.approx(NODES_TOTAL - 4 * 0.04 / 60, rel=REL)
    assert ('kube_node_status_capacity{node="n-od", resource="cpu"} was NaN or Inf at 1 step(s)' in stderr), stderr


def serve_config(url: str, t0: int) -> Any:
    return parse_config(dict(CORE_CONFIG, prometheus={"url": url, "retries": 0}, allocation={"chunk": "10m"},
                             serve={"lag": "3m", "start": iso(t0), "exposeNewSeriesFor": "0s"}))


def accrue(exporter: Exporter, until: int) -> None:
    """One cycle up to `until`; ticks apply the batches (new series are exposed for 0 s here)."""
    exporter.until = until
    exporter.run_once()
    for _ in range(20):
        exporter.ledger.tick()
        if exporter.ledger.watermark == until:
            return


def namespaces(counters: dict[CounterKey, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, v in counters.items():
        if isinstance(key, NamespaceKey):
            out[key.namespace] = out.get(key.namespace, 0.0) + v
    return out


def test_serve_stays_finite_and_exact_once_data_is_clean(proxy: NanProxy, core_prom: PrometheusServer,
                                                         core_t0: int, tmp_path: Path) -> None:
    t0 = core_t0
    proxy.injects = [Inject("node_cpu_hourly_cost", {"node": "n-od", "price": "cpu"}, "NaN", t0, t0 + 600),
                     Inject("kube_node_status_capacity", {"node": "n-spot"}, "+Inf", t0 + 600, t0 + 1200)]
    exporter = Exporter(serve_config(proxy.url, t0))
    accrue(exporter, t0 + 1200)
    assert exporter.health.up and exporter.ledger.watermark == t0 + 1200
    assert all(math.isfinite(v) for v in exporter.ledger.counters.values())
    assert all(math.isfinite(v) for v in exporter.ledger.periods.values())
    first = namespaces(exporter.ledger.counters)
    # (T0, T0+10m]: n-od at the shipped price; (T0+10m, T0+20m]: n-spot not covered.
    assert sum(first.values()) == pytest.approx((NODES_TOTAL - N_OD + 0.192) / 6 + (NODES_TOTAL - N_SPOT) / 6,
                                                rel=REL)
    assert first["team-a"] == pytest.approx((4 * S_CPU + 3 * S_RAM) / 6 + (4 * 0.04 + 3 * 0.005) / 6, rel=REL)
    warned = exporter.registry.get_sample_value("chargeback_warnings_total", {"kind": "non_finite"})
    assert warned is not None and warned >= 2
    assert exporter.registry.get_sample_value("chargeback_up") == 1
    # Clean from here on: the counters grow exactly as allocate over the same interval.
    accrue(exporter, t0 + 3600)
    later = namespaces(exporter.ledger.counters)
    clean, _ = allocate(write_config(tmp_path, core_prom.url), f"{iso(t0 + 1200)},{iso(t0 + 3600)}")
    assert set(clean) <= set(later)
    for ns in later:
        assert later[ns] - first.get(ns, 0.0) == pytest.approx(cost(clean, ns), rel=REL, abs=1e-12), ns
    assert sum(later.values()) - sum(first.values()) == pytest.approx(NODES_TOTAL * 4 / 6, rel=REL)
    cluster = sum(v for k, v in exporter.ledger.counters.items() if isinstance(k, ClusterKey))
    assert cluster == pytest.approx(sum(later.values()), rel=REL)
    exporter.close()


def test_ledger_refuses_a_nan_and_serve_retries_the_interval(core_prom: PrometheusServer, core_t0: int) -> None:
    """A NaN from anywhere else (here a bill line's cost) is refused whole: up 0 with the reason, then a retry."""
    t0 = core_t0
    exporter = Exporter(serve_config(core_prom.url, t0))
    accrue(exporter, t0 + 600)
    before = dict(exporter.ledger.counters)
    exporter.pipeline.bill = BillPrices(extra_fixed={"bill-line": float("nan")})
    accrue(exporter, t0 + 1200)
    assert exporter.registry.get_sample_value("chargeback_up") == 0
    assert "refusing to accrue nan" in (exporter.health.last_error or "")
    assert exporter.ledger.counters == before and exporter.ledger.watermark == t0 + 600
    exporter.pipeline.bill = BillPrices()
    accrue(exporter, t0 + 3600)
    assert exporter.health.up and exporter.ledger.watermark == t0 + 3600
    got = namespaces(exporter.ledger.counters)
    for ns, exp in EXPECTED.items():
        assert got[ns] == pytest.approx(sum(exp.values()), rel=REL), ns
    assert sum(got.values()) == pytest.approx(NODES_TOTAL, rel=REL)
    exporter.close()


def test_a_non_finite_watermark_stops_accrual_instead_of_starting_over(proxy: NanProxy, core_t0: int) -> None:
    """Starting from serve.start again would count the past twice: up 0 with the reason, nothing accrued."""
    proxy.injects = [Inject("chargeback_accrued_until_timestamp_seconds", {})]
    exporter = Exporter(serve_config(proxy.url, core_t0))
    accrue(exporter, core_t0 + 600)
    assert exporter.registry.get_sample_value("chargeback_up") == 0
    assert "watermark read back from Prometheus is not a finite number" in (exporter.health.last_error or "")
    assert exporter.ledger.watermark is None and exporter.ledger.counters == {}
    proxy.injects = []
    accrue(exporter, core_t0 + 600)
    assert exporter.health.up and exporter.ledger.watermark == core_t0 + 600
    exporter.close()
