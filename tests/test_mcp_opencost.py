"""OpenCost's MCP tools (get_allocation_costs, get_asset_costs, get_cloud_costs) and /mcp's session handling,
against a real Prometheus, through serve's own port.

Amounts are worked out by hand:
* the sharing scenario (tests/test_mcp.py): the hour (t0, t0+1h], 0.10/core-h and 0.01/GiB-h; payments requests
  2 cores and 4 GiB: 0.24; search, kube-system and tools 1 core and 2 GiB: 0.12 each; web 2 cores, 4 GiB: 0.24;
  monitoring 2 cores, 8 GiB: 0.28. Idle: n1 4 cores and 24 GiB free: 0.64; n2 3 cores and 18 GiB: 0.48. Each
  node 8 cores and 32 GiB: 1.12; both 2.24, which every answer with idle must add up to (conservation);
* the assets scenario and its FOCUS hour bill: tests/test_assets.py and tests/test_assets_api.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from demo.localprom import PrometheusServer
from exporter.config.schema import parse_config
from exporter.serve.httpapi import make_app
from exporter.serve.httpserver import AsyncHTTPServer
from exporter.serve.mcpopencost import cloud_filter
from exporter.serve.server import Exporter

from .console import CHARGEBACK
from .scenarios import ASSET_CONFIG
from .test_allocate_core import REL, window_arg
from .test_assets import NODES, TOTAL
from .test_assets_api import EBS, EC2, EC2_INVOICED, EC2_K8S, with_accounts
from .test_reconcile import hour_bill

NAMESPACES = {"payments": 0.24, "search": 0.12, "kube-system": 0.12, "web": 0.24, "monitoring": 0.28, "tools": 0.12}
IDLE = 0.64 + 0.48
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
OPENCOST_TOOLS = {"get_allocation_costs", "get_asset_costs", "get_cloud_costs"}


def start(config: dict[str, Any]) -> tuple[AsyncHTTPServer, Exporter, str]:
    ex = Exporter(parse_config(config))
    httpd = AsyncHTTPServer(("127.0.0.1", 0), make_app(ex))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, ex, f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture(scope="module")
def share(share_prom: tuple[PrometheusServer, int]) -> Iterator[str]:
    httpd, ex, base = start({"prometheus": {"url": share_prom[0].url}, "attribution": {"source": "prometheus"}})
    yield base
    httpd.shutdown()
    ex.close()


def rpc(base: str, message: dict[str, Any], session: str | None) -> httpx2.Response:
    headers = dict(JSON_HEADERS, **({"Mcp-Session-Id": session} if session else {}))
    return httpx2.post(f"{base}/mcp", headers=headers, json={"jsonrpc": "2.0", **message}, timeout=60)


def open_session(base: str) -> str:
    """As OpenCost's integration suite opens one (its protocol version, its headers): the id is required."""
    r = rpc(base, {"method": "initialize", "id": 1, "params": {
        "protocolVersion": "2024-11-05", "capabilities": {},
        "clientInfo": {"name": "opencost-integration-test", "version": "1.0.0"}}}, None)
    assert r.status_code == 200, r.text
    session = r.headers.get("Mcp-Session-Id")
    assert session, "initialize returned no Mcp-Session-Id"
    assert rpc(base, {"method": "notifications/initialized"}, session).status_code == 202
    return session


def call(base: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """A tool call as the suite makes it: new session, plain JSON answer, `content[0].text` a JSON string."""
    r = rpc(base, {"method": "tools/call", "id": 1, "params": {"name": tool, "arguments": args}}, open_session(base))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
    result = r.json()["result"]
    assert not result.get("isError"), result["content"][0]["text"]
    body: dict[str, Any] = json.loads(result["content"][0]["text"])
    assert body == result["structuredContent"]
    assert body["queryInfo"]["queryId"].startswith("query-") and body["queryInfo"]["processingTime"] >= 0
    return body


def get(base: str, path: str, **params: str) -> dict[str, Any]:
    r = httpx2.get(f"{base}{path}", params=params, timeout=60)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def only_set(sets: dict[str, Any], name: str) -> list[dict[str, Any]]:
    assert list(sets) == [name]
    assert sets[name]["name"] == name
    items: list[dict[str, Any]] = sets[name][name]
    return items


def by_name(items: list[dict[str, Any]]) -> dict[str, float]:
    return {a["name"]: a["totalCost"] for a in items}


def http_totals(body: dict[str, Any]) -> Any:
    """/allocation's one set, to compare with an MCP answer: the same names, the same amounts (two computations
    of one query may sum in another order, so to REL rather than to the bit)."""
    [s] = body["data"]
    return pytest.approx({k: v["totalCost"] for k, v in s.items()}, rel=REL)


def test_allocation_costs_equal_allocation(share: str, share_prom: tuple[PrometheusServer, int]) -> None:
    w = window_arg(share_prom[1])
    body = call(share, "get_allocation_costs", {"window": w, "aggregate": "namespace", "include_idle": True})
    items = only_set(body["data"]["allocations"], "allocations")
    got = by_name(items)
    assert got == pytest.approx({**NAMESPACES, "__idle__": IDLE}, rel=REL)
    assert sum(got.values()) == pytest.approx(2.24, rel=REL)  # conservation: both nodes
    assert got == http_totals(get(share, "/allocation", window=w, aggregate="namespace", includeIdle="true"))
    assert "coverage" in body  # what the numbers stand on, as /allocation says it
    pay = next(a for a in items if a["name"] == "payments")
    # 2 cores x 0.10 and 4 GiB x 0.01 over the hour; OpenCost's fields, its properties, the window.
    assert pay["cpuCost"] == pytest.approx(0.20, rel=REL) and pay["ramCost"] == pytest.approx(0.04, rel=REL)
    assert pay["cpuCoreHours"] == pytest.approx(2, rel=REL) and pay["ramByteHours"] == pytest.approx(4 * 2**30, rel=REL)
    assert pay["properties"]["namespace"] == "payments" and (pay["start"], pay["end"]) == tuple(w.split(","))
    assert {"gpuCost", "pvCost", "networkCost", "sharedCost", "externalCost", "gpuHours", "pvByteHours"} <= set(pay)

    # Arguments left out are left out of /allocation too, so its defaults hold for both doors.
    plain = call(share, "get_allocation_costs", {"window": w, "aggregate": "namespace"})
    plain_got = by_name(only_set(plain["data"]["allocations"], "allocations"))
    assert plain_got == http_totals(get(share, "/allocation", window=w, aggregate="namespace"))
    assert {k: v for k, v in plain_got.items() if k != "__idle__"} == pytest.approx(NAMESPACES, rel=REL)


def test_allocation_costs_filter_share_and_step(share: str, share_prom: tuple[PrometheusServer, int]) -> None:
    t0 = share_prom[1]
    w = window_arg(t0)
    web = call(share, "get_allocation_costs", {"window": w, "aggregate": "namespace", "filter": 'namespace:"web"'})
    assert by_name(only_set(web["data"]["allocations"], "allocations")) == pytest.approx({"web": 0.24}, rel=REL)
    # share_idle: idle 1.12 spread over the six namespaces by cost (1.12 of 1.12 allocated): each doubles.
    shared = call(share, "get_allocation_costs", {"window": w, "aggregate": "namespace", "share_idle": True,
                                                   "include_idle": True})
    got = by_name(only_set(shared["data"]["allocations"], "allocations"))
    assert got == http_totals(get(share, "/allocation", window=w, aggregate="namespace", shareIdle="true",
                                  includeIdle="true"))
    cores = {"payments": 2, "search": 1, "kube-system": 1, "web": 2, "monitoring": 2, "tools": 1}
    gib = {"payments": 4, "search": 2, "kube-system": 2, "web": 4, "monitoring": 8, "tools": 2}
    assert got == pytest.approx({k: cores[k] * 0.10 * 16 / 9 + gib[k] * 0.01 * 32 / 11 for k in cores}, rel=REL)
    assert sum(got.values()) == pytest.approx(2.24, rel=REL)  # 1.60 + 0.64: all of both nodes
    # share_idle alone means what shareIdle alone means to /allocation (OpenCost: nothing to share without idle).
    alone = call(share, "get_allocation_costs", {"window": w, "aggregate": "namespace", "share_idle": True})
    assert by_name(only_set(alone["data"]["allocations"], "allocations")) == http_totals(
        get(share, "/allocation", window=w, aggregate="namespace", shareIdle="true"))
    # Two hours in 1h steps: OpenCost's answer has the first set only; the second follows as allocations_1.
    two = call(share, "get_allocation_costs", {"window": window_arg(t0 - 3600, 2), "aggregate": "cluster",
                                                "step": "1h", "include_idle": True})
    sets = two["data"]["allocations"]
    assert list(sets) == ["allocations", "allocations_1"]
    second = sets["allocations_1"]["allocations"]
    assert by_name(second) == pytest.approx({"cluster": 1.12, "__idle__": IDLE}, rel=REL)
    assert (second[0]["start"], second[0]["end"]) == tuple(w.split(","))
    one = call(share, "get_allocation_costs", {"window": window_arg(t0 - 3600, 2), "aggregate": "cluster",
                                                "step": "1h", "accumulate": True, "include_idle": True})
    # The hour before t0 holds the same pods (backfilled), so the accumulated set is whatever /allocation says.
    assert by_name(only_set(one["data"]["allocations"], "allocations")) == http_totals(get(
        share, "/allocation", window=window_arg(t0 - 3600, 2), aggregate="cluster", step="1h", accumulate="true",
        includeIdle="true"))


def test_tool_errors_are_one_line(share: str) -> None:
    async def go() -> list[Any]:
        async with httpx2.AsyncClient(timeout=60) as http, \
                streamable_http_client(f"{share}/mcp", http_client=http) as (read, write), \
                ClientSession(read, write) as s:
            await s.initialize()
            return [await s.call_tool("get_allocation_costs", {"window": "nonsense", "aggregate": "namespace"}),
                    await s.call_tool("get_allocation_costs", {"window": "1h", "aggregate": "namespace",
                                                               "filter": 'namespace:"a'}),
                    await s.call_tool("get_cloud_costs", {"window": "1h", "aggregate": "", "region": "us-east-1"}),
                    await s.call_tool("get_cloud_costs", {"window": "1h", "aggregate": "service"})]

    bad_window, bad_filter, region, no_bill = asyncio.run(go())
    for res, words in ((bad_window, "nonsense"), (bad_filter, "position"), (region, "region"),
                       (no_bill, "reconciliation.bills")):
        text = res.content[0].text
        assert res.is_error and words in text and "\n" not in text, text


def test_schemas_are_opencosts(share: str) -> None:
    """OpenCost's argument names; window and aggregate required as its Go structs make them (no omitempty)."""
    async def go() -> dict[str, Any]:
        async with httpx2.AsyncClient(timeout=60) as http, \
                streamable_http_client(f"{share}/mcp", http_client=http) as (read, write), \
                ClientSession(read, write) as s:
            await s.initialize()
            return {t.name: t.input_schema for t in (await s.list_tools()).tools}

    tools = asyncio.run(go())
    assert OPENCOST_TOOLS | {"allocation", "assets", "cloud_costs"} <= set(tools)  # chargeback's own stay
    alloc = tools["get_allocation_costs"]
    assert alloc["required"] == ["window", "aggregate"]
    assert set(alloc["properties"]) == {
        "window", "aggregate", "step", "resolution", "accumulate", "share_idle", "include_idle", "idle_by_node",
        "include_proportional_asset_resource_costs", "include_aggregated_metadata", "share_lb", "filter"}
    assert alloc["properties"]["accumulate"]["type"] == "boolean" and alloc["properties"]["step"]["type"] == "string"
    assert tools["get_asset_costs"]["required"] == ["window"] and set(tools["get_asset_costs"]["properties"]) == {
        "window"}
    cloud = tools["get_cloud_costs"]
    assert cloud["required"] == ["window", "aggregate"]
    assert set(cloud["properties"]) == {"window", "aggregate", "accumulate", "filter", "provider", "service",
                                        "category", "region", "account"}


def test_session_id_round_trip_with_the_sdk_client(share: str, share_prom: tuple[PrometheusServer, int]) -> None:
    """The SDK's client keeps the id initialize returned and sends it on every later request; serve answers."""
    sent: list[tuple[str, str | None]] = []
    issued: list[str] = []

    async def on_request(request: httpx2.Request) -> None:
        sent.append((request.method, request.headers.get("mcp-session-id")))

    async def on_response(response: httpx2.Response) -> None:
        if response.request.method == "POST" and (sid := response.headers.get("mcp-session-id")):
            issued.append(sid)

    async def go() -> Any:
        async with httpx2.AsyncClient(timeout=60, event_hooks={"request": [on_request],
                                                               "response": [on_response]}) as http, \
                streamable_http_client(f"{share}/mcp", http_client=http) as (read, write), \
                ClientSession(read, write) as s:
            await s.initialize()
            return await s.call_tool("get_allocation_costs", {"window": window_arg(share_prom[1]),
                                                              "aggregate": "cluster", "include_idle": True})

    res = asyncio.run(go())
    assert not res.is_error
    got = by_name(only_set(res.structured_content["data"]["allocations"], "allocations"))
    assert got == pytest.approx({"cluster": 2.24 - IDLE, "__idle__": IDLE}, rel=REL)
    assert len(issued) == 1  # initialize's answer only
    assert sent[0] == ("POST", None)
    later = [s for s in sent[1:] if s[0] == "POST"]
    assert len(later) >= 2 and all(sid == issued[0] for _, sid in later)  # initialized, tools/call (, ...)


def test_get_is_405_not_a_stream_and_sessions_are_not_held(share: str) -> None:
    """GET would open a server-to-client stream that a stateless server never writes to: 405 at once, as the
    specification allows. Any id is accepted on POST, so any replica (or a restarted one) answers it."""
    r = httpx2.get(f"{share}/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": "x"}, timeout=5)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["message"].startswith("Method Not Allowed")
    assert httpx2.delete(f"{share}/mcp", headers={"Mcp-Session-Id": "x"}, timeout=5).status_code == 405
    first, second = open_session(share), open_session(share)
    assert first != second
    r = rpc(share, {"method": "tools/list", "id": 2}, "issued-by-another-replica")
    assert r.status_code == 200 and {t["name"] for t in r.json()["result"]["tools"]} >= OPENCOST_TOOLS
    assert "mcp-session-id" not in r.headers  # only initialize issues one


def test_tools_share_the_api_workers(share_prom: tuple[PrometheusServer, int]) -> None:
    httpd, ex, base = start({"prometheus": {"url": share_prom[0].url}, "attribution": {"source": "prometheus"},
                             "api": {"maxConcurrent": 1}})
    release = threading.Event()
    admission = httpd.computations
    holder = threading.Thread(target=admission.run, args=(lambda _cancel: release.wait(30),))
    holder.start()
    try:
        r = rpc(base, {"method": "tools/call", "id": 1, "params": {
            "name": "get_asset_costs", "arguments": {"window": "1h"}}}, open_session(base))
        result = r.json()["result"]
        assert result["isError"] and "all 1 API workers are busy (api.maxConcurrent)" in result["content"][0]["text"]
    finally:
        release.set()
        holder.join()
        httpd.shutdown()
        ex.close()


@pytest.fixture(scope="module")
def assets(asset_prom: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bill = with_accounts(hour_bill(tmp_path_factory.mktemp("bill"), asset_prom[1]))
    httpd, ex, base = start({**ASSET_CONFIG, "prometheus": {"url": asset_prom[0].url},
                             "reconciliation": {"bills": [str(bill)]}})
    yield base
    httpd.shutdown()
    ex.close()


def http_assets(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """/assets's one set: OpenCost's single object keyed by asset, or a list holding one map per set."""
    data = body["data"]
    if isinstance(data, list):
        [data] = data
    out: dict[str, dict[str, Any]] = data
    return out


def test_asset_costs_equal_assets(assets: str, asset_prom: Any) -> None:
    w = window_arg(asset_prom[1])
    items = only_set(call(assets, "get_asset_costs", {"window": w})["data"]["assets"], "assets")
    http = http_assets(get(assets, "/assets", window=w))
    assert len(items) == len(http)
    # Every asset once, with /assets's amount: matched by type and name (the keys' spelling is /assets's own).
    want = {(a["type"], a["properties"]["name"]): a for a in http.values()}
    got = {(a["type"], a["properties"]["name"]): a for a in items}
    assert {k: v["totalCost"] for k, v in got.items()} == pytest.approx(
        {k: v["totalCost"] for k, v in want.items()}, rel=REL)
    assert sum(a["totalCost"] for a in items) == pytest.approx(TOTAL, rel=REL)  # tests/test_assets.py
    nodes = {k[1]: v for k, v in got.items() if k[0] == "Node"}
    assert sum(n["totalCost"] for n in nodes.values()) == pytest.approx(NODES, rel=REL)
    od = nodes["n-sp-od"]  # Savings Plan node: 0.25/h over the hour, 8 cores and 32 GiB
    assert od["totalCost"] == pytest.approx(0.25, rel=REL) and od["minutes"] == pytest.approx(60, rel=REL)
    assert od["cpuCoreHours"] == pytest.approx(8, rel=REL) and od["ramByteHours"] == pytest.approx(32 * 2**30, rel=REL)
    assert od["properties"]["providerID"] == "aws:///us-east-1a/i-n-sp-od" and od["properties"]["provider"] == "AWS"
    assert nodes["n-gpu"]["gpuHours"] == pytest.approx(4, rel=REL)  # four V100s for the hour
    disk = got[("Disk", "pv-gp3")]  # 100 GiB gp3 at 0.08/GiB-month over 730 h
    assert disk["totalCost"] == pytest.approx(100 * 0.08 / 730, rel=REL)
    assert disk["byteHours"] == pytest.approx(100 * 2**30, rel=REL) and disk["claimNamespace"] == "payments"
    assert {"type", "properties", "start", "end", "minutes", "adjustment", "totalCost"} <= set(od)


def test_cloud_costs_equal_cloud_cost(assets: str, asset_prom: Any) -> None:
    w = window_arg(asset_prom[1])
    body = call(assets, "get_cloud_costs", {"window": w, "aggregate": "service"})
    [(name, s)] = body["data"]["cloudCosts"].items()
    assert name == s["name"] == "cloudcosts_0" and s["aggregationProperties"] == ["service"]
    [http] = get(assets, "/cloudCost", window=w, aggregate="service")["data"]["sets"]
    assert s["window"] == http["window"]
    got = {c["properties"]["service"]: c for c in s["cloudCosts"]}
    assert set(got) == set(http["cloudCosts"]) == {"Amazon EC2", "Amazon EBS", "Elastic Load Balancing",
                                                   "Amazon VPC"}
    for service, c in got.items():
        for basis in ("listCost", "netCost", "amortizedNetCost", "invoicedCost", "amortizedCost"):
            assert c[basis] == pytest.approx(http["cloudCosts"][service][basis], rel=REL), (service, basis)
    assert got["Amazon EC2"]["netCost"]["cost"] == pytest.approx(EC2, rel=REL)
    assert got["Amazon EC2"]["invoicedCost"]["cost"] == pytest.approx(EC2_INVOICED, rel=REL)
    summary = body["data"]["summary"]
    net = EC2 + EBS + 0.0225 + 0.045  # EC2, EBS, the load balancer and the NAT gateway: 15.1805
    assert summary["totalNetCost"] == pytest.approx(net, rel=REL)
    assert summary["totalAmortizedCost"] == pytest.approx(net, rel=REL)  # amortized net = net on this bill
    # Net-cost weighted: EC2's 11.60 of 15.10 in the cluster, EBS and the load balancer wholly, the NAT not.
    assert summary["kubernetesPercent"] == pytest.approx((EC2_K8S + EBS + 0.0225) / net, rel=REL)
    assert summary["providerBreakdown"] == pytest.approx({"AWS": net}, rel=REL)
    assert summary["serviceBreakdown"] == pytest.approx({"Amazon EC2": EC2, "Amazon EBS": EBS,
                                                         "Elastic Load Balancing": 0.0225, "Amazon VPC": 0.045},
                                                        rel=REL)
    # OpenCost's per-field arguments, and with a filter both hold.
    storage = call(assets, "get_cloud_costs", {"window": w, "aggregate": "service", "category": "Storage"})
    assert storage["data"]["summary"]["totalNetCost"] == pytest.approx(EBS, rel=REL)
    ec2 = call(assets, "get_cloud_costs", {"window": w, "aggregate": "accountID", "account": "111"})
    assert ec2["data"]["summary"]["totalNetCost"] == pytest.approx(EC2, rel=REL)
    vpc = call(assets, "get_cloud_costs", {"window": w, "aggregate": "", "provider": "AWS",
                                           "filter": 'service:"Amazon VPC"|service:"Amazon EBS"',
                                           "category": "Network"})
    assert vpc["data"]["summary"]["totalNetCost"] == pytest.approx(0.045, rel=REL)


def test_cloud_filter_clauses() -> None:
    assert cloud_filter(None) is None
    assert cloud_filter('a:"1"|b:"2"', provider="AWS", service=None) == '(a:"1"|b:"2")+provider:"AWS"'
    with pytest.raises(Exception, match="cannot contain"):
        cloud_filter(None, service='x"y')


def test_stdio_has_them_too(tmp_path: Path, share_prom: tuple[PrometheusServer, int]) -> None:
    """`chargeback mcp` builds the same server: OpenCost's tools answer there as over HTTP."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"prometheus": {"url": share_prom[0].url}, "attribution": {"source": "prometheus"}}))

    async def go() -> Any:
        # The whole environment: the SDK passes only a few variables by default, and PYTHONPATH names this tree.
        params = StdioServerParameters(command=CHARGEBACK, args=["mcp", "--config", str(cfg)], env=dict(os.environ))
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            names = {t.name for t in (await s.list_tools()).tools}
            return names, await s.call_tool("get_asset_costs", {"window": window_arg(share_prom[1])})

    names, res = asyncio.run(go())
    assert names >= OPENCOST_TOOLS
    items = only_set(res.structured_content["data"]["assets"], "assets")
    assert {a["properties"]["name"]: a["totalCost"] for a in items} == pytest.approx({"n1": 1.12, "n2": 1.12},
                                                                                     rel=REL)  # 8 cores, 32 GiB
