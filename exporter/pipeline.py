"""The pipeline for one window: run the chunk queries, price the nodes, cost each chunk, merge.

This is the only place that connects fetching (`prometheus`), pricing and the pure
allocation math; `allocate`, `/allocation/compute` and `serve` all go through it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .allocation import ChunkUsage, CostResult, cost_chunk
from .config import Config
from .errors import DataError
from .pricing import NodeFacts, price_nodes
from .prometheus import RESOURCE_FROM_KSM, PrometheusClient, Queries
from .window import Window, iso, parse_duration

log = logging.getLogger(__name__)

Progress = Callable[[Window], None]


class Pipeline:
    def __init__(self, cfg: Config, client: PrometheusClient) -> None:
        self.cfg = cfg
        self.client = client
        self.queries = Queries(cfg.prometheus, cfg.allocation)
        self.step = parse_duration(cfg.allocation.resolution)
        self.chunk = parse_duration(cfg.allocation.chunk)
        self.warnings: list[str] = []

    def compute(self, window: Window, progress: Progress | None = None) -> CostResult:
        """Cost a window chunk by chunk; raises a ChargebackError naming the cause on bad input."""
        merged = CostResult(window.start, window.end)
        for piece in window.chunks(self.chunk):
            merged.merge(self.compute_chunk(piece))
            if progress:
                progress(piece)
        return merged

    def compute_chunk(self, w: Window) -> CostResult:
        usage = self.fetch(w)
        rates = price_nodes(usage.nodes, self.cfg.pricing)
        defaulted = sorted(n for n, r in rates.items() if r.source.startswith("default"))
        if defaulted:
            self._warn(f"{len(defaulted)} node(s) priced at default rates (no OpenCost metric or price-book "
                       f"rule): {', '.join(defaulted[:10])}")
        return cost_chunk(usage, rates)

    def fetch(self, w: Window) -> ChunkUsage:
        q, at, span = self.queries, float(w.end), w.seconds
        step = self.step

        def integral(expr: str, with_resource: str | None = None) -> dict[tuple[str, str, str], float]:
            out: dict[tuple[str, str, str], float] = {}
            for labels, value in self.client.query(expr, at):
                res = with_resource or RESOURCE_FROM_KSM.get(labels.get("resource", ""), "")
                if res:
                    key = (labels.get("namespace", ""), labels.get("node", ""), res)
                    out[key] = out.get(key, 0.0) + value * step
            return out

        avg = self.client.query(q.capacity_stats("avg_over_time", span), at)
        count = self.client.query(q.capacity_stats("count_over_time", span), at)
        if not avg:
            raise DataError(
                f"no node capacity in Prometheus for {iso(w.start)}..{iso(w.end)}: "
                "kube_node_status_capacity is missing (is kube-state-metrics scraped?)"
            )
        steps = {(lb["node"], lb["resource"]): v for lb, v in count}
        capacity: dict[tuple[str, str], float] = {}
        per_node: dict[str, dict[str, float]] = {}
        for lb, v in avg:
            res = RESOURCE_FROM_KSM.get(lb["resource"])
            if res:
                capacity[(lb["node"], res)] = v * steps.get((lb["node"], lb["resource"]), 0) * step
                per_node.setdefault(lb["node"], {})[res] = v

        labels = {lb.get("node", ""): lb for lb, _ in self.client.query(q.node_labels(span), at)}
        opencost: dict[str, dict[str, float]] = {}
        for lb, v in self.client.query(q.opencost_prices(span), at):
            opencost.setdefault(lb.get("node", ""), {})[lb["price"]] = v
        nodes = {
            name: NodeFacts(
                name=name,
                cores=caps.get("cpu", 0.0),
                ram_bytes=caps.get("memory", 0.0),
                gpus=caps.get("gpu", 0.0),
                labels={k: v for k, v in labels.get(name, {}).items() if k.startswith("label_")},
                opencost=opencost.get(name, {}),
            )
            for name, caps in per_node.items()
        }
        allocated: dict[tuple[str, str, str], float] = {}
        for res in ("cpu", "memory", "gpu"):
            allocated.update(integral(q.allocated_integral(res, span), res))
        requested = integral(q.requested_integral(span))
        used = integral(q.used_integral("cpu", span), "cpu")
        used.update(integral(q.used_integral("memory", span), "memory"))
        if not used and self.cfg.allocation.policy != "request":
            self._warn(f"no cAdvisor usage series for {iso(w.start)}..{iso(w.end)}; costing requests only")
        return ChunkUsage(w.start, w.end, allocated, requested, used, capacity, nodes)

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            log.warning(text)
            self.warnings.append(text)
