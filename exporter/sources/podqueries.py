"""PromQL for the pod metadata OpenCost reports below (namespace, node): owners, labels, annotations,
Services and provider IDs. The per-container quantities come from the one-pass query (podsteps.py).

Only asked for when a request needs pods, controllers, containers, services or pod annotations
(`Pipeline.compute(..., granularity=...)`); namespace-level queries never go through here.

Services: kube-state-metrics exports no Service selectors, so a pod's Services are the Endpoints
listing its IP: `kube_endpoint_address{namespace, endpoint, ip}` (kube-state-metrics >= 2.6) joined to
`kube_pod_info{pod_ip}` on (namespace, ip). That is what the Endpoints controller itself derived from
the selectors, for pods that are ready.
"""

from __future__ import annotations

from exporter.sources.queries import Queries, _sel

_SET = '{}!=""'  # a matcher for "label present"


class PodQueries:
    """Per-window pod metadata (the last value seen in it), over a (possibly bridged) `Queries`."""

    def __init__(self, q: Queries) -> None:
        self.whole = q

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

    def volume_shares(self, span: int) -> str:
        """Per (namespace, pod, persistentvolume), the sum over steps of the volume's bytes divided between the
        running pods that mount its claim then (OpenCost splits a claim evenly between the pods using it at
        once): times the step, each pod's byte-seconds of the volume, over the same steps as the engine's
        volume integral (Queries.pv_capacity_integral), so a volume mounted throughout is wholly its pods'."""
        q = self.whole
        mounted = (f"max by (namespace, pod, persistentvolumeclaim) (kube_pod_spec_volumes_persistentvolumeclaims_info"
                   f"{_sel(q.k)}{q._at}) and on (namespace, pod) ({q.placement()})")
        bound = (f"max by (namespace, persistentvolumeclaim, persistentvolume) (label_replace("
                 f"kube_persistentvolumeclaim_info{_sel(_SET.format('volumename'), q.k)}{q._at}, "
                 f'"persistentvolume", "$1", "volumename", "(.+)"))')
        capacity = f"max by (persistentvolume) (kube_persistentvolume_capacity_bytes{_sel(q.k)}{q._at})"
        share = (f"(({mounted}) / on (namespace, persistentvolumeclaim) group_left () count by (namespace, "
                 f"persistentvolumeclaim) ({mounted}))")
        bytes_ = (f"{share} * on (namespace, persistentvolumeclaim) group_left (persistentvolume) {bound}"
                  f" * on (persistentvolume) group_left () {capacity}")
        return f"sum by (namespace, pod, persistentvolume) (sum_over_time(({bytes_}){q._sub(span)}))"

    def volume_shares_by_chunk(self, span: int, chunk: int) -> str:
        """`volume_shares(chunk)` at every chunk end of the last `span` seconds (multiples of `chunk`), in one
        query: a long window's pod-level answer asks once, not once per chunk."""
        return f"({self.volume_shares(chunk)})[{span - chunk // 2}s:{chunk}s]"

    def volume_ids(self, span: int) -> str:
        """Each volume's provider id as OpenCost's own series states it (kubecost_pv_info{provider_id}): the
        `providerID` of an allocation's `pvs`."""
        q = self.whole
        return (f"max by (persistentvolume, provider_id) (last_over_time(kubecost_pv_info"
                f"{_sel(_SET.format('provider_id'), q.o)}{q._range(span)}))")
