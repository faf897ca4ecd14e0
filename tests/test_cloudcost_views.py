"""OpenCost's Cloud Costs and External Costs pages' endpoints on a real Prometheus (the assets scenario) and
the FOCUS hour bill of tests/test_reconcile.py with accounts (tests/test_assets_api.with_accounts):
/cloudCost/view/{table,totals,graph}, /cloudCost/status, /customCost/{total,timeseries}.

The bill's hour at t0, per line (effective; list and billed equal it unless said), account 111 for EC2,
222 for the rest:
  EC2  i-n-sp-od 0.25 (list 0.384, billed 0), i-n-sp-spot 0.11, i-n-gpu 12.24 and -1.0 credit (list 0):
       the cluster's nodes; i-old-node 0.5 and i-elsewhere 3.0: no cluster resource.    EC2 = 15.10
  EBS  pv-gp3 0.011 and -0.001 refund (list 0), pv-noclass 0.003: cluster volumes.       EBS = 0.013
  ELB  payments/api-lb 0.0225 (the cluster's);  VPC nat-0abc 0.045 (no cluster resource)
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from demo.localprom import free_port
from exporter.core.window import Window
from exporter.outputs.cloudviews import ViewQuery, graph
from exporter.serve.httpapi import make_app
from exporter.serve.httpserver import AsyncHTTPServer

from .test_allocate_core import REL, window_arg
from .test_assets_api import EBS, EC2, EC2_K8S, EC2_LIST, exporter_for, q, with_accounts
from .test_reconcile import RECONCILIATION, hour_bill, iso

ELB, VPC = 0.0225, 0.045
EVERYTHING = EC2 + EBS + ELB + VPC  # 15.1805
K8S = EC2_K8S + EBS + ELB  # 11.6355: the lines matching a node, a volume or the load balancer
NAT = 73 / 730  # the assets scenario's price-book NAT gateway (pricing.network.monthly), for one hour


def view(ex: Any, kind: str, t0: int, **params: str) -> Any:
    return ex.cloud_view(kind, q(window=window_arg(t0), **params))["data"]


def test_table_totals_and_graph_by_hand(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(with_accounts(hour_bill(tmp_path, t0)))]})
    rows = view(ex, "table", t0, aggregate="service")
    # default: amortizedNetCost, by cost descending
    assert [(r["name"], r["cost"]) for r in rows] == [
        ("Amazon EC2", pytest.approx(EC2, rel=REL)), ("Amazon VPC", pytest.approx(VPC, rel=REL)),
        ("Elastic Load Balancing", pytest.approx(ELB, rel=REL)), ("Amazon EBS", pytest.approx(EBS, rel=REL))]
    assert list(rows[0]) == ["name", "labels", "kubernetesPercent", "cost"]
    assert rows[0]["kubernetesPercent"] == pytest.approx(EC2_K8S / EC2, rel=REL)  # 11.60 of 15.10
    assert rows[1]["kubernetesPercent"] == 0.0 and rows[3]["kubernetesPercent"] == pytest.approx(1.0, rel=REL)
    # OpenCost's paging and sorting
    paged = view(ex, "table", t0, aggregate="service", limit="2", offset="1")
    assert [r["name"] for r in paged] == ["Amazon VPC", "Elastic Load Balancing"]
    by_name = view(ex, "table", t0, aggregate="service", sortBy="name", sortByOrder="asc")
    assert [r["name"] for r in by_name] == ["Amazon EBS", "Amazon EC2", "Amazon VPC", "Elastic Load Balancing"]
    listed = view(ex, "table", t0, aggregate="service", costMetric="ListCost")
    assert listed[0]["cost"] == pytest.approx(EC2_LIST, rel=REL)  # 16.234
    by_k8s = view(ex, "table", t0, aggregate="service", sortBy="kubernetesPercent", sortByOrder="asc")
    assert by_k8s[0]["name"] == "Amazon VPC"

    totals = view(ex, "totals", t0, aggregate="service")
    assert totals == {"numResults": 4, "combined": {"name": "Totals", "labels": None,
                                                    "kubernetesPercent": pytest.approx(K8S / EVERYTHING, rel=REL),
                                                    "cost": pytest.approx(EVERYTHING, rel=REL)}}
    # no aggregate: OpenCost's item level, keyed by every property (9 distinct lines after the credit and refund)
    assert view(ex, "totals", t0)["numResults"] == 9
    assert view(ex, "totals", t0, filter='service:"Amazon EBS"')["combined"]["cost"] == pytest.approx(EBS, rel=REL)

    [day] = view(ex, "graph", t0, aggregate="accountID")
    assert (day["start"], day["end"]) == (iso(t0), iso(t0 + 3600))  # the day cut to the window
    assert day["items"] == [{"name": "111", "value": pytest.approx(EC2, rel=REL)},
                            {"name": "222", "value": pytest.approx(EBS + ELB + VPC, rel=REL)}]
    # 7d: a set per UTC day, the bill's day the only one with items; totals the same as the hour's
    week = ex.cloud_view("graph", q(window="7d", aggregate="service"))["data"]
    assert len(week) == 7 and [len(d["items"]) for d in week if d["items"]] == [4]
    [whole] = ex.cloud_view("graph", q(window="7d", aggregate="service", accumulate="all"))["data"]
    assert sum(i["value"] for i in whole["items"]) == pytest.approx(EVERYTHING, rel=REL)


def test_graph_keeps_ten_items_the_tenth_other() -> None:
    s = {"window": {"start": "a", "end": "b"},
         "cloudCosts": {f"k{i}": {"netCost": {"cost": float(i), "kubernetesPercent": 0.0}} for i in range(1, 13)}}
    v = ViewQuery(Window(0, 3600, 60), [], "netCost", 0, 0, "cost", True)
    [day] = graph([s], v)
    # k12 ... k4 are the nine largest; Other = k3 + k2 + k1 = 6
    assert [i["name"] for i in day["items"]] == [f"k{i}" for i in range(12, 3, -1)] + ["Other"]
    assert day["items"][-1]["value"] == 6.0 and sum(i["value"] for i in day["items"]) == sum(range(1, 13))


def test_status_one_entry_per_bill_saying_why(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    good = with_accounts(hour_bill(tmp_path, t0))
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(good), str(bad), str(tmp_path / "none-*.csv")]})
    ok, broken, missing = ex.cloud_view("status", {})["data"]
    assert list(ok) == ["key", "source", "provider", "active", "valid", "lastRun", "nextRun", "RefreshRate",
                        "created", "runs", "coverage", "connectionStatus", "config"]
    assert (ok["key"], ok["provider"], ok["valid"], ok["connectionStatus"]) == \
        (str(good), "AWS", True, "Successful Connection")
    assert ok["coverage"] == f"[{iso(t0).replace('Z', '+0000')}, {iso(t0 + 3600).replace('Z', '+0000')})"
    assert ok["config"]["format"] == "focus" and ok["RefreshRate"] == "6h"
    assert (broken["valid"], broken["connectionStatus"]) == (False, "Failed Connection")
    assert "not a FOCUS, CUR 2.0 or GCP billing export" in broken["message"]
    assert (missing["connectionStatus"], missing["message"]) == ("Missing Configuration",
                                                                 f"{tmp_path / 'none-*.csv'}: matches no file")
    assert exporter_for(asset_prom).cloud_view("status", {})["data"] == []  # no bill: no integration


def test_custom_costs_outside_the_cluster(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, reconciliation={**RECONCILIATION,
                                                  "bills": [str(with_accounts(hour_bill(tmp_path, t0)))]},
                      sharing={"sharedCosts": [{"name": "support", "monthly": 146}]})
    total = ex.custom_costs("total", q(window=window_arg(t0)))["data"]
    assert list(total) == ["window", "totalCost", "totalCostType", "customCosts"]
    # accounts 111 and 222 both hold cluster resources; their lines matching none: i-old-node 0.5,
    # i-elsewhere 3.0, nat-0abc 0.045; and the price book's monthly amounts for an hour: NAT 73/730, support 146/730
    got = {c["description"] if c["domain"] == "chargeback" else c["resource_name"]: c["cost"]
           for c in total["customCosts"]}
    assert got == {"i-old-node": pytest.approx(0.5), "i-elsewhere": pytest.approx(3.0),
                   "nat-0abc": pytest.approx(0.045), "nat-gateway": pytest.approx(NAT), "support": pytest.approx(0.2)}
    assert total["totalCost"] == pytest.approx(3.545 + NAT + 0.2, rel=REL)
    # by cost, descending
    assert total["totalCostType"] == "blended" and [c["cost"] for c in total["customCosts"]][:2] == [3.0, 0.5]
    first = total["customCosts"][0]
    assert list(first) == ["id", "zone", "account_name", "charge_category", "description", "resource_name",
                           "resource_type", "provider_id", "cost", "list_unit_price", "usage_quantity", "usage_unit",
                           "domain", "cost_source", "aggregate", "cost_type"]
    assert (first["account_name"], first["domain"], first["cost_type"]) == ("111", "AWS", "billed")

    by = ex.custom_costs("total", q(window=window_arg(t0), aggregate="domain"))["data"]["customCosts"]
    assert {c["aggregate"]: c["cost"] for c in by} == {"AWS": pytest.approx(3.545), "chargeback": pytest.approx(
        NAT + 0.2)}
    flt = ex.custom_costs("total", q(window=window_arg(t0), filter='accountName:"222"'))["data"]
    assert flt["totalCost"] == pytest.approx(0.045, rel=REL)

    series = ex.custom_costs("timeseries", q(window="7d"))["data"]
    assert list(series) == ["window", "timeseries"] and len(series["timeseries"]) == 7
    # the monthly amounts run every hour of every day (today's up to now); the bill's 3.545 in t0's day only
    for day in series["timeseries"]:
        start, end = (datetime.fromisoformat(day["window"][k]).timestamp() for k in ("start", "end"))
        billed = 3.545 if start <= t0 < end else 0.0
        assert day["totalCost"] == pytest.approx((end - start) / 3600 * (NAT + 0.2) + billed, rel=REL), day["window"]
    assert sum(1 for d in series["timeseries"] if any(c["domain"] == "AWS" for c in d["customCosts"])) == 1


def test_pages_over_http_with_clear_errors(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(with_accounts(hour_bill(tmp_path, t0)))]})
    port = free_port()
    httpd = AsyncHTTPServer(("127.0.0.1", port), make_app(ex))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base, w = f"http://127.0.0.1:{port}", window_arg(t0)
    try:
        for path in ("/cloudCost/view/table", "/model/cloudCost/view/totals", "/cloudCost/view/graph",
                     "/cloudCost/status", "/customCost/total", "/model/customCost/timeseries"):
            r = requests.get(base + path, params={"window": w}, timeout=60)
            assert r.status_code == 200 and r.json()["code"] == 200, (path, r.text)
        r = requests.get(base + "/cloudCost/view/totals", params={"window": w}, timeout=60)
        assert r.json()["data"]["combined"]["cost"] == pytest.approx(EVERYTHING, rel=REL)
        for path, params, message in [
            ("/cloudCost/view/table", {"costMetric": "cheapest"}, "costMetric='cheapest': use one of listCost"),
            ("/cloudCost/view/table", {"sortBy": "size"}, "sortBy='size': use cost, name or kubernetesPercent"),
            ("/cloudCost/view/table", {"limit": "-1"}, "limit='-1': use a whole number"),
            ("/customCost/total", {"costType": "cheap"}, "costType='cheap': use one of blended, list, billed"),
            ("/customCost/total", {"aggregate": "team"}, "'team' is not one of zone, accountName"),
            ("/customCost/total", {"filter": 'team:"x"'}, "unknown field 'team'"),
        ]:
            r = requests.get(base + path, params={"window": w, **params}, timeout=60)
            assert r.status_code == 400 and message in r.json()["message"], (path, r.text)
    finally:
        httpd.shutdown()
        httpd.server_close()
        ex.close()


def test_without_a_bill_the_views_are_empty_and_say_why(asset_prom: Any) -> None:
    ex = exporter_for(asset_prom)
    t0 = asset_prom[1]
    table = ex.cloud_view("table", q(window=window_arg(t0)))
    assert table["data"] == [] and "no bill configured" in table["warning"]
    assert ex.cloud_view("totals", q(window=window_arg(t0)))["data"] is None
    custom = ex.custom_costs("total", q(window=window_arg(t0)))
    # only the price book's NAT gateway, and a warning that no bill is read
    assert custom["data"]["totalCost"] == pytest.approx(NAT, rel=REL) and "no bill configured" in custom["warning"]


def test_hostile_parameters_get_a_400(asset_prom: Any, tmp_path: Path) -> None:
    """The new pages take the API's hostile-input bounds: never a 5xx, always a one-line message."""
    t0 = asset_prom[1]
    ex = exporter_for(asset_prom, reconciliation={"bills": [str(with_accounts(hour_bill(tmp_path, t0)))]})
    port = free_port()
    httpd = AsyncHTTPServer(("127.0.0.1", port), make_app(ex))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hostile = [{"window": "9999-12-31T00:00:00Z,9999-12-31T23:59:59Z", "accumulate": "hour"},
               {"window": "99999999999999999d"}, {"filter": "(" * 500 + 'service:"x"' + ")" * 500},
               {"aggregate": ",".join(["service"] * 33)}, {"limit": "1e9"}, {"offset": "-3"},
               {"accumulate": "fortnight"}, {"window": "1969-01-01T00:00:00Z,1969-01-02T00:00:00Z"}]
    try:
        for path in ("/cloudCost/view/table", "/cloudCost/view/totals", "/cloudCost/view/graph", "/customCost/total",
                     "/customCost/timeseries", "/assets"):
            for params in hostile:
                r = requests.get(f"http://127.0.0.1:{port}{path}", params={"window": window_arg(t0), **params},
                                 timeout=60)
                assert r.status_code in (200, 400), (path, params, r.status_code, r.text[:200])
                if r.status_code == 400:
                    assert "\n" not in r.json()["message"], (path, params)
    finally:
        httpd.shutdown()
        httpd.server_close()
        ex.close()
