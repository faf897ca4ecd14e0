"""Attribution labels from the Kubernetes API (list + watch) against a fake API server, and the fallback."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes.client import ApiClient

from demo.localprom import free_port
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.serve.server import Exporter
from exporter.sources.kube import KubeMetadata, connect

from .fake_kube import FakeKube
from .test_allocate_core import REL, window_arg
from .test_sharing import BASE_SHARING, IDLE, SHARED, TEAMS, assert_costs, totals


@pytest.fixture()
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    fake = FakeKube().start()
    # What the API says differs from kube-state-metrics on purpose: tools belongs to team "tooling" here.
    for ns, labels in {"payments": {"team": "payments"}, "search": {"team": "search"}, "web": {"team": "web"},
                       "monitoring": {"platform": "true"}, "kube-system": {}, "tools": {"team": "tooling"}}.items():
        fake.put("namespaces", "", ns, labels)
    for ns, pod, labels in (("payments", "api", {}), ("search", "query", {}), ("kube-system", "coredns", {}),
                            ("web", "frontend", {"team": "web-a"}), ("web", "admin", {"team": "web-b"}),
                            ("web", "legacy", {}), ("monitoring", "prometheus", {}), ("tools", "runner", {})):
        fake.put("pods", ns, pod, labels)
    yield fake
    fake.stop()
    assert not fake.unexpected, f"unexpected API requests: {fake.unexpected}"


def test_allocate_reads_labels_from_the_api(kube: FakeKube, share_prom: Any, tmp_path: Path) -> None:
    prom, t0 = share_prom
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "prometheus": {"url": prom.url}, "sharing": BASE_SHARING,
        "attribution": {"source": "kubernetes", "kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig"))}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", window_arg(t0), "--format", "json",
                                    "--aggregate", "team"])
    assert res.exit_code == 0, res.output
    got = totals(json.loads(res.stdout)["data"][0])
    expected = {("tooling" if t == "__unattributed__" else t): c + SHARED * c / 0.72 for t, c in TEAMS.items()}
    assert_costs(got, {**expected, "__idle__": IDLE})
    assert any(r.startswith("/api/v1/pods?") for r in kube.requests)


def test_report_reads_labels_from_the_api_as_allocate_does(kube: FakeKube, share_prom: Any, tmp_path: Path) -> None:
    """`report` (and reconcile, focus) attribute by the API's labels too: tools is team "tooling" there."""
    prom, t0 = share_prom
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "prometheus": {"url": prom.url}, "sharing": BASE_SHARING,
        "attribution": {"source": "kubernetes", "kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig"))}}))
    res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--window", window_arg(t0), "--by", "team",
                                    "--format", "json", "--source", "computed"])
    assert res.exit_code == 0, res.output
    groups = {g["team"]: g["total"] for g in json.loads(res.stdout)["groups"]}
    # tools' 0.12 (TEAMS' __unattributed__ row under KSM labels) plus its weighted share 0.40 * 0.12 / 0.72
    assert groups["tooling"] == pytest.approx(TEAMS["__unattributed__"] * (1 + SHARED / 0.72), rel=1e-6)
    assert "__unattributed__" not in groups


def test_watch_keeps_the_cache_current(kube: FakeKube, tmp_path: Path) -> None:
    meta = connect(str(kube.kubeconfig(tmp_path / "kubeconfig")), watch=True)
    try:
        snap = meta.snapshot()
        assert snap.source == "kubernetes" and snap.pods[("web", "frontend")] == {"team": "web-a"}
        assert snap.pod_counts["web"] == 3
        kube.put("pods", "tools", "runner", {"team": "ops"}, "MODIFIED")
        kube.put("pods", "web", "legacy", {}, "DELETED")
        kube.put("namespaces", "", "batch", {"team": "data"})

        def settled() -> bool:
            s = meta.snapshot()
            return (s.pods.get(("tools", "runner")) == {"team": "ops"} and ("web", "legacy") not in s.pods
                    and s.namespaces.get("batch") == {"team": "data"})

        deadline = time.monotonic() + 10
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert settled()
        assert any("watch=true" in r for r in kube.requests)
    finally:
        meta.close()


def test_closed_watch_exits_quietly_when_the_api_goes_away(caplog: pytest.LogCaptureFixture) -> None:
    # CI caught a closed watcher reconnecting to an API that had just gone away: its "watch on pods
    # failed" warning leaked into the next command's one-line error. Once closed, a failure is expected.
    meta = KubeMetadata(ApiClient())

    def refused(kind: str) -> Iterator[dict[str, Any]]:
        meta.close()  # closed while the reconnect is in flight
        raise ConnectionError("Connection refused")

    meta.events = refused  # type: ignore[method-assign]
    meta.watch_forever("pods")  # returns at once instead of backing off and relisting
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_api_required_but_unreachable_is_one_line(tmp_path: Path) -> None:
    cfgfile = tmp_path / "kubeconfig"
    fake = FakeKube()
    fake.url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    fake.kubeconfig(cfgfile)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"attribution": {"source": "kubernetes", "kubeconfig": str(cfgfile)}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(cfg), "--window", "1h"])
    assert res.exit_code == 2
    assert res.stderr.strip().startswith("chargeback: error: Kubernetes API unreachable")
    assert len(res.stderr.strip().splitlines()) == 1


def test_auto_falls_back_to_prometheus_labels_and_says_so(share_prom: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    prom, t0 = share_prom
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    raw = {"prometheus": {"url": prom.url}, "sharing": BASE_SHARING, "allocation": {"chunk": "30m"},
           "serve": {"lag": "1m", "start": window_arg(t0).split(",")[0], "exposeNewSeriesFor": "0s"}}
    exporter = Exporter(parse_config(raw), until=window_arg(t0).split(",")[1])
    assert exporter.metadata is None  # no API configured: kube_pod_labels / kube_namespace_labels
    exporter.run_once()
    assert exporter.health.up and exporter.ledger.watermark == t0 + 3600
    reg = exporter.registry
    assert reg.get_sample_value("chargeback_label_source_info", {"source": "prometheus"}) == 1
    # team coverage by pods: payments 1 + search 1 + web 3 of 8 pods (kube-system, monitoring, tools lack it).
    assert reg.get_sample_value("chargeback_label_coverage_ratio", {"label": "team", "basis": "pods"}) == 5 / 8
    # by cost: tools (0.12 + its weighted share of the 0.40 shared) is unattributed out of 0.72 + 0.40.
    tools = 0.12 + SHARED * 0.12 / 0.72
    lost = reg.get_sample_value("chargeback_unattributed_cost_total", {"label": "team"})
    assert lost == pytest.approx(tools, rel=REL)
    assert reg.get_sample_value("chargeback_label_coverage_ratio", {"label": "team", "basis": "cost"}) == \
        pytest.approx((1.12 - tools) / 1.12, rel=REL)
    # A tenant's share appears as component="shared" with its source; shared namespaces own nothing.
    share = reg.get_sample_value("chargeback_namespace_cost_total", {
        "namespace": "payments", "component": "shared", "resource": "memory", "shared_from": "monitoring",
        "team": "payments", "cost_center": "CC-100", "environment": "__unattributed__"})
    assert share == pytest.approx(0.08 * 0.24 / 0.72, rel=REL)
    assert reg.get_sample_value("chargeback_shared_cost_total", {"shared_from": "monitoring", "resource": "cpu"}) \
        == pytest.approx(0.20, rel=REL)
    names = {s.labels.get("namespace") for m in reg.collect() for s in m.samples
             if m.name == "chargeback_namespace_cost"}
    assert "kube-system" not in names and "monitoring" not in names


def test_price_book_matches_node_labels_from_the_api(kube: FakeKube, share_prom: Any, tmp_path: Path) -> None:
    prom, t0 = share_prom
    kube.put("nodes", "", "n1", {"node.kubernetes.io/instance-type": "custom.big", "topology.kubernetes.io/zone": "a"})
    kube.put("nodes", "", "n2", {"node.kubernetes.io/instance-type": "custom.small"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "prometheus": {"url": prom.url},
        "pricing": {"rules": [{"match": {"node.kubernetes.io/instance-type": "custom.big",
                                         "topology.kubernetes.io/zone": "a"}, "cpu": 0.2, "ram": 0.02}]},
        "attribution": {"source": "kubernetes", "kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig"))}}))
    res = CliRunner().invoke(main, ["prices", "--config", str(cfg), "--window", window_arg(t0), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["node"]: r for r in json.loads(res.stdout)}
    assert rows["n1"]["source"] == "pricebook[0]" and rows["n1"]["instanceType"] == "custom.big"
    assert rows["n1"]["hourly"] == pytest.approx(8 * 0.2 + 32 * 0.02, rel=REL)
    assert rows["n2"]["source"] == "opencost"  # kube_node_labels has nothing; the API label matches no rule
    assert any(r.startswith("/api/v1/nodes?") for r in kube.requests)


def test_budget_annotations_from_the_api_become_budget_series(kube: FakeKube, share_prom: Any, tmp_path: Path) -> None:
    prom, t0 = share_prom
    kube.annotations[("", "payments")] = {"chargeback.io/budget-monthly": "500", "chargeback.io/budget-notify": "#pay",
                                         "chargeback.io/budget-daily": "lots", "unrelated/annotation": "x"}
    kube.put("namespaces", "", "payments", {"team": "payments"}, "MODIFIED")
    raw = {"prometheus": {"url": prom.url}, "serve": {"start": window_arg(t0).split(",")[0]},
           "attribution": {"source": "kubernetes", "kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig"))}}
    exporter = Exporter(parse_config(raw), until=window_arg(t0).split(",")[1])
    try:
        exporter.run_once()
        reg = exporter.registry
        assert reg.get_sample_value("chargeback_budget_amount",
                                    {"namespace": "payments", "period": "monthly", "notify": "#pay"}) == 500
        # "lots" is not an amount: no series for it (and a warning in the log).
        assert reg.get_sample_value("chargeback_budget_amount",
                                    {"namespace": "payments", "period": "daily", "notify": "#pay"}) is None
    finally:
        exporter.close()
