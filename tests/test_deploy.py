"""deploy/: generated from Jsonnet without drift, valid against Kubernetes schemas, locked down."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from exporter.cli import main
from exporter.config.schema import parse_config

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy/manifests").glob("*.yaml"))
OBJECTS = {p.name: yaml.safe_load(p.read_text()) for p in MANIFESTS}
CRDS = {"ServiceMonitor", "PrometheusRule", "ClusterPolicy"}


def test_manifests_have_not_drifted(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    res = CliRunner().invoke(main, ["manifests", "--out", str(tmp_path / "deploy")])
    assert res.exit_code == 0, res.output
    for p in [*MANIFESTS, ROOT / "deploy/kustomization.yaml"]:
        new = tmp_path / "deploy" / p.relative_to(ROOT / "deploy")
        assert new.read_text() == p.read_text(), f"run `make manifests`: {p.name}"
    assert sorted(p.name for p in (tmp_path / "deploy/manifests").glob("*.yaml")) == [p.name for p in MANIFESTS]


@pytest.mark.parametrize("version", ["1.36.0", "1.37.0"])
@pytest.mark.parametrize("name", sorted(n for n, o in OBJECTS.items() if o["kind"] not in CRDS))
def test_valid_against_kubernetes_openapi(name: str, version: str) -> None:
    kubernetes_validate.validate(OBJECTS[name], version, strict=True)


def _required(obj: dict[str, Any], *paths: str) -> None:
    for path in paths:
        node: Any = obj
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"{obj['kind']}: missing {path}"
            node = node[part]


def test_crds_have_their_required_fields() -> None:
    kinds = {o["kind"]: o for o in OBJECTS.values()}
    sm, pr, kp = kinds["ServiceMonitor"], kinds["PrometheusRule"], kinds["ClusterPolicy"]
    assert sm["apiVersion"] == pr["apiVersion"] == "monitoring.coreos.com/v1"
    _required(sm, "metadata.name", "spec.selector.matchLabels", "spec.endpoints")
    assert all("port" in e for e in sm["spec"]["endpoints"])
    _required(pr, "metadata.name", "spec.groups")
    assert all(g["name"] and g["rules"] for g in pr["spec"]["groups"])
    assert kp["apiVersion"] == "kyverno.io/v1"
    _required(kp, "metadata.name", "spec.rules")
    assert all({"name", "match", "validate"} <= set(r) for r in kp["spec"]["rules"])


def test_deployment_is_locked_down() -> None:
    dep = OBJECTS["chargeback-deployment.yaml"]["spec"]["template"]["spec"]
    pod_sc = dep["securityContext"]
    assert pod_sc["runAsNonRoot"] and pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    [c] = dep["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # The mounted config is a valid exporter config with leader election on.
    cm = OBJECTS["chargeback-configmap.yaml"]
    cfg = parse_config(yaml.safe_load(cm["data"]["config.yaml"]))
    assert cfg.serve.leaderElection.enabled and OBJECTS["chargeback-deployment.yaml"]["spec"]["replicas"] == 2


def test_rbac_is_least_privilege() -> None:
    role = OBJECTS["chargeback-cluster-role.yaml"]
    assert [r["verbs"] for r in role["rules"]] == [["get", "list", "watch"]]
    assert "secrets" not in role["rules"][0]["resources"]
    lease = OBJECTS["chargeback-lease-role.yaml"]
    assert lease["kind"] == "Role"  # namespaced: the only write access is to the one Lease
    assert {tuple(r["resources"]) for r in lease["rules"]} == {("leases",)}
    assert any(r.get("resourceNames") == ["chargeback"] and "update" in r["verbs"] for r in lease["rules"])


PROMETHEUS_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
DNS = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
       "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
TO_PROMETHEUS = {"to": [PROMETHEUS_PEER], "ports": [{"port": 9090, "protocol": "TCP"}]}
# No `to`: NetworkPolicy cannot select the API server; port-only until _config.apiServerCIDRs is set.
TO_API = {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}


def test_network_policy_admits_only_the_monitoring_namespaces_prometheus() -> None:
    np = OBJECTS["chargeback-networkpolicy.yaml"]["spec"]
    assert np["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "exporter"
    assert np["policyTypes"] == ["Ingress", "Egress"]
    [rule] = np["ingress"]
    # ONE peer holding both selectors (AND). Two peers, or a namespaceSelector of {}, would admit a
    # tenant's pod labelled app.kubernetes.io/name=prometheus from any namespace.
    assert rule["from"] == [PROMETHEUS_PEER]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_network_policy_egress_only_to_dns_prometheus_and_the_api() -> None:
    np = OBJECTS["chargeback-networkpolicy.yaml"]["spec"]
    assert np["egress"] == [DNS, TO_PROMETHEUS, TO_API]  # the exporter never delivers reports: no SMTP


def test_report_jobs_egress_adds_only_the_delivery_ports() -> None:
    np = OBJECTS["chargeback-reportnetworkpolicy.yaml"]["spec"]
    report_pods = OBJECTS["chargeback-reportcronjob.yaml"]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    reconcile_pods = OBJECTS["chargeback-reconcilecronjob.yaml"]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    for pods in (report_pods, reconcile_pods):  # the policy selects both CronJobs' pods
        assert np["podSelector"]["matchLabels"].items() <= pods["labels"].items()
    assert np["policyTypes"] == ["Ingress", "Egress"] and np["ingress"] == []  # nothing may connect to a job
    assert np["egress"] == [DNS, TO_PROMETHEUS, TO_API,
                            {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 587, "protocol": "TCP"}]}]


def test_tmp_is_size_limited_and_the_image_pinned_by_digest() -> None:
    pods = [OBJECTS["chargeback-deployment.yaml"]["spec"]["template"]["spec"],
            *(OBJECTS[f]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
              for f in ("chargeback-reportcronjob.yaml", "chargeback-reconcilecronjob.yaml"))]
    for spec in pods:
        [tmp] = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp["emptyDir"] == {"sizeLimit": "64Mi"}
        [c] = spec["containers"]
        assert re.fullmatch(r"ghcr\.io/chargeback/chargeback@sha256:[0-9a-f]{64}", c["image"]), c["image"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")
def test_kustomize_renders() -> None:
    proc = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(proc.stdout)]
    assert len(kinds) == len(MANIFESTS) and "Deployment" in kinds


def test_kustomization_lists_every_manifest() -> None:
    k = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
    assert k["resources"] == [f"manifests/{p.name}" for p in MANIFESTS]


def test_weekly_report_cronjob() -> None:
    cron = OBJECTS["chargeback-reportcronjob.yaml"]
    assert cron["spec"]["schedule"] == "0 9 * * 1"  # Monday 09:00
    [c] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["args"][:1] == ["report"] and "--send" in c["args"] and "lastweek" in c["args"]
    assert c["envFrom"] == [{"secretRef": {"name": "chargeback-report-secrets"}}]


def test_monthly_reconcile_cronjob() -> None:
    cron = OBJECTS["chargeback-reconcilecronjob.yaml"]
    assert cron["spec"]["schedule"] == "0 6 3 * *" and cron["spec"]["suspend"] is True
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [c] = spec["containers"]
    assert c["args"][:1] == ["reconcile"] and "lastmonth" in c["args"]
    assert {"name": "bills", "persistentVolumeClaim": {"claimName": "chargeback-bills"}} in spec["volumes"]
