"""Published third-party OpenCost clients, run unchanged against `chargeback serve` on their own cluster.

* ct-kubecost-mcp-server 0.2.0 (CloudThinker's stdio MCP server for Kubecost/OpenCost), installed by
  `make deps` in its own venv (.venv/clients: it needs mcp<2), driven by the `mcp` SDK's stdio client. It
  calls `{KUBECOST_API_PREFIX or /model}/allocation`, `/assets` and `/cloudCost`, and probes
  `/allocation?window=1h` at startup (exiting if that fails).
* unalloc 0.3.2 (joins OpenCost allocation data with LLM bills), its CLI with its real arguments. It asks
  `/allocation?window=<date 30 days ago>,<today>&aggregate=namespace,controller,label:team&accumulate=true
  &includeIdle=true` and reads `totalCost`, `start`/`end` and `properties.labels/namespace/controller`.

The cluster, worked by hand. Two nodes, each 4 cores and 16 GiB priced by OpenCost's metrics at cpu
0.05/core-h and ram 0.005/GiB-h: 0.20 + 0.08 = 0.28 per hour each, 0.56 for the cluster. Every container
uses half its requests, so cost is on requests:
  shop/cart-1       Deployment cart,      team=shop, n1: 1 core, 4 GiB: 0.05 + 0.02 = 0.07 /h
  shop/checkout-1   Deployment checkout,  team=shop, n1: 1 core, 2 GiB: 0.05 + 0.01 = 0.06 /h
  ml/trainer-0      StatefulSet trainer,  team=ml,   n2: 2 cores, 8 GiB: 0.10 + 0.04 = 0.14 /h
  batch/nightly-1   CronJob nightly,      no team,   n2: 1 core, 2 GiB: 0.05 + 0.01 = 0.06 /h
  idle: n1 2 cores 0.10 + 10 GiB 0.05 = 0.15; n2 1 core 0.05 + 6 GiB 0.03 = 0.08; 0.23 /h
  per hour: shop 0.13, ml 0.14, batch 0.06, __idle__ 0.23; sum 0.56 (conservation)
History: a sample every minute from t0-30m to t0+60m. Prometheus answers with a sample for 5 minutes after
it (its lookback), and the engine costs each minute at its end, so a window holding all of it (7d, 2d, a
30-day date pair) costs the 96 minutes ending t0-30m ... t0+65m: 1.6 times the hourly amounts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from demo.localprom import PrometheusServer, backfill
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.outputs.assetjson import AssetRow, asset_set

from .conftest import aligned_past
from .limits_stack import Serve
from .test_allocate_core import REL, window_arg
from .test_assets_api import with_accounts
from .test_reconcile import focus_bill, iso

MCP_SERVER = Path(sys.prefix) / "clients" / "bin" / "ct-kubecost-mcp-server"  # make deps: .venv/clients
UNALLOC = Path(sys.executable).parent / "unalloc"
HOURLY = {"shop": 0.13, "ml": 0.14, "batch": 0.06, "__idle__": 0.23}
CLUSTER_HOURLY = 0.56
HISTORY = 1.6  # 96 minutes of cost: see the module docstring
# Hour bill (FOCUS): both nodes at their computed 0.28, another EC2 instance 0.50, an S3 bucket 0.10.
EC2, S3 = 0.28 + 0.28 + 0.50, 0.10


def clients_cluster() -> Cluster:
    def pod(ns: str, name: str, node: str, cpu: float, gib: float, owner: tuple[str, str],
            **labels: str) -> Pod:
        return Pod(ns, name, node, (Container("app", cpu, gib * GIB, 0, cpu / 2, gib * GIB / 2),),
                   labels=labels, owner=owner)

    prices = {"cpu": 0.05, "ram": 0.005}
    nodes = (Node("n1", 4, 16 * GIB, opencost=prices, provider_id="aws:///us-east-1a/i-0n1"),
             Node("n2", 4, 16 * GIB, opencost=prices, provider_id="aws:///us-east-1b/i-0n2"))
    pods = (pod("shop", "cart-1", "n1", 1, 4, ("Deployment", "cart"), team="shop"),
            pod("shop", "checkout-1", "n1", 1, 2, ("Deployment", "checkout"), team="shop"),
            pod("ml", "trainer-0", "n2", 2, 8, ("StatefulSet", "trainer"), team="ml"),
            pod("batch", "nightly-1", "n2", 1, 2, ("CronJob", "nightly")))
    return Cluster(nodes, pods, {"shop": {}, "ml": {}, "batch": {}})


@dataclass
class Stack:
    url: str  # chargeback serve
    t0: int
    root: Path
    prom_url: str

    @property
    def hour(self) -> str:
        return window_arg(self.t0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    t0 = aligned_past()
    root = tmp_path_factory.mktemp("clients")
    backfill(clients_cluster(), root / "data", t0 - 1800, t0 + 3600, 60)
    bill = with_accounts(focus_bill(root / "bill.csv", t0, [
        {"ResourceId": "i-0n1", "ServiceName": "Amazon EC2", "EffectiveCost": 0.28},
        {"ResourceId": "i-0n2", "ServiceName": "Amazon EC2", "EffectiveCost": 0.28},
        {"ResourceId": "i-0elsewhere", "ServiceName": "Amazon EC2", "EffectiveCost": 0.50},
        {"ResourceId": "backups", "ServiceName": "Amazon S3", "ServiceCategory": "Storage", "EffectiveCost": 0.10},
    ]))  # ProviderName AWS; EC2 in account 111, S3 in 222
    with PrometheusServer(root / "data") as prom, \
            Serve(root, prom.url, attribution={"source": "prometheus"}, reconciliation={"bills": [str(bill)]}) as s:
        yield Stack(s.url, t0, root, prom.url)


def needs_finer_granularity(stack: Stack, aggregate: str) -> None:
    """xfail while chargeback refuses `aggregate` as below its granularity (pod/controller level is being
    built on another branch); once it answers, the test runs and must pass."""
    r = requests.get(f"{stack.url}/allocation", params={"window": stack.hour, "aggregate": aggregate}, timeout=60)
    if r.status_code == 400 and "not available at this granularity" in r.text:
        pytest.xfail(f"aggregate={aggregate} needs pod/controller-level allocation (issue 15 part 1)")


# ---- ct-kubecost-mcp-server ------------------------------------------------------------------------------

@dataclass
class ToolResult:
    error: str | None
    data: Any


def mcp_calls(stack: Stack, calls: list[tuple[str, dict[str, Any]]], **env: str) -> tuple[set[str], list[ToolResult]]:
    """Start the published server as an agent host would (stdio, KUBECOST_* env) and call its tools."""
    assert MCP_SERVER.exists(), f"{MCP_SERVER} missing: run `make deps`"
    log = stack.root / "mcp-server.log"

    async def go() -> tuple[set[str], list[ToolResult]]:
        params = StdioServerParameters(command=str(MCP_SERVER), env={
            **os.environ, "KUBECOST_URL": stack.url, "FASTMCP_SHOW_CLI_BANNER": "false", "LOG_LEVEL": "warning",
            **env})
        with log.open("a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                names = {t.name for t in (await s.list_tools()).tools}
                out = []
                for name, args in calls:
                    res = await s.call_tool(name, args)
                    text = res.content[0].text if res.content else ""  # type: ignore[union-attr]
                    out.append(ToolResult(text, None) if res.is_error else ToolResult(None, json.loads(text)))
                return names, out

    return asyncio.run(go())


def totals(alloc_set: dict[str, Any]) -> dict[str, float]:
    return {k: v["totalCost"] for k, v in alloc_set.items()}


def scaled(amounts: dict[str, float], factor: float) -> dict[str, Any]:
    return {k: pytest.approx(v * factor, rel=REL) for k, v in amounts.items()}


def test_mcp_server_allocation_tools(stack: Stack) -> None:
    unix = f"{stack.t0},{stack.t0 + 3600}"
    names, res = mcp_calls(stack, [
        ("health", {}),
        ("get_allocation", {"window": stack.hour, "include_idle": True}),
        ("get_allocation", {}),  # the defaults an agent sends: 7d, namespace, accumulate, no idle
        # idle exists only with includeIdle, as in OpenCost: the client sends includeIdle=false by default
        ("get_allocation", {"window": unix, "share_idle": True, "include_idle": True}),
        ("get_allocation", {"window": unix, "share_idle": True}),
        ("get_allocation", {"window": stack.hour, "aggregate": "label:team", "include_idle": True}),
        ("get_allocation", {"window": stack.hour, "aggregate": "node", "include_idle": True}),
        ("get_allocation", {"window": "2d", "aggregate": "namespace,label:team", "include_idle": True}),
        # 24 hours ending at a past whole hour: `24h` itself would end in the hour in progress, which
        # chargeback leaves out during its first minute (23 sets then; OpenCost returns it empty)
        ("get_allocation", {"window": window_arg(stack.t0 + 7200 - 86400, 24), "accumulate": False, "step": "1h",
                            "include_idle": True}),
        ("get_allocation", {"window": "24h", "include_idle": True}),
        ("get_allocation", {"window": stack.hour, "accumulate": False, "step": "30m"}),
        ("get_efficiency", {"window": stack.hour}),
        ("get_assets", {"window": stack.hour, "aggregate": "type"}),  # /model/assets
        ("get_cloud_cost", {"window": stack.hour, "accumulate": "all"}),  # /model/cloudCost
        ("get_allocation", {"window": "last fortnight"}),
    ])
    assert names == {"health", "get_allocation", "get_assets", "get_cloud_cost", "get_efficiency"}
    assert all(r.error is None for r in res[:-1]), [r.error for r in res if r.error]
    health, hour, defaults, shared, idle_alone, team, node, two_days, steps, day, halves, eff, assets, cloud, bad = res
    assert health.data == {"reachable": True, "status_code": 200, "ok": True, "has_allocation_data": True}

    [got] = hour.data
    assert totals(got) == scaled(HOURLY, 1)
    assert sum(totals(got).values()) == pytest.approx(CLUSTER_HOURLY, rel=REL)  # conservation
    assert got["shop"]["properties"] == {"cluster": "cluster", "node": "n1", "namespace": "shop",
                                         "labels": {"team": "shop"}}
    # shop: 2 cores at 0.05 and 6 GiB at 0.005; requests 2 cores / 6 GiB, used half
    assert got["shop"]["cpuCost"] == pytest.approx(0.10, rel=REL)
    assert got["shop"]["ramCost"] == pytest.approx(0.03, rel=REL)
    assert got["shop"]["cpuCoreRequestAverage"] == pytest.approx(2, rel=REL)
    assert got["shop"]["ramByteRequestAverage"] == pytest.approx(6 * GIB, rel=REL)
    assert got["shop"]["minutes"] == 60

    # 7d reaches far before Prometheus's oldest sample: the 96 minutes of history, without idle.
    assert totals(defaults.data[0]) == scaled({k: v for k, v in HOURLY.items() if k != "__idle__"}, HISTORY)

    # shareIdle, per resource over the cluster (OpenCost's default): cpu idle 0.15 by cpu cost (shop 0.10,
    # ml 0.10, batch 0.05 of 0.25) and ram idle 0.08 by ram cost (shop 0.03, ml 0.04, batch 0.01 of 0.08):
    # shop 0.13 + 0.06 + 0.03, ml 0.14 + 0.06 + 0.04, batch 0.06 + 0.03 + 0.01.
    assert totals(shared.data[0]) == scaled({"shop": 0.22, "ml": 0.24, "batch": 0.10}, 1)
    # shareIdle without includeIdle: no idle to share, the allocated cost only
    assert totals(idle_alone.data[0]) == scaled({"shop": 0.13, "ml": 0.14, "batch": 0.06}, 1)

    assert totals(team.data[0]) == scaled({"shop": 0.13, "ml": 0.14, "__unallocated__": 0.06, "__idle__": 0.23}, 1)
    assert totals(node.data[0]) == scaled({"n1": 0.13, "n2": 0.20, "__idle__": 0.23}, 1)
    for by_key in (team, node):  # conservation at every granularity
        assert sum(totals(by_key.data[0]).values()) == pytest.approx(CLUSTER_HOURLY, rel=REL)
    assert totals(two_days.data[0]) == scaled(
        {"shop/shop": 0.13, "ml/ml": 0.14, "batch/__unallocated__": 0.06, "__idle__": 0.23}, HISTORY)

    assert totals(day.data[0]) == scaled(HOURLY, HISTORY)  # 24h holds all the history
    # step=1h over 24 hours: OpenCost's 24 hourly sets. The hour from t0 holds the hourly amounts; the hour
    # before it the 31 minutes ending t0-30m ... t0; the hour after it the 5 minutes ending t0+61m ... t0+65m.
    assert len(steps.data) == 24
    bounds = {next(iter(s.values()))["window"]["start"]: totals(s) for s in steps.data if s}
    assert bounds[iso(stack.t0)] == scaled(HOURLY, 1)
    assert bounds[iso(stack.t0 - 3600)] == scaled(HOURLY, 31 / 60)
    assert bounds[iso(stack.t0 + 3600)] == scaled(HOURLY, 5 / 60)
    assert sum(sum(s.values()) for s in bounds.values()) == pytest.approx(CLUSTER_HOURLY * HISTORY, rel=REL)
    assert [totals(h) for h in halves.data] == [scaled({k: v for k, v in HOURLY.items() if k != "__idle__"}, 0.5)] * 2

    # get_efficiency: efficiency 0.5 everywhere, so waste is half the cost; ranked by waste.
    assert eff.data["count"] == 3
    items = {i["name"]: i for i in eff.data["items"]}
    assert [i["name"] for i in eff.data["items"]] == ["ml", "shop", "batch"]
    for ns in ("ml", "shop", "batch"):
        assert items[ns]["totalEfficiency"] == pytest.approx(0.5, rel=REL)
        assert items[ns]["estimatedWastedCost"] == pytest.approx(round(HOURLY[ns] / 2, 4), rel=REL)
    # shop uses 1 of 2 cores and 3 of 6 GiB: 20 % headroom recommends 1.2 cores and 3.6 GiB
    assert items["shop"]["recommendedCpuRequestCores"] == pytest.approx(1.2, rel=REL)
    assert items["shop"]["recommendedRamRequestBytes"] == int(3 * GIB * 1.2)

    # Kubecost's /model paths of /assets and /cloudCost (the server's default prefix)
    assert totals(assets.data) == scaled({"Node": CLUSTER_HOURLY}, 1)  # OpenCost's one keyed set
    assert {k: v["netCost"]["cost"] for k, v in cloud.data["sets"][0]["cloudCosts"].items()} == scaled(
        {"Amazon EC2": EC2, "Amazon S3": S3}, 1)
    assert bad.error is not None and "400 Bad Request" in bad.error


def calendar_windows(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """OpenCost's named windows by hand (UTC; weeks from Sunday)."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    sunday = today - timedelta(days=(today.weekday() + 1) % 7)
    month = today.replace(day=1)
    last_month = (month - timedelta(days=1)).replace(day=1)
    return {"today": (today, now), "yesterday": (today - timedelta(days=1), today), "week": (sunday, now),
            "lastweek": (sunday - timedelta(days=7), sunday), "month": (month, now), "lastmonth": (last_month, month)}


def test_mcp_server_named_windows(stack: Stack) -> None:
    """Every named window the tool advertises: each holds the minutes of history (ending t0-30m ... t0+65m)
    that end inside it, so its amounts are the hourly ones times that many minutes / 60."""
    # a window still in its first minute (today at 00:00:30) holds no whole step to answer: not asked then
    windows = {k: (a, b) for k, (a, b) in calendar_windows(datetime.now(tz=timezone.utc)).items()
               if (b - a).total_seconds() >= 60}
    _, res = mcp_calls(stack, [("get_allocation", {"window": w, "include_idle": True}) for w in windows])
    minute_ends = range(stack.t0 - 1800, stack.t0 + 3900 + 1, 60)
    for (name, (start, end)), r in zip(windows.items(), res, strict=True):
        assert r.error is None, (name, r.error)
        minutes = sum(1 for m in minute_ends if start.timestamp() < m <= end.timestamp())
        got = {k: v for k, v in totals(r.data[0]).items() if v}
        assert got == (scaled(HOURLY, minutes / 60) if minutes else {}), name


def test_mcp_server_assets_and_cloud_cost(stack: Stack) -> None:
    _, res = mcp_calls(stack, [
        ("get_assets", {"window": stack.hour}),
        ("get_assets", {"window": stack.hour, "aggregate": "type"}),
        ("get_assets", {"window": stack.hour, "aggregate": "provider"}),  # the tool's documented example
        ("get_assets", {}),  # 7d
        ("get_cloud_cost", {"window": stack.hour}),
        ("get_cloud_cost", {"window": stack.hour, "aggregate": "provider,accountID,category", "accumulate": "all"}),
        ("get_cloud_cost", {"window": stack.hour, "filter": 'service:"Amazon EC2"'}),
        ("get_cloud_cost", {}),  # 7d, by service, a set per day
        ("get_assets", {"window": "24h", "accumulate": False}),
        *[("get_cloud_cost", {"window": "7d", "accumulate": a}) for a in ("hour", "week", "month", "quarter")],
    ], KUBECOST_API_PREFIX="")  # bare OpenCost's paths (/assets, ...) this time
    assert all(r.error is None for r in res), [r.error for r in res if r.error]
    each, by_type, by_provider, week, cloud, by_pc, ec2_only, cloud_week, day_assets, *periods = res
    # OpenCost's key: provider/account/project/category/cluster/type/service/providerID/name
    n1, n2 = (f"AWS/__undefined__/__undefined__/Compute/cluster/Node/Kubernetes/aws:///us-east-1{z}/i-0{n}/{n}"
              for n, z in (("n1", "a"), ("n2", "b")))
    assert totals(each.data) == scaled({n1: 0.28, n2: 0.28}, 1)
    assert each.data[n1]["properties"]["providerID"] == "aws:///us-east-1a/i-0n1"
    assert totals(by_type.data) == scaled({"Node": CLUSTER_HOURLY}, 1)  # == the allocation total
    assert totals(by_provider.data) == scaled({"AWS": CLUSTER_HOURLY}, 1)
    assert totals(week.data) == scaled({n1: 0.28, n2: 0.28}, HISTORY)

    [day] = cloud.data["sets"]  # accumulate=day (the tool's default): the day holding the hour
    cc = day["cloudCosts"]
    assert {k: v["netCost"]["cost"] for k, v in cc.items()} == scaled({"Amazon EC2": EC2, "Amazon S3": S3}, 1)
    # the two nodes' lines match cluster resources: 0.56 of EC2's 1.06
    assert cc["Amazon EC2"]["netCost"]["kubernetesPercent"] == pytest.approx(0.56 / EC2, rel=REL)
    assert cc["Amazon S3"]["netCost"]["kubernetesPercent"] == 0.0
    [s] = by_pc.data["sets"]
    assert {k: v["netCost"]["cost"] for k, v in s["cloudCosts"].items()} == scaled(
        {"AWS/111/Compute": EC2, "AWS/222/Storage": S3}, 1)
    assert list(ec2_only.data["sets"][0]["cloudCosts"]) == ["Amazon EC2"]
    assert totals(day_assets.data) == scaled({n1: 0.28, n2: 0.28}, HISTORY)
    for period in (cloud_week, *periods):  # however the bill's hour is cut into sets, it adds up
        cc_items = [c for s in period.data["sets"] for c in s["cloudCosts"].values()]
        assert sum(v["netCost"]["cost"] for v in cc_items) == pytest.approx(EC2 + S3, rel=REL)
    # 7d is OpenCost's rounded window on every endpoint, as get_allocation's: from the midnight six days
    # before today's, so accumulate=hour cuts whole hours and only the bill's hour has cost
    midnight = (int(datetime.now(tz=timezone.utc).timestamp()) // 86400 - 6) * 86400
    hours = periods[0].data["sets"]
    assert hours[0]["window"]["start"] == iso(midnight) and cloud_week.data["window"]["start"] == iso(midnight)
    assert [s["window"] for s in hours if s["cloudCosts"]] == [{"start": iso(stack.t0), "end": iso(stack.t0 + 3600)}]
    assert week.data[n1]["start"] == iso(midnight)


def test_mcp_server_below_namespace(stack: Stack) -> None:
    """get_allocation/get_efficiency by controller and pod, as the tools advertise."""
    needs_finer_granularity(stack, "controller")
    _, (ctrl, pods, eff) = mcp_calls(stack, [
        ("get_allocation", {"window": stack.hour, "aggregate": "controller", "include_idle": True}),
        ("get_allocation", {"window": stack.hour, "aggregate": "pod", "include_idle": True}),
        ("get_efficiency", {"window": stack.hour, "aggregate": "pod"}),
    ])
    assert ctrl.error is None and pods.error is None and eff.error is None, (ctrl.error, pods.error, eff.error)

    def by(prop: str, alloc_set: dict[str, Any]) -> dict[str, float]:
        return {v["properties"].get(prop, k): v["totalCost"] for k, v in alloc_set.items()}

    assert by("controller", ctrl.data[0]) == scaled(
        {"cart": 0.07, "checkout": 0.06, "trainer": 0.14, "nightly": 0.06, "__idle__": 0.23}, 1)
    assert by("pod", pods.data[0]) == scaled(
        {"cart-1": 0.07, "checkout-1": 0.06, "trainer-0": 0.14, "nightly-1": 0.06, "__idle__": 0.23}, 1)
    for by_key in (ctrl, pods):  # conservation
        assert sum(totals(by_key.data[0]).values()) == pytest.approx(CLUSTER_HOURLY, rel=REL)
    assert eff.data["count"] == 4
    # cart-1 uses 0.5 of 1 core: 20 % headroom recommends 0.6 cores
    [cart] = [i for i in eff.data["items"] if i["cpuCoreRequestAverage"] == pytest.approx(1) and
              i["ramByteRequestAverage"] == pytest.approx(4 * GIB)]
    assert cart["recommendedCpuRequestCores"] == pytest.approx(0.6, rel=REL)


def test_mcp_server_with_bearer_and_basic_auth(stack: Stack) -> None:
    """KUBECOST_AUTH_TYPE=bearer against api.bearerTokenFile and =basic against the exporter-toolkit web
    config's bcrypt users; a wrong token fails the server's startup probe with the 401."""
    token, web = stack.root / "token", stack.root / "web.yml"
    token.write_text("s3cret\n")
    web.write_text(yaml.safe_dump({"basic_auth_users": {
        "finops": bcrypt.hashpw(b"pa55", bcrypt.gensalt(rounds=4)).decode()}}))
    with Serve(stack.root, stack.prom_url, attribution={"source": "prometheus"},
               api={"bearerTokenFile": str(token), "webConfigFile": str(web)}) as guarded:
        calls = [("health", {}), ("get_allocation", {"window": stack.hour})]
        tenants = scaled({k: v for k, v in HOURLY.items() if k != "__idle__"}, 1)
        for auth in ({"KUBECOST_AUTH_TYPE": "bearer", "KUBECOST_TOKEN": "s3cret"},
                     {"KUBECOST_AUTH_TYPE": "basic", "KUBECOST_USERNAME": "finops", "KUBECOST_PASSWORD": "pa55"}):
            _, (health, hour) = mcp_calls(stack, calls, KUBECOST_URL=guarded.url, **auth)
            assert health.data["ok"] and totals(hour.data[0]) == tenants, auth
        wrong = {"KUBECOST_URL": guarded.url, "KUBECOST_AUTH_TYPE": "bearer", "KUBECOST_TOKEN": "wrong"}
        p = subprocess.run([str(MCP_SERVER)], env={**os.environ, **wrong}, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 2 and "cannot reach KubeCost API" in p.stderr and "401" in p.stderr, p.stderr


# ---- unalloc ----------------------------------------------------------------------------------------------

def unalloc(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    assert UNALLOC.exists(), f"{UNALLOC} missing: run `make deps`"
    env = {**os.environ, "UNALLOC_OPENCOST_URL": stack.url, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([str(UNALLOC), *args], env=env, capture_output=True, text=True, timeout=120)


def test_unalloc_report_live(stack: Stack) -> None:
    """`unalloc report -s opencost`: its own 30-day date-only window and namespace,controller,label:team."""
    needs_finer_granularity(stack, "namespace,controller,label:team")
    p = unalloc(stack, "report", "--source", "opencost", "--json", "--fallback", "namespace")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    # 1.6 h of history: shop 0.208, ml 0.224, batch 0.096 (via the namespace fallback), idle 0.368 unowned.
    buckets = {b["key"]: float(b["amount_usd"]) for b in report["buckets"]}
    assert buckets == scaled({"shop": 0.13, "ml": 0.14, "batch": 0.06, "<unallocated>": 0.23}, HISTORY)
    assert float(report["total_usd"]) == pytest.approx(CLUSTER_HOURLY * HISTORY, rel=REL)  # conservation
    assert report["unallocated_pct"] == "41.1"  # 0.368 / 0.896
    assert float(report["fallback_usd"]) == pytest.approx(0.06 * HISTORY, rel=REL)
    # the other commands over --days 2 (yesterday's date to today's: still all the history), to keep it quick
    budget = unalloc(stack, "report", "--source", "opencost", "--days", "2", "--budget", "50")  # 51.8 %: no fallback
    assert budget.returncode == 2 and "unallocated 51.8% exceeds budget 50.0%" in budget.stderr
    # the ledger ties out against the cluster's bill for those 96 minutes: 0.56 x 1.6 = 0.896
    tied = unalloc(stack, "reconcile", "--source", "opencost", "--days", "2", "--invoice", "opencost=0.896")
    assert tied.returncode == 0 and "matched" in tied.stdout and "$0.00 (0.0%)" in tied.stdout, tied.stdout
    backlog = unalloc(stack, "labels", "--source", "opencost", "--days", "2")  # no team, priciest first
    assert backlog.returncode == 0, backlog.stderr
    assert backlog.stdout.index("__idle__") < backlog.stdout.index("batch/") and "$0.37" in backlog.stdout


def test_unalloc_on_chargebacks_namespace_answer(stack: Stack, tmp_path: Path) -> None:
    """What works today at namespace level: chargeback's answer to unalloc's own query with the aggregate it
    can serve (namespace,label:team), fed to the unchanged CLI through its --fixture-dir input, then
    `unalloc verify` rebuilding the report from what it kept."""
    now = datetime.now(tz=timezone.utc)  # unalloc's own window: --days 30 ending today, as dates
    day, start = now.date(), (now - timedelta(days=30)).date()
    r = requests.get(f"{stack.url}/allocation", timeout=120, params={
        "window": f"{start.isoformat()},{day.isoformat()}", "aggregate": "namespace,label:team",
        "accumulate": "true", "includeIdle": "true"})
    assert r.status_code == 200, r.text
    fixtures, kept = tmp_path / "in", tmp_path / "kept"
    fixtures.mkdir()
    (fixtures / "opencost_allocation.json").write_text(r.text)
    p = unalloc(stack, "report", "--source", "opencost", "--fixtures", "--fixture-dir", str(fixtures), "--json",
                "--keep-inputs", str(kept))
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    # without a fallback batch has no team: unallocated is batch 0.096 + idle 0.368 = 0.464 of 0.896, 51.8 %
    buckets = {b["key"]: float(b["amount_usd"]) for b in report["buckets"]}
    assert buckets == scaled({"shop": 0.13, "ml": 0.14, "<unallocated>": 0.06 + 0.23}, HISTORY)
    assert float(report["total_usd"]) == pytest.approx(CLUSTER_HOURLY * HISTORY, rel=REL)  # conservation
    assert report["unallocated_pct"] == "51.8"
    (tmp_path / "report.json").write_text(p.stdout)
    v = unalloc(stack, "verify", str(tmp_path / "report.json"), "--inputs", str(kept))
    assert v.returncode == 0 and "reproduced: 51.8% unallocated" in v.stdout, v.stdout + v.stderr
    labels = unalloc(stack, "labels", "--source", "opencost", "--fixtures", "--fixture-dir", str(fixtures))
    assert labels.returncode == 0, labels.stderr
    assert "batch/__unallocated__" in labels.stdout and "__idle__" in labels.stdout


# ---- the fix the MCP server needed: /assets aggregate by provider and category ---------------------------

def test_assets_aggregate_by_opencost_asset_properties() -> None:
    """OpenCost's asset properties (provider, category, name, and account/project/service, unknown here)."""
    rows = [AssetRow("Node", "n1", "c", 0, 3600, "aws:///us-east-1a/i-1", "n1", 3600, cpu_cost=0.2, ram_cost=0.08),
            AssetRow("Node", "n2", "c", 0, 3600, "gce://p/z/n2", "n2", 3600, cpu_cost=0.1),
            AssetRow("Disk", "pv-1", "c", 0, 3600, "vol-1", seconds=3600, cost=0.01)]
    by = {k: v["totalCost"] for k, v in asset_set(rows, ["provider"]).items()}
    # "vol-1" has no scheme, so no provider: OpenCost's key part for an empty property
    assert by == {"AWS": pytest.approx(0.28), "GCP": pytest.approx(0.1), "__undefined__": pytest.approx(0.01)}
    by = {k: v["totalCost"] for k, v in asset_set(rows, ["category", "name"]).items()}
    assert by == {"Compute/n1": pytest.approx(0.28), "Compute/n2": pytest.approx(0.1),
                  "Storage/pv-1": pytest.approx(0.01)}
    assert list(asset_set(rows, ["account"])) == ["__undefined__"]
