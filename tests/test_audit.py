"""`chargeback audit-labels` on the sharing scenario, and the shipped Kyverno policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from exporter.cli import main
from exporter.core.workloads import resolve, workload_of

from .test_allocate_core import REL, window_arg
from .test_sharing import BASE_SHARING, SHARED


def test_audit_labels_json_and_text(share_prom: Any, tmp_path: Path) -> None:
    prom, t0 = share_prom
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, "sharing": BASE_SHARING,
                                   "attribution": {"source": "prometheus"}}))
    res = CliRunner().invoke(main, ["audit-labels", "--config", str(cfg), "--window", window_arg(t0),
                                    "--format", "json"])
    assert res.exit_code == 0, res.output
    team, cost_center, environment = json.loads(res.stdout)
    # Tenant pods (shared kube-system and monitoring excluded): payments 1, search 1, web 3, tools 1.
    assert (team["label"], team["key"], team["pods_total"], team["pods_covered"]) == ("team", "team", 6, 5)
    tools_cost = 0.12 + SHARED * 0.12 / 0.72
    assert team["cost_unattributed"] == pytest.approx(tools_cost, rel=REL)
    assert team["costCoverage"] == pytest.approx((1.12 - tools_cost) / 1.12, rel=REL)
    [gap] = team["namespaces"]
    # The pod "runner" is a run of CronJob nightly (kube_pod_owner -> Job -> kube_job_owner): fix it there.
    assert (gap["namespace"], gap["pods_missing"], gap["workloads"]) == ("tools", 1, ["cronjob:nightly"])
    assert gap["cost_at_stake"] == pytest.approx(tools_cost, rel=REL)
    assert cost_center["key"] == "cost-center" and cost_center["pods_covered"] == 5
    assert environment["pods_covered"] == 0 and environment["costCoverage"] == 0
    text = CliRunner().invoke(main, ["audit-labels", "--config", str(cfg), "--window", window_arg(t0)])
    assert "label team (Kubernetes label 'team'): 83.3% of pods (5/6)" in text.stdout
    assert "attribution labels read from prometheus" in text.stdout


def test_workloads_resolve_to_their_top_controller() -> None:
    pods = {("a", "api-7d9f8b6c5d-x2x9q"): ("ReplicaSet", "api-7d9f8b6c5d"),
            ("a", "db-0"): ("StatefulSet", "db"),
            ("a", "nightly-28361540-abcde"): ("Job", "nightly-28361540"),
            ("a", "migrate-xk2p9"): ("Job", "migrate"),  # a Job created by hand: it is the workload
            ("a", "debug"): ("<none>", "<none>"),
            ("b", "api-5c4d-zzzzz"): ("ReplicaSet", "api-5c4d")}  # same names, other namespace
    replicasets = {("a", "api-7d9f8b6c5d"): ("Deployment", "api"), ("b", "api-5c4d"): ("Deployment", "gateway")}
    jobs = {("a", "nightly-28361540"): ("CronJob", "nightly")}
    assert resolve(pods, replicasets, jobs) == {
        ("a", "api-7d9f8b6c5d-x2x9q"): "deployment:api", ("a", "db-0"): "statefulset:db",
        ("a", "nightly-28361540-abcde"): "cronjob:nightly", ("a", "migrate-xk2p9"): "job:migrate",
        ("a", "debug"): "debug", ("b", "api-5c4d-zzzzz"): "deployment:gateway"}


@pytest.mark.parametrize("pod,workload", [("api-7d9f8b6c5d-x2x9q", "api"), ("web-0", "web"),
                                          ("nightly-28361540-abcde", "nightly"), ("runner", "runner")])
def test_workload_names_from_pod_names(pod: str, workload: str) -> None:
    assert workload_of(pod) == workload


def test_kyverno_policy_requires_attribution_labels_on_pod_templates() -> None:
    policy = yaml.safe_load(Path("deploy/kyverno-require-cost-labels.yaml").read_text())
    assert policy["apiVersion"] == "kyverno.io/v1" and policy["kind"] == "ClusterPolicy"
    spec = policy["spec"]
    assert spec["validationFailureAction"] == "Audit"
    templates, cronjobs = spec["rules"]
    assert templates["match"]["any"][0]["resources"]["kinds"] == ["Deployment", "StatefulSet", "DaemonSet", "Job"]
    assert cronjobs["match"]["any"][0]["resources"]["kinds"] == ["CronJob"]
    required = {"team": "?*", "cost-center": "?*", "environment": "?*"}
    assert templates["validate"]["pattern"]["spec"]["template"]["metadata"]["labels"] == required
    job_template = cronjobs["validate"]["pattern"]["spec"]["jobTemplate"]["spec"]["template"]
    assert job_template["metadata"]["labels"] == required
    for rule in spec["rules"]:
        assert rule["exclude"]["any"][0]["resources"]["namespaces"] == ["kube-system"]
