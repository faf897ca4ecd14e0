"""The MCP endpoint: read-only cost tools for AI agents over the official `mcp` SDK.

`serve` answers Streamable HTTP at /mcp on its own port; `chargeback mcp` speaks stdio. Every tool
runs the engine behind the HTTP API (Exporter.allocation/assets/cloud_costs, Pipeline.compute,
the audit), under the API's admission (api.maxConcurrent, api.timeout); errors come back as MCP
tool errors carrying the one-line message, never as a crash of the session. OpenCost's own tool
names and answer shapes are added by exporter/serve/mcpopencost.py; serve's side of the transport
is exporter/serve/mcpbridge.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from exporter.core.allocation import CostResult
from exporter.core.gpuwaste import GpuWaste
from exporter.core.gpuwaste import table_groups as gpu_groups
from exporter.core.names import IDLE, UNALLOCATED
from exporter.core.window import parse_window
from exporter.engine.limits import Admission, Busy, Cancelled, DeadlineExceeded
from exporter.engine.pipeline import Pipeline
from exporter.serve import mcpopencost
from exporter.serve.mcpopencost import http_query
from exporter.sources.promql import OwnSeries
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ChargebackError

if TYPE_CHECKING:
    from exporter.serve.server import Exporter

WindowArg = Annotated[str, Field(description=(
    "OpenCost window: a duration (30m, 24h, 7d, 2w), today, yesterday, week, lastweek, month, lastmonth, "
    "or 'start,end' as RFC3339 times, unix seconds or dates (2026-11-01,2026-11-30)."))]
StepArg = Annotated[str | None, Field(description="Cut the window into sets of this duration, e.g. 1h or 1d.")]
AccumulateArg = Annotated[str | None, Field(description=(
    "true: one summed set; false: one set per step; day, week or month: sets per calendar period."))]
FilterArg = Annotated[str | None, Field(description=(
    "OpenCost v2 filter, e.g. namespace:\"web\" or label[team]:\"payments\" + node!:\"n1\"."))]
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)


@dataclass
class Efficiency:
    """Requests against usage for one group over the window; `unused_cost` is the rightsizing potential."""

    group: str
    cpu_request_core_hours: float = 0.0
    cpu_usage_core_hours: float = 0.0
    ram_request_gib_hours: float = 0.0
    ram_usage_gib_hours: float = 0.0
    cost: float = 0.0  # cpu + memory cost of the group
    unused_cost: float = 0.0  # the cost of requested but unused cpu and memory

    @property
    def cpu_efficiency(self) -> float:
        return self.cpu_usage_core_hours / self.cpu_request_core_hours if self.cpu_request_core_hours else 0.0

    @property
    def ram_efficiency(self) -> float:
        return self.ram_usage_gib_hours / self.ram_request_gib_hours if self.ram_request_gib_hours else 0.0


def efficiency(result: CostResult, by_index: int | None) -> list[Efficiency]:
    """Pure: per namespace (or attribution label at `by_index`). A line's cost of a resource is its
    allocated quantity priced, so the unused share of requests costs cost * (request - usage) / allocated."""
    groups: dict[str, Efficiency] = {}
    for (ns, _node, attrs), line in result.table.items():
        if ns == IDLE:
            continue
        name = ns if by_index is None else (attrs[by_index] if by_index < len(attrs) else "") or UNALLOCATED
        e = groups.setdefault(name, Efficiency(name))
        e.cpu_request_core_hours += line.cpu_request_seconds / 3600
        e.cpu_usage_core_hours += line.cpu_usage_seconds / 3600
        e.ram_request_gib_hours += line.ram_request_byte_seconds / 3600 / 2**30
        e.ram_usage_gib_hours += line.ram_usage_byte_seconds / 3600 / 2**30
        e.cost += line.cpu_cost + line.ram_cost
        for cost, alloc, req, use in ((line.cpu_cost, line.cpu_core_seconds, line.cpu_request_seconds,
                                       line.cpu_usage_seconds),
                                      (line.ram_cost, line.ram_byte_seconds, line.ram_request_byte_seconds,
                                       line.ram_usage_byte_seconds)):
            if alloc > 0 and req > use:
                e.unused_cost += cost * (req - use) / alloc
    return sorted(groups.values(), key=lambda e: -e.unused_cost)


def gpu_fields(g: GpuWaste | None) -> dict[str, float | None]:
    """A group's GPU cost, utilisation and waste for the efficiency tool (exporter/core/gpuwaste.py)."""
    return {"gpu_cost": g.gpu_cost if g else 0.0, "gpu_efficiency": g.efficiency if g else None,
            "gpu_waste_cost": g.waste_cost if g else 0.0}


def fresh_pipeline(exporter: Exporter) -> Pipeline:
    """A pipeline per call, as the API's handler makes one: the accrual loop's own keeps per-run state."""
    return Pipeline(exporter.cfg, exporter.client, exporter.metadata, exporter.warnings)


def build_server(exporter: Exporter, admission: Admission) -> MCPServer:
    """The MCP server and its tools over one exporter; every tool is read-only."""
    server: MCPServer = MCPServer("chargeback", instructions=(
        "Kubernetes cost attribution (OpenCost-compatible). All tools are read-only. Windows use OpenCost's "
        "forms: durations (24h, 7d), today, yesterday, week, lastweek, month, lastmonth, or 'start,end' pairs."))

    async def run(work: Callable[[threading.Event], Any]) -> Any:
        try:
            return await admission.run_async(work)
        except (Busy, DeadlineExceeded, Cancelled, ChargebackError) as e:
            raise ToolError(str(e)) from e

    @server.tool(annotations=READ_ONLY, description=(
        "Cost allocation as OpenCost's /allocation: cost per namespace, node, team, label:<k>, etc. over a "
        "window. Returns {code, data: [one map per set: name -> allocation with totalCost, cpuCost, ramCost, "
        "properties...]}. Use step (e.g. 1d) with accumulate=false for a series of sets."))
    async def allocation(
            window: WindowArg = "24h",
            aggregate: Annotated[str, Field(description=(
                "Comma-separated keys: cluster, node, namespace, controllerKind, controller, service, pod, "
                "container, label:<k>, annotation:<k>, team, cost_center."))] = "namespace",
            step: StepArg = None, accumulate: AccumulateArg = None, filter: FilterArg = None,
            include_idle: Annotated[bool | None, Field(
                description="Show idle cost as __idle__ (off by default, as in OpenCost).")] = None,
            share_idle: Annotated[bool | None, Field(description="Spread idle cost over tenants.")] = None,
            share_namespaces: Annotated[str | None, Field(description=(
                "Comma-separated namespaces whose cost is shared over the others, e.g. kube-system."))] = None,
            share_labels: Annotated[str | None, Field(description=(
                "Comma-separated label:value pairs whose namespaces' cost is shared."))] = None,
            share_split: Annotated[str | None, Field(description="weighted (by cost, default) or even.")] = None,
            sharing: Annotated[str | None, Field(description=(
                "opencost: share only what the arguments ask (OpenCost's defaults); config: start from the "
                "configured sharing, as the counters and reports do. Default: api.allocationSharing."))] = None,
    ) -> dict[str, Any]:
        q = http_query(window=window, aggregate=aggregate, step=step, accumulate=accumulate, filter=filter,
                   includeIdle=include_idle, shareIdle=share_idle, shareNamespaces=share_namespaces,
                   shareLabels=share_labels, shareSplit=share_split, sharing=sharing)
        result: dict[str, Any] = await run(lambda cancel: exporter.allocation(q, cancel))
        return result

    @server.tool(annotations=READ_ONLY, description=(
        "Cluster assets as OpenCost's /assets: nodes, disks, load balancers, network and fixed fees with their "
        "costs over a window. aggregate: type, cluster, node, providerID, provider, category or name "
        "(comma-separated); empty for each asset."))
    async def assets(
            window: WindowArg = "24h",
            aggregate: Annotated[str | None, Field(description=(
                "Comma-separated: type, cluster, node, providerID, provider, category, name; empty for one "
                "entry per asset."))] = None,
            step: StepArg = None,
            accumulate: Annotated[bool | None, Field(description="Sum the step sets into one.")] = None,
            reconciled: Annotated[bool | None, Field(description=(
                "Add each asset's adjustment against the configured bills."))] = None,
    ) -> dict[str, Any]:
        q = http_query(window=window, aggregate=aggregate, step=step, accumulate=accumulate, reconciled=reconciled)
        return await _optional(run, exporter, "assets", q)

    @server.tool(annotations=READ_ONLY, description=(
        "Cloud bill costs as OpenCost's /cloudCost, from the configured bill files: list, net, amortized and "
        "invoiced cost, with kubernetesPercent. aggregate: invoiceEntityID, accountID, provider, providerID, "
        "category or service."))
    async def cloud_costs(
            window: WindowArg = "7d",
            aggregate: Annotated[str | None, Field(description=(
                "Comma-separated: invoiceEntityID, accountID, provider, providerID, category, service."))] = None,
            accumulate: Annotated[str | None, Field(description=(
                "Calendar sets: day (default), hour, week, month, quarter, or all for one set."))] = None,
            filter: Annotated[str | None, Field(description=(
                "field:\"v1\",\"v2\" clauses on the aggregate fields joined by +, e.g. category:\"Compute\"."))
            ] = None,
    ) -> dict[str, Any]:
        q = http_query(window=window, aggregate=aggregate, accumulate=accumulate, filter=filter)
        return await _optional(run, exporter, "cloud_costs", q)

    @server.tool(name="efficiency", annotations=READ_ONLY, description=(
        "Rightsizing: CPU and memory requests against actual usage per namespace (by=namespace) or per "
        "attribution label such as team (by=team), with efficiency = usage/requests and unused_cost, the cost "
        "of requested but unused CPU and memory (the saving if requests matched usage). Sorted by unused_cost. "
        "With dcgm-exporter: gpu_efficiency (busy over observed GPU time) and gpu_waste_cost, the allocated GPU "
        "cost x (1 - utilisation)."))
    async def efficiency_report(
            window: WindowArg = "24h",
            by: Annotated[str, Field(description=(
                "namespace, or an attribution label name from the config such as team or cost_center."))
            ] = "namespace",
    ) -> dict[str, Any]:
        names = list(exporter.cfg.attribution.labels)
        if by != "namespace" and by not in names:
            raise ToolError(f"by={by!r}: use namespace or one of {', '.join(names)}")
        index = None if by == "namespace" else names.index(by)

        def work(cancel: threading.Event) -> dict[str, Any]:
            w = parse_window(window, time.time(), exporter.step, allow_empty=True)
            result = fresh_pipeline(exporter).compute(w, cancel=cancel)
            gpu = {g.name: g for g in gpu_groups(result, index)}
            return {"window": {"start": w.start, "end": w.end}, "by": by, "currency":
                    exporter.cfg.pricing.currency, "groups": [
                        {**asdict(e), "cpu_efficiency": e.cpu_efficiency, "ram_efficiency": e.ram_efficiency,
                         **gpu_fields(gpu.get(e.group))}
                        for e in efficiency(result, index)]}
        result: dict[str, Any] = await run(work)
        return result

    @server.tool(annotations=READ_ONLY, description=(
        "Budget status: each configured budget (budgets file rendered into the rules mixin, or namespace "
        "annotations) with its period-to-date spend, usage of the amount and forecast, as Prometheus records "
        "them. Empty when no budget rules are loaded in Prometheus."))
    async def budgets_status() -> dict[str, Any]:
        def work(_cancel: threading.Event) -> dict[str, Any]:
            return budget_rows(exporter)
        result: dict[str, Any] = await run(work)
        return result

    @server.tool(annotations=READ_ONLY, description=(
        "Label coverage (audit-labels): for each attribution label (team, cost center...), the share of pods "
        "carrying it, the cost left unattributed, and the namespaces and workloads missing it."))
    async def label_coverage(window: WindowArg = "7d") -> dict[str, Any]:
        from exporter.outputs.audit import label_audit, to_json

        def work(cancel: threading.Event) -> dict[str, Any]:
            w = parse_window(window, time.time(), exporter.step, allow_empty=True)
            audits = label_audit(fresh_pipeline(exporter), exporter.client, w, cancel=cancel)[1]
            return {"labels": to_json(audits)}
        result: dict[str, Any] = await run(work)
        return result

    mcpopencost.register(server, exporter, run)  # OpenCost's get_allocation_costs, get_asset_costs, get_cloud_costs
    return server


async def _optional(run: Callable[..., Any], exporter: Exporter, method: str,
                    query: dict[str, list[str]]) -> dict[str, Any]:
    compute = getattr(exporter, method, None)
    if compute is None:
        raise ToolError(f"{method} is not available in this build")
    result: dict[str, Any] = await run(lambda cancel: compute(query, cancel))
    return result


def budget_rows(exporter: Exporter) -> dict[str, Any]:
    """Budgets as the rules mixin records them (budget:* per budget, namespace_period:* per annotation)."""
    now = time.time()
    series = OwnSeries.BUDGET_SERIES
    budgets: dict[str, dict[str, Any]] = {}
    for field, expr in series.items():
        for labels, value in exporter.client.query(expr, now):
            b = budgets.setdefault(labels.get("budget", ""), {k: v for k, v in labels.items() if k != "__name__"})
            b[field] = value
    namespaces = [{**{k: v for k, v in labels.items() if k != "__name__"}, "usage": value}
                  for labels, value in exporter.client.query(OwnSeries.NAMESPACE_BUDGET_USAGE, now)]
    return {"budgets": sorted(budgets.values(), key=lambda b: str(b.get("budget"))),
            "namespaceBudgets": namespaces}


def run_stdio(exporter: Exporter) -> None:
    """`chargeback mcp`: the same tools over stdin/stdout, under the same admission limits."""
    api = exporter.cfg.api
    server = build_server(exporter, Admission(api.maxConcurrent, parse_duration(api.timeout)))
    anyio.run(server.run_stdio_async)
