"""The monitoring mixin: formatting, drift, promtool checks and unit tests, bad budgets, and an
end-to-end run through a real Prometheus and a real Alertmanager with the shipped routing."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill, free_port
from exporter.cli import main
from exporter.mixin.budgets import load_budgets, render

from .scenarios import WINDOW_SECONDS, share_cluster
from .test_allocate_core import window_arg
from .test_serve import wait_for, wait_scraping

ROOT = Path(__file__).resolve().parent.parent
JSONNET = sorted(glob.glob(str(ROOT / "rules/**/*.*sonnet"), recursive=True))


def test_jsonnet_is_formatted() -> None:
    assert JSONNET
    proc = subprocess.run(["jsonnetfmt", "--test", *JSONNET], capture_output=True, text=True)
    assert proc.returncode == 0, f"run `make rules` to format: {proc.stdout}{proc.stderr}"


@pytest.mark.parametrize(("budgets", "folder"), [(None, "rules/generated"),
                                                ("examples/budgets.yaml", "rules/tests/generated")])
def test_generated_rules_have_not_drifted(tmp_path: Path, budgets: str | None, folder: str) -> None:
    args = ["rules", "--out", str(tmp_path)] + (["--budgets", str(ROOT / budgets)] if budgets else [])
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    for name in ("chargeback.rules.yaml", "prometheusrule.yaml"):
        assert (tmp_path / name).read_text() == (ROOT / folder / name).read_text(), f"run `make rules`: {folder}"
    check = subprocess.run(["promtool", "check", "rules", str(ROOT / folder / "chargeback.rules.yaml")],
                           capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr


def test_prometheusrule_is_a_valid_crd_object() -> None:
    doc = yaml.safe_load((ROOT / "deploy/manifests/chargeback-prometheusrule.yaml").read_text())
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    rules = [r for g in doc["spec"]["groups"] for r in g["rules"]]
    for r in rules:
        if "record" in r:
            assert len(r["record"].split(":")) == 3, r["record"]  # level:metric:operations
        else:
            assert r["alert"][0].isupper() and "_" not in r["alert"]  # CamelCase
            assert r["labels"]["severity"] in ("info", "warning", "critical")
            assert {"summary", "description", "runbook_url"} <= set(r["annotations"])


def test_promtool_unit_tests() -> None:
    tests = sorted(str(p.name) for p in (ROOT / "rules/tests").glob("*_test.yaml"))
    assert tests == ["alerts_test.yaml", "allocation_test.yaml", "budgets_test.yaml", "carbon_test.yaml",
                     "gpu_test.yaml", "spike_test.yaml"]
    proc = subprocess.run(["promtool", "test", "rules", *tests], cwd=ROOT / "rules/tests", capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(tests)


def test_alertmanager_config_is_valid() -> None:
    proc = subprocess.run(["amtool", "check-config", str(ROOT / "deploy/alertmanager.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("budget", "message"), [
    ({"name": "x", "scope": {"squad": "a"}, "amount": 10}, "budgets.0.scope: Value error, unknown scope 'squad'"),
    ({"name": "x", "scope": {"team": "a"}, "amount": -5}, "budgets.0.amount: Input should be greater than 0"),
    ({"name": "x", "scope": {"team": "a"}, "amount": 5, "thresholds": [0.5, 80]},
     "budgets.0.thresholds: Value error, threshold 80 is out of range"),
    ({"name": "x", "scope": {"team": "a"}, "amount": 5, "period": "yearly"}, "budgets.0.period: Input should be"),
    ({"name": "x", "scope": {"team": "a", "namespace": "b"}, "amount": 5}, "give exactly one scope"),
    ({"carbon": [{"name": "c", "scope": {"team": "a"}, "kgPerDay": 0}]}, "carbon.0.kgPerDay: Input should be greater"),
    ({"carbon": [{"name": "c", "scope": {"squad": "a"}, "kgPerDay": 5}]}, "carbon.0.scope: Value error, unknown scope"),
    ({"carbon": [{"name": "x", "scope": {"team": "a"}, "kgPerDay": 5}]}, "budget names must be unique: x"),
])
def test_bad_budgets_file_is_rejected(tmp_path: Path, budget: dict[str, Any], message: str) -> None:
    path = tmp_path / "budgets.yaml"
    # A carbon-budget case carries its own `carbon` list; the third also keeps a money budget named x.
    doc = {"budgets": [{"name": "x", "scope": {"team": "a"}, "amount": 5}], **budget} if "carbon" in budget \
        else {"budgets": [budget]}
    path.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(main, ["rules", "--budgets", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert res.stderr.startswith(f"chargeback: error: budgets {path}: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# ---- end to end -------------------------------------------------------------------------------

class Webhooks(BaseHTTPRequestHandler):
    received: dict[str, list[dict[str, Any]]]

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.setdefault(self.path.strip("/"), []).extend(body["alerts"])
        self.send_response(200)
        self.end_headers()


@pytest.fixture()
def webhooks() -> Iterator[tuple[str, dict[str, list[dict[str, Any]]]]]:
    received: dict[str, list[dict[str, Any]]] = {}
    handler = type("H", (Webhooks,), {"received": received})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", received
    srv.shutdown()


def alertmanager_config(webhook: str) -> dict[str, Any]:
    """The shipped routing, with every receiver pointed at a local webhook and the timings scaled down."""
    cfg = yaml.safe_load((ROOT / "deploy/alertmanager.yaml").read_text())
    cfg["global"] = {"resolve_timeout": "5m"}
    cfg["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    cfg["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": f"{webhook}/{r['name']}"}]}
                        for r in cfg["receivers"]]
    return dict(cfg)


def test_budget_alert_reaches_only_the_owner_and_finance(tmp_path: Path, webhooks: Any) -> None:
    webhook, received = webhooks
    t0 = int(time.time()) // 3600 * 3600 - 3 * 3600
    # payments spends 0.24 in the hour against a daily budget of 0.20 (120%, critical);
    # search spends 0.12 against 1.00 (12%, nothing).
    budgets_file = tmp_path / "budgets.yaml"
    budgets_file.write_text(yaml.safe_dump({"budgets": [
        {"name": "payments-daily", "scope": {"team": "payments"}, "period": "daily", "amount": 0.2},
        {"name": "search-daily", "scope": {"team": "search"}, "period": "daily", "amount": 1.0},
    ]}))
    groups, _ = render(load_budgets(budgets_file), config={"ruleInterval": "1s"})
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(groups))

    am_port = free_port()
    am_cfg = tmp_path / "alertmanager.yaml"
    am_cfg.write_text(yaml.safe_dump(alertmanager_config(webhook)))
    am = subprocess.Popen(["/usr/bin/prometheus-alertmanager", f"--config.file={am_cfg}",
                           f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                           "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    exporter_port = free_port()
    backfill(share_cluster(t0), tmp_path / "data", t0 - 1800, t0 + WINDOW_SECONDS + 600, 60)
    prom = PrometheusServer(tmp_path / "data", {"chargeback": f"127.0.0.1:{exporter_port}"}, "1s",
                            rule_files=[rules], alertmanagers=[f"127.0.0.1:{am_port}"])
    serve_cfg = tmp_path / "serve.yaml"
    serve_cfg.write_text(yaml.safe_dump({
        "prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
        "allocation": {"chunk": "30m"}, "serve": {"interval": "1s", "listen": f"127.0.0.1:{exporter_port}",
                                                 "exposeNewSeriesFor": "10s"}}))
    serve = None
    try:
        wait_for(lambda: _ready(f"http://127.0.0.1:{am_port}"), what="alertmanager")
        prom.start()
        wait_scraping(prom.url)
        serve = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(serve_cfg),
                                  "--start", window_arg(t0).split(",")[0], "--until", window_arg(t0).split(",")[1]],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def delivered() -> bool:
            return all(any(a["labels"].get("budget") == "payments-daily" for a in received.get(r, []))
                       for r in ("team-payments", "finance"))

        wait_for(delivered, timeout=90, what="the payments budget alert at both receivers")
        time.sleep(3)  # anything misrouted would arrive by now
    finally:
        if serve:
            serve.kill()
        prom.stop()
        am.terminate()
        am.wait(10)
    for receiver, alerts in received.items():
        budgets = {a["labels"].get("budget") for a in alerts} - {None}
        assert "search-daily" not in budgets, f"search is at 12% and must not alert ({receiver})"
        if receiver not in ("team-payments", "finance"):
            assert "payments-daily" not in budgets, f"payments alert misrouted to {receiver}"
    [alert] = {a["fingerprint"]: a for a in received["team-payments"] if a["labels"].get("budget")}.values()
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["threshold"] == "100%"
    assert alert["labels"]["team"] == "payments" and alert["status"] == "firing"
    assert alert["annotations"]["description"] == (
        "team payments has spent 0.24 USD of its daily budget of 0.20 USD (120%, threshold 100%).")
    assert alert["annotations"]["runbook_url"].endswith("#chargebackbudgetthresholdreached")


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False
