"""OpenCost's MCP tools, `get_allocation_costs`, `get_asset_costs` and `get_cloud_costs`, with its argument names.

Clients written for OpenCost's MCP server (its integration suite, agents prompted with its tool names) call these.
Each tool turns its arguments into the query string of /allocation, /assets or /cloudCost and runs the very
Exporter method the HTTP handler runs, so windows, defaults, sharing overrides and errors are the HTTP API's
(one engine; ocalloc's parameter semantics apply here unchanged). The answer is then reshaped, without changing
a number, into OpenCost's MCP body: `{"data": {...}, "queryInfo": {...}}`, plus the HTTP body's `coverage`.
Differences from OpenCost's server, with reasons, are in docs/api.md ("OpenCost's MCP tools").
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

if TYPE_CHECKING:
    from exporter.serve.server import Exporter

Run = Callable[[Callable[[threading.Event], Any]], Awaitable[Any]]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # optional, as a Go `omitempty` field: no `null` in the published schema


def _d(description: str) -> Any:
    """An optional argument's field: published as its plain type (OpenCost's schema), None when not given."""
    return Field(description=description, json_schema_extra=_no_default)


WINDOW = Annotated[str, Field(description=(
    "Time window: a duration (30m, 24h, 7d), today, yesterday, week, lastweek, month, lastmonth, or "
    "'start,end' as RFC3339 times or unix seconds."))]
OptBool = bool | SkipJsonSchema[None]
OptStr = str | SkipJsonSchema[None]
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

# Allocation fields of OpenCost's MCP answer, in its order; taken from the /allocation item as they are.
ALLOCATION_FIELDS = ("cpuCost", "gpuCost", "ramCost", "pvCost", "networkCost", "loadBalancerCost", "sharedCost",
                     "externalCost", "totalCost", "cpuCoreHours", "ramByteHours", "gpuHours", "pvByteHours")
ALLOCATION_PROPERTIES = ("cluster", "node", "container", "controller", "controllerKind", "namespace", "pod",
                         "services", "providerID", "labels", "annotations", "namespaceLabels", "namespaceAnnotations")
ASSET_PROPERTIES = ("category", "provider", "account", "project", "service", "cluster", "name", "providerID")
# Asset fields OpenCost's MCP answer always carries, then those it leaves out when zero or empty (Go omitempty).
ASSET_FIELDS = ("minutes", "adjustment", "totalCost")
ASSET_OPTIONAL = ("byteHours", "byteHoursUsed", "byteUsageMax", "storageClass", "volumeName", "claimName",
                  "claimNamespace", "local", "nodeType", "cpuCoreHours", "ramByteHours", "gpuHours", "gpuCount",
                  "cpuCost", "gpuCost", "ramCost", "discount", "preemptible", "breakdown", "cpuBreakdown",
                  "ramBreakdown", "overhead", "private", "ip", "credit")
CLOUD_PROPERTIES = ("providerID", "provider", "accountID", "accountName", "invoiceEntityID", "invoiceEntityName",
                    "regionID", "availabilityZone", "service", "category", "labels")
CLOUD_COSTS = ("listCost", "netCost", "amortizedNetCost", "invoicedCost", "amortizedCost")


def _kept(source: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields that carry something (Go's omitempty drops "", 0, false, null, {} and [])."""
    return {k: source[k] for k in names if source.get(k) not in (None, "", 0, 0.0, False, {}, [])}


def _set_key(base: str, i: int) -> str:
    """OpenCost returns one set under `base`; sets after the first (a `step` shorter than the window) follow
    as base_1, base_2..., where OpenCost drops them."""
    return base if i == 0 else f"{base}_{i}"


def query_info(started: float, now: float) -> dict[str, Any]:
    """OpenCost's queryInfo: a random id, the time answered (RFC3339) and the processing time in nanoseconds."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    return {"queryId": f"query-{secrets.token_hex(8)}", "timestamp": stamp,
            "processingTime": int((now - started) * 1e9)}


def mcp_allocation(item: dict[str, Any]) -> dict[str, Any]:
    """One /allocation item as OpenCost's MCP Allocation."""
    out: dict[str, Any] = {"name": item["name"]}
    props = item.get("properties")
    if isinstance(props, dict):
        out["properties"] = _kept(props, ALLOCATION_PROPERTIES)
    out.update({k: item.get(k, 0.0) for k in ALLOCATION_FIELDS})
    out["start"], out["end"] = item["start"], item["end"]
    return out


def allocation_data(body: dict[str, Any]) -> dict[str, Any]:
    """/allocation's body (`data`: one map per set) as OpenCost's MCP AllocationResponse."""
    sets: dict[str, Any] = {}
    for i, s in enumerate(body.get("data") or []):
        key = _set_key("allocations", i)
        sets[key] = {"name": key, "properties": None,
                     "allocations": [mcp_allocation(s[name]) for name in sorted(s)]}
    return {"allocations": sets}


def mcp_asset(item: dict[str, Any]) -> dict[str, Any]:
    """One /assets item as OpenCost's MCP Asset."""
    fields = dict(item)
    if "GPUHours" in fields and "gpuHours" not in fields:  # OpenCost's /assets spells it GPUHours
        fields["gpuHours"] = fields["GPUHours"]
    out: dict[str, Any] = {"type": item.get("type", ""), "properties": _kept(item.get("properties") or {},
                                                                             ASSET_PROPERTIES)}
    if item.get("labels"):
        out["labels"] = item["labels"]
    out["start"], out["end"] = item.get("start"), item.get("end")
    out.update({k: item.get(k, 0.0) for k in ASSET_FIELDS})
    out.update(_kept(fields, ASSET_OPTIONAL))
    return out


def asset_data(body: dict[str, Any]) -> dict[str, Any]:
    """/assets's body (`data`: one map per set, or OpenCost's single map keyed by asset) as OpenCost's MCP
    AssetResponse, assets in key order."""
    data = body.get("data") or []
    sets = data if isinstance(data, list) else [data]
    out: dict[str, Any] = {}
    for i, s in enumerate(sets):
        key = _set_key("assets", i)
        out[key] = {"name": key, "assets": [mcp_asset(s[k]) for k in sorted(s)]}
    return {"assets": out}


def mcp_cloud_cost(item: dict[str, Any]) -> dict[str, Any]:
    """One /cloudCost item as OpenCost's MCP CloudCost."""
    return {"properties": _kept(item.get("properties") or {}, CLOUD_PROPERTIES), "window": item["window"],
            **{b: {"cost": item[b]["cost"], "kubernetesPercent": item[b]["kubernetesPercent"]} for b in CLOUD_COSTS}}


def cloud_data(body: dict[str, Any]) -> dict[str, Any]:
    """/cloudCost's body as OpenCost's MCP CloudCostResponse: sets `cloudcosts_<i>` and a summary (net, amortized
    net and invoiced totals; kubernetesPercent weighted by net cost; net cost by provider and service)."""
    sets: dict[str, Any] = {}
    net = amortized = invoiced = k8s = weight = 0.0
    provider: dict[str, float] = {}
    service: dict[str, float] = {}
    for i, s in enumerate(body["data"]["sets"]):
        items = [mcp_cloud_cost(s["cloudCosts"][k]) for k in sorted(s["cloudCosts"])]
        sets[f"cloudcosts_{i}"] = {"name": f"cloudcosts_{i}", "cloudCosts": items,
                                   "aggregationProperties": s.get("aggregationProperties") or [],
                                   "window": s["window"]}
        for c in items:
            cost = c["netCost"]["cost"]
            net += cost
            amortized += c["amortizedNetCost"]["cost"]
            invoiced += c["invoicedCost"]["cost"]
            if cost > 0:
                k8s += cost * c["netCost"]["kubernetesPercent"]
                weight += cost
            p = c["properties"]
            provider[p.get("provider", "")] = provider.get(p.get("provider", ""), 0.0) + cost
            service[p.get("service", "")] = service.get(p.get("service", ""), 0.0) + cost
    summary = {"totalNetCost": net, "totalAmortizedCost": amortized, "totalInvoicedCost": invoiced,
               "kubernetesPercent": k8s / weight if weight else 0.0}
    summary.update(_kept({"providerBreakdown": provider, "serviceBreakdown": service},
                         ("providerBreakdown", "serviceBreakdown")))
    return {"cloudCosts": sets, "summary": summary}


def http_query(**params: str | bool | None) -> dict[str, list[str]]:
    """Tool arguments as an HTTP query string (parse_qs form): booleans as true/false, absent ones left out."""
    return {k: [str(v).lower() if isinstance(v, bool) else v] for k, v in params.items() if v not in (None, "")}


def cloud_filter(filter: str | None, **fields: str | None) -> str | None:
    """OpenCost's per-field arguments as v2 filter clauses, ANDed with `filter` (OpenCost drops them when a
    filter is given; here both hold)."""
    clauses = [f"({filter})"] if filter else []
    for name, value in fields.items():
        if value:
            if '"' in value:
                raise ToolError(f'{name}={value!r}: a value cannot contain \'"\'')
            clauses.append(f'{name}:"{value}"')
    return "+".join(clauses) or None


def register(server: MCPServer, exporter: Exporter, run: Run) -> None:
    """Add OpenCost's three tools to `server`; `run` is build_server's admission wrapper."""

    async def answer(method: Callable[[dict[str, list[str]], threading.Event], dict[str, Any]],
                     query: dict[str, list[str]], reshape: Callable[[dict[str, Any]], dict[str, Any]]
                     ) -> dict[str, Any]:
        started = time.time()
        body: dict[str, Any] = await run(lambda cancel: method(query, cancel))
        out = {"data": reshape(body), "queryInfo": query_info(started, time.time())}
        if "coverage" in body:
            out["coverage"] = body["coverage"]
        return out

    @server.tool(annotations=READ_ONLY, description=(
        "OpenCost's get_allocation_costs: cost per allocation (namespace, pod, node, controller, label:<k>...) "
        "over a window, computed as /allocation. Returns {data: {allocations: {allocations: {name, allocations: "
        "[{name, properties, cpuCost, gpuCost, ramCost, pvCost, networkCost, sharedCost, externalCost, totalCost, "
        "cpuCoreHours, ramByteHours, gpuHours, pvByteHours, start, end}]}}}, queryInfo}. A step shorter than the "
        "window adds sets allocations_1, allocations_2..."))
    async def get_allocation_costs(
            window: WINDOW,
            aggregate: Annotated[str, Field(description=(
                "Comma-separated: cluster, node, namespace, controllerKind, controller, service, pod, container, "
                "label:<k>, annotation:<k>; empty for /allocation's default."))],
            step: Annotated[OptStr, _d("Set length, e.g. 1h or 24h; default the whole window.")] = None,
            resolution: Annotated[OptStr, _d("Accepted and ignored, as OpenCost does.")] = None,
            accumulate: Annotated[OptBool, _d("Sum the step sets into one.")] = None,
            share_idle: Annotated[OptBool, _d("Spread idle cost over the allocations.")] = None,
            include_idle: Annotated[OptBool, _d("Show idle cost as __idle__.")] = None,
            idle_by_node: Annotated[OptBool, _d("Compute idle per node.")] = None,
            include_proportional_asset_resource_costs: Annotated[OptBool, _d(
                "Passed to /allocation as includeProportionalAssetResourceCosts.")] = None,
            include_aggregated_metadata: Annotated[OptBool, _d(
                "Passed to /allocation as includeAggregatedMetadata.")] = None,
            share_lb: Annotated[OptBool, _d("Passed to /allocation as sharelb.")] = None,
            filter: Annotated[OptStr, _d("OpenCost v2 filter, e.g. namespace:\"kube-system\".")] = None,
    ) -> dict[str, Any]:
        del resolution  # OpenCost's server takes it and never reads it
        q = http_query(window=window, aggregate=aggregate, step=step, accumulate=accumulate, shareIdle=share_idle,
                       includeIdle=include_idle, idleByNode=idle_by_node,
                       includeProportionalAssetResourceCosts=include_proportional_asset_resource_costs,
                       includeAggregatedMetadata=include_aggregated_metadata, sharelb=share_lb, filter=filter)
        return await answer(exporter.allocation, q, allocation_data)

    @server.tool(annotations=READ_ONLY, description=(
        "OpenCost's get_asset_costs: every node, disk, load balancer, network and fixed-fee asset with its cost "
        "over a window, computed as /assets. Returns {data: {assets: {assets: {name, assets: [{type, properties, "
        "start, end, minutes, adjustment, totalCost, ...}]}}}, queryInfo}."))
    async def get_asset_costs(window: WINDOW) -> dict[str, Any]:
        return await answer(exporter.assets, http_query(window=window), asset_data)

    @server.tool(annotations=READ_ONLY, description=(
        "OpenCost's get_cloud_costs: the configured cloud bills' costs over a window, computed as /cloudCost. "
        "Returns {data: {cloudCosts: {cloudcosts_0: {name, cloudCosts: [{properties, window, listCost, netCost, "
        "amortizedNetCost, invoicedCost, amortizedCost}], aggregationProperties, window}}, summary}, queryInfo}."))
    async def get_cloud_costs(
            window: WINDOW,
            aggregate: Annotated[str, Field(description=(
                "Comma-separated: invoiceEntityID, accountID, provider, providerID, category, service; empty "
                "for every bill line's own key."))],
            accumulate: Annotated[OptStr, _d(
                "day (default), hour, week, month, quarter, or all for one set.")] = None,
            filter: Annotated[OptStr, _d(
                "OpenCost v2 filter on the fields above, e.g. category:\"Compute\".")] = None,
            provider: Annotated[OptStr, _d("Only this provider (AWS, GCP, Azure...).")] = None,
            service: Annotated[OptStr, _d("Only this service.")] = None,
            category: Annotated[OptStr, _d("Only this category (Compute, Storage, Network...).")] = None,
            region: Annotated[OptStr, _d("Not supported: the bills carry no region here.")] = None,
            account: Annotated[OptStr, _d("Only this account ID.")] = None,
    ) -> dict[str, Any]:
        if region:
            raise ToolError(f"region={region!r}: cloud costs carry no region here; filter by accountID or "
                            "providerID instead")
        flt = cloud_filter(filter, provider=provider, service=service, category=category, accountID=account)
        q = http_query(window=window, aggregate=aggregate, accumulate=accumulate, filter=flt)
        return await answer(exporter.cloud_costs, q, cloud_data)
