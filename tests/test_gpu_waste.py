"""GPU waste from dcgm-exporter against a real Prometheus (scenarios.gpu_waste_cluster); amounts by hand.

One hour (T0, T0+1h], price book gpu 3.0/GPU-h on g-a100 (A100, DCP profiling), 0.5 on g-t4 (T4, GPU_UTIL
only), 1.0 on g-v100 (no dcgm-exporter); cpu 0.05/core-h and ram 0.005/GiB-h everywhere.

  pod               GPUs  utilisation  GPU cost       waste = GPU cost x (1 - utilisation)
  ml/train-7f9c-x2  2     0.80 (DCP)   2 x 3.0 = 6.00  6.00 x 0.20 = 1.20     (GPU_UTIL says 100 %: ignored)
  ml/notebook-0     1     0.03 (DCP)   3.00            3.00 x 0.97 = 2.91     (the 3 % pod; team=interns)
  vision/infer-5d-q 1     0.50 (UTIL)  0.50            0.50 x 0.50 = 0.25
  vision/batch-1    1     not seen     1.00            0 (no dcgm-exporter: no data is not idleness)
  idle              1 A100 + 1 T4      3.00 + 0.50     not waste (idle cost; its bare DCGM series are ignored)

  ml:     GPU cost 9.00, waste 1.20 + 2.91 = 4.11, busy 1.6 + 0.03 = 1.63 of 3 observed GPU-h: 0.54333...
  vision: GPU cost 1.50, waste 0.25, busy 0.5 of 1 observed GPU-h (the V100 hour unobserved): 0.5
  teams:  research (ml, namespace label) 6.00 / 1.20 / 0.8; interns (pod label) 3.00 / 2.91 / 0.03; vision.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from demo.localprom import PrometheusServer, backfill, free_port
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.core.allocation import Line
from exporter.core.gpuwaste import row_waste, table_groups
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.outputs.report import make_report
from exporter.outputs.reportformat import render
from exporter.serve.accrual import Ledger, batch_from
from exporter.serve.collector import ChargebackCollector, Health
from exporter.serve.httpapi import make_app
from exporter.serve.httpserver import AsyncHTTPServer
from exporter.serve.server import Exporter
from exporter.sources.prometheus import PrometheusClient

from .conftest import aligned_past, scenario_prom
from .scenarios import GPU_WASTE_CONFIG, WINDOW_SECONDS, gpu_waste_cluster
from .test_allocate_core import REL, window_arg
from .test_dashboards import DASHBOARDS, _last_scrape, evaluate
from .test_mcp import session_calls
from .test_serve import wait_for, wait_scraping

CENT = 0.005
NS_WASTE = {"ml": 1.20 + 2.91, "vision": 0.25}
NS_GPU_COST = {"ml": 9.00, "vision": 1.50}
NS_EFF = {"ml": (1.6 + 0.03) / 3, "vision": 0.5}
TEAM_WASTE = {"research": 1.20, "interns": 2.91, "vision": 0.25}
TEAM_EFF = {"research": 0.8, "interns": 0.03, "vision": 0.5}


@pytest.fixture(scope="module")
def gpu_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "gpu_waste", gpu_waste_cluster(t0), t0):
        yield prom, t0


def config(prom: PrometheusServer) -> dict[str, Any]:
    return {**GPU_WASTE_CONFIG, "prometheus": {"url": prom.url}}


def test_waste_per_namespace_and_team_by_hand(gpu_prom: tuple[PrometheusServer, int]) -> None:
    prom, t0 = gpu_prom
    cfg = parse_config(config(prom))
    result = Pipeline(cfg, PrometheusClient(cfg.prometheus)).compute(Window(t0, t0 + 3600, 60))
    # Conservation is untouched: waste is a view, not a cost.
    assert sum(result.costs.values()) == pytest.approx(result.total_cost, rel=REL)
    by_ns = {g.name: g for g in table_groups(result, None)}
    assert set(by_ns) == {"ml", "vision"}  # the GPU namespaces; the idle A100 and T4 are not waste
    for ns, waste in NS_WASTE.items():
        assert by_ns[ns].waste_cost == pytest.approx(waste, rel=REL), ns
        assert by_ns[ns].gpu_cost == pytest.approx(NS_GPU_COST[ns], rel=REL), ns
        assert by_ns[ns].efficiency == pytest.approx(NS_EFF[ns], rel=REL), ns
    assert by_ns["vision"].gpu_hours == pytest.approx(2.0, rel=REL)  # held: the unobserved V100 too
    assert by_ns["vision"].observed_gpu_hours == pytest.approx(1.0, rel=REL)
    by_team = {g.name: g for g in table_groups(result, 0)}
    for team, waste in TEAM_WASTE.items():
        assert by_team[team].waste_cost == pytest.approx(waste, rel=REL), team
        assert by_team[team].efficiency == pytest.approx(TEAM_EFF[team], rel=REL), team
    # The 3 % pod, to the cent: 1 A100 for 1 h at 3.00, 97 % of it idle.
    assert abs(by_team["interns"].waste_cost - 2.91) < CENT
    # ml's framebuffer: train 2 x 40960 MiB + notebook 2048 MiB of 3 x 81920 MiB.
    ml = [line for (ns, _n, _a), line in result.table.items() if ns == "ml"]
    used = sum(line.gpu_memory_used_byte_seconds for line in ml)
    total = sum(line.gpu_memory_byte_seconds for line in ml)
    assert used / total == pytest.approx((2 * 40960 + 2048) / (3 * 81920), rel=REL)
    assert total == pytest.approx(3 * 81920 * 2**20 * 3600, rel=REL)


def test_allocation_output_fields(gpu_prom: tuple[PrometheusServer, int], tmp_path: Path) -> None:
    prom, t0 = gpu_prom
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(prom)))
    for aggregate, expected in (("namespace", NS_EFF), ("team", TEAM_EFF)):
        res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0),
                                        "--format", "json", "--aggregate", aggregate])
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout)["data"][0]
        for name, eff in expected.items():
            assert data[name]["gpuEfficiency"] == pytest.approx(eff, rel=REL), name
        waste = NS_WASTE if aggregate == "namespace" else TEAM_WASTE
        for name, w in waste.items():
            assert data[name]["gpuWasteCost"] == pytest.approx(w, rel=REL), name
    # by namespace: ml averages 1.63 busy GPUs over the hour; vision 0.5; web-ui-only groups none.
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0), "--format", "json"])
    data = json.loads(res.stdout)["data"][0]
    assert data["ml"]["gpuUsageAverage"] == pytest.approx(1.63, rel=REL)
    assert data["vision"]["gpuUsageAverage"] == pytest.approx(0.5, rel=REL)
    assert data["__idle__"]["gpuEfficiency"] == 0.0 and data["__idle__"]["gpuWasteCost"] == 0.0


def test_metrics(gpu_prom: tuple[PrometheusServer, int]) -> None:
    prom, t0 = gpu_prom
    cfg = parse_config(config(prom))
    pipeline = Pipeline(cfg, PrometheusClient(cfg.prometheus))
    ledger = Ledger()
    assert ledger.begin(t0, 0)
    for start in (t0, t0 + 1800):  # two accrual batches: the counter accrues, the gauge is the last one
        ledger.offer(batch_from(pipeline.compute_chunk(Window(start, start + 1800, 60)), len(cfg.attribution.labels)))
    ledger.tick()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChargebackCollector(ledger, Health(), pipeline.client.stats, pipeline))
    text = generate_latest(registry).decode()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    waste = {(s.labels["namespace"], s.labels["team"]): s.value for s in samples
             if s.name == "chargeback_namespace_gpu_waste_cost_total"}
    assert waste[("ml", "research")] == pytest.approx(1.20, rel=REL)
    assert waste[("ml", "interns")] == pytest.approx(2.91, rel=REL)
    assert waste[("vision", "vision")] == pytest.approx(0.25, rel=REL)
    assert sum(waste.values()) == pytest.approx(4.36, rel=REL)  # nothing for web-ui, batch-1 or idle
    eff = {s.labels["namespace"]: s.value for s in samples if s.name == "chargeback_namespace_gpu_efficiency_ratio"}
    assert eff == pytest.approx(NS_EFF, rel=REL)
    assert not [s for s in samples if s.name == "chargeback_namespace_efficiency_ratio"
                and s.labels["resource"] == "gpu"]  # GPU efficiency has its own metric


def test_report_gpu_waste_section(gpu_prom: tuple[PrometheusServer, int]) -> None:
    prom, t0 = gpu_prom
    cfg = parse_config(config(prom))
    report = make_report(cfg, Window(t0, t0 + 3600, 60), "team", t0 + 7200, source="computed")
    assert report.adds_up
    groups = {g.name: g for g in report.groups}
    for team, waste in TEAM_WASTE.items():
        gpu = groups[team].gpu
        assert gpu is not None and gpu.waste_cost == pytest.approx(waste, rel=REL), team
    # Top workloads by GPU waste: the notebook StatefulSet, the train Deployment, the infer Deployment.
    assert groups["interns"].top_gpu_workloads() == [("ml/statefulset:notebook", pytest.approx(2.91, rel=REL))]
    assert groups["research"].top_gpu_workloads() == [("ml/deployment:train", pytest.approx(1.20, rel=REL))]
    assert groups["vision"].top_gpu_workloads() == [("vision/deployment:infer", pytest.approx(0.25, rel=REL))]
    md = render(report, "markdown")
    assert "## GPU waste" in md
    assert "| interns | 3.00 | 3% | 2.91 | ml/statefulset:notebook 2.91 |" in md
    assert "| research | 6.00 | 80% | 1.20 | ml/deployment:train 1.20 |" in md
    rows = {r["team"]: r for r in json.loads(render(report, "json"))["groups"]}
    assert rows["interns"]["gpu_waste"] == pytest.approx(2.91, rel=REL)
    assert "GPU waste" in render(report, "html")


def test_row_waste_only_counts_observed_time_within_what_is_held() -> None:
    # Held 2 GPU-h at 6.00; seen for 1 GPU-h at 25 %: 6.00 x (1 - 0.25) / 2 = 2.25 (the unseen hour: nothing).
    assert row_waste(Line(gpu_seconds=7200, gpu_cost=6.0, gpu_observed_seconds=3600, gpu_usage_seconds=900)) == \
        pytest.approx(2.25, rel=REL)
    # Seen more than held (a time-sliced replica reporting its whole device): capped at what is held.
    assert row_waste(Line(gpu_seconds=3600, gpu_cost=1.0, gpu_observed_seconds=4 * 3600, gpu_usage_seconds=0)) == 1.0
    # A MIG 1g slice (1/7 of a GPU-hour held, 0.50) whose instance dcgm-exporter saw 50 % busy all hour:
    # observed 3600 and busy 1800 instance-seconds scale to the 3600/7 held, so the waste is 0.50 x 0.5 = 0.25
    # (capping observed at what is held, and busy at observed, made it 0).
    assert row_waste(Line(gpu_seconds=3600 / 7, gpu_cost=0.5, gpu_observed_seconds=3600,
                          gpu_usage_seconds=1800)) == pytest.approx(0.25, rel=REL)
    # A time-sliced replica (1/4 held, 0.25) on a device seen 90 % busy: 0.25 x 0.1 = 0.025.
    assert row_waste(Line(gpu_seconds=900, gpu_cost=0.25, gpu_observed_seconds=3600,
                          gpu_usage_seconds=3240)) == pytest.approx(0.025, rel=REL)
    # Usage with nothing held (a GPU outside nvidia.com/gpu): no cost, so no waste.
    assert row_waste(Line(gpu_observed_seconds=3600, gpu_usage_seconds=10)) == 0.0


def test_dashboard_panels_on_a_served_gpu_cluster(tmp_path: Path) -> None:
    """The idle dashboard's GPU panels against a real exporter's series for the scenario's hour, scraped."""
    t0 = aligned_past()
    port = free_port()
    backfill(gpu_waste_cluster(t0), tmp_path / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
    with PrometheusServer(tmp_path / "data", {"chargeback": f"127.0.0.1:{port}"}, "1s") as prom:
        cfg = tmp_path / "serve.yaml"
        cfg.write_text(yaml.safe_dump({**config(prom), "allocation": {"chunk": "30m"},
                                       "serve": {"interval": "1s", "listen": f"127.0.0.1:{port}",
                                                 "exposeNewSeriesFor": "10s"}}))
        start, until = window_arg(t0).split(",")
        wait_scraping(prom.url)
        serve = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(cfg), "--start", start,
                                  "--until", until], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            done = f"chargeback_accrued_until_timestamp_seconds == {t0 + 3600}"
            wait_for(lambda: evaluate(prom.url, time.time(), done), what="accrual")
            time.sleep(3)
        finally:
            serve.kill()
            serve.wait()
        at = _last_scrape(prom.url)
        panels = {p["title"]: p for p in DASHBOARDS["chargeback-idle.json"]["panels"] if "GPU" in p["title"]}
        assert len(panels) == 4

        def values(title: str, label: str = "") -> dict[str, float]:
            expr = panels[title]["targets"][0]["expr"].replace("$namespace", ".*")  # every namespace
            rows = evaluate(prom.url, at, expr)
            return {r["metric"].get(label, ""): float(r["value"][1]) for r in rows}

        assert values("GPU waste over the period")[""] == pytest.approx(4.36, rel=REL)
        # 4.36 of the 10.50 allocated GPU cost (ml 9.00, vision 1.50)
        assert values("Share of GPU cost wasted")[""] == pytest.approx(4.36 / 10.5, rel=REL)
        assert values("GPU waste by namespace", "namespace") == pytest.approx(NS_WASTE, rel=REL)
        assert values("GPU efficiency by namespace", "namespace") == pytest.approx(NS_EFF, rel=REL)


def test_mcp_efficiency_tool_has_gpu_fields(gpu_prom: tuple[PrometheusServer, int]) -> None:
    prom, t0 = gpu_prom
    ex = Exporter(parse_config({**config(prom)}))
    httpd = AsyncHTTPServer(("127.0.0.1", 0), make_app(ex, None))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
        _names, (by_ns, by_team) = asyncio.run(session_calls(url, [
            ("efficiency", {"window": window_arg(t0)}), ("efficiency", {"window": window_arg(t0), "by": "team"})]))
    finally:
        httpd.shutdown()
        ex.close()
    groups = {g["group"]: g for g in by_ns.structured_content["groups"]}
    assert groups["ml"]["gpu_waste_cost"] == pytest.approx(4.11, rel=REL)
    assert groups["ml"]["gpu_cost"] == pytest.approx(9.0, rel=REL)
    assert groups["ml"]["gpu_efficiency"] == pytest.approx(NS_EFF["ml"], rel=REL)
    teams = {g["group"]: g for g in by_team.structured_content["groups"]}
    assert teams["interns"]["gpu_waste_cost"] == pytest.approx(2.91, rel=REL)


def test_report_workloads_add_up_to_the_groups_gpu(gpu_prom: tuple[PrometheusServer, int]) -> None:
    """The workloads' GPU cost and waste (the engine's pod rows) add up to each group's (the cost table's)."""
    prom, t0 = gpu_prom
    cfg = parse_config(config(prom))
    report = make_report(cfg, Window(t0, t0 + 3600, 60), "team", t0 + 7200, source="computed")
    for g in report.groups:
        if g.gpu is None:
            assert not any(w.gpu.gpu_cost for w in g.workloads.values()), g.name
            continue
        cost = sum(w.gpu.gpu_cost for w in g.workloads.values())
        waste = sum(w.gpu.waste_cost for w in g.workloads.values())
        assert (cost, waste) == pytest.approx((g.gpu.gpu_cost, g.gpu.waste_cost), rel=REL), g.name
