"""The MCP endpoint: read-only cost tools for AI agents over the official `mcp` SDK.

`serve` answers Streamable HTTP at /mcp on its own port; `chargeback mcp` speaks stdio. Every tool
runs the engine behind the HTTP API (Exporter.allocation/assets/cloud_costs, Pipeline.compute,
the audit), under the API's admission (api.maxConcurrent, api.timeout); errors come back as MCP
tool errors carrying the one-line message, never as a crash of the session.

The stdlib HTTP server is not ASGI, so `McpBridge` runs the SDK's Starlette app (stateless,
JSON responses: one POST in, one JSON body out, no server-held session or stream) on an asyncio
loop in one background thread, and each handler thread hands it a request and waits for the body.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

from .allocation import IDLE, CostResult
from .errors import ChargebackError
from .limits import Admission, Busy, Cancelled, DeadlineExceeded
from .window import parse_duration, parse_window

if TYPE_CHECKING:
    from .server import Exporter

MCP_PATH = "/mcp"
REQUEST_TIMEOUT = 600.0  # seconds a handler thread waits for the loop; the admission deadline is shorter


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
        name = ns if by_index is None else (attrs[by_index] if by_index < len(attrs) else "") or "__unallocated__"
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


def _query(**params: str | bool | None) -> dict[str, list[str]]:
    """Tool arguments as the HTTP API's query string (booleans as true/false, unset left out)."""
    out = {}
    for k, v in params.items():
        if v is None or v == "":
            continue
        out[k] = [str(v).lower() if isinstance(v, bool) else str(v)]
    return out


def build_server(exporter: Exporter, admission: Admission) -> MCPServer:
    """The MCP server and its tools over one exporter; every tool is read-only."""
    server: MCPServer = MCPServer("chargeback", instructions=(
        "Kubernetes cost attribution (OpenCost-compatible). All tools are read-only. Windows use OpenCost's "
        "forms: durations (24h, 7d), today, yesterday, week, lastweek, month, lastmonth, or 'start,end' pairs."))

    async def run(work: Callable[[threading.Event], Any]) -> Any:
        def guarded() -> Any:
            try:
                return admission.run(work)
            except Busy as e:
                raise ToolError(f"busy: {e}; retry in a few seconds") from e
            except (DeadlineExceeded, Cancelled, ChargebackError) as e:
                raise ToolError(str(e)) from e
        return await anyio.to_thread.run_sync(guarded)

    @server.tool(description=(
        "Cost allocation as OpenCost's /allocation: cost per namespace, node, team, label:<k>, etc. over a "
        "window. Returns {code, data: [one map per set: name -> allocation with totalCost, cpuCost, ramCost, "
        "properties...]}. Use step (e.g. 1d) with accumulate=false for a series of sets."))
    async def allocation(window: str = "24h", aggregate: str = "namespace", step: str | None = None,
                         accumulate: str | None = None, filter: str | None = None,
                         include_idle: bool | None = None, share_idle: bool | None = None,
                         share_namespaces: str | None = None, share_labels: str | None = None,
                         share_split: str | None = None) -> dict[str, Any]:
        q = _query(window=window, aggregate=aggregate, step=step, accumulate=accumulate, filter=filter,
                   includeIdle=include_idle, shareIdle=share_idle, shareNamespaces=share_namespaces,
                   shareLabels=share_labels, shareSplit=share_split)
        result: dict[str, Any] = await run(lambda cancel: exporter.allocation(q, cancel))
        return result

    @server.tool(description=(
        "Cluster assets as OpenCost's /assets: nodes, disks, load balancers, network and fixed fees with their "
        "costs over a window. aggregate: type, cluster, node or providerID (comma-separated); empty for each asset."))
    async def assets(window: str = "24h", aggregate: str | None = None, step: str | None = None,
                     accumulate: bool | None = None, reconciled: bool | None = None) -> dict[str, Any]:
        q = _query(window=window, aggregate=aggregate, step=step, accumulate=accumulate, reconciled=reconciled)
        return await _optional(run, exporter, "assets", q)

    @server.tool(description=(
        "Cloud bill costs as OpenCost's /cloudCost, from the configured bill files: list, net, amortized and "
        "invoiced cost, with kubernetesPercent. aggregate: invoiceEntityID, accountID, provider, providerID, "
        "category or service."))
    async def cloud_costs(window: str = "7d", aggregate: str | None = None, accumulate: str | None = None,
                          filter: str | None = None) -> dict[str, Any]:
        q = _query(window=window, aggregate=aggregate, accumulate=accumulate, filter=filter)
        return await _optional(run, exporter, "cloud_costs", q)

    @server.tool(name="efficiency", description=(
        "Rightsizing: CPU and memory requests against actual usage per namespace (by=namespace) or per "
        "attribution label such as team (by=team), with efficiency = usage/requests and unused_cost, the cost "
        "of requested but unused CPU and memory (the saving if requests matched usage). Sorted by unused_cost."))
    async def efficiency_report(window: str = "24h", by: str = "namespace") -> dict[str, Any]:
        names = list(exporter.cfg.attribution.labels)
        if by != "namespace" and by not in names:
            raise ToolError(f"by={by!r}: use namespace or one of {', '.join(names)}")
        index = None if by == "namespace" else names.index(by)

        def work(cancel: threading.Event) -> dict[str, Any]:
            w = parse_window(window, time.time(), exporter.step)
            rows = efficiency(exporter.pipeline.compute(w, cancel=cancel), index)
            return {"window": {"start": w.start, "end": w.end}, "by": by, "currency":
                    exporter.cfg.pricing.currency, "groups": [
                        {**asdict(e), "cpu_efficiency": e.cpu_efficiency, "ram_efficiency": e.ram_efficiency}
                        for e in rows]}
        result: dict[str, Any] = await run(work)
        return result

    @server.tool(description=(
        "Budget status: each configured budget (budgets file rendered into the rules mixin, or namespace "
        "annotations) with its period-to-date spend, usage of the amount and forecast, as Prometheus records "
        "them. Empty when no budget rules are loaded in Prometheus."))
    async def budgets_status() -> dict[str, Any]:
        def work(_cancel: threading.Event) -> dict[str, Any]:
            return budget_rows(exporter)
        result: dict[str, Any] = await run(work)
        return result

    @server.tool(description=(
        "Label coverage (audit-labels): for each attribution label (team, cost center...), the share of pods "
        "carrying it, the cost left unattributed, and the namespaces and workloads missing it."))
    async def label_coverage(window: str = "7d") -> dict[str, Any]:
        from .audit import label_audit, to_json

        def work(cancel: threading.Event) -> dict[str, Any]:
            w = parse_window(window, time.time(), exporter.step)
            return {"labels": to_json(label_audit(exporter.pipeline, exporter.client, w, cancel=cancel)[1])}
        result: dict[str, Any] = await run(work)
        return result

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
    series = {"spend": "budget:chargeback_budget_spend:sum", "usage": "budget:chargeback_budget_usage:ratio",
              "forecast": "budget:chargeback_budget_forecast:sum"}
    budgets: dict[str, dict[str, Any]] = {}
    for field, expr in series.items():
        for labels, value in exporter.client.query(expr, now):
            b = budgets.setdefault(labels.get("budget", ""), {k: v for k, v in labels.items() if k != "__name__"})
            b[field] = value
    namespaces = [{**{k: v for k, v in labels.items() if k != "__name__"}, "usage": value}
                  for labels, value in exporter.client.query("namespace_period:chargeback_budget_usage:ratio", now)]
    return {"budgets": sorted(budgets.values(), key=lambda b: str(b.get("budget"))),
            "namespaceBudgets": namespaces}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class McpBridge:
    """The SDK's Streamable HTTP app on a private asyncio loop, called from the stdlib handler threads."""

    def __init__(self, server: MCPServer) -> None:
        # Stateless JSON mode: no session state to lose across replicas, no long-lived SSE stream to hold a
        # bounded connection thread. Host checks are off: auth (webauth) guards /mcp like the API.
        self.app = server.streamable_http_app(
            streamable_http_path=MCP_PATH, json_response=True, stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self.manager = server.session_manager
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="mcp", daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self.stopped = asyncio.Event()
        async with self.manager.run():
            self.ready.set()
            await self.stopped.wait()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(timeout=5)

    def handle(self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes,
               client: tuple[str, int]) -> Answer:
        """One HTTP exchange through the ASGI app; the whole body is collected (JSON responses only)."""
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
                 "client": client, "server": ("chargeback", 0)}
        answer = Answer(500, [], b"")
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # the request is whole: nothing more will come
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")

        asyncio.run_coroutine_threadsafe(self.app(scope, receive, send), self.loop).result(REQUEST_TIMEOUT)
        return answer


def run_stdio(exporter: Exporter) -> None:
    """`chargeback mcp`: the same tools over stdin/stdout, under the same admission limits."""
    api = exporter.cfg.api
    server = build_server(exporter, Admission(api.maxConcurrent, parse_duration(api.timeout)))
    anyio.run(server.run_stdio_async)
