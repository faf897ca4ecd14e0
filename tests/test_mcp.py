"""The MCP endpoint through the SDK's own clients, against a real Prometheus holding the sharing scenario.

Scenario (scenarios.share_cluster), the hour (t0, t0+1h], cpu 0.10/core-h, ram 0.01/GiB-h; every pod uses
half its requests. payments requests 2 cores and 4 GiB: cost 2*0.10 + 4*0.01 = 0.24; unused 1 core and
2 GiB: 0.10 + 0.02 = 0.12, efficiency 0.5. web (frontend 1/2, admin 0.5/1, legacy 0.5/1) requests 2 cores
and 4 GiB: the same 0.24 and 0.12.
"""

from __future__ import annotations

import asyncio
import json
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
from exporter.serve.server import Exporter
from exporter.serve.webauth import Auth, TokenFile

from .console import CHARGEBACK
from .test_allocate_core import REL, window_arg

TOOLS = {"allocation", "assets", "cloud_costs", "efficiency", "budgets_status", "label_coverage"}
NAMESPACES = {"payments": 0.24, "search": 0.12, "kube-system": 0.12, "web": 0.24, "monitoring": 0.28,
              "tools": 0.12, "__idle__": 0.64 + 0.48}


def serve(prom_url: str, auth: Auth | None = None, **api: Any) -> tuple[AsyncHTTPServer, Exporter]:
    ex = Exporter(parse_config({"prometheus": {"url": prom_url}, "attribution": {"source": "prometheus"},
                                "api": api}))
    httpd = AsyncHTTPServer(("127.0.0.1", 0), make_app(ex, auth))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, ex


@pytest.fixture(scope="module")
def server(share_prom: tuple[PrometheusServer, int]) -> Iterator[str]:
    httpd, ex = serve(share_prom[0].url)
    yield f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
    httpd.shutdown()
    ex.close()


async def session_calls(url: str, calls: list[tuple[str, dict[str, Any]]], headers: dict[str, str] | None = None
                        ) -> tuple[set[str], list[Any]]:
    async with httpx2.AsyncClient(headers=headers or {}, timeout=60) as http, \
            streamable_http_client(url, http_client=http) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        names = {t.name for t in (await s.list_tools()).tools}
        return names, [await s.call_tool(name, args) for name, args in calls]


def test_tools_over_streamable_http(server: str, share_prom: tuple[PrometheusServer, int]) -> None:
    t0 = share_prom[1]
    w = window_arg(t0)
    names, (alloc, eff, team, bad, cov, budgets, assets, cloud, bad_by) = asyncio.run(session_calls(server, [
        ("allocation", {"window": w, "aggregate": "namespace", "include_idle": True}),
        ("efficiency", {"window": w}),
        ("efficiency", {"window": w, "by": "team"}),
        ("allocation", {"window": "nonsense"}),
        ("label_coverage", {"window": w}),
        ("budgets_status", {}),
        ("assets", {"window": w, "aggregate": "type"}),
        ("cloud_costs", {"window": w}),
        ("efficiency", {"window": w, "by": "nobody"}),
    ]))
    assert names >= TOOLS
    assert not alloc.is_error
    got = {k: v["totalCost"] for k, v in alloc.structured_content["data"][0].items()}
    assert set(got) == set(NAMESPACES)
    for k, v in NAMESPACES.items():
        assert got[k] == pytest.approx(v, rel=REL), k
    assert sum(got.values()) == pytest.approx(2.24, rel=REL)  # conservation: both nodes' cost
    groups = {g["group"]: g for g in eff.structured_content["groups"]}
    for ns in ("payments", "web"):
        assert groups[ns]["cost"] == pytest.approx(0.24, rel=REL)
        assert groups[ns]["unused_cost"] == pytest.approx(0.12, rel=REL)
        assert groups[ns]["cpu_efficiency"] == pytest.approx(0.5, rel=REL)
        assert groups[ns]["ram_efficiency"] == pytest.approx(0.5, rel=REL)
    assert "__idle__" not in groups
    # by team: web-a is frontend (1 core, 2 GiB): cost 0.12, unused 0.06.
    teams = {g["group"]: g for g in team.structured_content["groups"]}
    assert teams["web-a"]["unused_cost"] == pytest.approx(0.06, rel=REL)
    assert bad.is_error and "nonsense" in bad.content[0].text and "\n" not in bad.content[0].text
    assert not cov.is_error and {a["label"] for a in cov.structured_content["labels"]} >= {"team"}
    assert budgets.structured_content == {"budgets": [], "namespaceBudgets": []}  # no budget rules loaded
    assert not assets.is_error
    total = sum(v["totalCost"] for v in assets.structured_content["data"].values())
    assert total == pytest.approx(2.24, rel=REL)  # the two nodes, 1.12 each
    assert cloud.is_error and "reconciliation.bills" in cloud.content[0].text  # no bill configured
    assert bad_by.is_error and bad_by.content[0].text == (
        "Error executing tool efficiency: by='nobody': use namespace or one of team, cost_center, environment")


def test_prometheus_down_is_a_tool_error() -> None:
    httpd, ex = serve("http://127.0.0.1:9")  # nothing listens on the discard port
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
        _, (res,) = asyncio.run(session_calls(url, [("allocation", {"window": "1h"})]))
        text = res.content[0].text
        assert res.is_error and "127.0.0.1:9" in text and "\n" not in text, text
    finally:
        httpd.shutdown()
        ex.close()


def test_mcp_needs_credentials_when_auth_is_configured(tmp_path: Path,
                                                       share_prom: tuple[PrometheusServer, int]) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    httpd, ex = serve(share_prom[0].url, Auth(token=TokenFile(token)))
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
        r = httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 401 and httpx2.get(url).status_code == 401
        assert httpx2.post(url.replace("/mcp", "/metrics")).status_code == 501  # POST elsewhere: as before
        names, _ = asyncio.run(session_calls(url, [], {"Authorization": "Bearer s3cret"}))
        assert names >= TOOLS
    finally:
        httpd.shutdown()
        ex.close()


def test_tools_share_the_api_workers(share_prom: tuple[PrometheusServer, int]) -> None:
    """api.maxConcurrent bounds MCP tools and the HTTP API together: one slot held by the API means busy."""
    httpd, ex = serve(share_prom[0].url, maxConcurrent=1)
    release = threading.Event()
    admission = httpd.computations
    holder = threading.Thread(target=admission.run, args=(lambda _cancel: release.wait(30),))
    holder.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
        _, (res,) = asyncio.run(session_calls(url, [("efficiency", {"window": "1h"})]))
        assert res.is_error and "all 1 API workers are busy (api.maxConcurrent)" in res.content[0].text
    finally:
        release.set()
        holder.join()
        httpd.shutdown()
        ex.close()


def test_stdio(tmp_path: Path, share_prom: tuple[PrometheusServer, int]) -> None:
    prom, t0 = share_prom
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))

    async def go() -> Any:
        params = StdioServerParameters(command=CHARGEBACK, args=["mcp", "--config", str(cfg)])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            names = {t.name for t in (await s.list_tools()).tools}
            return names, await s.call_tool("allocation", {"window": window_arg(t0), "aggregate": "cluster",
                                                                   "include_idle": True})

    names, res = asyncio.run(go())
    assert names >= TOOLS
    got = {k: v["totalCost"] for k, v in res.structured_content["data"][0].items()}
    assert got == pytest.approx({"cluster": 2.24 - 1.12, "__idle__": 1.12}, rel=REL)
