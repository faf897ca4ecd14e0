"""The GPU queries: accelerator requests per container and accelerator capacity per node.

Built over a `Queries` (its selectors, `@` for bridged gaps and chunk subquery range) and kept out of
prometheus.py, whose builders they mirror. Few containers hold accelerators, so the request query is per
container and filters the pods it places before any aggregation."""

from __future__ import annotations

from exporter.core.gpu import ASKED
from exporter.sources.promql import matcher, selector
from exporter.sources.queries import Queries

_HAMI = "nvidia_com_gpumem.*|nvidia_com_gpucores"
OPENCOST_GPU = "nvidia_com_gpu"  # the one resource OpenCost's GPU requests count


def _finite(expr: str) -> str:
    return f"(({expr}) > -Inf < +Inf)"


def gpu_requested_integral(q: Queries, chunk_seconds: int, resources: str) -> str:
    """Per (namespace, node, pod, container, resource): request integrals of the accelerator resources
    matching the regex `resources` (exporter/core/gpu.py converts them to physical devices), plus each HAMi
    container's running seconds as resource="seconds" and its nvidia.com/gpu request, never scaled down, as
    resource="opencost_requested" (OpenCost's gpuHours)."""
    at = q._at
    sel = selector(matcher("resource", resources, "=~"), q.k)
    req = f"max by (namespace, pod, container, resource) (kube_pod_container_resource_requests{sel}{at})"
    hami = selector(matcher("resource", _HAMI, "=~"), q.k)
    running = f"group by (namespace, pod, container) (kube_pod_container_resource_requests{hami}{at})"
    secs = f'label_replace({running}, "resource", "seconds", "", "")'
    # Placement (as Queries.placement) of the pods that request an accelerator only, filtered before its
    # aggregations: a cluster's thousands of CPU pods then cost a hash lookup each, not a topk (docs/scale.md).
    some = f"group by (namespace, pod) (kube_pod_container_resource_requests{sel}{at})"
    placed_sel = selector('node!=""', q.k)
    info = f"max by (namespace, pod, node) (kube_pod_info{placed_sel}{at} and on (namespace, pod) {some})"
    placed = f"(topk by (namespace, pod) (1, {info}) and on (namespace, pod) ({q.running(some)}))"
    if q.ksm_after is not None:  # a pod deleted during a bridged gap is not charged for it
        placed = f"({placed} and on (namespace, pod) max by (namespace, pod) (kube_pod_info{selector(q.k)} " \
                 f"@ {q.ksm_after}))"
    by = "namespace, node, pod, container, resource"
    alloc = f"sum by ({by}) (({req} or {secs}) * on (namespace, pod) group_left (node) {placed})"
    # Per step, a resource requested past its capacity on a node (stale requests) is scaled down to it, as
    # the one-pass allocation is (sources/allocsteps.py); resources without capacity (HAMi's, the seconds)
    # are kept as they are.
    cap = f"max by (node, resource) (kube_node_status_capacity{sel}{at})"
    scale = f"clamp_max({cap} / on (node, resource) (sum by (node, resource) ({alloc}) > 0), 1)"
    # OpenCost's GPU request (nvidia.com/gpu, as asked, never scaled) as a resource of its own.
    asked = selector(matcher("resource", OPENCOST_GPU), q.k)
    opencost = (f"sum by ({by}) ((max by (namespace, pod, container, resource) "
                f"(kube_pod_container_resource_requests{asked}{at})) * on (namespace, pod) group_left (node) {placed})")
    tagged = f'label_replace({opencost}, "resource", "{ASKED}", "", "")'
    inner = f"({alloc} * on (node, resource) group_left () {scale}) or {alloc} or {tagged}"
    return f"sum_over_time({_finite(inner)}{q._sub(chunk_seconds)})"


def gpu_capacity_stats(q: Queries, fn: str, chunk_seconds: int, resources: str) -> str:
    """`avg_over_time`/`count_over_time` of each accelerator resource's capacity per (node, resource)."""
    sel = selector(matcher("resource", resources, "=~"), q.k)
    cap = f"max by (node, resource) ({_finite(f'kube_node_status_capacity{sel}{q._at}')})"
    return f"{fn}(({cap}){q._sub(chunk_seconds)})"
