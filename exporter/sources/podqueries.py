"""PromQL for allocation below (namespace, node): per container, and the pod metadata OpenCost reports.

Only asked for when a request needs pods, controllers, containers, services or pod annotations
(`Pipeline.compute(..., granularity=...)`); namespace-level queries never go through here. The
per-container integrals are built from the same building blocks as `Queries.allocated_integral`
(placement, max(request, usage), the per-step overflow scale per node), so summed over a namespace's
containers they are the namespace-level integrals.

Services: kube-state-metrics exports no Service selectors, so a pod's Services are the Endpoints
listing its IP: `kube_endpoint_address{namespace, endpoint, ip}` (kube-state-metrics >= 2.6) joined to
`kube_pod_info{pod_ip}` on (namespace, ip). That is what the Endpoints controller itself derived from
the selectors, for pods that are ready.
"""

from __future__ import annotations

from exporter.sources.promql import one_of
from exporter.sources.queries import Queries, _finite, _sel

CONTAINER = "namespace, node, pod, container"
_SET = '{}!=""'  # a matcher for "label present"


class PodQueries:
    """Per-container chunk integrals and per-window pod metadata, over a (possibly bridged) `Queries`.

    With `namespaces`, the per-container rows are those namespaces' only (a batch: what one answer holds
    stays bounded on a large cluster); the overflow scale still comes from every container on the node."""

    def __init__(self, q: Queries, namespaces: list[str] | None = None) -> None:
        self.whole = q
        self.q = q.scoped(namespaces) if namespaces else q

    def allocated(self, resource: str, span: int) -> str:
        """Sum over steps of each container's allocation, scaled per step where its node overflows (the
        scale is computed over every container on the node, as the namespace-level query does)."""
        q, whole = self.q, self.whole
        per_container = q._by_ns_node(q.allocation(resource), CONTAINER)
        node_alloc = whole._by_ns_node(whole.allocation(resource), "node")
        scale = f"clamp_max({whole.capacity(resource)} / on (node) ({node_alloc} > 0), 1)"
        return f"sum_over_time({_finite(f'{per_container} * on (node) group_left () {scale}')}{q._sub(span)})"

    def requested(self, span: int) -> str:
        q = self.q
        sel = _sel(one_of("resource", ("cpu", "memory")), q.k)
        req = f"max by (namespace, pod, container, resource) (kube_pod_container_resource_requests{sel}{q._at})"
        return f"sum_over_time({_finite(q._by_ns_node(req, CONTAINER + ', resource'))}{q._sub(span)})"

    def used(self, resource: str, span: int) -> str:
        q = self.q
        return f"sum_over_time({_finite(q._by_ns_node(q.usage(resource), CONTAINER))}{q._sub(span)})"

    # ---- metadata over a whole window (last value seen in it) ----
    def _last(self, metric: str, span: int, *matchers: str) -> str:
        q = self.whole
        return f"last_over_time({metric}{_sel(*matchers, q.k)}{q._range(span)})"

    def pod_labels(self, span: int) -> str:
        """Every allow-listed pod label (label_* columns), one series per pod."""
        return f"max without (uid, instance, job) ({self._last('kube_pod_labels', span)})"

    def pod_annotations(self, span: int) -> str:
        """Needs kube-state-metrics --metric-annotations-allowlist=pods=[...]."""
        return f"max without (uid, instance, job) ({self._last('kube_pod_annotations', span)})"

    def pod_ips(self, span: int) -> str:
        return f"max by (namespace, pod, pod_ip) ({self._last('kube_pod_info', span, _SET.format('pod_ip'))})"

    def endpoint_addresses(self, span: int) -> str:
        return f"max by (namespace, endpoint, ip) ({self._last('kube_endpoint_address', span, _SET.format('ip'))})"

    def provider_ids(self, span: int) -> str:
        return f"max by (node, provider_id) ({self._last('kube_node_info', span, _SET.format('provider_id'))})"
