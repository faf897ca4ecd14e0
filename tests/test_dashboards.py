"""Dashboards: structure, drift, and every panel query evaluated against a real Prometheus holding the
exporter's output with the recording rules loaded."""

from __future__ import annotations

import glob
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill, free_port
from exporter.cli import main
from exporter.mixin.budgets import Budget
from exporter.mixin.budgets import render as render_rules
from exporter.mixin.dashboards import render

from .scenarios import WINDOW_SECONDS, share_cluster
from .test_allocate_core import REL, window_arg
from .test_serve import wait_for, wait_scraping
from .test_sharing import BASE_SHARING, NODES, SHARED, TENANTS

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = render()


def targets(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dash["panels"]:
        for target in panel["targets"]:
            yield panel, target


def test_jsonnet_is_formatted() -> None:
    files = sorted(glob.glob(str(ROOT / "dashboards/**/*.*sonnet"), recursive=True))
    proc = subprocess.run(["jsonnetfmt", "--test", *files], capture_output=True, text=True)
    assert proc.returncode == 0, f"run `make dashboards` to format: {proc.stdout}{proc.stderr}"


def test_generated_files_have_not_drifted(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["dashboards", "--out", str(tmp_path / "json")])
    assert res.exit_code == 0, res.output
    for new in sorted((tmp_path / "json").iterdir()):
        assert new.read_text() == (ROOT / "dashboards/generated" / new.name).read_text(), "run `make dashboards`"
    for cm in (ROOT / "deploy/manifests").glob("grafana-dashboard-*.yaml"):
        doc = yaml.safe_load(cm.read_text())
        assert doc["kind"] == "ConfigMap" and doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(name, body)] = doc["data"].items()
        assert json.loads(body)["uid"] == DASHBOARDS[name]["uid"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_structure(name: str) -> None:
    dash = DASHBOARDS[name]
    assert dash["uid"].startswith("chargeback-") and dash["schemaVersion"] >= 36 and dash["title"]
    assert dash["time"]["from"] == "now-30d" and dash["links"][0]["tags"] == ["chargeback"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    rects = [p["gridPos"] for p in dash["panels"]]
    for i, a in enumerate(rects):
        assert a["x"] >= 0 and a["x"] + a["w"] <= 24
        for b in rects[i + 1:]:
            overlap = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] \
                and b["y"] < a["y"] + a["h"]
            assert not overlap, (a, b)
    variables = [v["name"] for v in dash["templating"]["list"]]
    assert variables[0] == "datasource"
    text = json.dumps(dash["panels"])
    for v in variables[1:]:
        assert f"${v}" in text, f"variable {v} is never used in {name}"
    for panel, target in targets(dash):
        assert panel["datasource"]["uid"] == "${datasource}" and target["datasource"]["uid"] == "${datasource}"
        assert panel["description"]
    units = {p["fieldConfig"]["defaults"]["unit"] for p in dash["panels"]}
    assert "currencyUSD" in units or name == "chargeback-budgets.json"


# ---- every query against real data --------------------------------------------------------------

@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, float]]:
    """The sharing scenario's hour accrued by a real exporter, scraped, with the rules and a firing budget."""
    tmp = tmp_path_factory.mktemp("dash")
    t0 = int(time.time()) // 3600 * 3600 - 3 * 3600
    groups, _ = render_rules([Budget(name="payments-daily", scope={"team": "payments"}, period="daily", amount=0.2)],
                             config={"ruleInterval": "1s"})
    rules = tmp / "rules.yaml"
    rules.write_text(yaml.safe_dump(groups))
    port = free_port()
    backfill(share_cluster(t0), tmp / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
    prom = PrometheusServer(tmp / "data", {"chargeback": f"127.0.0.1:{port}"}, "1s", rule_files=[rules]).start()
    cfg = tmp / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
                                   "sharing": BASE_SHARING, "allocation": {"chunk": "30m"},
                                   "serve": {"interval": "1s", "listen": f"127.0.0.1:{port}",
                                             "exposeNewSeriesFor": "10s"}}))
    start, until = window_arg(t0).split(",")
    wait_scraping(prom.url)
    serve = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(cfg), "--start", start,
                              "--until", until], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def q(expr: str) -> list[Any]:
        body = requests.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        return list(body["data"]["result"])

    try:
        wait_for(lambda: q(f'chargeback_accrued_until_timestamp_seconds == {t0 + 3600}'), what="accrual")
        wait_for(lambda: q('ALERTS{alertname="ChargebackBudgetThresholdReached", alertstate="firing"}'),
                 what="the budget alert")
        time.sleep(3)
    finally:
        serve.kill()
        serve.wait()
    time.sleep(2)
    # Evaluate at the exporter's last scrape: the range then ends on a sample and increase() is exact.
    yield prom, _last_scrape(prom.url)
    prom.stop()


def _last_scrape(url: str) -> float:
    rows = requests.get(f"{url}/api/v1/query", params={"query": 'chargeback_up{job="chargeback"}[2m]'},
                        timeout=10).json()["data"]["result"]
    return max(float(t) for r in rows for t, _ in r["values"])


def unknown_metrics(expr: str, known: set[str]) -> list[str]:
    """Metric and recording-rule names in a query that Prometheus has never seen (label values ignored)."""
    unquoted = re.sub(r'"[^"]*"', '""', expr)
    tokens = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", unquoted)
    names = [t for t in tokens if "chargeback" in t or t == "ALERTS"]
    return [n for n in names if n not in known]


def test_a_query_naming_an_unproduced_metric_is_caught() -> None:
    known = {"chargeback_namespace_cost_total", "team:chargeback_cost_per_hour:sum_rate"}
    assert unknown_metrics('sum(rate(chargeback_namespace_cost_total{job="chargeback"}[5m]))', known) == []
    assert unknown_metrics("team:chargeback_cost_per_hour:sum_rate", known) == []
    assert unknown_metrics("sum(chargeback_namespace_costs_total)", known) == ["chargeback_namespace_costs_total"]
    assert unknown_metrics("team:chargeback_cost_per_week:sum", known) == ["team:chargeback_cost_per_week:sum"]


SUBSTITUTIONS = {"$__range": "2h", "$__rate_interval": "1m", "$cluster": ".*", "$team": "payments",
                 "$namespace": "payments"}


def evaluate(url: str, at: float, expr: str) -> list[dict[str, Any]]:
    for k, v in SUBSTITUTIONS.items():
        expr = expr.replace(k, v)
    body = requests.get(f"{url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=30).json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return list(body["data"]["result"])


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_returns_data(populated: tuple[PrometheusServer, float], name: str) -> None:
    prom, at = populated
    known = set(requests.get(f"{prom.url}/api/v1/label/__name__/values", timeout=10).json()["data"])
    empty_panels = []
    for panel in DASHBOARDS[name]["panels"]:
        if "GPU" in panel["title"]:
            continue  # this scenario has no GPU: tests/test_gpu_waste.py evaluates those against its own
        results = [evaluate(prom.url, at, t["expr"]) for t in panel["targets"]]
        if not any(results):
            empty_panels.append(panel["title"])
        for t in panel["targets"]:
            missing = unknown_metrics(t["expr"], known)
            assert not missing, f"{name} / {panel['title']}: nothing produces {missing}"
    assert not empty_panels, f"{name}: panels with no data: {empty_panels}"


def test_key_panels_show_the_expected_amounts(populated: tuple[PrometheusServer, float]) -> None:
    prom, at = populated
    panels = {p["title"]: p for d in DASHBOARDS.values() for p in d["panels"]}

    def value(title: str, i: int = 0) -> float:
        [row] = evaluate(prom.url, at, panels[title]["targets"][i]["expr"])
        return float(row["value"][1])

    # Overview total = the cluster total: two nodes of 8 cores/32 GiB at 0.10 and 0.01 for the hour.
    assert value("Cluster total") == pytest.approx(NODES, rel=REL)
    by_team = evaluate(prom.url, at, panels["Cost by team"]["targets"][0]["expr"])
    assert sum(float(r["value"][1]) for r in by_team) == pytest.approx(NODES, rel=REL)
    assert value("Idle share of the bill") == pytest.approx(1.12 / NODES, rel=REL)
    # Team payments (namespace payments): 0.24 allocated plus a third of the 0.40 shared.
    assert value("Cost over the period") == pytest.approx(TENANTS["payments"] * (1 + SHARED / 0.72), rel=REL)
    assert value("Shared cost received") == pytest.approx(SHARED / 3, rel=REL)
    assert value("Idle cost over the period") == pytest.approx(1.12, rel=REL)
