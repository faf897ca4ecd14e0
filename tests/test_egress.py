"""Egress classified from Istio's standard metrics, against a real Prometheus (issue 26 item 4).

Scenario (`mesh_cluster`), one hour, rates in GiB an hour so each is the hour's GiB:
  nodes  n-a: us-east-1/us-east-1a   n-b: us-east-1/us-east-1b   n-eu: eu-west-1/eu-west-1a
  shop/frontend   two pods, one on n-a, one on n-b (half its pod-steps in each zone)
  shop/cart       n-a;   pay/api  n-b;   analytics/etl  n-eu;   batch/cron  n-a, outside the mesh
Flows, as the source's sidecar reports them (the destination's report is there too, and must not count):
  1 frontend -> cart  HTTP  request 2, response 4
  2 cart -> pay/api   TCP   request 1, response 0.5
  3 pay/api -> etl    TCP   request 3, response 0.25
  4 pay/api -> PassthroughCluster (internet)                   request 0.5, response 10 (ingress: free)
  5 etl -> s3.eu-west-1.amazonaws.com (ServiceEntry, HTTP)     request 1.5, response 20 (ingress: free)
By hand (request bytes are the source's egress, response bytes the destination's):
  1 request, sent by shop: from a (1/2) to a: free 1; from b (1/2) to a: cross-zone 1
    response, sent by shop (cart, a) to frontend (a 1/2, b 1/2): free 2, cross-zone 2
  2 request, shop a -> b: cross-zone 1;  response, pay b -> a: cross-zone 0.5
  3 request, pay us-east-1 -> eu-west-1: cross-region 3;  response, analytics: cross-region 0.25
  4 pay internet 0.5;  5 analytics internet 1.5
  shop zone 4; pay zone 0.5, region 3, internet 0.5; analytics region 0.25, internet 1.5
cAdvisor transmit: shop 7 GiB (named by Istio: not priced again), batch 1 GiB (not in the mesh: priced as
`unclassified`, here cross-zone).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer
from demo.mesh import GIB_H, PASSTHROUGH, Flow, istio_series, place
from demo.synthetic import GIB, Cluster, Container, Node, Pod, Series
from exporter.cli import main
from exporter.core.egress import Flow as EgressFlow
from exporter.core.egress import classify, klass

from .conftest import aligned_past, scenario_prom
from .test_allocate_core import REL, window_arg

IT = "node.kubernetes.io/instance-type"
INTERNET, ZONE, REGION, NAT_MONTHLY = 0.09, 0.01, 0.02, 73.0
NAT = NAT_MONTHLY / 730  # an hour of a 730-hour month: 0.1
NETWORK = {
    "shop": 4 * ZONE,
    "pay": 0.5 * ZONE + 3 * REGION + 0.5 * INTERNET + NAT * 0.5 / 2.0,  # NAT by internet bytes: 0.5 of 2
    "analytics": 0.25 * REGION + 1.5 * INTERNET + NAT * 1.5 / 2.0,
    "batch": 1 * ZONE,
}
NODES = 3 * 0.1  # each node 0.1/h by a price-book rule


def mesh_cluster() -> Cluster:
    nodes = (Node("n-a", 4, 16 * GIB, labels={IT: "m5.xlarge", **place("us-east-1", "us-east-1a")}),
             Node("n-b", 4, 16 * GIB, labels={IT: "m5.xlarge", **place("us-east-1", "us-east-1b")}),
             Node("n-eu", 4, 16 * GIB, labels={IT: "m5.xlarge", **place("eu-west-1", "eu-west-1a")}))

    def pod(ns: str, name: str, node: str, workload: str) -> Pod:
        return Pod(ns, name, node, (Container("app", 0.5, GIB, 0, 0.25, GIB / 2),), owner=("Deployment", workload))

    pods = (pod("shop", "frontend-a", "n-a", "frontend"), pod("shop", "frontend-b", "n-b", "frontend"),
            pod("shop", "cart-1", "n-a", "cart"), pod("pay", "api-1", "n-b", "api"),
            pod("analytics", "etl-1", "n-eu", "etl"), pod("batch", "cron-1", "n-a", "cron"))
    flows = (Flow(("shop", "frontend"), ("shop", "cart"), 2, 4, "http"),
             Flow(("shop", "cart"), ("pay", "api"), 1, 0.5),
             Flow(("pay", "api"), ("analytics", "etl"), 3, 0.25),
             Flow(("pay", "api"), ("", ""), 0.5, 10, host=PASSTHROUGH),
             Flow(("analytics", "etl"), ("", ""), 1.5, 20, "http", host="s3.eu-west-1.amazonaws.com"))
    cad = {"job": "kubelet", "metrics_path": "/metrics/cadvisor", "container": "", "interface": "eth0"}
    transmit = (Series("container_network_transmit_bytes_total", {**cad, "namespace": "shop", "pod": "cart-1"},
                       7 * GIB_H),
                Series("container_network_transmit_bytes_total", {**cad, "namespace": "batch", "pod": "cron-1"},
                       GIB_H))
    return Cluster(nodes, pods, extra=(*istio_series(flows), *transmit))


MESH_CONFIG = {"pricing": {
    "rules": [{"match": {IT: "m5.xlarge"}, "hourly": 0.1}],
    "network": {"internetPerGiB": INTERNET, "zonePerGiB": ZONE, "regionPerGiB": REGION, "unclassified": "zone",
                "monthly": [{"name": "nat-gateway", "monthly": NAT_MONTHLY, "spreadBy": "internet"}]}},
    "attribution": {"source": "prometheus"}}


@pytest.fixture(scope="module")
def mesh_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "mesh", mesh_cluster(), t0):
        yield prom, t0


def allocate(prom: PrometheusServer, t0: int, tmp_path: Path, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**(cfg or MESH_CONFIG), "prometheus": {"url": prom.url}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0), "--format", "json"])
    assert res.exit_code == 0, res.output
    body: dict[str, Any] = json.loads(res.stdout)
    return body


def test_egress_in_each_class_priced_from_istio(mesh_prom: Any, tmp_path: Path) -> None:
    body = allocate(mesh_prom[0], mesh_prom[1], tmp_path)
    data = body["data"][0]
    for ns, cost in NETWORK.items():
        assert data[ns]["networkCost"] == pytest.approx(cost, rel=REL), ns
    # Conservation: the namespaces' network cost is the network total, and every namespace the cluster.
    assert sum(v["networkCost"] for v in data.values()) == pytest.approx(sum(NETWORK.values()), rel=REL)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES + sum(NETWORK.values()), rel=REL)
    # The coverage output names the source of each namespace's egress.
    assert body["coverage"]["network"] == {"istio": ["analytics", "pay", "shop"], "cadvisor-unclassified": ["batch"]}


def test_without_istio_the_nat_bill_follows_transmitted_bytes(mesh_prom: Any, tmp_path: Path) -> None:
    """`network.istio: false` is today's behaviour: cAdvisor's bytes, one class; the NAT bill, asked to
    follow internet bytes that no source classifies, follows transmitted bytes (shop 7, batch 1) instead."""
    cfg = json.loads(json.dumps(MESH_CONFIG))
    cfg["pricing"]["network"]["istio"] = False
    body = allocate(mesh_prom[0], mesh_prom[1], tmp_path, cfg)
    data = body["data"][0]
    assert data["shop"]["networkCost"] == pytest.approx(7 * ZONE + NAT * 7 / 8, rel=REL)
    assert data["batch"]["networkCost"] == pytest.approx(1 * ZONE + NAT * 1 / 8, rel=REL)
    assert data["pay"]["networkCost"] == 0 and data["analytics"]["networkCost"] == 0
    assert body["coverage"]["network"] == {"cadvisor-unclassified": ["batch", "shop"]}


def test_kubecost_daemonset_is_named_in_coverage(asset_prom: Any, tmp_path: Path) -> None:
    from .scenarios import ASSET_CONFIG
    body = allocate(asset_prom[0], asset_prom[1], tmp_path, ASSET_CONFIG)
    assert body["coverage"]["network"] == {"kubecost-network-costs": ["payments", "search"]}


def test_classify_spreads_a_workload_over_its_zones_and_keeps_every_byte() -> None:
    a, b, eu = ("r1", "a"), ("r1", "b"), ("r2", "c")
    assert (klass(a, a), klass(a, b), klass(a, eu), klass(a, ("r1", ""))) == ("free", "zone", "region",
                                                                             "unclassified")
    placed = {("x", "w"): {a: 0.25, b: 0.75}, ("y", "v"): {a: 0.5, eu: 0.5}}
    flows = [EgressFlow(("x", "w"), ("y", "v"), False, 8.0), EgressFlow(("x", "w"), ("z", "gone"), False, 2.0),
             EgressFlow(("unknown", "unknown"), ("x", "w"), False, 1.0), EgressFlow(("y", "v"), ("", ""), True, 3.0)]
    got = classify(flows, placed)
    # 8 bytes: a->a 0.25*0.5 = 1/8 free, a->eu 1/8 region, b->a 3/8 zone, b->eu 3/8 region.
    assert got == {("x", "free"): 1.0, ("x", "region"): 4.0, ("x", "zone"): 3.0, ("x", "unclassified"): 2.0,
                   ("__unallocated__", "unclassified"): 1.0, ("y", "internet"): 3.0}
    assert sum(got.values()) == 8 + 2 + 1 + 3


def test_demo_egress_table_reads_the_one_computation(mesh_prom: Any) -> None:
    """demo/run.py's table: a RecordingPipeline's compute, its priced assets by team and class."""
    from demo.mesh import egress_table
    from exporter.config.schema import parse_config
    from exporter.core.window import Window
    from exporter.outputs.assets_api import RecordingPipeline
    from exporter.sources.prometheus import PrometheusClient

    cfg = parse_config({**MESH_CONFIG, "prometheus": {"url": mesh_prom[0].url}})
    pipeline = RecordingPipeline(cfg, PrometheusClient(cfg.prometheus))
    result = pipeline.compute(Window(mesh_prom[1], mesh_prom[1] + 3600, 60))
    lines = egress_table(result, pipeline.fetcher.recorded).splitlines()
    # pay: zone 0.5, region 3, internet 0.5 GiB; NAT 0.025; network 0.135.
    analytics = lines[1].split()  # its NAT share, 0.075, sits on a rounding edge: left out
    assert analytics[:4] + analytics[5:] == ["analytics", "0.0", "0.2", "1.5", "0.22"]
    assert lines[2].split() == ["pay", "0.5", "3.0", "0.5", "0.03", "0.14"]
    assert lines[-2:] == ["  egress from cadvisor-unclassified: batch", "  egress from istio: analytics, pay, shop"]


def test_allocation_api_carries_opencost_egress_class_fields(mesh_prom: Any) -> None:
    """/allocation (serve's door, the same Pipeline.compute): networkCost and OpenCost's per-class fields."""
    from exporter.config.schema import parse_config
    from exporter.serve.server import Exporter

    ex = Exporter(parse_config({**MESH_CONFIG, "prometheus": {"url": mesh_prom[0].url}}))
    try:
        body = ex.allocation({"window": [window_arg(mesh_prom[1])], "aggregate": ["namespace"]})
    finally:
        ex.close()
    pay = body["data"][0]["pay"]
    assert pay["networkCost"] == pytest.approx(NETWORK["pay"], rel=REL)
    assert pay["networkCrossZoneCost"] == pytest.approx(0.5 * ZONE, rel=REL)
    assert pay["networkCrossRegionCost"] == pytest.approx(3 * REGION, rel=REL)
    assert pay["networkInternetCost"] == pytest.approx(0.5 * INTERNET, rel=REL)  # the NAT share is networkCost's
    assert body["coverage"]["network"]["istio"] == ["analytics", "pay", "shop"]


def test_nat_gateway_bill_lines_spread_by_internet_bytes(mesh_prom: Any, tmp_path: Path) -> None:
    """`reconcile --reconciled`: the cluster's NAT gateway lines on the bill (hours and bytes) are network, spread
    by internet-bound bytes, in place of a configured amount; another cluster's NAT line is ignored."""
    from .test_reconcile import CLUSTER_TAG, focus_bill

    prom, t0 = mesh_prom
    nat = "arn:aws:ec2:us-east-1:1:natgateway/nat-0abc"
    bill = focus_bill(tmp_path / "focus.csv", t0, [
        {"ResourceId": nat, "ServiceName": "Amazon Virtual Private Cloud", "ServiceCategory": "Networking",
         "EffectiveCost": 0.045, "Tags": CLUSTER_TAG},  # NatGateway-Hours: one hour
        {"ResourceId": nat, "ServiceName": "Amazon Virtual Private Cloud", "ServiceCategory": "Networking",
         "EffectiveCost": 0.09, "Tags": CLUSTER_TAG},  # NatGateway-Bytes: 2 GiB x 0.045
        {"ResourceId": "nat-0other", "ServiceName": "Amazon Virtual Private Cloud", "EffectiveCost": 1.0,
         "Tags": json.dumps({"aws:eks:cluster-name": "other"})}])
    cfg = json.loads(json.dumps(MESH_CONFIG))
    del cfg["pricing"]["network"]["monthly"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**cfg, "prometheus": {"url": prom.url},
                                    "reconciliation": {"clusterTags": {"aws:eks:cluster-name": "demo"}}}))
    args = ["reconcile", "--config", str(path), "--window", window_arg(t0), "--bill", str(bill), "--format", "json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["nat"] == pytest.approx({"nat-0abc": 0.135}, rel=REL) and rec["unmatched"] == {}
    res = CliRunner().invoke(main, [*args, "--reconciled"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["data"][0]
    # nat-0abc 0.045 + 0.09 = 0.135 over the internet bytes: pay 0.5 of 2 GiB, analytics 1.5 of 2.
    # pay 0.5 x 0.01 + 3 x 0.02 + 0.5 x 0.09 + 0.135 x 0.5 / 2 = 0.005 + 0.06 + 0.045 + 0.03375 = 0.14375
    # analytics 0.25 x 0.02 + 1.5 x 0.09 + 0.135 x 1.5 / 2 = 0.005 + 0.135 + 0.10125 = 0.24125
    expected = {"shop": 4 * ZONE, "pay": 0.14375, "analytics": 0.24125, "batch": 1 * ZONE}
    for ns, cost in expected.items():
        assert data[ns]["networkCost"] == pytest.approx(cost, rel=REL), ns
    # Conservation: the nodes (not on the bill: their computed 0.3) and the network, NAT included (0.735).
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(0.3 + 0.04 + 0.14375 + 0.24125 + 0.01, rel=REL)

    # The same gateway also configured as an estimate (named as the bill names it): the bill supersedes it,
    # with a warning, rather than charge nat-0abc twice; the figures are the ones above.
    cfg["pricing"]["network"]["monthly"] = [{"name": "nat-0abc", "monthly": 1000.0, "spreadBy": "internet"}]
    path.write_text(yaml.safe_dump({**cfg, "prometheus": {"url": prom.url},
                                    "reconciliation": {"clusterTags": {"aws:eks:cluster-name": "demo"}}}))
    res = CliRunner().invoke(main, [*args, "--reconciled"])
    assert res.exit_code == 0, res.output
    assert "'nat-0abc': the bill's line for that NAT gateway is charged instead" in res.stderr
    data = json.loads(res.stdout)["data"][0]
    for ns, cost in expected.items():
        assert data[ns]["networkCost"] == pytest.approx(cost, rel=REL), ns


def test_nat_lines_are_recognised_in_each_bill_format(tmp_path: Path) -> None:
    """CUR's NatGateway usage types and natgateway ARNs, GCP's Cloud NAT SKUs, FOCUS's resource ids."""
    from exporter.sources.billing import read_bill

    from .test_reconcile import focus_bill

    cur = tmp_path / "cur.csv"
    cur.write_text("line_item_line_item_type,line_item_unblended_cost,line_item_resource_id,line_item_usage_start_date,"
                   "line_item_usage_end_date,line_item_currency_code,line_item_product_code,line_item_usage_type\n"
                   "Usage,0.045,arn:aws:ec2:us-east-1:1:natgateway/nat-1,2026-11-01T00:00:00Z,"
                   "2026-11-01T01:00:00Z,USD,AmazonEC2,USE1-NatGateway-Hours\n"
                   "Usage,0.09,,2026-11-01T00:00:00Z,2026-11-01T01:00:00Z,USD,AmazonEC2,USE1-NatGateway-Bytes\n"
                   "Usage,0.1,i-1,2026-11-01T00:00:00Z,2026-11-01T01:00:00Z,USD,AmazonEC2,BoxUsage:m5.large\n")
    gcp = tmp_path / "gcp.csv"
    gcp.write_text("cost,currency,usage_start_time,usage_end_time,service.description,sku.description,"
                   "resource.global_name\n"
                   "0.044,USD,2026-11-01 00:00:00 UTC,2026-11-01 01:00:00 UTC,Networking,Cloud NAT Gateway Uptime,\n"
                   "0.1,USD,2026-11-01 00:00:00 UTC,2026-11-01 01:00:00 UTC,Compute Engine,N2 Instance Core,vm-1\n")
    focus = focus_bill(tmp_path / "focus.csv", 0, [{"ResourceId": "nat-2", "ServiceName": "Amazon VPC",
                                                     "EffectiveCost": 0.045},
                                                    {"ResourceId": "i-2", "ServiceName": "Amazon EC2",
                                                     "EffectiveCost": 0.1}])
    for path in (cur, gcp, focus):
        assert [ln.nat for ln in read_bill([path]).lines] == ([True, True, False] if path == cur else [True, False])
