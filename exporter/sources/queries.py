"""Fetching: the PromQL query builders of the cost engine (the HTTP client is `sources.prometheus`).

Every query aggregates on the server (`sum by (namespace, node)`, subqueries with
`sum_over_time`), so what crosses the wire, and what Python holds, grows with
namespaces x nodes, not with containers.
"""

from __future__ import annotations

import copy

from exporter.config.schema import Allocation, Prometheus
from exporter.sources.promql import join_matchers, matcher, one_of, quote, selector
from exporter.sources.scrapeshape import cadvisor, dcgm_series, device_busy, device_names, device_usage
from exporter.vocab.durations import format_duration, parse_duration

_sel = selector


def _finite(expr: str) -> str:
    """Only the finite samples of `expr` (NaN fails every comparison). Inside a `sum_over_time` subquery one
    NaN sample would make the whole chunk's integral NaN; filtered per step, it costs only that step."""
    return f"(({expr}) > -Inf < +Inf)"


# Inputs whose NaN/Inf samples the per-step filter drops, with the labels that name the series for a warning.
CHECKED_INPUTS = (("kube_node_status_capacity", "node, resource"),
                  ("kube_pod_container_resource_requests", "namespace, pod, container, resource"),
                  ("kube_persistentvolume_capacity_bytes", "persistentvolume"))


# kube-state-metrics v2 spells extended resources with underscores.
KSM_RESOURCE = {"cpu": "cpu", "memory": "memory", "gpu": "nvidia_com_gpu"}
RESOURCE_FROM_KSM = {v: k for k, v in KSM_RESOURCE.items()}

_RUNNING, _PLACED, _EXPORTED_POD = 'phase="Running"', 'node!=""', 'exported_pod!=""'
LOOKBACK_SECONDS = 300  # Prometheus' default --query.lookback-delta

PRICE_METRICS = {
    "cpu": "node_cpu_hourly_cost",
    "ram": "node_ram_hourly_cost",
    "gpu": "node_gpu_hourly_cost",
    "total": "node_total_hourly_cost",
    "spot": "kubecost_node_is_spot",
}


class Queries:
    """PromQL builders. `chunk_seconds` windows end at the evaluation time and hold chunk/step steps."""

    def __init__(self, prom: Prometheus, alloc: Allocation) -> None:
        # A cluster selector narrows every query to one cluster of a global store (Thanos, Mimir).
        self.k = join_matchers(prom.ksmSelector, prom.clusterSelector)
        self.c = join_matchers(prom.cadvisorSelector, prom.clusterSelector)
        self.o = join_matchers(prom.openCostSelector, prom.clusterSelector)
        self.d = join_matchers(prom.dcgmSelector, prom.clusterSelector)
        self.cluster = prom.clusterSelector  # alone, for series recorded without the scrape job's labels
        self.policy = alloc.policy
        self.w = alloc.requestWeight
        # The weights as PromQL spells them (the rule generator puts placeholders here: exporter/mixin/rulegen.py).
        self.weights = (f"{self.w:g}", f"{1 - self.w:g}")
        self.step = parse_duration(alloc.resolution)
        self.rate_window = alloc.usageRateWindow
        # Recorded series carry the policy they were recorded under; only matching ones are read.
        self.policy_label = f"weighted:{self.w:g}" if self.policy == "weighted" else self.policy
        self.r = join_matchers(matcher("policy", self.policy_label), matcher("usage_rate_window", self.rate_window),
                               prom.clusterSelector)
        # Which recorded names a covered chunk reads (`recordedqueries.recorded_coverage` tells): "v2", "v1" or
        # both ("mixed").
        self.layout = "v2"
        self.max_gap_bridge = parse_duration(alloc.maxGapBridge)
        # A bridged gap (exporter/core/coverage.py): kube-state-metrics read at the last step before it, pods
        # kept only if they still exist at the first step after; cAdvisor's CPU counter read across it.
        self.ksm_at: int | None = None
        self.ksm_after: int | None = None
        self.cadvisor_bridge: tuple[int, int] | None = None
        # Namespace matchers of a scoped or sharded copy for cAdvisor and dcgm-exporter, whose workload namespace
        # may be `exported_namespace` (sources/scrapeshape.py); kube-state-metrics' go into `k`.
        self.only: tuple[str, ...] = ()

    def bridged(self, ksm: tuple[int, int] | None, cadvisor: tuple[int, int] | None) -> Queries:
        """A copy reading kube-state-metrics as of `ksm[0]` (pods alive at `ksm[1]`) and/or cAdvisor across
        the gap `cadvisor` = (before, after)."""
        q = copy.copy(self)
        q.ksm_at, q.ksm_after = ksm if ksm else (None, None)
        q.cadvisor_bridge = cadvisor
        return q

    @property
    def _at(self) -> str:
        """The `@` modifier every kube-state-metrics selector takes inside a bridged gap."""
        return f" @ {self.ksm_at}" if self.ksm_at is not None else ""

    def coverage_probe(self, span: int, containers: bool = False) -> str:
        """Per step over `span`, a sample tagged source="ksm" / "cadvisor" where that source has data (a raw
        selector already reaches back the 5-minute lookback, so absent means absent). cAdvisor's is read from
        its per-node root cgroup (id="/"), a series per node: the container series, one per container, made it
        the costliest query of serve's recorded cycle at 300k containers (docs/scale.md). `containers` probes
        those instead, alone, where the root cgroup is missing while kube-state-metrics is there (a scrape
        that drops cgroups without a container: `Pipeline.coverage_plan`)."""
        parts = [] if containers else [
            f'label_replace(count(kube_node_status_capacity{_sel(self.k)}), "source", "ksm", "", "")']
        if self.policy != "request":
            cgroups = ('container!=""', 'container!="POD"', 'namespace!=""', 'pod!=""') if containers else ('id="/"',)
            rate = f"rate(container_cpu_usage_seconds_total{_sel(*cgroups, self.c)}[{self.rate_window}])"
            parts.append(f'label_replace(count({rate}), "source", "cadvisor", "", "")')
        return f"({' or '.join(parts)})[{span}s:{format_duration(self.step)}]"

    def ksm_not_honored(self, span: int) -> str:
        """kube-state-metrics scraped with honorLabels: false: its pods' `namespace` and `pod` became
        `exported_*`, and `namespace`/`pod` name its own pod."""
        return f"group(last_over_time(kube_pod_info{_sel(_EXPORTED_POD, self.k)}{self._range(span)}))"

    def ksm_series(self) -> str:
        """The series whose existence anywhere in the TSDB tells "not scraped" from "not then"."""
        return f"kube_node_status_capacity{_sel(self.k)}"

    def scoped(self, namespaces: list[str]) -> Queries:
        """A copy whose container-level selectors only match these namespaces (for per-pod detail)."""
        q = copy.copy(self)
        only = one_of("namespace", namespaces)
        q.k = join_matchers(self.k, only)
        q.only = (*self.only, only)
        return q

    def _range(self, chunk_seconds: int) -> str:
        """Range for label, info and price lookups over a chunk: never shorter than Prometheus' 5-minute
        lookback, which the step integrals use. A chunk inside a scrape gap (a Prometheus restart) then
        still finds its nodes' labels and prices, instead of pricing them at default rates."""
        return f"[{max(chunk_seconds, LOOKBACK_SECONDS)}s]"

    def _sub(self, chunk_seconds: int) -> str:
        # Half a step short of the chunk: exactly chunk/step points whether the Prometheus
        # version treats the range start as inclusive (2.x) or exclusive (3.x).
        return f"[{chunk_seconds - self.step // 2}s:{format_duration(self.step)}]"

    # ---- per-container building blocks (labels: namespace, pod, container) ----
    def running(self, among: str = "") -> str:
        """1 per pod in phase Running (of the pods `among` has), as the freshest kube-state-metrics says. After a
        restart the old replica's series live on for the lookback where no staleness marker was written (the
        new one has a new `instance`): a pod that completed meanwhile would still be Running there. HA replicas
        agree, so whichever is freshest is right."""
        phase = f"kube_pod_status_phase{_sel(_RUNNING, self.k)}{self._at}"
        if among:
            phase = f"({phase} and on (namespace, pod) {among})"
        latest = f"max by (namespace, pod) (timestamp({phase}))"
        fresh = f"{phase} and (timestamp({phase}) == on (namespace, pod) group_left () {latest})"
        return f"max by (namespace, pod) ({fresh}) == 1"

    def placement(self) -> str:
        """1 per running pod with its node; Succeeded/Failed pods still export requests but cost nothing."""
        info = f"max by (namespace, pod, node) (kube_pod_info{_sel(_PLACED, self.k)}{self._at})"
        placed = f"(topk by (namespace, pod) (1, {info}) and on (namespace, pod) ({self.running()}))"
        if self.ksm_after is not None:  # a pod deleted during the gap is not charged for it
            alive = f"max by (namespace, pod) (kube_pod_info{_sel(self.k)} @ {self.ksm_after})"
            placed = f"({placed} and on (namespace, pod) {alive})"
        return placed

    def request(self, resource: str) -> str:
        sel = _sel(matcher("resource", KSM_RESOURCE[resource]), self.k)
        return f"max by (namespace, pod, container) (kube_pod_container_resource_requests{sel}{self._at})"

    def cadvisor_usage(self, resource: str) -> str:
        """Per-container usage series, in either scrape shape, not yet deduplicated (`usage` is)."""
        # Drop pod-level (container=""), pause (container="POD") and namespace-less system cgroups.
        matchers = ('container!=""', 'container!="POD"', 'namespace!=""', 'pod!=""')
        metric = "container_cpu_usage_seconds_total" if resource == "cpu" else "container_memory_working_set_bytes"
        window = f"[{self.rate_window}]"
        if self.cadvisor_bridge is not None:  # exact: the counter's increase across the gap
            before, after = self.cadvisor_bridge
            window = f"[{after - before + parse_duration(self.rate_window)}s] @ {after}"
            if resource != "cpu":
                return cadvisor(metric, self.c, self.only, lambda s: f"{s} @ {before}", *matchers)
        if resource == "cpu":
            return cadvisor(metric, self.c, self.only, lambda s: f"rate({s}{window})", *matchers)
        return cadvisor(metric, self.c, self.only, lambda s: s, *matchers)

    def usage(self, resource: str) -> str:
        return f"max by (namespace, pod, container) ({self.cadvisor_usage(resource)})"

    def usage_max(self, resource: str, chunk_seconds: int) -> str:
        """Each container's highest usage (cores, bytes) at the resolution's steps over a chunk: what OpenCost
        reports as rawAllocationOnly's cpuCoreUsageMax and ramByteUsageMax. A view, not a cost."""
        return f"max_over_time(({self.usage(resource)}){self._sub(chunk_seconds)})"

    def _by_ns_node(self, per_container: str, by: str = "namespace, node") -> str:
        placed = f"* on (namespace, pod) group_left (node) {self.placement()}"
        return f"sum by ({by}) (({per_container}) {placed})"

    def capacity(self, resource: str) -> str:
        sel = _sel(matcher("resource", KSM_RESOURCE[resource]), self.k)
        return f"max by (node) ({_finite(f'kube_node_status_capacity{sel}{self._at}')})"

    # ---- chunk queries (evaluated at the chunk's end) ----
    def limits_integral(self, chunk_seconds: int, by: str = "namespace, node, resource",
                        pods_in: list[str] | None = None) -> str:
        """CPU and memory limits of running containers summed over steps per `by` (OpenCost's
        cpuCoreLimitAverage, ramByteLimitAverage; a view, not a cost), of `pods_in`'s namespaces only if given."""
        q = self.scoped(pods_in) if pods_in else self
        sel = _sel(one_of("resource", ("cpu", "memory")), q.k)
        lim = f"max by (namespace, pod, container, resource) (kube_pod_container_resource_limits{sel}{q._at})"
        return f"sum_over_time({_finite(q._by_ns_node(lim, by))}{self._sub(chunk_seconds)})"

    def used_integral(self, resource: str, chunk_seconds: int, pods_in: list[str] | None = None) -> str:
        q = self.scoped(pods_in) if pods_in else self
        inner = q._by_ns_node(q.usage(resource), "namespace, node, pod" if pods_in else "namespace, node")
        return f"sum_over_time({_finite(inner)}{self._sub(chunk_seconds)})"

    def steps(self, expr: str, chunk_seconds: int) -> str:
        """`expr` at each of the chunk's steps (a range-vector subquery: the samples the integrals above sum)."""
        return f"({expr}){self._sub(chunk_seconds)}"

    def used_steps(self, resource: str, chunk_seconds: int) -> str:
        """Used cores or bytes per (namespace, node) at each step: what `used_integral` sums (live carbon)."""
        return self.steps(_finite(self._by_ns_node(self.usage(resource))), chunk_seconds)

    def capacity_steps(self, chunk_seconds: int) -> str:
        """Node cpu and memory capacity per (node, resource) at each step."""
        sel = _sel(one_of("resource", ("cpu", "memory")), self.k)
        return self.steps(f"max by (node, resource) ({_finite(f'kube_node_status_capacity{sel}{self._at}')})",
                          chunk_seconds)

    # ---- recorded per-(namespace, node) series: their builders are sources/recordedqueries.py ----
    def recorded_as(self, layout: str) -> Queries:
        """A copy reading the recorded names of `layout` ("v2", "v1", or "mixed": each step whichever it has)."""
        q = copy.copy(self)
        q.layout = layout
        return q

    # ---- GPU utilisation from dcgm-exporter's Kubernetes mode (math: exporter/core/gpuwaste.py) ----
    def dcgm_series(self) -> str:
        """Whether dcgm-exporter is scraped at all (the pipeline skips the GPU usage query otherwise)."""
        return dcgm_series(self.d)

    def gpu_device_usage(self) -> str:
        """Per GPU (or MIG instance) a pod holds, busy, observed and framebuffer (sources/scrapeshape.py), with
        dcgm-exporter scraped with or without honorLabels."""
        return device_usage(self.d, self.only)

    def gpu_busy_max(self, chunk_seconds: int) -> str:
        """Each GPU pod's highest busy fraction of one of its GPUs at the resolution's steps over a chunk
        (OpenCost's rawAllocationOnly gpuUsageMax). A view, not a cost."""
        return f"max_over_time((max by (namespace, pod) ({device_busy(self.d, self.only)})){self._sub(chunk_seconds)})"

    def gpu_devices(self, chunk_seconds: int) -> str:
        """The GPUs dcgm-exporter saw each pod hold over a chunk (OpenCost's gpuDevice, gpuModel, gpuUUID)."""
        return device_names(self.d, self._sub(chunk_seconds), self.only)

    def gpu_usage_integral(self, chunk_seconds: int, pods_in: list[str] | None = None, every_pod: bool = False) -> str:
        """Sum over steps of busy GPUs and framebuffer bytes per (namespace, node, kind) of running pods;
        per pod too with `pods_in` (only those namespaces) or `every_pod` (pod-level rows, outputs/podrows.py)."""
        q = self.scoped(pods_in) if pods_in else self
        by = "namespace, node, pod, kind" if pods_in or every_pod else "namespace, node, kind"
        return f"sum_over_time({_finite(q._by_ns_node(q.gpu_device_usage(), by))}{self._sub(chunk_seconds)})"

    # ---- assets beyond nodes: volumes, load balancers, network ----
    def pv_capacity_integral(self, span: int) -> str:
        cap = f"max by (persistentvolume) ({_finite(f'kube_persistentvolume_capacity_bytes{_sel(self.k)}{self._at}')})"
        return f"sum_over_time(({cap}){self._sub(span)})"

    def pv_info(self, span: int) -> str:
        return (f"max by (persistentvolume, storageclass) "
                f"(last_over_time(kube_persistentvolume_info{_sel(self.k)}{self._range(span)}{self._at}))")

    def pv_claims(self, span: int) -> str:
        return (f"max by (persistentvolume, claim_namespace) "
                f"(last_over_time(kube_persistentvolume_claim_ref{_sel(self.k)}{self._range(span)}{self._at}))")

    def pv_prices(self, span: int) -> str:
        return f"max by (persistentvolume) (avg_over_time(pv_hourly_cost{_sel(self.o)}{self._range(span)}))"

    def lb_presence(self, span: int) -> str:
        sel = _sel('type="LoadBalancer"', self.k)
        return f"sum_over_time((max by (namespace, service) (kube_service_spec_type{sel}{self._at})){self._sub(span)})"

    def lb_prices(self, span: int) -> str:
        return (f"max by (namespace, service_name) "
                f"(avg_over_time(kubecost_load_balancer_cost{_sel(self.o)}{self._range(span)}))")

    def egress_classified(self, span: int) -> str:
        """Kubecost's network-costs daemonset: egress bytes per namespace and destination class."""
        rate = f"rate(kubecost_pod_network_egress_bytes_total{_sel(self.o)}[{self.rate_window}])"
        inner = f"sum by (namespace, internet, same_region, same_zone) ({rate})"
        return f"sum_over_time(({inner}){self._sub(span)})"

    def transmitted(self, span: int, by: str = "namespace") -> str:
        """cAdvisor transmit bytes per namespace, or per pod (`by`; pod-level series; loopback excluded)."""
        rate = cadvisor("container_network_transmit_bytes_total", self.c, self.only,
                        lambda s: f"rate({s}[{self.rate_window}])", 'namespace!=""', 'pod!=""', 'interface!="lo"')
        per_pod = f"max by (namespace, pod, interface) ({rate})"
        return f"sum_over_time((sum by ({by}) ({per_pod})){self._sub(span)})"

    # ---- metadata for attribution and sharing ----
    def pod_labels(self, keys: list[str], chunk_seconds: int) -> str:
        """Pods carrying any attribution label, one row per pod with just those labels."""
        cols = ", ".join(["namespace", "pod", *keys])
        parts = []
        for k in keys:
            sel = _sel(k + '!=""', self.k)
            labels = f"kube_pod_labels{sel}{self._range(chunk_seconds)}{self._at}"
            parts.append(f"max by ({cols}) (last_over_time({labels}))")
        return " or ".join(parts) if parts else "vector(0) < 0"

    def all_pods(self, chunk_seconds: int) -> str:
        return f"group by (namespace, pod) ({self._pod_labels_seen(chunk_seconds)})"

    def owners(self, metric: str, name_label: str, chunk_seconds: int) -> str:
        """Controller owner references (kube_pod_owner, kube_replicaset_owner, kube_job_owner)."""
        sel = _sel('owner_is_controller=~"true|<none>"', self.k)
        return (f"max by (namespace, {name_label}, owner_kind, owner_name) "
                f"(last_over_time({metric}{sel}{self._range(chunk_seconds)}{self._at}))")

    def _pod_labels_seen(self, chunk_seconds: int) -> str:
        return f"last_over_time(kube_pod_labels{_sel(self.k)}{self._range(chunk_seconds)}{self._at})"

    def pod_counts(self, chunk_seconds: int) -> str:
        """Pods per namespace, each once: two kube-state-metrics replicas, or an old and a new one after a
        restart, export every pod's series twice (differing in `instance`)."""
        return f"count by (namespace) (group by (namespace, pod) ({self._pod_labels_seen(chunk_seconds)}))"

    def namespace_annotations(self, chunk_seconds: int) -> str:
        """Needs kube-state-metrics --metric-annotations-allowlist=namespaces=[chargeback.io/budget-...]."""
        return f"last_over_time(kube_namespace_annotations{_sel(self.k)}{self._range(chunk_seconds)}{self._at})"

    def namespace_labels(self, chunk_seconds: int) -> str:
        return f"last_over_time(kube_namespace_labels{_sel(self.k)}{self._range(chunk_seconds)}{self._at})"

    def capacity_stats(self, fn: str, chunk_seconds: int) -> str:
        """`avg_over_time` or `count_over_time` of node capacity per (node, resource) over the chunk's steps."""
        sel = _sel(one_of("resource", KSM_RESOURCE.values()), self.k)
        cap = f"max by (node, resource) ({_finite(f'kube_node_status_capacity{sel}{self._at}')})"
        return f"{fn}(({cap}){self._sub(chunk_seconds)})"

    def non_finite_inputs(self, chunk_seconds: int, requests: bool = True) -> str:
        """Steps at which a checked input series held NaN or Inf (the integrals drop those samples), per series."""
        parts = []
        for metric, by in CHECKED_INPUTS:
            if metric == "kube_pod_container_resource_requests" and not requests:
                continue
            raw = f"{metric}{_sel(self.k)}"
            bad = f"count by ({by}) ({raw} unless {_finite(raw)})"
            steps = f"count_over_time(({bad}){self._sub(chunk_seconds)})"
            parts.append(f'label_replace({steps}, "metric", {quote(metric)}, "", "")')
        return " or ".join(parts)

    def node_labels(self, chunk_seconds: int) -> str:
        return f"last_over_time(kube_node_labels{_sel(self.k)}{self._range(chunk_seconds)}{self._at})"

    def opencost_prices(self, chunk_seconds: int) -> str:
        """All OpenCost node price series in one round trip, tagged with a `price` label. A price with no
        sample in the chunk (OpenCost restarting) is its last one within maxGapBridge."""
        parts = []
        bridge = f"[{format_duration(self.max_gap_bridge + max(chunk_seconds, LOOKBACK_SECONDS))}]"
        for kind, metric in PRICE_METRICS.items():
            m = f"{metric}{_sel(self.o)}"
            agg = (f"max by (node) (avg_over_time({m}{self._range(chunk_seconds)}) "
                   f"or last_over_time({m}{bridge}))")
            parts.append(f'label_replace({agg}, "price", {quote(kind)}, "", "")')
        return " or ".join(parts)
