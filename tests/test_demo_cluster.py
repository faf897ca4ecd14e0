"""The demo's own cluster and config, one hour of it: what a newcomer sees in `make demo` adds up.

Every amount below is worked out from the scenario's inputs: the node list and price rules in
demo.run / demo.synthetic, copied here as numbers. Only the network bytes come from the
cluster definition (seeded random rates), read from its input series, not from the engine.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from click.testing import CliRunner

from demo.clusters import demo_cluster
from demo.localprom import PrometheusServer
from demo.run import DEMO_CONFIG, write_sample_bill
from demo.synthetic import GIB, series
from exporter.cli import main
from exporter.config.schema import parse_config
from exporter.core.window import parse_window
from exporter.engine.pipeline import Pipeline
from exporter.sources.prometheus import PrometheusClient

from .conftest import scenario_at
from .test_allocate_core import REL, run_allocate, window_arg
from .test_reconcile import iso

# Nodes, per hour. Four m5.2xlarge on-demand priced by OpenCost's metrics (8 cores, 32 GiB at the
# default rates); two m5.2xlarge spot with no rule and no metric (default spot rates); the p3.2xlarge
# GPU node at the price book's 3.06 total; the m5.xlarge at the price book's 0.192.
ON_DEMAND = 8 * 0.031611 + 32 * 0.004237  # 0.388472
SPOT = 8 * 0.006655 + 32 * 0.000892  # 0.081784
NODES = 4 * ON_DEMAND + 2 * SPOT + 3.06 + 0.192
# Volumes (GiB x class price per GiB-month over 730 h): payments-db 100 gp3, search-index 200 gp3,
# data-lake 500 with no class (default 0.04), ml-datasets 300 io2, prometheus 150 gp3, and an
# unclaimed 40 GiB gp2 volume that goes to __unmounted__.
PV = {"payments": 100 * 0.08 / 730, "search": 200 * 0.08 / 730, "data-eng": 500 * 0.04 / 730,
      "ml": 300 * 0.125 / 730, "monitoring": 150 * 0.08 / 730, "__unmounted__": 40 * 0.10 / 730}
LB = 3 * 0.0225  # web/frontend, payments/api and ingress-nginx/controller; search/query is ClusterIP
NAT = 32.85 / 730  # the configured NAT gateway, spread by transmitted bytes
CONTROL_PLANE = 73 / 730  # the EKS fee, a shared fixed cost


def egress_gib() -> dict[str, float]:
    """GiB each namespace transmits in the hour: the counters' slopes (bytes/s) in the demo's inputs."""
    return {s.labels["namespace"]: s.slope * 3600 / GIB for s in demo_cluster().extra
            if s.name == "container_network_transmit_bytes_total"}


def network() -> float:
    return 0.01 * sum(egress_gib().values()) + NAT  # unclassified egress priced as cross-zone, 0.01/GiB


def demo_config(tmp_path: Path, prom_url: str, **overrides: Any) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({**DEMO_CONFIG, "prometheus": {"url": prom_url}, **overrides}))
    return path


def allocate(cfg: Path, t0: int, *extra: str) -> dict[str, Any]:
    data: dict[str, Any] = run_allocate(cfg, window_arg(t0), *extra)["data"][0]
    return data


def test_demo_hour_adds_up_to_the_cluster(demo_prom: Any, tmp_path: Path) -> None:
    prom, t0 = demo_prom
    data = allocate(demo_config(tmp_path, prom.url), t0)
    total = NODES + sum(PV.values()) + LB + network() + CONTROL_PLANE
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(total, rel=REL)
    # Issue 3: the platform namespaces are shared out, so they have no cost of their own.
    assert not {"kube-system", "monitoring", "ingress-nginx"} & set(data)
    # Issue 4: the demo shows storage, load balancer, network and GPU cost.
    assert data["__unmounted__"]["pvCost"] == pytest.approx(PV["__unmounted__"], rel=REL)
    assert data["payments"]["pvCost"] == pytest.approx(PV["payments"], rel=REL)
    assert data["web"]["loadBalancerCost"] == pytest.approx(0.0225, rel=REL)
    gib = egress_gib()
    assert data["search"]["networkCost"] == pytest.approx(
        0.01 * gib["search"] + NAT * gib["search"] / sum(gib.values()), rel=REL)
    # The trainer requests the p3's one GPU for the whole hour: 2.5 of the node's 3.06.
    assert data["ml"]["gpuCost"] == pytest.approx(2.5, rel=REL)
    assert data["__idle__"]["totalCost"] > 0


def test_demo_team_view_keeps_the_total(demo_prom: Any, tmp_path: Path) -> None:
    prom, t0 = demo_prom
    teams = allocate(demo_config(tmp_path, prom.url), t0, "--aggregate", "team")
    total = NODES + sum(PV.values()) + LB + network() + CONTROL_PLANE
    assert sum(v["totalCost"] for v in teams.values()) == pytest.approx(total, rel=REL)
    assert {"payments", "search", "data-eng", "ml", "web", "growth"} <= set(teams)


def test_demo_team_owns_two_namespaces_and_splits_a_hyphenated_one(demo_prom: Any, tmp_path: Path) -> None:
    """payments owns payments and payments-batch; web-shared is split between web and growth by pod label."""
    prom, t0 = demo_prom
    cfg = demo_config(tmp_path, prom.url)
    ns, teams = allocate(cfg, t0), allocate(cfg, t0, "--aggregate", "team")
    # settlement-0: 1 core, 2 GiB requested (usage 0.6 core, 1.5 GiB) on ip-10-0-1-4 at OpenCost's
    # on-demand rates: 1 x 0.031611 + 2 x 0.004237.
    assert (ns["payments-batch"]["cpuCost"], ns["payments-batch"]["ramCost"]) == (
        pytest.approx(0.031611, rel=REL), pytest.approx(2 * 0.004237, rel=REL))
    assert teams["payments"]["totalCost"] == pytest.approx(
        ns["payments"]["totalCost"] + ns["payments-batch"]["totalCost"], rel=REL)
    # web-shared: landing-0 (team web) 0.5 core, 1 GiB on on-demand ip-10-0-1-3; newsletter-0 (team growth)
    # 0.5 core, 1 GiB on spot ip-10-0-2-2 (default spot rates 0.006655 and 0.000892).
    assert ns["web-shared"]["cpuCost"] == pytest.approx(0.5 * 0.031611 + 0.5 * 0.006655, rel=REL)
    assert teams["web"]["cpuCost"] == pytest.approx(ns["web"]["cpuCost"] + 0.5 * 0.031611, rel=REL)
    assert teams["growth"]["ramCost"] == pytest.approx(ns["growth"]["ramCost"] + 1 * 0.000892, rel=REL)
    assert "web-shared" not in teams


def test_demo_ksm_gap_is_reported_bridged(demo_prom: Any, tmp_path: Path) -> None:
    """kube-state-metrics is silent from t0 + 20 min to t0 + 30 min: the lookback sees its last sample up
    to t0 + 25 min, so t0 + 26 .. t0 + 29 min are bridged (the hour's totals above are unchanged)."""
    prom, t0 = demo_prom
    cov = run_allocate(demo_config(tmp_path, prom.url), window_arg(t0))["coverage"]
    assert cov["bridged"] == [{"start": iso(t0 + 1500), "end": iso(t0 + 1740), "source": "ksm"}]
    assert cov["uncovered"] == [] and cov["coveredSeconds"] == 3600


def demo_bill(path: Path, t0: int) -> Path:
    """A FOCUS export for the demo hour: Savings Plan, actual spot, a credit, a refund, a gone node."""
    cluster = json.dumps({"aws:eks:cluster-name": "demo"})
    rows = [(f"i-ip-10-0-1-{i}", "Amazon EC2", "Compute", "Usage", 0.28, 0.384, "{}") for i in range(1, 5)]
    rows += [(f"i-ip-10-0-2-{i}", "Amazon EC2", "Compute", "Usage", 0.1152, 0.1152, "{}") for i in (1, 2)]
    rows += [("i-ip-10-0-3-1", "Amazon EC2", "Compute", "Usage", 3.06, 3.06, "{}"),
             ("i-ip-10-0-3-1", "Amazon EC2", "Compute", "Credit", -0.5, 0.0, "{}"),
             # ip-10-0-4-1 is missing from the bill; ip-10-0-9-9 was billed but is gone from the cluster.
             ("i-ip-10-0-9-9", "Amazon EC2", "Compute", "Usage", 0.384, 0.384, cluster),
             ("pv-payments-db", "Amazon EBS", "Storage", "Usage", 0.011, 0.011, "{}"),
             ("pv-payments-db", "Amazon EBS", "Storage", "Adjustment", -0.001, 0.0, "{}"),
             ("pv-data-lake", "Amazon EBS", "Storage", "Usage", 0.0274, 0.0274, "{}"),
             ("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/k8s-web-frontend/1",
              "Elastic Load Balancing", "Networking", "Usage", 0.0225, 0.0225,
              json.dumps({"kubernetes.io/service-name": "web/frontend"})),
             ("nat-0demo", "Amazon VPC", "Networking", "Usage", 0.045, 0.045, cluster),
             ("i-0other", "Amazon EC2", "Compute", "Usage", 2.0, 2.0, json.dumps({"aws:eks:cluster-name": "b"})),
             ("", "Tax", "Other", "Tax", 0.9, 0.9, "{}")]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["BilledCost", "EffectiveCost", "ListCost", "BillingCurrency", "ChargePeriodStart",
                    "ChargePeriodEnd", "ChargeCategory", "ResourceId", "ServiceName", "ServiceCategory", "Tags"])
        for rid, service, category, charge, effective, listed, tags in rows:
            w.writerow([effective, effective, listed, "USD", iso(t0), iso(t0 + 3600), charge, rid, service,
                        category, tags])
    return path


BILLED_COMPUTE = 4 * 0.28 + 2 * 0.1152 + 3.06 - 0.5  # 3.9104
BILLED_STORAGE = 0.011 - 0.001 + 0.0274
BILLED_LB = 0.0225
UNMATCHED = {"Amazon EC2": 0.384}  # the gone node
BILLED_NAT = {"nat-0demo": 0.045}  # this cluster's NAT gateway: network, spread by internet-bound bytes when reconciled


def reconcile(tmp_path: Path, prom_url: str, t0: int, *extra: str, **overrides: Any) -> tuple[Any, str]:
    cfg = demo_config(tmp_path, prom_url, reconciliation={"clusterTags": {"aws:eks:cluster-name": "demo"}},
                      **overrides)
    res = CliRunner().invoke(main, ["reconcile", "--config", str(cfg), "--window", window_arg(t0), "--bill",
                                    str(demo_bill(tmp_path / "focus.csv", t0)), "--format", "json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout), res.stderr


def test_demo_bill_against_the_demo_cluster(demo_prom: Any, tmp_path: Path) -> None:
    prom, t0 = demo_prom
    rec, _ = reconcile(tmp_path, prom.url, t0)
    cats = {c["category"]: c for c in rec["categories"]}
    assert cats["compute"]["bill"] == pytest.approx(BILLED_COMPUTE, rel=REL)
    assert cats["compute"]["computed"] == pytest.approx(NODES, rel=REL)
    assert cats["compute"]["variance"] == pytest.approx((NODES - BILLED_COMPUTE) / BILLED_COMPUTE, rel=REL)
    assert cats["storage"]["bill"] == pytest.approx(BILLED_STORAGE, rel=REL)
    assert cats["storage"]["computed"] == pytest.approx(sum(PV.values()), rel=REL)
    assert cats["load_balancer"]["bill"] == pytest.approx(BILLED_LB, rel=REL)
    nodes = {n["node"]: n for n in rec["nodes"]}
    assert nodes["ip-10-0-1-1"]["bill"] == pytest.approx(0.28, rel=REL)
    assert nodes["ip-10-0-2-2"]["bill"] == pytest.approx(0.1152, rel=REL)  # the actual spot price
    assert nodes["ip-10-0-3-1"]["bill"] == pytest.approx(2.56, rel=REL)  # after the credit
    assert nodes["ip-10-0-4-1"]["bill"] is None and nodes["ip-10-0-4-1"]["computed"] == pytest.approx(0.192, rel=REL)
    assert rec["unmatched"] == pytest.approx(UNMATCHED, rel=REL)
    assert rec["nat"] == pytest.approx(BILLED_NAT, rel=REL)
    assert rec["ignored"] == {"tax line": 1, "not this cluster (no cluster tag)": 1}


def test_demo_reconciled_allocation_conserves_the_bill_to_the_cent(demo_prom: Any, tmp_path: Path) -> None:
    prom, t0 = demo_prom
    # The bill carries the NAT gateway, so the config's monthly estimate of it is dropped.
    pricing = dict(cast(dict[str, Any], DEMO_CONFIG["pricing"]), network={"unclassified": "zone", "zonePerGiB": 0.01})
    data, stderr = reconcile(tmp_path, prom.url, t0, "--reconciled", pricing=pricing)
    data = data["data"][0]
    # Billed: matched lines, the unmatched one (the gone node) shared by policy, and the NAT gateway's
    # line spread by internet-bound bytes.
    billed = BILLED_COMPUTE + BILLED_STORAGE + BILLED_LB + sum(UNMATCHED.values()) + sum(BILLED_NAT.values())
    # Not on the bill, so kept at computed cost: the m5.xlarge node, four volumes, two load balancers,
    # cross-zone egress and the control-plane fee (a config amount, not a bill line).
    unbilled = (0.192 + PV["search"] + PV["ml"] + PV["monitoring"] + PV["__unmounted__"] + 2 * 0.0225
                + 0.01 * sum(egress_gib().values()) + CONTROL_PLANE)
    assert round(sum(v["totalCost"] for v in data.values()), 2) == round(billed + unbilled, 2)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(billed + unbilled, rel=REL)
    # Billed assets cost exactly their lines: payments' volume 0.011 - 0.001, web's load balancer 0.0225.
    assert data["payments"]["pvCost"] == pytest.approx(0.010, rel=REL)
    assert data["web"]["loadBalancerCost"] == pytest.approx(0.0225, rel=REL)
    # The trainer's GPU scales with its node's bill: 2.5 x (3.06 - 0.5) / 3.06.
    assert data["ml"]["gpuCost"] == pytest.approx(2.5 * 2.56 / 3.06, rel=REL)
    assert "0.38 shared, nodes not on the bill kept at their computed 0.19" in stderr  # 0.384; ip-10-0-4-1


def test_the_demo_sample_bill_shows_the_missing_discount(demo_prom: Any, tmp_path: Path) -> None:
    """`make demo` bills its on-demand nodes under a 28% Savings Plan, at list = chargeback's price."""
    prom, t0 = demo_prom
    cfg = parse_config({**DEMO_CONFIG, "prometheus": {"url": prom.url}})
    result = Pipeline(cfg, PrometheusClient(cfg.prometheus)).compute(parse_window(window_arg(t0), t0, 60))
    bill = write_sample_bill(result, tmp_path / "bill.csv")
    res = CliRunner().invoke(main, ["reconcile", "--config", str(demo_config(tmp_path, prom.url)), "--window",
                                    window_arg(t0), "--bill", str(bill), "--format", "json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    node = next(n for n in rec["nodes"] if n["node"] == "ip-10-0-1-1")
    # One instance-hour at 72% of the OpenCost-priced 0.388472, rounded to the bill's 4 decimals.
    assert (node["billedHours"], node["billHourly"]) == (1.0, pytest.approx(round(0.72 * ON_DEMAND, 4), rel=REL))
    assert node["list"] == pytest.approx(round(ON_DEMAND, 4), rel=REL)
    assert "the billed nodes are priced within 0.0% of their list cost" in rec["verdict"]
    assert "so the gap is discounts" in rec["verdict"]


@pytest.fixture(scope="module")
def released_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """The demo cluster whose released volume an admin deletes half-way through the hour under test (the
    demo's stack deletes it 26 h before its start, demo/run.py: its 24 h windows hold no claim-less volume)."""
    yield from scenario_at(tmp_path_factory, "released", lambda t0: demo_cluster(released_deleted_at=t0 + 1800))


def test_a_deleted_released_volume_ends_every_series_of_it() -> None:
    """kube-state-metrics' and OpenCost's series of pv-released-2023 end at its deletion; the others go on."""
    t = 1_800_000_000
    rows = [(name, lb, fn) for name, lb, fn in series(demo_cluster(released_deleted_at=t))
            if "persistentvolume=" in lb or "volumename=" in lb]
    released = {name for name, lb, fn in rows if '"pv-released-2023"' in lb and fn(t) is not None}
    assert released == {"kube_persistentvolume_capacity_bytes", "kube_persistentvolume_info", "kubecost_pv_info",
                        "pv_hourly_cost"}
    assert [name for name, lb, fn in rows if '"pv-released-2023"' in lb and fn(t + 60) is not None] == []
    assert {lb for _name, lb, fn in rows if fn(t + 60) is not None} == {lb for _name, lb, fn in rows
                                                                        if "pv-released-2023" not in lb}


def test_a_deleted_released_volume_costs_until_it_is_gone(released_prom: tuple[PrometheusServer, int],
                                                          tmp_path: Path) -> None:
    """pv-released-2023's last sample is at t0 + 30 min. Backfilled history has no staleness marker, so
    Prometheus' lookback (its left edge included, 2.x) still sees it at t0 + 35 min: the steps t0 + 1 .. 35 min,
    35 of the hour's 60, cost __unmounted__ 40 GiB x 0.10 / 730 x 35 / 60. The hour adds up without the other
    25 minutes; the 20 minutes from t0 + 40 min hold no claim-less volume, so no __unmounted__."""
    prom, t0 = released_prom
    cfg = demo_config(tmp_path, prom.url)
    data = allocate(cfg, t0)
    assert data["__unmounted__"]["pvCost"] == pytest.approx(PV["__unmounted__"] * 35 / 60, rel=REL)
    total = NODES + sum(PV.values()) - PV["__unmounted__"] * 25 / 60 + LB + network() + CONTROL_PLANE
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(total, rel=REL)
    later = run_allocate(cfg, window_arg(t0 + 2400, 1 / 3))["data"][0]
    assert "__unmounted__" not in later
