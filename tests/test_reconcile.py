"""Reconciliation against synthetic bills in each format, written here with the real column names.

The cluster is scenarios.asset_cluster over one hour; its computed costs are hand-worked in
test_assets (nodes 0.25, 0.1152, 12.24, 0.192; the PVs and load balancers there)."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from exporter.cli import main
from exporter.sources.billing import read_bill
from exporter.vocab.errors import ConfigError

from .test_allocate_core import REL, window_arg

FOCUS = ["BilledCost", "EffectiveCost", "ListCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd",
         "ChargeCategory", "ResourceId", "ServiceName", "ServiceCategory", "Tags", "PricingQuantity", "PricingUnit"]


CLUSTER_TAG = json.dumps({"aws:eks:cluster-name": "demo"})
RECONCILIATION = {"clusterTags": {"aws:eks:cluster-name": "demo"}}


def iso(t: int) -> str:
    return window_arg(t, 0).split(",")[0]


def focus_bill(path: Path, t0: int, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FOCUS)
        w.writeheader()
        for r in rows:
            w.writerow({"BillingCurrency": "USD", "ChargePeriodStart": iso(t0), "ChargePeriodEnd": iso(t0 + 3600),
                        "ChargeCategory": "Usage", "Tags": "{}", "ServiceCategory": "Compute", **r,
                        "BilledCost": r.get("BilledCost", r.get("EffectiveCost")),
                        "ListCost": r.get("ListCost", r.get("EffectiveCost"))})
    return path


def hour_bill(tmp_path: Path, t0: int) -> Path:
    rows = [
        # Savings Plan node: effective 0.25 against a 0.384 list price.
        # The invoice shows nothing for it: the plan's fee is billed on its own line.
        {"ResourceId": "arn:aws:ec2:us-east-1:1:instance/i-n-sp-od", "ServiceName": "Amazon EC2",
         "EffectiveCost": 0.25, "ListCost": 0.384, "BilledCost": 0.0, "PricingQuantity": 1, "PricingUnit": "Hours"},
        {"ResourceId": "i-n-sp-spot", "ServiceName": "Amazon EC2", "EffectiveCost": 0.11},  # actual spot price
        {"ResourceId": "i-n-gpu", "ServiceName": "Amazon EC2", "EffectiveCost": 12.24},
        {"ResourceId": "i-n-gpu", "ServiceName": "Amazon EC2", "EffectiveCost": -1.0, "ChargeCategory": "Credit",
         "ListCost": 0.0},
        # n-shipped is in the cluster but not on this bill; i-old-node is on the bill but gone.
        {"ResourceId": "i-old-node", "ServiceName": "Amazon EC2", "EffectiveCost": 0.5, "Tags": CLUSTER_TAG},
        # Another cluster's node in the same account: not ours, ignored when cluster tags are set.
        {"ResourceId": "i-elsewhere", "ServiceName": "Amazon EC2", "EffectiveCost": 3.0,
         "Tags": json.dumps({"aws:eks:cluster-name": "other"})},
        {"ResourceId": "pv-gp3", "ServiceName": "Amazon EBS", "ServiceCategory": "Storage",
         "EffectiveCost": 0.011},
        {"ResourceId": "pv-gp3", "ServiceName": "Amazon EBS", "ServiceCategory": "Storage", "EffectiveCost": -0.001,
         "ChargeCategory": "Adjustment", "ListCost": 0.0},  # a refund
        {"ResourceId": "pv-noclass", "ServiceName": "Amazon EBS", "ServiceCategory": "Storage", "EffectiveCost": 0.003},
        {"ResourceId": "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/k8s-payments/abc",
         "ServiceName": "Elastic Load Balancing", "ServiceCategory": "Networking", "EffectiveCost": 0.0225,
         "Tags": json.dumps({"kubernetes.io/service-name": "payments/api-lb"})},
        {"ResourceId": "nat-0abc", "ServiceName": "Amazon VPC", "ServiceCategory": "Networking",
         "EffectiveCost": 0.045, "Tags": CLUSTER_TAG},
        {"ResourceId": "", "ServiceName": "Tax", "EffectiveCost": 1.0, "ChargeCategory": "Tax"},
    ]
    return focus_bill(tmp_path / "focus.csv", t0, rows)


def reconcile_json(prom_url: str, t0: int, tmp_path: Path, *bills: Path) -> Any:
    cfg = tmp_path / "c.yaml"
    from .scenarios import ASSET_CONFIG
    cfg.write_text(yaml.safe_dump({**ASSET_CONFIG, "prometheus": {"url": prom_url},
                                   "reconciliation": RECONCILIATION}))
    args = ["reconcile", "--config", str(cfg), "--window", window_arg(t0), "--format", "json"]
    for b in bills:
        args += ["--bill", str(b)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_focus_bill_against_the_cluster(asset_prom: Any, tmp_path: Path) -> None:
    prom, t0 = asset_prom
    rec = reconcile_json(prom.url, t0, tmp_path, hour_bill(tmp_path, t0))
    cats = {c["category"]: c for c in rec["categories"]}
    # compute: the bill has 0.25 + 0.11 + (12.24 - 1.00) for the three matched nodes;
    # chargeback computed all four nodes: 0.25 + 0.1152 + 12.24 + 0.192.
    assert cats["compute"]["bill"] == pytest.approx(0.25 + 0.11 + 11.24, rel=REL)
    assert cats["compute"]["computed"] == pytest.approx(0.25 + 0.1152 + 12.24 + 0.192, rel=REL)
    assert cats["compute"]["variance"] == pytest.approx((12.7972 - 11.6) / 11.6, rel=REL)
    # storage: pv-gp3 0.011 - 0.001 refund, pv-noclass 0.003; computed covers all four PVs.
    assert cats["storage"]["bill"] == pytest.approx(0.013, rel=REL)
    computed_storage = 100 * 0.08 / 730 + 50 * 0.04 / 730 + 20 * 0.0002 + 10 * 0.08 / 730
    assert cats["storage"]["computed"] == pytest.approx(computed_storage, rel=REL)
    assert cats["load_balancer"]["bill"] == pytest.approx(0.0225, rel=REL)
    assert cats["load_balancer"]["computed"] == pytest.approx(0.03 + 0.025, rel=REL)
    # At list prices: the Savings Plan node 0.384, spot 0.11, the GPU node 12.24 (its credit lists at 0).
    assert cats["compute"]["list"] == pytest.approx(0.384 + 0.11 + 12.24, rel=REL)
    assert cats["storage"]["list"] == pytest.approx(0.011 + 0.003, rel=REL)  # the refund lists at 0
    # Cash basis: the Savings Plan node's usage is invoiced at 0 (its fee is a separate line).
    assert cats["compute"]["invoiced"] == pytest.approx(0.0 + 0.11 + 12.24 - 1.0, rel=REL)
    nodes = {n["node"]: n for n in rec["nodes"]}
    assert nodes["n-sp-od"]["bill"] == pytest.approx(0.25, rel=REL) and nodes["n-sp-od"]["instance"] == "i-n-sp-od"
    assert nodes["n-sp-od"]["list"] == pytest.approx(0.384, rel=REL)
    # PricingQuantity: 1 hour at an effective 0.25/h, the rate to put in the price book.
    assert (nodes["n-sp-od"]["billedHours"], nodes["n-sp-od"]["billHourly"]) == (1.0, pytest.approx(0.25, rel=REL))
    assert nodes["n-sp-spot"]["billedHours"] is None  # its line states no quantity
    assert nodes["n-shipped"]["bill"] is None  # in the cluster, not on the bill
    assert rec["unmatched"] == pytest.approx({"Amazon EC2": 0.5}, rel=REL)  # the gone node
    # The cluster's NAT gateway line is billed network (spread by internet bytes when reconciled).
    assert rec["nat"] == pytest.approx({"nat-0abc": 0.045}, rel=REL)
    assert cats["network"]["bill"] == pytest.approx(0.045, rel=REL)
    assert rec["ignored"] == {"tax line": 1, "not this cluster (no cluster tag)": 1}
    total_bill = 11.6 + 0.013 + 0.0225 + 0.045
    assert rec["totalBill"] == pytest.approx(total_bill, rel=REL)
    assert rec["verdict"].startswith("off by")


def test_half_the_charge_period_is_prorated(asset_prom: Any, tmp_path: Path) -> None:
    prom, t0 = asset_prom
    # A two-hour charge period of 0.50 for n-sp-od overlaps the one-hour window by half.
    path = focus_bill(tmp_path / "two-hours.csv", t0, [{"ResourceId": "i-n-sp-od", "ServiceName": "Amazon EC2",
                                                         "EffectiveCost": 0.5, "ChargePeriodEnd": iso(t0 + 7200)}])
    rec = reconcile_json(prom.url, t0, tmp_path, path)
    nodes = {n["node"]: n for n in rec["nodes"]}
    assert nodes["n-sp-od"]["bill"] == pytest.approx(0.25, rel=REL)


def test_computed_at_list_prices_points_at_missing_discounts(asset_prom: Any, tmp_path: Path) -> None:
    prom, t0 = asset_prom
    # The GPU node is priced from the shipped list (12.24/h); the bill lists it at 12.24 but charges
    # 11.016 after a 10% enterprise discount the price book does not know about.
    path = focus_bill(tmp_path / "focus.csv", t0, [{"ResourceId": "i-n-gpu", "ServiceName": "Amazon EC2",
                                                    "EffectiveCost": 11.016, "ListCost": 12.24,
                                                    "PricingQuantity": 1, "PricingUnit": "Hours"}])
    rec = reconcile_json(prom.url, t0, tmp_path, path)
    # Totals compare the billed category (compute): all four nodes computed against the one billed.
    computed = 0.25 + 0.1152 + 12.24 + 0.192
    assert rec["verdict"] == (
        f"off by {100 * (computed - 11.016) / 11.016:.1f}% (over the bill): check the price book and discounts; "
        "the billed nodes are priced within 0.0% of their list cost and the bill is 10.0% below list, so the gap "
        "is discounts: set effectiveHourly or discount in the price book, or allocate with --reconciled")
    assert rec["totalList"] == pytest.approx(12.24, rel=REL)
    # Where the computed price is not the list price (a Savings Plan rate in the price book), no such hint.
    (tmp_path / "sp").mkdir()
    # Its quantity is 8 vCPU-hours in the one-hour window: not instance-hours, so no hourly rate is derived.
    path = focus_bill(tmp_path / "sp" / "focus.csv", t0, [{"ResourceId": "i-n-sp-od", "ServiceName": "Amazon EC2",
                                                           "EffectiveCost": 0.2, "ListCost": 0.384,
                                                           "PricingQuantity": 8, "PricingUnit": "Hours"}])
    rec = reconcile_json(prom.url, t0, tmp_path / "sp", path)
    assert rec["verdict"].startswith("off by")
    node = next(n for n in rec["nodes"] if n["node"] == "n-sp-od")
    assert (node["billedHours"], node["billHourly"]) == (None, None)
    assert "list cost" not in rec["verdict"]


def test_cur2_effective_costs(tmp_path: Path) -> None:
    cols = ["line_item_line_item_type", "line_item_unblended_cost", "line_item_resource_id",
            "line_item_usage_start_date", "line_item_usage_end_date", "line_item_currency_code",
            "line_item_product_code", "line_item_usage_type", "savings_plan_savings_plan_effective_cost",
            "reservation_effective_cost", "split_line_item_split_cost", "split_line_item_unused_cost",
            "resource_tags", "pricing_public_on_demand_cost", "line_item_usage_amount", "pricing_unit"]
    rows = [
        ("SavingsPlanCoveredUsage", "0.384", "i-a", "0.25", ""),  # unblended is on-demand; effective counts
        ("SavingsPlanNegation", "-0.384", "i-a", "", ""),
        ("DiscountedUsage", "0.192", "i-b", "", "0.12"),  # RI: reservation effective cost
        ("Usage", "0.07", "i-c", "", ""),  # spot: on-demand would be 0.192
        ("Tax", "0.9", "", "", ""),
    ]
    public = {"i-a": "0.384", "i-b": "0.192", "i-c": "0.192"}
    path = tmp_path / "cur.csv.gz"
    with gzip.open(path, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for kind, unblended, res, sp, ri in rows:
            w.writerow([kind, unblended, res, "2026-11-01T00:00:00Z", "2026-11-01T01:00:00Z", "USD",
                        "AmazonEC2", "BoxUsage:m5.2xlarge", sp, ri, "", "", json.dumps({"user:team": "a"}),
                        public.get(res, ""), "1" if res else "", "Hrs" if res else ""])
    bill = read_bill([path])
    assert [(ln.resource, ln.cost, ln.category) for ln in bill.lines] == [
        ("i-a", 0.25, "compute"), ("i-b", 0.12, "compute"), ("i-c", 0.07, "compute")]
    # List prices, and the invoice: covered usage is paid through the plan's and reservation's fee lines.
    assert [(ln.list_cost, ln.invoiced, ln.quantity, ln.unit) for ln in bill.lines] == [
        (0.384, None, 1.0, "Hrs"), (0.192, None, 1.0, "Hrs"), (0.192, 0.07, 1.0, "Hrs")]
    assert sum(bill.ignored.values()) == 2 and bill.ignored["tax line"] == 1
    assert bill.lines[0].tags == {"user:team": "a"}


def test_gcp_export_with_credits(tmp_path: Path) -> None:
    cols = ["cost", "credits", "currency", "usage_start_time", "usage_end_time", "service.description",
            "sku.description", "resource.global_name", "labels", "cost_type", "cost_at_list",
            "usage.amount_in_pricing_units", "usage.pricing_unit"]
    path = tmp_path / "gcp.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerow(["0.2", json.dumps([{"name": "CUD", "amount": -0.05}]), "USD", "2026-11-01 00:00:00 UTC",
                    "2026-11-01 01:00:00 UTC", "Compute Engine", "N2 Instance Core",
                    "//compute.googleapis.com/projects/p/zones/z/instances/gke-pool-1",
                    json.dumps([{"key": "goog-k8s-cluster-name", "value": "prod"}]), "regular", "0.25", "4", "hour"])
        w.writerow(["0.02", "[]", "USD", "2026-11-01 00:00:00 UTC", "2026-11-01 01:00:00 UTC", "Tax", "", "", "[]",
                    "tax", "", "", ""])
    bill = read_bill([path])
    [line] = bill.lines
    assert (line.resource, line.cost, line.category) == ("gke-pool-1", pytest.approx(0.15), "compute")
    assert (line.list_cost, line.invoiced, line.quantity, line.unit) == (0.25, pytest.approx(0.15), 4.0, "hour")
    assert line.tags == {"goog-k8s-cluster-name": "prod"} and bill.ignored == {"tax line": 1}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda rows: [{k: v for k, v in r.items() if k != "EffectiveCost"} for r in rows], "without column EffectiveCost"),
    (lambda rows: [{**rows[0], "EffectiveCost": "12,5"}], "focus.csv:2: column EffectiveCost: not a number: '12,5'"),
    (lambda rows: [rows[0], {**rows[0], "BillingCurrency": "EUR", "ResourceId": "i-x"}],
     "focus.csv:3: column currency: 'EUR' mixed with 'USD'"),
    (lambda rows: [rows[0], rows[0]], "focus.csv:3: duplicate of focus.csv:2"),
    (lambda rows: [{**rows[0], "ChargePeriodStart": "yesterday"}], "column ChargePeriodStart: not a timestamp"),
    (lambda rows: [{**rows[0], "PricingQuantity": "1 hr"}], "focus.csv:2: column PricingQuantity: not a number"),
])
def test_bad_bills_name_file_line_and_column(tmp_path: Path, edit: Any, message: str) -> None:
    base = [{"BilledCost": "1", "EffectiveCost": "1", "ListCost": "1", "BillingCurrency": "USD",
             "ChargePeriodStart": "2026-11-01T00:00:00Z", "ChargePeriodEnd": "2026-11-01T01:00:00Z",
             "ChargeCategory": "Usage", "ResourceId": "i-a", "ServiceName": "EC2", "ServiceCategory": "Compute",
             "Tags": "{}"}]
    rows = edit(base)
    path = tmp_path / "focus.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ConfigError, match=None) as err:
        read_bill([path])
    assert message in str(err.value)


def test_overlapping_bill_files_are_refused(tmp_path: Path) -> None:
    a = focus_bill(tmp_path / "a.csv", 1_800_000_000, [{"ResourceId": "i-a", "ServiceName": "EC2",
                                                        "EffectiveCost": 1}])
    b = focus_bill(tmp_path / "b.csv", 1_800_000_000, [{"ResourceId": "i-b", "ServiceName": "EC2",
                                                        "EffectiveCost": 1}])
    with pytest.raises(ConfigError, match="overlaps"):
        read_bill([a, b])


def test_reconciled_allocation_uses_the_bill_prices(asset_prom: Any, tmp_path: Path) -> None:
    prom, t0 = asset_prom
    from .scenarios import ASSET_CONFIG
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**ASSET_CONFIG, "prometheus": {"url": prom.url}, "reconciliation": RECONCILIATION}))
    res = CliRunner().invoke(main, ["reconcile", "--config", str(cfg), "--window", window_arg(t0), "--bill",
                                    str(hour_bill(tmp_path, t0)), "--reconciled", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["data"][0]
    # Billed assets now cost exactly their bill lines: pv-gp3 0.011 - 0.001, payments' load balancer 0.0225.
    assert data["payments"]["pvCost"] == pytest.approx(0.010, rel=REL)
    assert data["payments"]["loadBalancerCost"] == pytest.approx(0.0225, rel=REL)
    # search: pv-noclass at its bill 0.003; pv-opencost is not on the bill and keeps 20 GiB x 0.0002.
    assert data["search"]["pvCost"] == pytest.approx(0.003 + 20 * 0.0002, rel=REL)
    # The GPU node's bill is 12.24 - 1.00 credit: every rate on it scales by 11.24 / 12.24 (V100s at 2.48).
    assert data["ml"]["gpuCost"] == pytest.approx(2 * 2.48 * 11.24 / 12.24, rel=REL)
    # Conservation against the bill: everything billed (matched 11.6 + 0.013 + 0.0225, unmatched 0.5 shared,
    # the NAT line 0.045 spread by internet bytes), plus what the bill does not cover at its computed cost:
    # node n-shipped 0.192, pv-orphan, pv-opencost, search's load balancer and the network (the configured
    # NAT amount spread and classified egress).
    unbilled = 0.192 + 10 * 0.08 / 730 + 20 * 0.0002 + 0.025
    network = 0.5 * 0.12 + 1.0 * 0.01 + 0.25 * 0.02 + 73 / 730
    total = 11.6 + 0.013 + 0.0225 + 0.545 + unbilled + network
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(total, rel=REL)
    assert "nodes not on the bill kept at their computed 0.19" in res.stderr


def test_serve_publishes_the_variance(asset_prom: Any, tmp_path: Path) -> None:
    from exporter.config.schema import parse_config
    from exporter.serve.server import Exporter

    from .scenarios import ASSET_CONFIG

    prom, t0 = asset_prom
    bill = hour_bill(tmp_path, t0)
    exporter = Exporter(parse_config({**ASSET_CONFIG, "prometheus": {"url": prom.url},
                                      "reconciliation": {"bills": [str(tmp_path / "*.csv")],
                                                         "window": window_arg(t0)}}))
    exporter.reconcile_once()
    assert exporter.health.reconciliation_error is None and bill.exists()
    reg = exporter.registry
    span = {"window_start": str(t0), "window_end": str(t0 + 3600)}
    assert reg.get_sample_value("chargeback_bill_cost", {"category": "compute", **span}) == pytest.approx(11.6, rel=REL)
    assert reg.get_sample_value("chargeback_reconciliation_variance_ratio", {"category": "compute", **span}) == \
        pytest.approx((12.7972 - 11.6) / 11.6, rel=REL)
    assert reg.get_sample_value("chargeback_bill_unmatched_cost", {"service": "Amazon VPC", **span}) == \
        pytest.approx(0.045, rel=REL)
    # A glob that matches nothing is an error, logged and kept, never a silent zero.
    bad = Exporter(parse_config({"prometheus": {"url": prom.url},
                                 "reconciliation": {"bills": [str(tmp_path / "none-*.csv")]}}))
    bad.reconcile_once()
    assert "matches no file" in (bad.health.reconciliation_error or "")
    assert bad.registry.get_sample_value("chargeback_reconciliation_variance_ratio", {"category": "total"}) is None


def test_parquet_needs_the_optional_extra(tmp_path: Path) -> None:
    path = tmp_path / "bill.parquet"
    path.write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"reading Parquet needs pyarrow: pip install 'chargeback\[parquet\]'"):
            read_bill([path])
    else:  # the dev extras bring pyarrow (through focus-validator): a corrupt file is one line naming it
        with pytest.raises(ConfigError, match=r"bill .*bill.parquet: not a readable Parquet file"):
            read_bill([path])


def test_missing_bill_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_bill([tmp_path / "nope.csv"])


def test_cur2_and_gcp_bills_reconcile_like_focus(asset_prom: Any, tmp_path: Path) -> None:
    """The same compute bill in CUR 2.0 (Savings Plan + RI + spot) and in GCP's export (with a credit)."""
    prom, t0 = asset_prom
    start, end = iso(t0), iso(t0 + 3600)
    cur = tmp_path / "cur" / "cur.csv.gz"
    cur.parent.mkdir()
    cols = ["line_item_line_item_type", "line_item_unblended_cost", "line_item_resource_id",
            "line_item_usage_start_date", "line_item_usage_end_date", "line_item_currency_code",
            "line_item_product_code", "line_item_usage_type", "savings_plan_savings_plan_effective_cost",
            "reservation_effective_cost"]
    with gzip.open(cur, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for kind, unblended, res, sp, ri in [("SavingsPlanCoveredUsage", "0.384", "i-n-sp-od", "0.25", ""),
                                             ("SavingsPlanNegation", "-0.384", "i-n-sp-od", "", ""),
                                             ("Usage", "0.11", "i-n-sp-spot", "", ""),
                                             ("DiscountedUsage", "12.24", "i-n-gpu", "", "11.24"),
                                             ("Tax", "0.8", "", "", "")]:
            w.writerow([kind, unblended, res, start, end, "USD", "AmazonEC2", "BoxUsage", sp, ri])
    gcp = tmp_path / "gcp" / "gcp.csv"
    gcp.parent.mkdir()
    with gcp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["cost", "credits", "currency", "usage_start_time", "usage_end_time", "service.description",
                    "sku.description", "resource.global_name", "labels", "cost_type"])
        for res, cost, credit in [("i-n-sp-od", 0.25, 0.0), ("i-n-sp-spot", 0.11, 0.0), ("i-n-gpu", 12.24, -1.0)]:
            w.writerow([cost, json.dumps([{"amount": credit}]), "USD", start, end, "Compute Engine", "Core",
                        f"//compute.googleapis.com/projects/p/zones/z/instances/{res}", "[]", "regular"])
    for bill in (cur, gcp):
        rec = reconcile_json(prom.url, t0, bill.parent, bill)
        cats = {c["category"]: c for c in rec["categories"]}
        assert cats["compute"]["bill"] == pytest.approx(0.25 + 0.11 + 11.24, rel=REL), bill.name
        assert {n["node"]: n["bill"] for n in rec["nodes"]}["n-gpu"] == pytest.approx(11.24, rel=REL)


def test_without_cluster_tags_unmatched_lines_are_listed_but_not_shared(asset_prom: Any,
                                                                         tmp_path: Path) -> None:
    prom, t0 = asset_prom
    from .scenarios import ASSET_CONFIG
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**ASSET_CONFIG, "prometheus": {"url": prom.url}}))
    bill = str(hour_bill(tmp_path, t0))
    res = CliRunner().invoke(main, ["reconcile", "--config", str(cfg), "--window", window_arg(t0), "--bill", bill])
    assert "Amazon EC2" in res.stdout and "set reconciliation.clusterTags" in res.stdout  # 0.5 + 3.0, listed
    res = CliRunner().invoke(main, ["reconcile", "--config", str(cfg), "--window", window_arg(t0), "--bill", bill,
                                    "--reconciled", "--format", "json"])
    assert res.exit_code == 0 and "0.00 shared" in res.stderr and "not shared" in res.stderr


def test_eks_split_cost_rows_are_compared_per_namespace(asset_prom: Any, tmp_path: Path) -> None:
    """CUR 2.0 with Split Cost Allocation Data: pod rows carry split/unused cost under their parent instance."""
    prom, t0 = asset_prom
    from .test_assets import COMPUTE, LB, NETWORK, STORAGE
    start, end = iso(t0), iso(t0 + 3600)
    cols = ["line_item_line_item_type", "line_item_unblended_cost", "line_item_resource_id",
            "line_item_usage_start_date", "line_item_usage_end_date", "line_item_currency_code",
            "line_item_product_code", "line_item_usage_type", "split_line_item_parent_resource_id",
            "split_line_item_split_cost", "split_line_item_unused_cost", "resource_tags"]
    path = tmp_path / "cur" / "cur.csv"
    path.parent.mkdir()
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerow(["Usage", "0.25", "i-n-sp-od", start, end, "USD", "AmazonEC2", "BoxUsage", "", "", "", "{}"])
        w.writerow(["Usage", "0", "arn:aws:eks:us-east-1:1:pod/c/payments/api", start, end, "USD", "AmazonEKS",
                    "SplitCost", "i-n-sp-od", "0.08", "0.11", json.dumps({"aws:eks:namespace": "payments"})])
    rec = reconcile_json(prom.url, t0, path.parent, path)
    cats = {c["category"]: c for c in rec["categories"]}
    assert cats["compute"]["bill"] == pytest.approx(0.25, rel=REL)  # the split row adds nothing to the total
    assert rec["ignored"][next(k for k in rec["ignored"] if k.startswith("EKS split-cost row"))] == 1
    payments = rec["namespaces"]["payments"]
    assert (payments["split"], payments["unused"]) == (pytest.approx(0.08), pytest.approx(0.11))
    # chargeback's payments: its compute on n-sp-od plus its volume, load balancer and network.
    mine = COMPUTE["payments"] + STORAGE["payments"] + LB["payments"] + NETWORK["payments"]
    assert payments["chargeback"] == pytest.approx(mine, rel=REL)


def test_load_balancer_matched_by_name(asset_prom: Any, tmp_path: Path) -> None:
    prom, t0 = asset_prom
    (tmp_path / "lb").mkdir()
    path = focus_bill(tmp_path / "lb" / "focus.csv", t0, [
        {"ResourceId": "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/k8s-search-web-lb-4f2a/9c",
         "ServiceName": "Elastic Load Balancing", "ServiceCategory": "Networking", "EffectiveCost": 0.02}])
    rec = reconcile_json(prom.url, t0, path.parent, path)
    cats = {c["category"]: c for c in rec["categories"]}
    assert cats["load_balancer"]["bill"] == pytest.approx(0.02, rel=REL) and not rec["unmatched"]


def test_every_table_amount_is_rounded(asset_prom: Any, tmp_path: Path) -> None:
    """The human table rounds every amount, in columns that mix amounts and words too (the list-price column
    has "-" for categories without list prices; the demo's printed 1750.2866000000001)."""
    prom, t0 = asset_prom
    cfg = tmp_path / "c.yaml"
    from .scenarios import ASSET_CONFIG
    cfg.write_text(yaml.safe_dump({**ASSET_CONFIG, "prometheus": {"url": prom.url},
                                   "reconciliation": RECONCILIATION}))
    res = CliRunner().invoke(main, ["reconcile", "--config", str(cfg), "--window", window_arg(t0), "--format",
                                    "table", "--bill", str(hour_bill(tmp_path, t0))])
    assert res.exit_code == 0, res.output
    assert not re.findall(r"\d\.\d{5,}", res.stdout), res.stdout
    # compute at list prices 0.384 + 0.11 + 12.24 = 12.734 and billed 0.25 + 0.11 + 11.24 = 11.6, to 4 decimals.
    compute = next(line for line in res.stdout.splitlines() if line.startswith("compute"))
    assert compute.split()[1] == "11.6000" and compute.split()[-1] == "12.7340"
