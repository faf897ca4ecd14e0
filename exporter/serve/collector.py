"""The client_python custom Collector: every scrape builds the metric families fresh from state.

No sample timestamps; counters carry `_total`; money is in the configured currency
(exposed on `chargeback_info`), time in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.core.attribution import annotation_budgets, coverage_by_cost, coverage_by_pods
from exporter.core.coverage import SOURCES, Coverage
from exporter.core.names import IDLE, SHARED
from exporter.core.window import period_bounds
from exporter.serve.accrual import (
    CarbonKey,
    ClusterEnergyKey,
    ClusterKey,
    CounterKey,
    EnergyKey,
    GpuWasteKey,
    NamespaceKey,
    NodeIdleKey,
    PoolKey,
)
from exporter.sources.promql import LEDGER, WATERMARK

if TYPE_CHECKING:
    from exporter.core.allocation import CostResult
    from exporter.core.pricing import NodeFacts, NodeRates
    from exporter.engine.pipeline import Pipeline
    from exporter.outputs.reconcile import Reconciliation
    from exporter.serve.accrual import Ledger, Snapshot
    from exporter.sources.prometheus import QueryStats
    from exporter.vocab.labels import Metadata


def _series_order(item: tuple[CounterKey, float]) -> tuple[str, list[str]]:
    """Series in a stable order within each family (keys of different families do not compare)."""
    return item[0].family, item[0].labels()


@dataclass
class Health:
    """What the accrual loop reports about itself; read by the collector and /healthz."""

    up: bool = False
    last_success: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    cycle_seconds: float | None = None
    cycles: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    leader: bool | None = None  # None when leader election is off
    reconciliation: Reconciliation | None = None
    reconciliation_error: str | None = None
    rates: dict[str, NodeRates] = field(default_factory=dict)
    nodes: dict[str, NodeFacts] = field(default_factory=dict)
    # Seconds of accrued time per source that were uncovered (not costed) or bridged (last known state).
    uncovered_seconds: dict[str, int] = field(default_factory=dict)
    bridged_seconds: dict[str, int] = field(default_factory=dict)
    fallbacks: frozenset[str] = frozenset()  # shared sources whose policy fell back to `weighted`
    metadata: Metadata | None = None  # the owner labels the latest piece was attributed with
    energy_source: dict[str, str] = field(default_factory=dict)  # node -> kepler | kepler-0.7 | estimated

    def publish(self, result: CostResult) -> None:
        """The accrual loop's one writer hands over what the collector shows of the latest piece."""
        self.rates, self.nodes, self.fallbacks = result.rates, result.nodes, result.fallbacks
        if result.energy.node_source:
            self.energy_source = dict(result.energy.node_source)
        if result.metadata is not None:
            self.metadata = result.metadata
        self.add_coverage(result.coverage)

    def add_coverage(self, coverage: Coverage) -> None:
        for source in SOURCES:
            self.uncovered_seconds[source] = self.uncovered_seconds.get(source, 0) + coverage.uncovered_seconds(source)
            self.bridged_seconds[source] = self.bridged_seconds.get(source, 0) + coverage.bridged_seconds(source)


class ChargebackCollector(Collector):
    def __init__(self, ledger: Ledger, health: Health, stats: QueryStats, pipeline: Pipeline) -> None:
        self.ledger = ledger
        self.health = health
        self.stats = stats
        self.pipeline = pipeline
        self.currency = pipeline.cfg.pricing.currency
        self.attr_names = list(pipeline.cfg.attribution.labels)

    def collect(self) -> Iterator[Metric]:
        """Every family, with cluster=<serve.clusterName> added when set."""
        serve = self.pipeline.cfg.serve
        for family in self._families():
            if serve.clusterName:
                family.samples = [s._replace(labels={**s.labels, serve.clusterLabel: serve.clusterName})
                                  for s in family.samples]
            yield family

    def _families(self) -> Iterator[Metric]:
        snap = self.ledger.snapshot()
        info = GaugeMetricFamily("chargeback_info", "Exporter version and the currency of all cost metrics.",
                                 labels=["version", "currency"])
        info.add_metric([__version__, self.currency], 1)
        yield info
        tenant_cost: dict[tuple[str, tuple[str, ...]], float] = {}
        yield from self._costs(snap, tenant_cost)
        yield from self._periods(snap)
        yield from self._reconciliation()
        fallback = GaugeMetricFamily(
            "chargeback_share_weight_fallback",
            "1 if this shared source's policy had no data in the last interval and fell back to 'weighted'.",
            labels=["shared_from"])
        for source in sorted(self.health.fallbacks):
            fallback.add_metric([source], 1)
        yield fallback
        yield from self._coverage(tenant_cost)
        yield from self._node_prices()
        yield from self._loop(snap.watermark)
        yield from self._sources()

    def _costs(self, snap: Snapshot, tenant_cost: dict[tuple[str, tuple[str, ...]], float]) -> Iterator[Metric]:
        """The cost counters and the hourly rate; fills `tenant_cost` for label coverage by cost."""
        ns_labels = ["namespace", "component", "resource", "shared_from", *self.attr_names]
        cost = CounterMetricFamily(
            "chargeback_namespace_cost",
            "Cost accrued since the exporter started, in currency units; __idle__ holds unallocated capacity.",
            labels=ns_labels)
        rate = GaugeMetricFamily("chargeback_namespace_hourly_cost",
                                 "Cost per hour over the most recently accrued interval, in currency units.",
                                 labels=ns_labels)
        cluster = CounterMetricFamily(
            "chargeback_cluster_cost",
            "Cluster cost accrued since start: nodes, storage, load balancers, network and fixed costs; "
            "the namespace counters sum to it.",
            labels=["resource"])
        pools = CounterMetricFamily(
            "chargeback_shared_cost",
            "What each shared namespace and fixed cost came to before it was distributed over tenants.",
            labels=["shared_from", "resource"])
        node_idle = CounterMetricFamily(
            "chargeback_node_idle_cost", "Unallocated capacity cost per node (before any idle sharing).",
            labels=["node", "resource"])
        waste = CounterMetricFamily(
            "chargeback_namespace_gpu_waste_cost",
            "Allocated GPU cost accrued while dcgm-exporter saw those GPUs idle, in currency units: "
            "GPU cost x (1 - utilisation). A view on chargeback_namespace_cost_total{resource=\"gpu\"}, not "
            "an extra cost.", labels=["namespace", *self.attr_names])
        energy = CounterMetricFamily(
            "chargeback_namespace_energy_joules",
            "Energy accrued per namespace in joules (Kepler's measurement, else a Cloud Carbon Footprint "
            "estimate, times PUE); component=idle is the nodes' unused energy. Not money.",
            labels=["namespace", "component", *self.attr_names])
        carbon = CounterMetricFamily(
            "chargeback_namespace_carbon_grams",
            "Carbon accrued per namespace in grams CO2e: energy times the node's grid intensity.",
            labels=["namespace", "component", *self.attr_names])
        cluster_j = CounterMetricFamily("chargeback_cluster_energy_joules",
                                        "The nodes' energy in joules; the namespace counters sum to it.")
        cluster_g = CounterMetricFamily("chargeback_cluster_carbon_grams",
                                        "The nodes' carbon in grams CO2e; the namespace counters sum to it.")
        family_of = {NamespaceKey: cost, PoolKey: pools, NodeIdleKey: node_idle, ClusterKey: cluster,
                     GpuWasteKey: waste, EnergyKey: energy, CarbonKey: carbon}
        for key, value in sorted(snap.counters.items(), key=_series_order):
            if isinstance(key, ClusterEnergyKey):
                (cluster_j if key.quantity == "energy" else cluster_g).add_metric([], value)
                continue
            family_of[type(key)].add_metric(key.labels(), value)
            if isinstance(key, NamespaceKey) and key.namespace not in (IDLE, SHARED):
                tk = (key.namespace, key.attrs)
                tenant_cost[tk] = tenant_cost.get(tk, 0.0) + value
        for key, value in sorted(snap.hourly.items(), key=_series_order):
            if isinstance(key, NamespaceKey):
                rate.add_metric(key.labels(), value)
        yield from (cost, rate, cluster, pools, node_idle, waste)
        if any(isinstance(k, (EnergyKey, ClusterEnergyKey)) for k in snap.counters):
            yield from (energy, carbon, cluster_j, cluster_g)

    def _node_prices(self) -> Iterator[Metric]:
        h = self.health
        node = GaugeMetricFamily("chargeback_node_hourly_cost",
                                 "A node's full price per hour, with the source that priced it.",
                                 labels=["node", "instance_type", "price_source", "spot"])
        defaulted = 0
        for name, r in sorted(h.rates.items()):
            facts = h.nodes.get(name)
            if facts is not None:
                node.add_metric([name, facts.instance_type, r.source, str(r.spot).lower()], r.hourly(facts))
            defaulted += r.source.startswith("default")
        yield node
        if h.energy_source:
            source = GaugeMetricFamily("chargeback_node_energy_source",
                                       "1 per node, naming where its energy came from: kepler (0.10+), kepler-0.7 "
                                       "(0.7-0.9 metrics) or estimated (Cloud Carbon Footprint's model).",
                                       labels=["node", "source"])
            for name, src in sorted(h.energy_source.items()):
                source.add_metric([name, src], 1)
            yield source
        yield GaugeMetricFamily("chargeback_nodes_default_priced",
                                "Nodes priced at default rates because no pricing metric or price-book rule matched.",
                                value=defaulted)

    def _loop(self, watermark: int | None) -> Iterator[Metric]:
        """The accrual loop's health: up, leadership, label source, last success, watermark, cycles."""
        h = self.health
        yield GaugeMetricFamily("chargeback_up", "1 if the last accrual cycle succeeded.", value=int(h.up))
        if h.leader is not None:
            yield GaugeMetricFamily("chargeback_leader", "1 on the replica holding the Lease (the one that accrues).",
                                    value=int(h.leader))
        if h.metadata is not None:
            src = GaugeMetricFamily("chargeback_label_source_info",
                                    "Where attribution labels are read from: kubernetes or prometheus.",
                                    labels=["source"])
            src.add_metric([h.metadata.source], 1)
            yield src
        if h.last_success is not None:
            yield GaugeMetricFamily("chargeback_last_success_timestamp_seconds",
                                    "When the last accrual cycle succeeded.", value=h.last_success)
        if watermark is not None:  # labelled with the ledger it belongs to: read back by that, not by job
            mark = GaugeMetricFamily(WATERMARK, "Watermark: cost is accrued up to this time; read back after a "
                                     "restart by its chargeback_ledger label.", labels=[LEDGER])
            mark.add_metric([self.pipeline.cfg.serve.ledger()], watermark)
            yield mark
        if h.cycle_seconds is not None:
            yield GaugeMetricFamily("chargeback_cycle_duration_seconds", "Duration of the last accrual cycle.",
                                    value=h.cycle_seconds)
        cycles = CounterMetricFamily("chargeback_cycles", "Accrual cycles by result.", labels=["result"])
        for result, n in sorted(h.cycles.items()):
            cycles.add_metric([result], n)
        yield cycles

    def _sources(self) -> Iterator[Metric]:
        """What the inputs were like: queries and their errors, coverage gaps, warnings."""
        h = self.health
        yield CounterMetricFamily("chargeback_prometheus_queries", "PromQL queries sent.", value=self.stats.queries)
        errors = CounterMetricFamily("chargeback_prometheus_query_errors",
                                     "PromQL queries that failed, by reason.", labels=["reason"])
        for reason in ("unreachable", "timeout", "query_error", "bad_response", "partial_response", "sample_limit"):
            errors.add_metric([reason], self.stats.errors_by_reason.get(reason, 0))
        yield errors
        uncovered = CounterMetricFamily("chargeback_uncovered_seconds",
                                        "Accrued seconds not costed because this source's data was missing "
                                        "longer than maxGapBridge (or before its first sample).", labels=["source"])
        bridged = CounterMetricFamily("chargeback_bridged_seconds",
                                      "Accrued seconds costed with this source's last known state over a gap.",
                                      labels=["source"])
        for source in SOURCES:
            uncovered.add_metric([source], h.uncovered_seconds.get(source, 0))
            bridged.add_metric([source], h.bridged_seconds.get(source, 0))
        yield uncovered
        yield bridged
        warned = CounterMetricFamily("chargeback_warnings", "Warnings by kind (each kind is logged at most hourly).",
                                     labels=["kind"])
        for kind, n in sorted(self.pipeline.warnings.counts().items()):
            warned.add_metric([kind], n)
        yield warned

    def _coverage(self, tenant_cost: dict[tuple[str, tuple[str, ...]], float]) -> Iterator[Metric]:
        """Label coverage by pod count (from the latest metadata) and by accrued cost."""
        ratio = GaugeMetricFamily("chargeback_label_coverage_ratio",
                                  "Share of pods (basis=pods) or of tenant cost (basis=cost) carrying the label.",
                                  labels=["label", "basis"])
        missing = CounterMetricFamily("chargeback_unattributed_cost",
                                      "Cost accrued to __unattributed__ for lack of this label, in currency units.",
                                      labels=["label"])
        keys = list(self.pipeline.cfg.attribution.labels.values())
        meta = self.health.metadata
        if meta is not None:
            for name, key in zip(self.attr_names, keys, strict=True):
                ratio.add_metric([name, "pods"], coverage_by_pods(meta, [key])[key])
        for name, (share, lost) in coverage_by_cost(tenant_cost, self.attr_names).items():
            ratio.add_metric([name, "cost"], share)
            missing.add_metric([name], lost)
        yield ratio
        yield missing

    def _periods(self, snap: Snapshot) -> Iterator[Metric]:
        """Calendar period-to-date cost, period bounds, efficiency and annotation budgets."""
        periods, starts, eff = snap.periods, snap.period_starts, snap.efficiency
        cost = GaugeMetricFamily(
            "chargeback_period_cost",
            "Cost so far in the current calendar period (UTC; weeks start Monday), in currency units.",
            labels=["period", "period_start", "namespace", *self.attr_names])
        for key, value in sorted(periods.items()):
            cost.add_metric(list(key), value)
        yield cost
        start_f = GaugeMetricFamily("chargeback_period_start_timestamp_seconds", "Start of the current period.",
                                    labels=["period"])
        end_f = GaugeMetricFamily("chargeback_period_end_timestamp_seconds", "End of the current period.",
                                  labels=["period"])
        for period, start in sorted(starts.items()):
            start_f.add_metric([period], start)
            end_f.add_metric([period], period_bounds(period, start)[1])
        yield start_f
        yield end_f
        ratio = GaugeMetricFamily("chargeback_namespace_efficiency_ratio",
                                  "Usage over requests in the most recently accrued interval.",
                                  labels=["namespace", "resource"])
        gpu = GaugeMetricFamily("chargeback_namespace_gpu_efficiency_ratio",
                                "Busy over observed GPU time (dcgm-exporter) of the GPUs the namespace held in the "
                                "most recently accrued interval.", labels=["namespace"])
        for (ns, res), v in sorted(eff.items()):
            if res == "gpu":
                gpu.add_metric([ns], v)
            else:
                ratio.add_metric([ns, res], v)
        yield ratio
        yield gpu
        budget = GaugeMetricFamily("chargeback_budget_amount",
                                   "Budgets declared as chargeback.io/budget-* namespace annotations.",
                                   labels=["namespace", "period", "notify"])
        meta = self.health.metadata
        if meta is not None:
            for b in annotation_budgets(meta)[0]:
                budget.add_metric([b.namespace, b.period, b.notify], b.amount)
        yield budget

    def _reconciliation(self) -> Iterator[Metric]:
        """The bill against the computed cost for the reconciliation window (labelled, so re-runs replace)."""
        rec = self.health.reconciliation
        if rec is None:
            return
        labels = ["category", "window_start", "window_end"]
        span = [str(rec.window.start), str(rec.window.end)]
        ratio = GaugeMetricFamily("chargeback_reconciliation_variance_ratio",
                                  "(computed - bill) / bill per category for the reconciled window.", labels=labels)
        bill = GaugeMetricFamily("chargeback_bill_cost", "Matched bill cost per category for the window.",
                                 labels=labels)
        computed = GaugeMetricFamily("chargeback_reconciliation_computed_cost",
                                     "chargeback's computed cost per category for the window.", labels=labels)
        for category in rec.bill:
            variance = rec.variance(category)
            if variance is not None:
                ratio.add_metric([category, *span], variance)
            bill.add_metric([category, *span], rec.bill[category])
            computed.add_metric([category, *span], rec.computed[category])
        if rec.total_variance is not None:
            ratio.add_metric(["total", *span], rec.total_variance)
        unmatched = GaugeMetricFamily("chargeback_bill_unmatched_cost",
                                      "Bill cost matching no cluster resource, by service, for the window.",
                                      labels=["service", "window_start", "window_end"])
        for service, cost in sorted(rec.unmatched.items()):
            unmatched.add_metric([service, *span], cost)
        yield from (ratio, bill, computed, unmatched)
