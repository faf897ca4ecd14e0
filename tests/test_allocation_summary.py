"""OpenCost's /allocation/summary and its topline, idle off unless asked, and per-request sharing overrides,
against a real Prometheus holding the sharing scenario; amounts by hand.

Scenario (scenarios.share_cluster), the hour (t0, t0+1h], cpu 0.10/core-h, ram 0.01/GiB-h, every pod
using half its request:
  n1: payments 2 cores 4 GiB = 0.24, search 1 core 2 GiB = 0.12, kube-system (coredns) 1 core 2 GiB = 0.12;
      idle (8 - 4) x 0.10 + (32 - 8) x 0.01 = 0.64
  n2: web 2 cores 4 GiB = 0.24, monitoring 2 cores 8 GiB = 0.28, tools 1 core 2 GiB = 0.12;
      idle (8 - 5) x 0.10 + (32 - 14) x 0.01 = 0.48
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from demo.localprom import PrometheusServer
from exporter.config.schema import parse_config
from exporter.outputs.allocsummary import SUMMARY_FIELDS
from exporter.serve.httpapi import make_app
from exporter.serve.httpserver import AsyncHTTPServer
from exporter.serve.server import Exporter

from .test_allocate_core import REL, window_arg
from .test_mcp import session_calls

TENANTS = {"payments": 0.24, "search": 0.12, "kube-system": 0.12, "web": 0.24, "monitoring": 0.28, "tools": 0.12}
IDLE = 0.64 + 0.48
GIB = 1024**3


@pytest.fixture(scope="module")
def exporter(share_prom: tuple[PrometheusServer, int]) -> Iterator[Exporter]:
    prom, _t0 = share_prom
    # kube-system is shared by configuration, and this deployment asks OpenCost's doors to apply it too
    # (api.allocationSharing: config); `default_url` below is a deployment with the default (opencost).
    ex = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
                                "sharing": {"shareNamespaces": ["kube-system"]},
                                "api": {"allocationSharing": "config"}}))
    yield ex
    ex.close()


def serve_app(exporter: Exporter) -> Iterator[str]:
    httpd = AsyncHTTPServer(("127.0.0.1", 0), make_app(exporter))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def default_url(share_prom: tuple[PrometheusServer, int]) -> Iterator[str]:
    """The same sharing section, with api.allocationSharing at its default: OpenCost's doors share only what a
    request asks."""
    ex = Exporter(parse_config({"prometheus": {"url": share_prom[0].url}, "attribution": {"source": "prometheus"},
                                "sharing": {"shareNamespaces": ["kube-system"], "shareIdle": True}}))
    yield from serve_app(ex)
    ex.close()


@pytest.fixture(scope="module")
def base_url(exporter: Exporter) -> Iterator[str]:
    yield from serve_app(exporter)


def get(base_url: str, path: str, t0: int, **params: str) -> dict[str, Any]:
    r = requests.get(base_url + path, params={"window": window_arg(t0), **params}, timeout=60)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def approx(expected: dict[str, float]) -> Any:
    return pytest.approx(expected, rel=REL, abs=1e-12)


# Configured sharing: kube-system's 0.12 goes to the five tenants by their cost (of 1.00).
SHARED = {k: v + 0.12 * v / 1.00 for k, v in TENANTS.items() if k != "kube-system"}


def test_summary_is_allocation_cut_to_summary_fields(base_url: str, share_prom: Any) -> None:
    t0 = share_prom[1]
    body = get(base_url, "/allocation/summary", t0, aggregate="namespace")
    data = body["data"]
    assert data["step"] == 3600 * 10**9  # a Go duration: nanoseconds
    start, end = window_arg(t0).split(",")
    assert data["window"] == {"start": start, "end": end}
    [one] = data["sets"]
    assert one["window"] == {"start": start, "end": end}
    got = one["allocations"]
    assert {k: v["totalCost"] for k, v in got.items()} == approx(SHARED)  # no __idle__ unless asked
    assert sum(v["totalCost"] for v in got.values()) == pytest.approx(1.12, rel=REL)  # all but idle
    pay = got["payments"]
    assert list(pay) == list(SUMMARY_FIELDS)
    # OpenCost's suite compares the limit averages too (TestAllocationAndAllocationSummary): they are here,
    # 0 as this scenario sets no limits (the demo's, non-zero, are compared by the suite's run).
    assert (pay["cpuCoreLimitAverage"], pay["ramByteLimitAverage"]) == (0.0, 0.0)
    # payments: 2 cores x 0.10 = 0.20, 4 GiB x 0.01 = 0.04, shared 0.12 x 0.24 = 0.0288; requests 2 cores, 4 GiB,
    # usage half of them
    assert pay["cpuCost"] == pytest.approx(0.20, rel=REL) and pay["ramCost"] == pytest.approx(0.04, rel=REL)
    assert pay["sharedCost"] == pytest.approx(0.0288, rel=REL)
    assert pay["cpuCoreRequestAverage"] == pytest.approx(2, rel=REL)
    assert pay["cpuCoreUsageAverage"] == pytest.approx(1, rel=REL)
    assert pay["ramByteRequestAverage"] == pytest.approx(4 * GIB, rel=REL)
    assert pay["ramByteUsageAverage"] == pytest.approx(2 * GIB, rel=REL)
    assert pay["totalEfficiency"] == pytest.approx(0.5, rel=REL)
    # The same numbers as /allocation's, field for field (the suite's /allocation vs summary comparison).
    full = get(base_url, "/allocation", t0, aggregate="namespace")["data"][0]
    assert set(full) == set(got)
    for name, item in got.items():
        same = {k: full[name][k] for k in SUMMARY_FIELDS}
        assert {k: v for k, v in item.items() if isinstance(v, str)} == {
            k: v for k, v in same.items() if isinstance(v, str)}
        assert {k: v for k, v in item.items() if not isinstance(v, str)} == approx(
            {k: v for k, v in same.items() if not isinstance(v, str)})


def test_summary_paths_idle_and_steps(base_url: str, share_prom: Any) -> None:
    t0 = share_prom[1]
    first = get(base_url, "/allocation/summary", t0, includeIdle="true")["data"]["sets"][0]["allocations"]
    assert first["__idle__"]["totalCost"] == pytest.approx(IDLE, rel=REL)
    for path in ("/allocation/compute/summary", "/model/allocation/summary", "/model/allocation/compute/summary"):
        again = get(base_url, path, t0, includeIdle="true")["data"]["sets"][0]["allocations"]
        assert {k: v["totalCost"] for k, v in again.items()} == approx({k: v["totalCost"] for k, v in first.items()})
    halves = get(base_url, "/allocation/summary", t0, step="30m", accumulate="false")["data"]
    assert halves["step"] == 1800 * 10**9 and len(halves["sets"]) == 2
    for i, s in enumerate(halves["sets"]):
        assert s["window"] == dict(zip(("start", "end"), window_arg(t0 + 1800 * i, 0.5).split(","), strict=True))
        assert {k: v["totalCost"] for k, v in s["allocations"].items()} == approx({k: v / 2 for k, v in SHARED.items()})


def test_topline_adds_every_allocation(base_url: str, share_prom: Any) -> None:
    t0 = share_prom[1]
    top = get(base_url, "/allocation/summary/topline", t0, aggregate="namespace")["data"]
    assert top["numResults"] == 5  # kube-system is shared away
    total = top["combined"]["allocations"]["total"]
    assert total["name"] == "total" and list(total) == list(SUMMARY_FIELDS)
    # tenants 1.00 plus kube-system's 0.12 shared; cpu 2+1+2+2+1 = 8 cores x 0.10; ram 4+2+4+8+2 = 20 GiB x 0.01
    assert total["totalCost"] == pytest.approx(1.12, rel=REL)
    assert total["cpuCost"] == pytest.approx(0.80, rel=REL) and total["ramCost"] == pytest.approx(0.20, rel=REL)
    assert total["sharedCost"] == pytest.approx(0.12, rel=REL)
    assert total["cpuCoreRequestAverage"] == pytest.approx(8, rel=REL)
    assert total["ramByteRequestAverage"] == pytest.approx(20 * GIB, rel=REL)
    assert total["totalEfficiency"] == pytest.approx(0.5, rel=REL)
    # two half-hour sets: costs add, averages weigh each set by its 30 minutes
    halves = get(base_url, "/model/allocation/summary/topline", t0, step="30m", accumulate="false")["data"]
    assert halves["numResults"] == 10
    assert halves["combined"]["allocations"]["total"]["totalCost"] == pytest.approx(1.12, rel=REL)
    assert halves["combined"]["allocations"]["total"]["cpuCoreRequestAverage"] == pytest.approx(8, rel=REL)


def test_request_turns_configured_sharing_off(base_url: str, share_prom: Any) -> None:
    """An empty shareNamespaces= shares nothing: kube-system's coredns pod shows in aggregate=pod."""
    t0 = share_prom[1]
    shared = get(base_url, "/allocation", t0, aggregate="pod")["data"][0]
    assert "coredns" not in shared
    own = get(base_url, "/allocation", t0, aggregate="pod", shareNamespaces="")["data"][0]
    assert own["coredns"]["totalCost"] == pytest.approx(0.12, rel=REL)
    assert own["coredns"]["properties"]["namespace"] == "kube-system"
    by_ns = get(base_url, "/allocation/summary", t0, shareNamespaces="")["data"]["sets"][0]["allocations"]
    assert {k: v["totalCost"] for k, v in by_ns.items()} == approx(TENANTS)
    # other namespaces given per request replace the configured ones: monitoring (0.28) over the other five (0.84)
    other = get(base_url, "/allocation", t0, shareNamespaces="monitoring")["data"][0]
    assert {k: v["totalCost"] for k, v in other.items()} == approx(
        {k: v + 0.28 * v / 0.84 for k, v in TENANTS.items() if k != "monitoring"})


def test_share_idle_needs_include_idle(base_url: str, share_prom: Any) -> None:
    """OpenCost computes idle only with includeIdle=true: shareIdle alone changes nothing."""
    t0 = share_prom[1]
    alone = get(base_url, "/allocation", t0, shareIdle="true", shareNamespaces="")["data"][0]
    assert {k: v["totalCost"] for k, v in alone.items()} == approx(TENANTS)
    both = get(base_url, "/allocation", t0, shareIdle="true", includeIdle="true", shareNamespaces="")["data"][0]
    assert "__idle__" not in both
    assert sum(v["totalCost"] for v in both.values()) == pytest.approx(2.24, rel=REL)  # conservation
    kept = get(base_url, "/allocation", t0, includeIdle="true", shareNamespaces="")["data"][0]
    assert {k: v["totalCost"] for k, v in kept.items()} == approx({**TENANTS, "__idle__": IDLE})


def test_opencost_doors_share_only_what_the_request_asks(default_url: str, share_prom: Any) -> None:
    """api.allocationSharing's default: the configured kube-system sharing and shareIdle do not apply to
    /allocation, /allocation/summary or the MCP tools unless asked (OpenCost's defaults); `sharing=config` asks
    for the sharing section, and a parameter given on top still replaces its value."""
    t0 = share_prom[1]
    pods = get(default_url, "/allocation", t0, aggregate="pod")["data"][0]
    # coredns 1 core x 0.10 + 2 GiB x 0.01 = 0.12, in kube-system, with no shared cost anywhere
    assert pods["coredns"]["totalCost"] == pytest.approx(0.12, rel=REL)
    assert pods["coredns"]["properties"]["namespace"] == "kube-system"
    assert sum(v["sharedCost"] for v in pods.values()) == 0.0
    by_ns = get(default_url, "/allocation/summary", t0)["data"]["sets"][0]["allocations"]
    assert {k: v["totalCost"] for k, v in by_ns.items()} == approx(TENANTS)
    # with idle: tenants 1.12 + idle 1.12 = 2.24, the two nodes' 16 cores x 0.10 + 64 GiB x 0.01 (conservation)
    kept = get(default_url, "/allocation", t0, includeIdle="true")["data"][0]
    assert {k: v["totalCost"] for k, v in kept.items()} == approx({**TENANTS, "__idle__": IDLE})
    assert sum(v["totalCost"] for v in kept.values()) == pytest.approx(2.24, rel=REL)
    # sharing=config: kube-system's 0.12 over the five tenants by cost (SHARED); idle shared as configured, all
    # 2.24 on the five (shareIdle, with includeIdle so that idle exists)
    conf = get(default_url, "/allocation", t0, sharing="config")["data"][0]
    assert {k: v["totalCost"] for k, v in conf.items()} == approx(SHARED)
    both = get(default_url, "/allocation", t0, sharing="config", includeIdle="true")["data"][0]
    assert "__idle__" not in both and "kube-system" not in both
    assert sum(v["totalCost"] for v in both.values()) == pytest.approx(2.24, rel=REL)
    # sharing=config with its own parameter on top: monitoring (0.28) over the other five (0.84) instead
    other = get(default_url, "/allocation", t0, sharing="config", shareNamespaces="monitoring")["data"][0]
    assert {k: v["totalCost"] for k, v in other.items()} == approx(
        {k: v + 0.28 * v / 0.84 for k, v in TENANTS.items() if k != "monitoring"})
    r = requests.get(default_url + "/allocation", params={"window": window_arg(t0), "sharing": "mine"}, timeout=60)
    assert r.status_code == 400 and "sharing='mine': use opencost" in r.json()["message"]
    # the MCP doors: OpenCost's get_allocation_costs and chargeback's allocation, the same defaults and `sharing`
    _names, (oc, own, conf_mcp) = asyncio.run(session_calls(default_url + "/mcp", [
        ("get_allocation_costs", {"window": window_arg(t0), "aggregate": "pod"}),
        ("allocation", {"window": window_arg(t0), "aggregate": "namespace"}),
        ("allocation", {"window": window_arg(t0), "aggregate": "namespace", "sharing": "config"})]))
    oc_set = oc.structured_content["data"]["allocations"]["allocations"]  # OpenCost's {name, properties, allocations}
    coredns = [a for a in oc_set["allocations"] if a["name"] == "coredns"]
    assert [a["totalCost"] for a in coredns] == [pytest.approx(0.12, rel=REL)]
    assert {k: v["totalCost"] for k, v in own.structured_content["data"][0].items()} == approx(TENANTS)
    assert {k: v["totalCost"] for k, v in conf_mcp.structured_content["data"][0].items()} == approx(SHARED)
