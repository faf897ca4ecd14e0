"""/assets and /cloudCost against a real Prometheus (the assets scenario) and real bill files.

Amounts are worked out by hand in tests/test_assets.py (prices) and below (bill lines).
"""

from __future__ import annotations

import csv
import gzip
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from demo.localprom import free_port
from exporter.config.schema import parse_config
from exporter.serve.httpapi import make_app
from exporter.serve.httpserver import AsyncHTTPServer
from exporter.serve.server import Exporter

from .scenarios import ASSET_CONFIG
from .test_allocate_core import REL, window_arg
from .test_assets import (
    CPU_A,
    CPU_G,
    LB,
    NAT,
    NETWORK,
    NODES,
    RAM_A,
    RAM_G,
    STORAGE,
    TOTAL,
    V100,
)
from .test_reconcile import RECONCILIATION, hour_bill

GIB = 1024**3


def exporter_for(asset_prom: Any, **extra: Any) -> Exporter:
    return Exporter(parse_config({**ASSET_CONFIG, "prometheus": {"url": asset_prom[0].url}, **extra}))


def q(**params: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in params.items()}


def totals(data_set: dict[str, Any]) -> dict[str, float]:
    return {k: v["totalCost"] for k, v in data_set.items()}


def by_name(data_set: dict[str, Any]) -> dict[str, Any]:
    """OpenCost's set (keyed provider/account/project/category/cluster/type/service/providerID/name) by type/name."""
    return {f'{v["type"]}/{v["properties"]["name"]}': v for v in data_set.values()}


@pytest.fixture()
def http(asset_prom: Any, tmp_path: Path) -> Iterator[str]:
    """The real handler on a loopback port (no accrual loop), with the FOCUS hour bill configured."""
    bill = hour_bill(tmp_path, asset_prom[1])
    exporter = exporter_for(asset_prom, reconciliation={**RECONCILIATION, "bills": [str(bill)]})
    port = free_port()
    httpd = AsyncHTTPServer(("127.0.0.1", port), make_app(exporter))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        exporter.close()


def test_assets_per_asset_with_hand_worked_amounts(asset_prom: Any) -> None:
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom)
    got = by_name(ex.assets(q(window=window_arg(t0)))["data"])
    od = got["Node/n-sp-od"]
    # Savings Plan node: 0.25/h split OpenCost's way over 8 cores and 32 GiB.
    assert od["type"] == "Node" and od["properties"]["providerID"] == "aws:///us-east-1a/i-n-sp-od"
    assert od["properties"]["provider"] == "AWS" and od["properties"]["category"] == "Compute"
    assert od["cpuCost"] == pytest.approx(8 * CPU_A, rel=REL) and od["ramCost"] == pytest.approx(32 * RAM_A, rel=REL)
    assert od["cpuCoreHours"] == pytest.approx(8, rel=REL) and od["ramByteHours"] == pytest.approx(32 * GIB, rel=REL)
    assert od["minutes"] == pytest.approx(60, rel=REL) and od["adjustment"] == 0.0
    assert od["totalCost"] == pytest.approx(0.25, rel=REL)
    gpu = got["Node/n-gpu"]  # p3.8xlarge 12.24: 4 V100s at 2.48, the rest over 32 cores, 244 GiB
    assert gpu["gpuCost"] == pytest.approx(4 * V100, rel=REL) and gpu["GPUHours"] == pytest.approx(4, rel=REL)
    assert gpu["cpuCost"] + gpu["ramCost"] == pytest.approx(32 * CPU_G + 244 * RAM_G, rel=REL)
    assert got["Node/n-sp-spot"]["totalCost"] == pytest.approx(0.1152, rel=REL)
    assert got["Node/n-shipped"]["totalCost"] == pytest.approx(0.192, rel=REL)
    # Disks: gp3 at 0.08/GiB-month over 730 h, no class at the 0.04 default, pv_hourly_cost 0.0002/GiB-h.
    disk = got["Disk/pv-gp3"]
    assert disk["type"] == "Disk" and disk["properties"]["category"] == "Storage"
    assert disk["totalCost"] == pytest.approx(100 * 0.08 / 730, rel=REL)
    assert disk["byteHours"] == pytest.approx(100 * GIB, rel=REL) and disk["claimNamespace"] == "payments"
    assert got["Disk/pv-noclass"]["totalCost"] == pytest.approx(50 * 0.04 / 730, rel=REL)
    assert got["Disk/pv-opencost"]["totalCost"] == pytest.approx(20 * 0.0002, rel=REL)
    assert got["Disk/pv-orphan"]["claimNamespace"] == ""  # no claim: OpenCost leaves it empty
    # Load balancers: kubecost_load_balancer_cost 0.03/h, the other at the price book's 0.025/h, one hour each.
    lb = got["LoadBalancer/payments/api-lb"]
    assert lb["totalCost"] == pytest.approx(0.03, rel=REL) and lb["minutes"] == pytest.approx(60, rel=REL)
    assert got["LoadBalancer/search/web-lb"]["totalCost"] == pytest.approx(0.025, rel=REL)
    # Network: classified egress by class (0.5 GiB internet x 0.12, 1 GiB zone x 0.01, 0.25 GiB region x 0.02)
    # and the NAT gateway's 73/month over 730 h.
    assert got["Network/egress-internet"]["totalCost"] == pytest.approx(0.5 * 0.12, rel=REL)
    assert got["Network/egress-zone"]["totalCost"] == pytest.approx(1.0 * 0.01, rel=REL)
    assert got["Network/egress-region"]["totalCost"] == pytest.approx(0.25 * 0.02, rel=REL)
    assert got["Network/nat-gateway"]["totalCost"] == pytest.approx(NAT, rel=REL)
    assert sum(totals(got).values()) == pytest.approx(TOTAL, rel=REL)


def test_assets_aggregates_and_conservation_with_allocation(asset_prom: Any) -> None:
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, sharing={"sharedCosts": [{"name": "eks-control-plane", "monthly": 73}]})
    w = window_arg(t0)
    fee = 73 / 730  # the control-plane fee for one hour of a 730 h month
    by_type = ex.assets(q(window=w, aggregate="type"))["data"]
    assert totals(by_type) == {
        "Node": pytest.approx(NODES, rel=REL), "Disk": pytest.approx(sum(STORAGE.values()), rel=REL),
        "LoadBalancer": pytest.approx(sum(LB.values()), rel=REL),
        "Network": pytest.approx(sum(NETWORK.values()), rel=REL), "ClusterManagement": pytest.approx(fee, rel=REL)}
    assert by_type["Node"]["properties"]["category"] == "Compute" and "name" not in by_type["Node"]["properties"]
    by_cluster = ex.assets(q(window=w, aggregate="cluster"))["data"]
    assert totals(by_cluster) == {"cluster": pytest.approx(TOTAL + fee, rel=REL)}
    by_node = ex.assets(q(window=w, aggregate="node"))["data"]
    assert by_node["n-gpu"]["totalCost"] == pytest.approx(12.24, rel=REL)
    assert by_node["__undefined__"]["totalCost"] == pytest.approx(TOTAL + fee - NODES, rel=REL)
    by_pid = ex.assets(q(window=w, aggregate="providerID"))["data"]
    assert by_pid["aws:///us-east-1a/i-n-sp-spot"]["totalCost"] == pytest.approx(0.1152, rel=REL)
    by_two = ex.assets(q(window=w, aggregate="cluster,type"))["data"]
    assert by_two["cluster/Disk"]["totalCost"] == pytest.approx(sum(STORAGE.values()), rel=REL)
    # Conservation: the assets of a window are the allocation of the same window, to the cent and beyond.
    alloc = ex.allocation(q(window=w, aggregate="namespace", includeIdle="true"))["data"][0]
    assert sum(totals(by_cluster).values()) == pytest.approx(sum(v["totalCost"] for v in alloc.values()), abs=1e-9)
    assert round(sum(totals(by_type).values()), 2) == round(sum(v["totalCost"] for v in alloc.values()), 2)


def test_assets_step_and_accumulate(asset_prom: Any) -> None:
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom)
    w = window_arg(t0)
    sets = ex.assets(q(window=w, step="30m", accumulate="false", aggregate="type"))["data"]
    assert len(sets) == 2  # 1 h in 30 m steps, as OpenCost sets
    for s in sets:
        assert s["Node"]["totalCost"] == pytest.approx(NODES / 2, rel=REL)
    # The sets of a window add up to the window's cluster cost.
    assert sum(sum(totals(s).values()) for s in sets) == pytest.approx(TOTAL, rel=REL)
    assert [s["Node"]["start"] for s in sets] == [window_arg(t0, 0).split(",")[0],
                                                 window_arg(t0 + 1800, 0).split(",")[0]]
    one = by_name(ex.assets(q(window=w, step="30m", accumulate="true"))["data"])
    node = one["Node/n-gpu"]
    assert node["totalCost"] == pytest.approx(12.24, rel=REL) and node["minutes"] == pytest.approx(60, rel=REL)
    assert node["cpuCoreHours"] == pytest.approx(32, rel=REL)
    assert sum(totals(one).values()) == pytest.approx(TOTAL, rel=REL)
    assert len(ex.assets(q(window=w, step="10m"))["data"]) == 6
    # As /allocation's sets: from the window's start, a 50 m step leaves the last set 10 m long.
    full, short = ex.assets(q(window=w, step="50m", aggregate="type"))["data"]
    assert (short["Node"]["start"], short["Node"]["end"]) == (window_arg(t0 + 3000, 0).split(",")[0],
                                                              window_arg(t0 + 3600, 0).split(",")[0])
    assert short["Node"]["totalCost"] == pytest.approx(NODES / 6, rel=REL)
    assert full["Node"]["totalCost"] == pytest.approx(NODES * 5 / 6, rel=REL)


def test_assets_reconciled_against_the_bill(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    bill = hour_bill(tmp_path, t0)
    ex = exporter_for(asset_prom, reconciliation={**RECONCILIATION, "bills": [str(bill)]})
    got = by_name(ex.assets(q(window=window_arg(t0), reconciled="true"))["data"])
    # Nodes keep their computed costs; the bill's difference is the adjustment.
    gpu = got["Node/n-gpu"]
    assert gpu["gpuCost"] == pytest.approx(4 * V100, rel=REL)
    assert gpu["adjustment"] == pytest.approx(-1.0, rel=REL) and gpu["totalCost"] == pytest.approx(11.24, rel=REL)
    assert got["Node/n-sp-spot"]["adjustment"] == pytest.approx(0.11 - 0.1152, rel=1e-6)
    assert got["Node/n-sp-od"]["adjustment"] == pytest.approx(0.0, abs=1e-12)  # billed 0.25 effective
    assert got["Node/n-shipped"]["adjustment"] == 0.0  # not on the bill
    assert got["Disk/pv-gp3"]["totalCost"] == pytest.approx(0.011 - 0.001, rel=REL)
    assert got["Disk/pv-gp3"]["adjustment"] == pytest.approx(0.010 - 100 * 0.08 / 730, rel=1e-6)
    assert got["LoadBalancer/payments/api-lb"]["adjustment"] == pytest.approx(0.0225 - 0.03, rel=1e-6)
    # Tagged bill lines matching no resource are the cluster's, shared as fixed costs: i-old-node. The tagged
    # NAT gateway line (nat-0abc, 0.045) is network, spread by internet-bound bytes: payments sends them all.
    assert got["Cloud/bill:Amazon EC2"]["totalCost"] == pytest.approx(0.5, rel=REL)
    assert "Cloud/bill:Amazon VPC" not in got
    assert got["Network/bill:nat-0abc"]["totalCost"] == pytest.approx(0.045, rel=REL)
    # The same total as the reconciled allocation (tests/test_reconcile.py works it out).
    unbilled = 0.192 + 10 * 0.08 / 730 + 20 * 0.0002 + 0.025
    network = 0.5 * 0.12 + 1.0 * 0.01 + 0.25 * 0.02 + 73 / 730
    assert sum(totals(got).values()) == pytest.approx(11.6 + 0.013 + 0.0225 + 0.545 + unbilled + network, rel=REL)


# The FOCUS hour bill of tests/test_reconcile.py, per line (tax dropped), effective / list / billed:
#   EC2  i-n-sp-od 0.25/0.384/0; i-n-sp-spot 0.11; i-n-gpu 12.24 and a -1.0 credit (list 0);
#        i-old-node 0.5 and i-elsewhere 3.0 (no cluster resource)
#   EBS  pv-gp3 0.011 and a -0.001 refund (list 0); pv-noclass 0.003
#   ELB  payments/api-lb 0.0225;  VPC nat-0abc 0.045 (no cluster resource)
EC2 = 0.25 + 0.11 + 12.24 - 1.0 + 0.5 + 3.0  # 15.10
EC2_K8S = 0.25 + 0.11 + 12.24 - 1.0  # 11.60
EC2_LIST = 0.384 + 0.11 + 12.24 + 0.0 + 0.5 + 3.0  # 16.234
EC2_INVOICED = 0.0 + 0.11 + 12.24 - 1.0 + 0.5 + 3.0  # 14.85
EBS = 0.011 - 0.001 + 0.003  # 0.013


def with_accounts(path: Path) -> Path:
    """Add FOCUS's ProviderName, BillingAccountId and SubAccountId (EC2 in 111, the rest in 222)."""
    rows = list(csv.DictReader(path.open(newline="")))
    out = path.with_name("accounts.csv")
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], "ProviderName", "BillingAccountId", "SubAccountId"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "ProviderName": "AWS", "BillingAccountId": "payer-1",
                        "SubAccountId": "111" if r["ServiceName"] == "Amazon EC2" else "222"})
    return out


def cloud(ex: Exporter, t0: int, **params: str) -> dict[str, Any]:
    return dict(ex.cloud_costs(q(window=window_arg(t0), **params))["data"])


def test_cloud_cost_bases_and_kubernetes_percent(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    bill = with_accounts(hour_bill(tmp_path, t0))
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(bill)]})
    data = cloud(ex, t0, aggregate="service")
    [s] = data["sets"]
    assert s["aggregationProperties"] == ["service"]
    cc = s["cloudCosts"]
    assert set(cc) == {"Amazon EC2", "Amazon EBS", "Elastic Load Balancing", "Amazon VPC"}
    ec2 = cc["Amazon EC2"]
    assert ec2["amortizedNetCost"]["cost"] == pytest.approx(EC2, rel=REL)
    assert ec2["netCost"]["cost"] == pytest.approx(EC2, rel=REL)
    assert ec2["amortizedCost"]["cost"] == pytest.approx(EC2, rel=REL)
    assert ec2["listCost"]["cost"] == pytest.approx(EC2_LIST, rel=REL)
    assert ec2["invoicedCost"]["cost"] == pytest.approx(EC2_INVOICED, rel=REL)
    assert ec2["amortizedNetCost"]["kubernetesPercent"] == pytest.approx(EC2_K8S / EC2, rel=REL)
    assert ec2["listCost"]["kubernetesPercent"] == pytest.approx((0.384 + 0.11 + 12.24) / EC2_LIST, rel=REL)
    assert ec2["properties"]["accountID"] == "111" and ec2["properties"]["category"] == "Compute"
    assert "providerID" not in ec2["properties"]  # the lines differ in it
    assert cc["Amazon EBS"]["netCost"]["cost"] == pytest.approx(EBS, rel=REL)
    assert cc["Amazon EBS"]["listCost"]["cost"] == pytest.approx(0.011 + 0.003, rel=REL)
    assert cc["Amazon EBS"]["netCost"]["kubernetesPercent"] == pytest.approx(1.0, rel=REL)
    assert cc["Elastic Load Balancing"]["netCost"]["kubernetesPercent"] == pytest.approx(1.0, rel=REL)
    assert cc["Amazon VPC"]["netCost"]["kubernetesPercent"] == 0.0


def test_cloud_cost_every_aggregate_key(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(with_accounts(hour_bill(tmp_path, t0)))]})

    def by(key: str) -> dict[str, float]:
        [s] = cloud(ex, t0, aggregate=key)["sets"]
        return {k: v["netCost"]["cost"] for k, v in s["cloudCosts"].items()}

    everything = EC2 + EBS + 0.0225 + 0.045
    assert by("invoiceEntityID") == {"payer-1": pytest.approx(everything, rel=REL)}
    assert by("provider") == {"AWS": pytest.approx(everything, rel=REL)}
    assert by("accountID") == {"111": pytest.approx(EC2, rel=REL), "222": pytest.approx(EBS + 0.0225 + 0.045, rel=REL)}
    assert by("category") == {"Compute": pytest.approx(EC2, rel=REL), "Storage": pytest.approx(EBS, rel=REL),
                              "Network": pytest.approx(0.0225 + 0.045, rel=REL)}
    pid = by("providerID")
    assert pid["i-n-gpu"] == pytest.approx(12.24 - 1.0, rel=REL)
    assert pid["arn:aws:ec2:us-east-1:1:instance/i-n-sp-od"] == pytest.approx(0.25, rel=REL)
    assert pid["pv-gp3"] == pytest.approx(0.010, rel=REL)
    assert by("accountID,category")["222/Network"] == pytest.approx(0.0225 + 0.045, rel=REL)


def test_cloud_cost_filter_step_and_accumulate(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(with_accounts(hour_bill(tmp_path, t0)))]})
    [s] = cloud(ex, t0, aggregate="service", filter='service:"Amazon EBS","Amazon VPC"')["sets"]
    assert {k: v["netCost"]["cost"] for k, v in s["cloudCosts"].items()} == {
        "Amazon EBS": pytest.approx(EBS, rel=REL), "Amazon VPC": pytest.approx(0.045, rel=REL)}
    [s] = cloud(ex, t0, aggregate="service", filter='accountID:"222" + category:"Network"')["sets"]
    assert set(s["cloudCosts"]) == {"Elastic Load Balancing", "Amazon VPC"}
    # Hourly charge periods prorate into 30 m sets: half of every line in each.
    sets = cloud(ex, t0, aggregate="service", step="30m", accumulate="false")["sets"]
    assert len(sets) == 2
    assert [x["cloudCosts"]["Amazon EC2"]["netCost"]["cost"] for x in sets] == [pytest.approx(EC2 / 2, rel=REL)] * 2
    [acc] = cloud(ex, t0, aggregate="service", step="30m", accumulate="true")["sets"]
    ec2 = acc["cloudCosts"]["Amazon EC2"]
    assert ec2["netCost"]["cost"] == pytest.approx(EC2, rel=REL)
    assert ec2["netCost"]["kubernetesPercent"] == pytest.approx(EC2_K8S / EC2, rel=REL)
    assert len(cloud(ex, t0, step="10m")["sets"]) == 6


def test_cloud_cost_filter_grammar_is_allocations(asset_prom: Any, tmp_path: Path) -> None:
    """/cloudCost takes the whole v2 grammar: contains, prefix, suffix, negations, | and parentheses."""
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(with_accounts(hour_bill(tmp_path, t0)))]})

    def net(flt: str) -> dict[str, float]:
        [s] = cloud(ex, t0, aggregate="service", filter=flt)["sets"]
        return {k: v["netCost"]["cost"] for k, v in s["cloudCosts"].items()}

    # "Amazon EC2" contains EC2 (15.10); EBS is the Storage category (0.011 - 0.001 + 0.003 = 0.013).
    assert net('service~:"EC2"|category:"Storage"') == {"Amazon EC2": pytest.approx(15.10, rel=REL),
                                                         "Amazon EBS": pytest.approx(0.013, rel=REL)}
    # Services starting "Amazon E" (EC2, EBS) without the two instances outside the cluster:
    # EC2 0.25 + 0.11 + 12.24 - 1.0 = 11.60; EBS 0.013 (its pv- ids end in neither).
    assert net('service<~:"Amazon E"+providerID!~>:"i-old-node","i-elsewhere"') == {
        "Amazon EC2": pytest.approx(11.60, rel=REL), "Amazon EBS": pytest.approx(0.013, rel=REL)}
    # OpenCost's v1 plural names, and a negated group: account 222 less Storage = ELB 0.0225 + VPC 0.045.
    assert net('accountIDs:"222"+(categories!:"Storage")') == {"Elastic Load Balancing": pytest.approx(0.0225, rel=REL),
                                                               "Amazon VPC": pytest.approx(0.045, rel=REL)}


def test_cloud_cost_accumulate_by_calendar_period(asset_prom: Any, tmp_path: Path) -> None:
    """OpenCost's accumulate for /cloudCost: all, hour, day (the default), week, month, quarter."""
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(with_accounts(hour_bill(tmp_path, t0)))]})

    def sets(start: int, end: int, **params: str) -> list[dict[str, float]]:
        w = f"{window_arg(start, 0).split(',')[0]},{window_arg(end, 0).split(',')[0]}"
        got = ex.cloud_costs(q(window=w, aggregate="service", **params))["data"]["sets"]
        return [{k: v["netCost"]["cost"] for k, v in s["cloudCosts"].items()} for s in got]

    # Three hours around the billed one, by hour: the bill's hour is the middle set.
    by_hour = sets(t0 - 3600, t0 + 7200, accumulate="hour")
    assert len(by_hour) == 3 and by_hour[0] == {} and by_hour[2] == {}
    assert by_hour[1]["Amazon EC2"] == pytest.approx(EC2, rel=REL)
    # From the hour before t0's UTC midnight to t0 + 1 h: two days by default, the bill in the second.
    midnight = t0 // 86400 * 86400
    by_day = sets(midnight - 3600, t0 + 3600)
    assert len(by_day) == 2 and by_day[0] == {} and by_day[1]["Amazon EC2"] == pytest.approx(EC2, rel=REL)
    assert len(sets(midnight - 3600, t0 + 3600, accumulate="all")) == 1
    first_of_month = datetime.fromtimestamp(midnight, tz=timezone.utc).day == 1
    assert len(sets(midnight - 3600, t0 + 3600, accumulate="month")) == (2 if first_of_month else 1)


def test_cloud_cost_from_cur_and_gcp_exports(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    start, end = window_arg(t0).split(",")
    cur = tmp_path / "cur.csv.gz"
    with gzip.open(cur, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["line_item_line_item_type", "line_item_unblended_cost", "line_item_resource_id",
                    "line_item_usage_start_date", "line_item_usage_end_date", "line_item_currency_code",
                    "line_item_product_code", "line_item_usage_type", "savings_plan_savings_plan_effective_cost",
                    "reservation_effective_cost", "bill_payer_account_id", "line_item_usage_account_id",
                    "pricing_public_on_demand_cost"])
        w.writerow(["SavingsPlanCoveredUsage", "0.384", "i-n-sp-od", start, end, "USD", "AmazonEC2", "BoxUsage",
                    "0.25", "", "payer-1", "111", "0.384"])
        w.writerow(["Usage", "0.11", "i-n-sp-spot", start, end, "USD", "AmazonEC2", "SpotUsage", "", "", "payer-1",
                    "111", "0.384"])
    gcp = tmp_path / "gcp.csv"
    with gcp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["cost", "credits", "currency", "usage_start_time", "usage_end_time", "service.description",
                    "sku.description", "resource.global_name", "labels", "cost_type", "cost_at_list",
                    "billing_account_id", "project.id"])
        w.writerow([12.24, json.dumps([{"amount": -1.0}]), "USD", start, end, "Compute Engine", "Core",
                    "//compute.googleapis.com/projects/p/zones/z/instances/i-n-gpu", "[]", "regular", 13.0,
                    "gcp-billing", "proj"])
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(cur), str(gcp)]})
    [s] = cloud(ex, t0, aggregate="provider")["sets"]
    aws, google = s["cloudCosts"]["AWS"], s["cloudCosts"]["GCP"]
    # AWS: Savings Plan effective 0.25 (invoiced on the plan's fee line, so 0 here) + spot 0.11; list 2 x 0.384.
    assert aws["amortizedNetCost"]["cost"] == pytest.approx(0.36, rel=REL)
    assert aws["invoicedCost"]["cost"] == pytest.approx(0.11, rel=REL)
    assert aws["listCost"]["cost"] == pytest.approx(0.768, rel=REL)
    assert aws["properties"]["invoiceEntityID"] == "payer-1" and aws["properties"]["accountID"] == "111"
    # GCP: 12.24 less a 1.00 credit; list 13.00; all of it is the cluster's GPU node.
    assert google["netCost"]["cost"] == pytest.approx(11.24, rel=REL)
    assert google["invoicedCost"]["cost"] == pytest.approx(11.24, rel=REL)
    assert google["listCost"]["cost"] == pytest.approx(13.0, rel=REL)
    assert google["netCost"]["kubernetesPercent"] == pytest.approx(1.0, rel=REL)
    [s] = cloud(ex, t0, aggregate="invoiceEntityID")["sets"]
    assert set(s["cloudCosts"]) == {"payer-1", "gcp-billing"}
    [s] = cloud(ex, t0, aggregate="accountID")["sets"]
    assert s["cloudCosts"]["proj"]["amortizedCost"]["cost"] == pytest.approx(11.24, rel=REL)


def test_both_endpoints_over_http_with_clear_errors(asset_prom: Any, http: str) -> None:
    t0 = asset_prom[1]
    w = window_arg(t0)
    r = requests.get(f"{http}/assets", params={"window": w, "aggregate": "type", "accumulate": "true"}, timeout=60)
    assert r.status_code == 200 and r.json()["code"] == 200
    assert r.json()["data"]["Node"]["totalCost"] == pytest.approx(NODES, rel=REL)
    r = requests.get(f"{http}/cloudCost", params={"window": w, "aggregate": "category"}, timeout=60)
    assert r.status_code == 200
    assert (r.json()["code"], r.json()["status"]) == (200, "success")  # OpenCost's cloud-cost envelope
    assert r.json()["data"]["sets"][0]["cloudCosts"]["Storage"]["netCost"]["cost"] == pytest.approx(EBS, rel=REL)
    for path, params, message in [
        ("/assets", {"window": w, "aggregate": "namespace"}, "'namespace' is not one of provider, account"),
        ("/assets", {"window": w, "accumulate": "maybe"}, "accumulate='maybe': use true or false"),
        ("/assets", {"window": w, "step": "7s"}, "must be a positive multiple of the resolution"),
        ("/cloudCost", {"window": w, "accumulate": "fortnight"}, "accumulate='fortnight': use one of all, true"),
        ("/cloudCost", {"window": w, "aggregate": "region"}, "'region' is not one of invoiceEntityID"),
        # The shared filter grammar (allocfilter): errors name the position.
        ("/cloudCost", {"window": w, "filter": 'service~"EC2"'}, "filter position 7: unexpected character '~'"),
        ("/cloudCost", {"window": w, "filter": 'region:"x"'},
         "filter position 0: unknown field 'region'; use invoiceEntityID"),
        ("/cloudCost", {"window": w, "filter": 'service:"a" service:"b"'}, "filter position 12: expected '+'"),
        ("/cloudCost", {"window": w, "filter": 'service:"a" | service:"b" + category:"c"'},
         "filter position 26: '+' and '|' are mixed"),
        ("/cloudCost", {"window": "yesterdayish"}, "invalid window"),
    ]:
        r = requests.get(f"{http}{path}", params=params, timeout=60)
        assert r.status_code == 400, (path, params, r.text)
        assert message in r.json()["message"], (path, params, r.json())


def test_cloud_cost_without_bills_is_a_clear_400(asset_prom: Any) -> None:
    ex = exporter_for(asset_prom)
    from exporter.vocab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"reconciliation\.bills matches no file"):
        ex.cloud_costs(q(window="1h"))


def test_cloud_cost_calendar_periods_by_hand() -> None:
    from exporter.core.window import Window, iso
    from exporter.outputs.cloudcost import calendar_windows

    def utc(*a: int) -> int:
        return int(datetime(*a).replace(tzinfo=timezone.utc).timestamp())  # type: ignore[arg-type]

    def cut(start: int, end: int, period: str) -> list[tuple[str, str]]:
        return [(iso(w.start), iso(w.end)) for w in calendar_windows(Window(start, end, 60), period)]

    # 2026-11-29 is a Sunday: OpenCost's weeks start there.
    assert cut(utc(2026, 11, 25, 5), utc(2026, 12, 7), "weekly") == [
        ("2026-11-25T05:00:00Z", "2026-11-29T00:00:00Z"), ("2026-11-29T00:00:00Z", "2026-12-06T00:00:00Z"),
        ("2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z")]
    assert cut(utc(2026, 8, 15), utc(2027, 1, 2), "quarter") == [
        ("2026-08-15T00:00:00Z", "2026-10-01T00:00:00Z"), ("2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z")]
    assert cut(utc(2026, 11, 30, 22, 30), utc(2026, 12, 1, 1), "hour") == [
        ("2026-11-30T22:30:00Z", "2026-11-30T23:00:00Z"), ("2026-11-30T23:00:00Z", "2026-12-01T00:00:00Z"),
        ("2026-12-01T00:00:00Z", "2026-12-01T01:00:00Z")]
