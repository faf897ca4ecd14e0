"""The fetch stage of the pipeline: what one window's queries return, as plain rows.

Metadata (owner labels, workloads), node facts (capacity, prices, GPUs), assets (volumes, load
balancers, network) and the usage integrals, on recorded or raw series. `Pipeline` holds one `Fetch`
and adds planning, pricing, costing and sharing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from exporter.config.schema import Config
from exporter.core.allocation import GPU_OPENCOST, ChunkUsage
from exporter.core.assets import AssetCost, Service, Volume, price_load_balancers, price_network, price_volumes
from exporter.core.attribution import BUDGET_PREFIX, LabelSets, Owners, shared_labels
from exporter.core.coverage import rule_gap
from exporter.core.finite import NonFinite
from exporter.core.gpuprices import load_shipped_gpu_prices
from exporter.core.ownershare import Place
from exporter.core.pricing import NodeFacts
from exporter.core.usagetable import PairIndex, UsageTable
from exporter.core.window import Window, iso
from exporter.core.workloads import resolve as resolve_workloads
from exporter.engine.gpufetch import gpu_held, with_gpus
from exporter.engine.meshfetch import istio_classified
from exporter.engine.splitfetch import split_like, split_recorded
from exporter.engine.warnlog import WarningLog
from exporter.sources.allocsteps import RowKey
from exporter.sources.meshqueries import istio_series
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.queries import RESOURCE_FROM_KSM, Queries
from exporter.sources.recordedqueries import (
    recorded_allocated_integral,
    recorded_coverage,
    recorded_held_integral,
    recorded_requested_integral,
    recorded_used_integral,
)
from exporter.sources.splitsteps import split_rows
from exporter.sources.stepfetch import StepFetcher
from exporter.vocab.errors import DataError
from exporter.vocab.labels import Metadata, UsageKey, ksm_label

log = logging.getLogger(__name__)

# Which source priced a namespace's egress (the coverage output's `network`).
KUBECOST, ISTIO, CADVISOR = "kubecost-network-costs", "istio", "cadvisor-unclassified"
MIN_RECORDED_STEPS = 5  # shorter chunks read raw series: cheap, and no heartbeat check to pay for


class Fetch:
    """The queries of one window, and the warnings they give."""

    # Whether limits are read (OpenCost's cpuCoreLimitAverage/ramByteLimitAverage): set with the pipeline's
    # running_spans by the doors that print allocations. At 300k the read was 14-22 s of Prometheus per serve
    # cycle (raw series joined to every pod's placement) for counters that never print a limit.
    read_limits: bool = False

    def __init__(self, cfg: Config, client: PrometheusClient, queries: Queries, step: int,
                 warnings: WarningLog) -> None:
        self.cfg = cfg
        self.client = client
        self.queries = queries
        self.step = step
        self.warnings = warnings
        self._dcgm_seen: tuple[float, bool] | None = None  # (when asked, whether dcgm-exporter is scraped)
        self._istio_seen: tuple[float, bool] | None = None  # the same for Istio's byte metrics
        client.on_non_finite = self._non_finite
        self._lock = threading.Lock()
        # Serve lowers this to 1: its cycles then read the recorded series wherever the heartbeat covers them.
        self.min_recorded_steps = MIN_RECORDED_STEPS
        self.steps = StepFetcher(client, cfg.allocation.policy, cfg.allocation.requestWeight)
        self.non_finite_answers = 0  # samples the client left out as NaN/Inf, ever
        self.sources: Counter[str] = Counter()  # chunks read from recorded series vs raw series
        self.shipped_gpu = load_shipped_gpu_prices() if cfg.pricing.shippedPrices else None

    @property
    def attribution_keys(self) -> list[str]:
        return list(self.cfg.attribution.labels.values())

    def prometheus_metadata(self, w: Window, q: Queries | None = None) -> Metadata:
        """Pod and namespace labels from kube-state-metrics (needs its --metric-labels-allowlist)."""
        at, span, queries = float(w.end), w.seconds, q or self.queries
        back = {ksm_label(k): k for k in [*self.attribution_keys, *self.cfg.sharing.shareLabels]}

        seen: LabelSets = {}

        def k8s(labels: dict[str, str]) -> dict[str, str]:
            return shared_labels({back[k]: v for k, v in labels.items() if k in back and v}, seen)

        def every(labels: dict[str, str]) -> dict[str, str]:
            """All of a namespace's labels (OpenCost reports them): Kubernetes keys where known, else as exported."""
            return shared_labels({back.get(k, k[6:]): v for k, v in labels.items() if k.startswith("label_") and v},
                                 seen)

        namespaces = {lb["namespace"]: every(lb) for lb, _ in self.client.query(queries.namespace_labels(span), at)
                      if "namespace" in lb}
        pods = {(lb["namespace"], lb["pod"]): k8s(lb)
                for lb, _ in self.client.query(queries.pod_labels(sorted(back), span), at)}
        counts = {lb["namespace"]: int(v) for lb, v in self.client.query(queries.pod_counts(span), at)}
        wanted = {"annotation_" + ksm_label(BUDGET_PREFIX + s)[6:]: BUDGET_PREFIX + s
                  for s in ("daily", "weekly", "monthly", "notify")}
        notes = {}
        for lb, _ in self.client.query(queries.namespace_annotations(span), at):
            found = {wanted[k]: v for k, v in lb.items() if k in wanted and v}
            if found and "namespace" in lb:
                notes[lb["namespace"]] = found
        return Metadata("prometheus", namespaces, pods, counts, annotations=notes)

    def workloads(self, w: Window) -> dict[tuple[str, str], str]:
        """Each pod's top controller over `w` (workloads.resolve), from kube-state-metrics' owner series."""
        at, span, q = float(w.end), w.seconds, self.queries

        def owners(metric: str, label: str) -> dict[tuple[str, str], tuple[str, str]]:
            return {(lb.get("namespace", ""), lb.get(label, "")): (lb.get("owner_kind", ""), lb.get("owner_name", ""))
                    for lb, _ in self.client.query(q.owners(metric, label, span), at)}

        pods = owners("kube_pod_owner", "pod")
        if not pods:
            log.info("no kube_pod_owner series: workload names are guessed from pod names")
            return {}
        return resolve_workloads(pods, owners("kube_replicaset_owner", "replicaset"),
                                 owners("kube_job_owner", "job_name"))

    def node_facts(self, w: Window, meta: Metadata | None = None, queries: Queries | None = None
                   ) -> tuple[dict[tuple[str, str], float], dict[str, NodeFacts]]:
        """Capacity integrals per (node, resource) and what is known about each node, for one window.

        Node labels come from kube_node_labels, overlaid by the Kubernetes API's when it is the source.
        """
        q, at, span, step = queries or self.queries, float(w.end), w.seconds, self.step
        avg = self.client.query(q.capacity_stats("avg_over_time", span), at)
        count = self.client.query(q.capacity_stats("count_over_time", span), at)
        if not avg:
            raise DataError(
                f"no node capacity in Prometheus for {iso(w.start)}..{iso(w.end)}: "
                "kube_node_status_capacity is missing (is kube-state-metrics scraped?)"
            )
        if self.client.query(q.ksm_not_honored(span), at):
            raise DataError(
                f"kube-state-metrics series carry exported_namespace/exported_pod in {iso(w.start)}..{iso(w.end)}: "
                "it is scraped with honorLabels: false, so namespace and pod name its own pod; set honorLabels: true "
                "on its ServiceMonitor (or honor_labels in its scrape config)")
        steps = {(lb["node"], lb["resource"]): v for lb, v in count}
        capacity: dict[tuple[str, str], float] = {}
        per_node: dict[str, dict[str, float]] = {}
        for lb, v in avg:
            res = RESOURCE_FROM_KSM.get(lb["resource"])
            if res:
                per_node.setdefault(lb["node"], {})[res] = v
                if n := steps.get((lb["node"], lb["resource"])):  # none left out as non-finite
                    capacity[(lb["node"], res)] = v * n * step

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
                labels={**{k: v for k, v in labels.get(name, {}).items() if k.startswith("label_")},
                        **{ksm_label(k): v for k, v in (meta.nodes.get(name, {}) if meta else {}).items()}},
                opencost=opencost.get(name, {}),
            )
            for name, caps in per_node.items()
        }
        # GPUs are physical devices from here on (exporter/core/gpu.py): models, counts and prices.
        nodes = with_gpus(self.client, q, w, step, nodes, capacity, self.cfg.gpu, self.shipped_gpu)
        return capacity, nodes

    def fetch_assets(self, w: Window, queries: Queries | None = None) -> tuple[list[AssetCost], dict[str, set[str]]]:
        """Persistent volumes, LoadBalancer Services and network egress for one window, priced; and which
        source priced each namespace's egress (the coverage output names it)."""
        q, at, span, step, p = queries or self.queries, float(w.end), w.seconds, self.step, self.cfg.pricing

        def by(expr: str, *keys: str) -> dict[tuple[str, ...], float]:
            return {tuple(lb.get(k, "") for k in keys): v for lb, v in self.client.query(expr, at)}

        classes = {k[0]: k[1] for k in by(q.pv_info(span), "persistentvolume", "storageclass")}
        claims = {k[0]: k[1] for k in by(q.pv_claims(span), "persistentvolume", "claim_namespace")}
        pv_price = {k[0]: v for k, v in by(q.pv_prices(span), "persistentvolume").items()}
        volumes = [Volume(pv, v * step, classes.get(pv, ""), claims.get(pv) or None, pv_price.get(pv))
                   for (pv,), v in by(q.pv_capacity_integral(span), "persistentvolume").items()]
        lb_price = by(q.lb_prices(span), "namespace", "service_name")
        services = [Service(ns, svc, v * step, lb_price.get((ns, svc)))
                    for (ns, svc), v in by(q.lb_presence(span), "namespace", "service").items()]
        classified: dict[tuple[str, str], float] = {}
        for (ns, internet, same_region, same_zone), v in by(
                q.egress_classified(span), "namespace", "internet", "same_region", "same_zone").items():
            klass = ("internet" if internet == "true" else "region" if same_region == "false"
                     else "zone" if same_zone == "false" else "free")
            classified[(ns, klass)] = classified.get((ns, klass), 0.0) + v * step
        transmitted = {k[0]: v * step for k, v in by(q.transmitted(span), "namespace").items()}
        source, istio = KUBECOST, False
        if not classified and p.network.istio and self._istio_scraped(q):
            classified, source, istio = istio_classified(self.client, q, w, step, self.workloads(w)), ISTIO, True
        named = {ns for ns, _ in classified}
        sources = {source: named} if named else {}
        rest = {ns for ns, b in transmitted.items() if b > 0 and (istio or not named) and ns not in named}
        if rest:
            sources[CADVISOR] = rest
        month = self.cfg.sharing.hoursPerMonth
        if not named and any(a.spreadBy == "internet" for a in p.network.monthly):
            self._warn("pricing.network.monthly spreads by internet bytes, but no classified egress source "
                       "(Kubecost's network-costs daemonset, Istio) has any: spread by transmitted bytes",
                       "network_unclassified")
        return [*price_volumes(volumes, p.storage, month), *price_load_balancers(services, p.loadBalancer.hourly),
                *price_network(classified, transmitted, p.network, w.seconds, month, partial=istio)], sources

    def _istio_scraped(self, q: Queries) -> bool:
        """Whether Istio's byte series exist, asked at most hourly while they do not (as dcgm-exporter's)."""
        now = time.monotonic()
        if self._istio_seen is None or (not self._istio_seen[1] and now - self._istio_seen[0] > 3600):
            self._istio_seen = (now, self.client.series_exist(istio_series(q)))
        return self._istio_seen[1]

    def fetch(self, w: Window, owners: Owners, meta: Metadata | None = None, queries: Queries | None = None,
              recorded: bool = True) -> ChunkUsage:
        q, at, span = queries or self.queries, float(w.end), w.seconds
        step = self.step
        split = sorted(owners.split)

        index = PairIndex()  # one for the chunk's three tables (core/usagetable.py)

        def integral(expr: str, with_resource: str | None = None, aside: dict[Place, float] | None = None,
                     out: UsageTable | None = None) -> UsageTable:
            """Recorded rows, added into `out`; those of split namespaces are left out, or set `aside` to be
            split by owner."""
            out = UsageTable(index) if out is None else out
            for labels, value in self.client.query(expr, at):
                res = with_resource or RESOURCE_FROM_KSM.get(labels.get("resource", ""), "")
                ns = labels.get("namespace", "")
                if res and aside is not None and ns in owners.split:
                    place = Place(ns, labels.get("node", ""), res)
                    aside[place] = aside.get(place, 0.0) + value * step
                if not res or ns in owners.split:
                    continue
                out.add((ns, labels.get("node", ""), owners.of(ns, labels.get("pod")), res), value * step)
            return out

        capacity, nodes = self.node_facts(w, meta, q)
        rec = self.recorded_covers(w, raw=not recorded)
        answered_non_finite = self.non_finite_answers
        if rec:
            q = q.recorded_as(rec)
            allocated = UsageTable(index)
            for res in ("cpu", "memory"):
                integral(recorded_allocated_integral(q, res, span), res, out=allocated)
            split_req: dict[Place, float] = {}
            split_used: dict[Place, float] = {}
            requested = integral(recorded_requested_integral(q, span), aside=split_req)
            used = integral(recorded_used_integral(q, "cpu", span), "cpu", split_used)
            integral(recorded_used_integral(q, "memory", span), "memory", split_used, used)
            split_held: dict[Place, float] = {}
            held = UsageTable(index)
            for res in ("cpu", "memory"):
                integral(recorded_held_integral(q, res, span), res, split_held, held)
            if split:  # recorded amounts too, split between owners by raw per-pod rows (engine/splitfetch.py)
                pods = sum(n for ns, n in meta.pod_counts.items() if ns in owners.split) if meta else 0
                records = self.steps.kube_prometheus_usage(q, w.start, w.end)
                rows = split_rows(self.client, q, w.start, w.end, split, self.steps.policy, self.steps.weight,
                                  records, pods)
                shared = split_recorded(rows, owners, step, split_req, split_used)
                allocated.update(shared.allocated)
                requested.update(shared.requested)
                used.update(shared.used)
                held.update(split_like(split_held, shared.allocated))
        else:  # one pass over the raw series (exporter/sources/allocsteps.py)
            totals = self.steps.totals(q, w.start, w.end, split, meta.pod_counts if meta else None)
            # GPUs are allocated by their physical shares, below.
            allocated = self._unit_seconds(totals.allocated, owners, UsageTable(index), skip="gpu")
            requested = self._unit_seconds(totals.requested, owners, UsageTable(index))
            used = self._unit_seconds(totals.used, owners, UsageTable(index))
            held = self._unit_seconds(totals.held, owners, UsageTable(index))
        limits = self.limits(w, q, owners) if self.read_limits else {}
        # GPUs: what each container holds of physical devices (MIG slices, replicas, HAMi fractions).
        gpus, notes = gpu_held(self.client, q, w, step, nodes, capacity, self.cfg.gpu)
        for kind, note in notes:
            self._warn(note, kind)
        for h in gpus:
            key = (h.namespace, h.node, owners.of(h.namespace, h.pod if h.namespace in owners.split else None), "gpu")
            allocated.add(key, h.device_seconds)
            if h.requested_seconds:
                requested.add(key, h.requested_seconds)
            if h.opencost_seconds:
                requested.add((*key[:3], GPU_OPENCOST), h.opencost_seconds)
        used.update(self.gpu_usage(w, q, owners))
        # A NaN or Inf request makes its pod's request row non-finite in the one-pass answer, so the
        # per-container check (as costly as a selector pass) runs only when an answer had one.
        self.check_inputs(w, requests=(not rec or bool(split)) and self.non_finite_answers != answered_non_finite)
        # A (node, resource) with no finite capacity (left out as NaN/Inf) is not covered: nothing on it
        # is costed, so no cost appears without the node cost it comes out of.
        for k in [k for k in allocated if (k[1], k[3]) not in capacity]:
            del allocated[k]
        if not used and self.cfg.allocation.policy != "request":
            self._warn(f"no cAdvisor usage series for {iso(w.start)}..{iso(w.end)}; costing requests only", "no_usage")
        return ChunkUsage(w.start, w.end, allocated, requested, used, capacity, nodes, gpus,
                          None if rec else totals.scales, held, limits)

    def limits(self, w: Window, q: Queries, owners: Owners) -> dict[UsageKey, float]:
        """CPU and memory limits per (namespace, node, owner), in unit-seconds: per pod in split namespaces."""
        out: dict[UsageKey, float] = {}
        split = sorted(owners.split)
        for pods_in in (None, split) if split else (None,):
            by = "namespace, node, pod, resource" if pods_in else "namespace, node, resource"
            for lb, v in self.client.query(q.limits_integral(w.seconds, by, pods_in), float(w.end)):
                ns, res = lb.get("namespace", ""), RESOURCE_FROM_KSM.get(lb.get("resource", ""), "")
                if not res or (pods_in is None) == (ns in owners.split):
                    continue  # split namespaces come from the per-pod rows only
                key = (ns, lb.get("node", ""), owners.of(ns, lb.get("pod")), res)
                out[key] = out.get(key, 0.0) + v * self.step
        return out

    def gpu_usage(self, w: Window, q: Queries, owners: Owners) -> dict[UsageKey, float]:
        """dcgm-exporter's busy and observed GPU-seconds and framebuffer byte-seconds per (namespace, node)
        (per pod in split namespaces); nothing, at the cost of one index lookup an hour, without it."""
        now = time.monotonic()
        if self._dcgm_seen is None or (not self._dcgm_seen[1] and now - self._dcgm_seen[0] > 3600):
            self._dcgm_seen = (now, self.client.series_exist(q.dcgm_series()))
        out: dict[UsageKey, float] = {}
        if not self._dcgm_seen[1]:
            return out
        split = sorted(owners.split)
        for pods_in in (None, split) if split else (None,):
            for lb, v in self.client.query(q.gpu_usage_integral(w.seconds, pods_in), float(w.end)):
                ns = lb.get("namespace", "")
                if (pods_in is None) == (ns in owners.split):
                    continue  # split namespaces come from the per-pod rows only
                key = (ns, lb.get("node", ""), owners.of(ns, lb.get("pod")), lb.get("kind", ""))
                out[key] = out.get(key, 0.0) + v * self.step
        return out

    def _unit_seconds(self, rows: dict[RowKey, float], owners: Owners, out: UsageTable,
                      skip: str = "") -> UsageTable:
        """Step sums added into `out` per (namespace, node, owner, resource), in unit-seconds, but for
        resource `skip`. Empties `rows` as it goes, so the two are never both held whole (docs/scale.md)."""
        for k in list(rows):  # in the rows' order, as the sums always were
            v = rows.pop(k)
            if k.resource != skip:
                out.add((k.namespace, k.node, owners.of(k.namespace, k.pod), k.resource), v * self.step)
        return out

    def recorded_covers(self, w: Window, raw: bool = False) -> str:
        """The recorded names to read (`Queries.recorded_as`) when the mixin's allocation rules ran at every
        step of `w`, under this config's policy, else "".

        A missed evaluation would leave a step with no allocation (all idle), so that chunk reads raw
        series instead. So do chunks of a few steps (serve's cycles), where raw is cheap, and those the
        caller reads `raw` (a chunk with a gap). Namespaces split between owners read recorded amounts
        too, split by raw per-pod rows of those namespaces only (engine/splitfetch.py)."""
        covered, layout = False, ""
        steps = w.seconds // self.step
        if self.cfg.allocation.recordedRules != "off" and steps >= self.min_recorded_steps and not raw:
            rows = self.client.query(recorded_coverage(self.queries, w.seconds), float(w.end))
            counts = {lb.get("count", ""): int(v) for lb, v in rows}
            covered = counts.get("steps", 0) >= steps
            # The labelled record at every step, or history from before it (deprecated names) at some.
            layout = "v2" if counts.get("v2", 0) >= steps else "mixed" if counts.get("v2") else "v1"
            if not covered and counts.get("evaluations"):  # the rules ran, but not once per step: raw, and say so
                self._warn(rule_gap(w.start, w.end, steps, counts.get("steps", 0), counts["evaluations"],
                                    self.cfg.allocation.resolution), "recorded_rules")
        with self._lock:
            self.sources["recorded" if covered else "raw"] += 1
        return layout if covered else ""

    def check_inputs(self, w: Window, requests: bool) -> None:
        """Warn about input samples that were NaN or Inf: the integrals leave those steps out, so a node's
        capacity there is not covered (nothing on it is costed) and a request there counts as absent.
        Raw requests are checked only where the chunk reads them: on the recorded path it would cost a
        per-container pass the recorded series exist to avoid."""
        for lb, n in self.client.query(self.queries.non_finite_inputs(w.seconds, requests), float(w.end)):
            series = ", ".join(f'{k}="{v}"' for k, v in sorted(lb.items()) if k != "metric")
            self._warn(f"{lb.get('metric')}{{{series}}} was NaN or Inf at {int(n)} step(s) of {iso(w.start)}.."
                       f"{iso(w.end)}: those steps are left out", "non_finite")

    def _warn(self, text: str, kind: str = "other") -> None:
        """Counted per kind; logged as the WarningLog decides (each message once, or a kind hourly)."""
        self.warnings.warn(kind, text)

    def _non_finite(self, dropped: NonFinite) -> None:
        with self._lock:
            self.non_finite_answers += 1
        self._warn(dropped.describe(), "non_finite")
