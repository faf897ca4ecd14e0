"""OpenCost's /allocation against a real Prometheus holding the sharing scenario; amounts by hand.

Scenario (scenarios.share_cluster), the hour (t0, t0+1h], cpu 0.10/core-h, ram 0.01/GiB-h:
  n1: payments 0.24 (team payments, CC-100), search 0.12 (search, CC-200), kube-system 0.12 (no team);
      idle cpu 0.40 + ram 0.24 = 0.64; node 1.12
  n2: web 0.24 (pods web-a 0.12, web-b 0.06, legacy 0.06 on the namespace's team web; CC-300),
      monitoring 0.28 (no team), tools 0.12 (no team); idle cpu 0.30 + ram 0.18 = 0.48; node 1.12
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from demo.localprom import PrometheusServer
from exporter.config.schema import parse_config
from exporter.serve.httpapi import make_app
from exporter.serve.httpserver import AsyncHTTPServer
from exporter.serve.server import Exporter
from exporter.vocab.errors import ConfigError

from .test_allocate_core import REL, window_arg

NODES = 2.24
IDLE = 0.64 + 0.48
NAMESPACES = {"payments": 0.24, "search": 0.12, "kube-system": 0.12, "web": 0.24, "monitoring": 0.28,
              "tools": 0.12, "__idle__": IDLE}
NO_TEAM = 0.12 + 0.28 + 0.12  # kube-system, monitoring, tools


@pytest.fixture(scope="module")
def exporter(share_prom: tuple[PrometheusServer, int]) -> Iterator[Exporter]:
    prom, _t0 = share_prom
    ex = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))
    yield ex
    ex.close()


def call(exporter: Exporter, t0: int, **params: str) -> dict[str, Any]:
    # OpenCost computes idle only when asked (includeIdle=true); these scenarios conserve with it.
    query = {"window": [window_arg(t0)], "includeIdle": ["true"], **{k: [v] for k, v in params.items()}}
    return exporter.allocation(query)


def totals(body: dict[str, Any], i: int = 0) -> dict[str, float]:
    return {k: v["totalCost"] for k, v in body["data"][i].items()}


def check(got: dict[str, float], expected: dict[str, float], total: float | None = NODES) -> None:
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=REL, abs=1e-12), k
    if total is not None:
        assert sum(got.values()) == pytest.approx(total, rel=REL)  # conservation


@pytest.mark.parametrize("aggregate,expected", [
    ("namespace", NAMESPACES),
    ("node", {"n1": 0.24 + 0.12 + 0.12, "n2": 0.24 + 0.28 + 0.12, "__idle__": IDLE}),
    ("cluster", {"cluster": NODES - IDLE, "__idle__": IDLE}),
    ("team", {"payments": 0.24, "search": 0.12, "web-a": 0.12, "web-b": 0.06, "web": 0.06,
              "__unallocated__": NO_TEAM, "__idle__": IDLE}),
    ("label:team", {"payments": 0.24, "search": 0.12, "web-a": 0.12, "web-b": 0.06, "web": 0.06,
                    "__unallocated__": NO_TEAM, "__idle__": IDLE}),
    ("cost_center", {"CC-100": 0.24, "CC-200": 0.12, "CC-300": 0.24, "__unallocated__": NO_TEAM,
                     "__idle__": IDLE}),
    ("label:cost_center", {"CC-100": 0.24, "CC-200": 0.12, "CC-300": 0.24, "__unallocated__": NO_TEAM,
                           "__idle__": IDLE}),  # OpenCost's spelling of the configured cost-center
    ("label:cost-center", {"CC-100": 0.24, "CC-200": 0.12, "CC-300": 0.24, "__unallocated__": NO_TEAM,
                           "__idle__": IDLE}),
    ("label:platform", {"true": 0.28, "__unallocated__": NODES - IDLE - 0.28, "__idle__": IDLE}),
    ("annotation:owner", {"__unallocated__": NODES - IDLE, "__idle__": IDLE}),  # no namespace annotates it
    ("namespace,node", {"payments/n1": 0.24, "search/n1": 0.12, "kube-system/n1": 0.12, "web/n2": 0.24,
                        "monitoring/n2": 0.28, "tools/n2": 0.12, "__idle__": IDLE}),
    ("namespace,team", {"payments/payments": 0.24, "search/search": 0.12, "web/web-a": 0.12, "web/web-b": 0.06,
                        "web/web": 0.06, "kube-system/__unallocated__": 0.12, "monitoring/__unallocated__": 0.28,
                        "tools/__unallocated__": 0.12, "__idle__": IDLE}),
    ("cluster,team", {"cluster/payments": 0.24, "cluster/search": 0.12, "cluster/web-a": 0.12,
                      "cluster/web-b": 0.06, "cluster/web": 0.06, "cluster/__unallocated__": NO_TEAM,
                      "__idle__": IDLE}),
])
def test_each_aggregate_key_conserves(exporter: Exporter, share_prom: Any, aggregate: str,
                                      expected: dict[str, float]) -> None:
    check(totals(call(exporter, share_prom[1], aggregate=aggregate)), expected)


def test_properties_are_kept_when_every_item_shares_them(exporter: Exporter, share_prom: Any) -> None:
    data = call(exporter, share_prom[1])["data"][0]
    pay = data["payments"]["properties"]
    # Keys as OpenCost spells them (Prometheus's sanitised form), Kubernetes's with labelKeys=kubernetes.
    assert pay == {"cluster": "cluster", "node": "n1", "namespace": "payments",
                   "labels": {"team": "payments", "cost_center": "CC-100"},
                   "namespaceLabels": {"team": "payments", "cost_center": "CC-100"}}
    k8s = call(exporter, share_prom[1], labelKeys="kubernetes")["data"][0]["payments"]["properties"]
    assert k8s["labels"] == k8s["namespaceLabels"] == {"team": "payments", "cost-center": "CC-100"}
    # web's pods carry three teams: team is dropped, the namespace's cost centre is kept.
    assert data["web"]["properties"]["labels"] == {"cost_center": "CC-300"}
    assert data["__idle__"]["properties"] == {"cluster": "cluster"}  # two nodes: node is dropped
    teams = call(exporter, share_prom[1], aggregate="team")["data"][0]
    assert teams["web-a"]["properties"]["namespace"] == "web"
    assert teams["web-a"]["properties"]["labels"]["team"] == "web-a"
    assert "namespace" not in teams["__unallocated__"]["properties"]  # tools, kube-system, monitoring
    nodes = call(exporter, share_prom[1], aggregate="node")["data"][0]
    assert nodes["n2"]["properties"] == {"cluster": "cluster", "node": "n2"}


def test_every_documented_field_is_present(exporter: Exporter, share_prom: Any) -> None:
    t0 = share_prom[1]
    item = call(exporter, t0)["data"][0]["payments"]
    for name in ("name", "properties", "window", "start", "end", "minutes", "cpuCores", "cpuCoreRequestAverage",
                 "cpuCoreUsageAverage", "cpuCoreHours", "cpuCost", "cpuCostAdjustment", "cpuEfficiency", "gpuCount",
                 "gpuHours", "gpuCost", "gpuCostAdjustment", "networkTransferBytes", "networkReceiveBytes",
                 "networkCost", "networkCrossZoneCost", "networkCrossRegionCost", "networkInternetCost",
                 "networkCostAdjustment", "loadBalancerCost", "loadBalancerCostAdjustment", "pvBytes", "pvByteHours",
                 "pvCost", "pvs", "pvCostAdjustment", "ramBytes", "ramByteRequestAverage", "ramByteUsageAverage",
                 "ramByteHours", "ramCost", "ramCostAdjustment", "ramEfficiency", "sharedCost", "externalCost",
                 "totalCost", "totalEfficiency", "rawAllocationOnly"):
        assert name in item, name
    assert item["cpuCostAdjustment"] == 0 and item["networkTransferBytes"] == 0
    # payments: 2 cores requested, half used; 4 GiB.
    assert item["cpuCores"] == pytest.approx(2.0, rel=REL) and item["cpuEfficiency"] == pytest.approx(0.5, rel=REL)
    assert item["ramBytes"] == pytest.approx(4 * 1024**3, rel=REL)
    assert item["window"] == {"start": window_arg(t0).split(",")[0], "end": window_arg(t0).split(",")[1]}


def test_proportional_asset_resource_costs(exporter: Exporter, share_prom: Any) -> None:
    item = call(exporter, share_prom[1], includeProportionalAssetResourceCosts="true")["data"][0]["payments"]
    # n1 costs cpu 8 x 0.10 = 0.80 and ram 32 x 0.01 = 0.32; payments has cpu 0.20 and ram 0.04 of them.
    assert item["proportionalAssetResourceCosts"] == {"cluster,n1": {
        "cluster": "cluster", "node": "n1", "cpuPercentage": pytest.approx(0.25, rel=REL), "gpuPercentage": 0.0,
        "ramPercentage": pytest.approx(0.125, rel=REL), "nodeResourceCostPercentage": pytest.approx(0.24 / 1.12,
                                                                                                 rel=REL)}}
    assert "proportionalAssetResourceCosts" not in call(exporter, share_prom[1])["data"][0]["payments"]


def test_filters_apply_to_rows_before_aggregation(exporter: Exporter, share_prom: Any) -> None:
    t0 = share_prom[1]
    got = totals(call(exporter, t0, filter='namespace:"payments","search"'))
    check(got, {"payments": 0.24, "search": 0.12}, None)
    # idle rows carry their node: n2's idle stays with n2.
    check(totals(call(exporter, t0, filter='node:"n2"')), {"web": 0.24, "monitoring": 0.28, "tools": 0.12,
                                                           "__idle__": 0.48}, 1.12)
    check(totals(call(exporter, t0, filter='namespace!:"kube-system"+node:"n1"')),
          {"payments": 0.24, "search": 0.12, "__idle__": 0.64}, None)
    check(totals(call(exporter, t0, aggregate="namespace", filter='team:"web-a"|label[team]:"web-b"')),
          {"web": 0.18}, None)
    check(totals(call(exporter, t0, aggregate="team", filter='(namespace<~:"web"|namespace~>:"ments")+node:"n2"')),
          {"web-a": 0.12, "web-b": 0.06, "web": 0.06}, None)
    with pytest.raises(ConfigError, match="filter position 19: '\\+' and '\\|' are mixed"):
        call(exporter, t0, filter='node:"n1"+node:"n2"|node:"n3"')
    # pod-level fields: payments/api is the only pod named api; tools/runner the only CronJob's.
    check(totals(call(exporter, t0, filter='pod:"api"')), {"payments": 0.24}, None)
    check(totals(call(exporter, t0, aggregate="node", filter='controllerKind:"cronjob"')), {"n2": 0.12}, None)


def test_include_idle_and_sharing_flags(exporter: Exporter, share_prom: Any) -> None:
    t0 = share_prom[1]
    no_idle = totals(call(exporter, t0, includeIdle="false"))
    check(no_idle, {k: v for k, v in NAMESPACES.items() if k != "__idle__"}, NODES - IDLE)
    # kube-system (0.12) and monitoring (0.28) shared by label and name, weighted by tenant cost (of 0.72).
    shared = call(exporter, t0, shareNamespaces="kube-system", shareLabels="platform:true")
    tenants = {"payments": 0.24, "search": 0.12, "web": 0.24, "tools": 0.12}
    check(totals(shared), {**{k: v + 0.40 * v / 0.72 for k, v in tenants.items()}, "__idle__": IDLE})
    assert shared["data"][0]["payments"]["sharedCost"] == pytest.approx(0.40 / 3, rel=REL)
    # A shared namespace's cost has no node: the node row mix drops node from payments' properties.
    assert "node" not in shared["data"][0]["payments"]["properties"]
    # shareCost 73/month over 730 h = 0.10 for the hour, weighted like the rest.
    fixed = totals(call(exporter, t0, shareCost="73"))
    check(fixed, {**{k: v + 0.10 * v / 1.12 for k, v in NAMESPACES.items() if k != "__idle__"}, "__idle__": IDLE},
          NODES + 0.10)
    idle = totals(call(exporter, t0, shareIdle="true", idleByNode="true", aggregate="node"))
    assert "__idle__" not in idle and sum(idle.values()) == pytest.approx(NODES, rel=REL)


def test_step_and_accumulate_sets(exporter: Exporter, share_prom: Any) -> None:
    t0 = share_prom[1]
    body = call(exporter, t0, step="10m", accumulate="false")
    assert len(body["data"]) == 6
    for i, s in enumerate(body["data"]):
        # every 10 minutes is a sixth of the hour, in every namespace, and conserves on its own
        check(totals(body, i), {k: v / 6 for k, v in NAMESPACES.items()}, NODES / 6)
        start, end = window_arg(t0 + 600 * i, 1 / 6).split(",")
        assert s["payments"]["window"] == {"start": start, "end": end}
        assert s["payments"]["minutes"] == 10
    assert len(call(exporter, t0, step="10m", accumulate="true")["data"]) == 1
    check(totals(call(exporter, t0, step="10m", accumulate="true")), NAMESPACES)
    # accumulate=hour widens a window inside the hour to the whole hour, as OpenCost does.
    inner = exporter.allocation({"window": [window_arg(t0 + 600, 0.5)], "accumulate": ["hour"],
                                 "includeIdle": ["true"]})
    assert len(inner["data"]) == 1
    check(totals(inner), NAMESPACES)


def test_window_before_the_oldest_sample_returns_the_covered_part(exporter: Exporter, share_prom: Any) -> None:
    t0 = share_prom[1]
    body = exporter.allocation({"window": [window_arg(t0 - 7200, 3)], "aggregate": ["namespace"],
                                "includeIdle": ["true"]})
    cov = body["coverage"]
    assert cov["windowSeconds"] == 3 * 3600 and cov["uncovered"]
    assert cov["uncovered"][0]["start"] == window_arg(t0 - 7200).split(",")[0]
    hours = cov["coveredSeconds"] / 3600
    assert 1 < hours < 2  # data from 30 minutes before t0 to 10 minutes after the hour
    got = totals(body)
    assert sum(got.values()) == pytest.approx(NODES * hours, rel=REL)
    assert got["payments"] == pytest.approx(0.24 * hours, rel=REL)


def _forms(t0: int) -> list[str]:
    day = window_arg(t0).split("T")[0]
    return ["60m", "1h", f"{t0},{t0 + 3600}", f"{t0}-{t0 + 3600}", window_arg(t0), "today", "24h", "7d",
            f"{day},{day}"]


@pytest.mark.parametrize("form", range(9))
def test_every_window_form_through_the_api(exporter: Exporter, share_prom: Any, form: int) -> None:
    """With now at the end of the hour under test: the first five forms are exactly that hour (60m and 1h
    end at the next whole minute/hour, which is now); the rest reach before the oldest sample and return
    the covered part, every namespace in proportion to the covered time."""
    t0 = share_prom[1]
    text = _forms(t0)[form]
    if text == "today" and t0 % 86400 == 82800:
        pytest.skip("the hour under test ends at midnight: today is empty")
    body = exporter.allocation({"window": [text], "includeIdle": ["true"]}, now=t0 + 3600)
    if form < 5 or (text == "today" and t0 % 86400 == 0):  # an hour under test from midnight is all of today
        check(totals(body), NAMESPACES)
        assert body["coverage"]["uncovered"] == []
        return
    hours = body["coverage"]["coveredSeconds"] / 3600
    assert body["coverage"]["uncovered"] and 1 <= hours < 2
    got = totals(body)
    assert sum(got.values()) == pytest.approx(NODES * hours, rel=REL)
    assert got["payments"] == pytest.approx(0.24 * hours, rel=REL)


@pytest.fixture(scope="module")
def base_url(exporter: Exporter) -> Iterator[str]:
    httpd = AsyncHTTPServer(("127.0.0.1", 0), make_app(exporter))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path", ["/allocation", "/allocation/compute", "/model/allocation"])
def test_the_three_paths_answer_alike(base_url: str, share_prom: Any, path: str) -> None:
    t0 = share_prom[1]
    r = requests.get(base_url + path, params={"window": window_arg(t0), "aggregate": "namespace",
                                              "includeIdle": "true"}, timeout=60)
    assert r.status_code == 200
    check({k: v["totalCost"] for k, v in r.json()["data"][0].items()}, NAMESPACES)
    bad = requests.get(base_url + path, params={"window": window_arg(t0), "filter": 'namespace:"a'}, timeout=60)
    assert bad.status_code == 400
    assert bad.json()["message"] == "filter position 10: unterminated string starting here (missing \")"
    pods = requests.get(base_url + path, params={"window": window_arg(t0), "aggregate": "controller",
                                              "includeIdle": "true"}, timeout=60)
    assert pods.status_code == 200  # payments/api is Deployment payments-api's, tools/runner CronJob nightly's
    check({k: v["totalCost"] for k, v in pods.json()["data"][0].items()},
          {"deployment:payments-api": 0.24, "cronjob:nightly": 0.12, "__unallocated__": NODES - IDLE - 0.36,
           "__idle__": IDLE})
    # Pod-level answers are streamed allocation by allocation (outputs/allocbody.py), stepped ones too:
    # two half-hour sets, as the in-process dict gives them, the two adding up to the hour.
    half = {"window": window_arg(t0), "aggregate": "controller", "step": "30m", "accumulate": "false",
            "includeIdle": "true"}
    stepped = requests.get(base_url + path, params=half, timeout=60)
    assert stepped.status_code == 200 and "Content-Length" not in stepped.headers
    sets = stepped.json()["data"]
    assert len(sets) == 2
    check({k: sum(s[k]["totalCost"] for s in sets) for k in sets[0]},
          {"deployment:payments-api": 0.24, "cronjob:nightly": 0.12, "__unallocated__": NODES - IDLE - 0.36,
           "__idle__": IDLE})


def test_namespace_annotations_aggregate_and_filter(demo_prom: tuple[PrometheusServer, int]) -> None:
    """The demo cluster annotates namespace web with chargeback.io/budget-monthly=60 (the annotations
    kube-state-metrics exports): aggregating by it puts exactly web's cost under "60"."""
    prom, t0 = demo_prom
    ex = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))
    try:
        by_ns = totals(call(ex, t0))
        key = "chargeback.io/budget-monthly"
        by_note = totals(call(ex, t0, aggregate=f"annotation:{key}"))
        assert set(by_note) == {"60", "__unallocated__", "__idle__", "__unmounted__"}  # pv-released-2023
        assert by_note["60"] == pytest.approx(by_ns["web"], rel=REL)
        assert sum(by_note.values()) == pytest.approx(sum(by_ns.values()), rel=REL)  # conservation
        only = call(ex, t0, filter=f'annotation[{key}]:"60"')["data"][0]
        # OpenCost's spelling in properties; either spelling aggregates and filters alike. As OpenCost's, an
        # aggregate keeps the annotations all its pods share: the namespace's two, and example.com/owner, which
        # every web pod carries (demo/clusters.py).
        assert set(only) == {"web"} and only["web"]["properties"]["annotations"] == {
            "chargeback_io_budget_monthly": "60", "chargeback_io_budget_notify": "slack:#web",
            "example_com_owner": "web@example.com"}
        assert totals(call(ex, t0, aggregate="annotation:chargeback_io_budget_monthly")) == pytest.approx(
            by_note, rel=REL)
        assert set(call(ex, t0, filter='annotation[chargeback_io_budget_monthly]:"60"')["data"][0]) == {"web"}
        k8s = call(ex, t0, filter=f'annotation[{key}]:"60"', labelKeys="kubernetes")["data"][0]
        assert k8s["web"]["properties"]["annotations"] == {key: "60", "chargeback.io/budget-notify": "slack:#web",
                                                           # a pod annotation's key is known only as
                                                           # kube-state-metrics sanitised it
                                                           "example_com_owner": "web@example.com"}
    finally:
        ex.close()
