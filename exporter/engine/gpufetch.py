"""GPU quantities for one window: the GPU queries run, nodes' GPU models learned and priced, and each
container's request turned into the physical-device-seconds it holds (the glue between prometheus.py,
gpu.py and gpuprices.py; the pipeline calls it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from exporter.config.gpu import GpuConfig
from exporter.config.pricebook import Pricing
from exporter.core.gpu import HAMI, RESOURCE_REGEX, GpuHeld, GpuNode, GpuRequest, holdings, learn_node
from exporter.core.gpuprices import ShippedGpuPrices, gpu_price
from exporter.core.pricing import NodeFacts, NodeRates
from exporter.core.window import Window
from exporter.sources.gpuqueries import gpu_capacity_stats, gpu_requested_integral
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import re2_escape
from exporter.sources.queries import Queries


def resource_regex(cfg: GpuConfig) -> str:
    """The KSM resource names the GPU queries select: the known accelerators and `gpu.resources`."""
    return "|".join([RESOURCE_REGEX, *(re2_escape(r) for r in cfg.resources)])


def with_gpus(client: PrometheusClient, q: Queries, w: Window, step: int, nodes: Mapping[str, NodeFacts],
              capacity: dict[tuple[str, str], float], cfg: GpuConfig, shipped: ShippedGpuPrices | None
              ) -> dict[str, NodeFacts]:
    """Nodes with their GPU model, physical GPU count and model price; `capacity[(node, "gpu")]` becomes
    physical-device-seconds (kube-state-metrics' nvidia.com/gpu counts replicas or MIG devices)."""
    at, span, rx = float(w.end), w.seconds, resource_regex(cfg)
    caps: dict[str, dict[str, float]] = {}
    for lb, v in client.query(gpu_capacity_stats(q, "avg_over_time", span, rx), at):
        caps.setdefault(lb.get("node", ""), {})[lb.get("resource", "")] = v
    steps: dict[str, float] = {}
    for lb, v in client.query(gpu_capacity_stats(q, "count_over_time", span, rx), at):
        steps[lb.get("node", "")] = max(steps.get(lb.get("node", ""), 0.0), v)
    out = dict(nodes)
    for name, facts in nodes.items():
        capacity.pop((name, "gpu"), None)
        model = learn_node(name, caps.get(name, {}), facts.labels, facts.instance_type, cfg)
        if model is None:
            out[name] = replace(facts, gpus=0.0)
            continue
        price = gpu_price(model.model, cfg.prices, shipped)
        out[name] = replace(facts, gpus=model.physical, gpu=model, gpu_model=model.model,
                            gpu_price=price.hourly if price else None)
        capacity[(name, "gpu")] = model.physical * steps.get(name, 0.0) * step
    return out


def gpu_held(client: PrometheusClient, q: Queries, w: Window, step: int, nodes: Mapping[str, NodeFacts],
             capacity: Mapping[tuple[str, str], float], cfg: GpuConfig
             ) -> tuple[list[GpuHeld], list[tuple[str, str]]]:
    """Each container's physical-device-seconds, scaled down on a node whose holdings exceed its GPUs
    over the window (the scheduler does not overcommit extended resources; stale requests can).
    Returns the holdings and warnings as (kind, message): a scaled node, a HAMi node of unknown replicas."""
    models: dict[str, GpuNode] = {n: f.gpu for n, f in nodes.items() if f.gpu is not None}
    if not models:
        return [], []
    requests = [GpuRequest(lb.get("namespace", ""), lb.get("node", ""), lb.get("pod", ""), lb.get("container", ""),
                           lb.get("resource", ""), v * step)
                for lb, v in client.query(gpu_requested_integral(q, w.seconds, resource_regex(cfg)), float(w.end))]
    held = holdings(requests, models, cfg)
    hami = {r.node for r in requests if r.resource in HAMI}
    notes = [("gpu_replicas_unknown", f"node {n}: HAMi requests (gpumem/gpucores) but no replica count (GFD's "
              f"nvidia.com/gpu.count label or a gpu.nodes rule): its {m.physical:g} advertised GPUs are priced "
              "as physical ones") for n, m in sorted(models.items()) if not m.replicas_known and n in hami]
    total: dict[str, float] = {}
    for h in held:
        total[h.node] = total.get(h.node, 0.0) + h.device_seconds
    scale: dict[str, float] = {}
    for node, t in total.items():
        cap = capacity.get((node, "gpu"), 0.0)
        if t > cap * (1 + 1e-9):
            scale[node] = cap / t
            notes.append(("gpu_overflow", f"node {node}: GPU requests hold {t / 3600:.4g} device-hours, more "
                                          f"than its {cap / 3600:.4g}; scaled down to fit"))
    return [replace(h, device_seconds=h.device_seconds * scale.get(h.node, 1.0)) for h in held], notes


def unpriced_gpus(nodes: Mapping[str, NodeFacts], rates: Mapping[str, NodeRates], pricing: Pricing) -> list[str]:
    """GPU nodes whose GPUs fell back to the default GPU rate: no price-book `gpu`, no OpenCost GPU price,
    no model price, and no instance price split by a GPU weight."""
    out = []
    for name, f in sorted(nodes.items()):
        r = rates.get(name)
        if r is None or f.gpus <= 0 or f.gpu_price is not None or "gpu" in f.opencost:
            continue
        rule = r.source.rsplit("[", 1)[-1].rstrip("]") if r.source.startswith("pricebook") else ""
        if rule.isdigit() and pricing.rules[int(rule)].gpu is not None:
            continue
        weighted = pricing.split.method == "aws" or pricing.split.gpuWeight is not None
        if weighted and r.source.startswith(("pricebook-", "opencost-total", "shipped")):
            continue
        out.append(name)
    return out
