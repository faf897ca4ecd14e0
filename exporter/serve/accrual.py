"""Accrual: the exporter's counters and watermark, advanced one costed interval (batch) at a time.

Three rules keep `increase()` in Prometheus exact across restarts, failovers and several scrapers:

* Counters and the watermark change together, under one lock, so every scrape is a
  consistent snapshot. After a restart (or on becoming leader) the exporter reads the last
  *scraped* watermark back from Prometheus and re-accrues from there: nothing unscraped is
  lost, nothing scraped is counted twice (the counter reset is handled by `increase()`).
* A series that does not exist yet is exposed at 0 for `expose_for` seconds before the batch
  that creates it applies, because `increase()` cannot see a counter's first sample. The hold
  is on the clock, not on scrapes, so every scraper whose interval is shorter sees the 0; the
  watermark likewise rests at UTC midnight for `expose_for`, so reports find each day boundary.
* Every batch carries the leadership term it was computed under; one from an ended term is
  dropped, and only the read-back sets the frontier of a new term.

Pure state, no I/O: the accrual loop offers batches and calls `tick()`; /metrics only reads `snapshot()`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from exporter.core.allocation import OVERHEAD, CostResult
from exporter.core.gpuwaste import table_groups
from exporter.core.names import IDLE
from exporter.core.window import PERIODS, iso, period_bounds
from exporter.vocab.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class NamespaceKey:
    """One chargeback_namespace_cost series: attribution values in `attribution.labels` order."""

    family: ClassVar[str] = "namespace"

    namespace: str
    component: str
    resource: str
    shared_from: str
    attrs: tuple[str, ...] = ()

    def labels(self) -> list[str]:
        return [self.namespace, self.component, self.resource, self.shared_from, *self.attrs]


@dataclass(frozen=True, order=True)
class ClusterKey:
    """One chargeback_cluster_cost series."""

    family: ClassVar[str] = "cluster"

    resource: str

    def labels(self) -> list[str]:
        return [self.resource]


@dataclass(frozen=True, order=True)
class PoolKey:
    """One chargeback_shared_cost series: a shared namespace or fixed cost before distribution."""

    family: ClassVar[str] = "pool"

    shared_from: str
    resource: str

    def labels(self) -> list[str]:
        return [self.shared_from, self.resource]


@dataclass(frozen=True, order=True)
class NodeIdleKey:
    """One chargeback_node_idle_cost series."""

    family: ClassVar[str] = "node_idle"

    node: str
    resource: str

    def labels(self) -> list[str]:
        return [self.node, self.resource]


@dataclass(frozen=True, order=True)
class GpuWasteKey:
    """One chargeback_namespace_gpu_waste_cost series: a view on allocated GPU cost, not a cost."""

    family: ClassVar[str] = "gpu_waste"

    namespace: str
    attrs: tuple[str, ...] = ()

    def labels(self) -> list[str]:
        return [self.namespace, *self.attrs]


@dataclass(frozen=True, order=True)
class EnergyKey:
    """One chargeback_namespace_energy_joules series (exporter/core/energy.py): joules, not money."""

    family: ClassVar[str] = "namespace_energy"

    namespace: str
    component: str  # allocated | idle
    attrs: tuple[str, ...] = ()

    def labels(self) -> list[str]:
        return [self.namespace, self.component, *self.attrs]


@dataclass(frozen=True, order=True)
class CarbonKey(EnergyKey):
    """One chargeback_namespace_carbon_grams series."""

    family: ClassVar[str] = "namespace_carbon"


@dataclass(frozen=True, order=True)
class ClusterEnergyKey:
    """chargeback_cluster_energy_joules (quantity "energy") or chargeback_cluster_carbon_grams ("carbon")."""

    family: ClassVar[str] = "cluster_energy"

    quantity: str

    def labels(self) -> list[str]:
        return []


CounterKey = NamespaceKey | ClusterKey | PoolKey | NodeIdleKey | GpuWasteKey | EnergyKey | ClusterEnergyKey
PeriodKey = tuple[str, ...]  # (period, period start, namespace, *attribution values): flat, as read back


@dataclass(frozen=True)
class Batch:
    start: int
    end: int
    costs: dict[CounterKey, float]
    # (namespace, resource) -> usage / request over the batch, for efficiency alerts
    efficiency: dict[tuple[str, str], float] = field(default_factory=dict)
    term: int = 0  # the leadership term it was computed under


def batch_from(result: CostResult, n_attrs: int, term: int = 0) -> Batch:
    """Flatten a window's cost entries into counter increments (attribution padded to `n_attrs`).

    The cluster counter gets every cost the namespaces receive: nodes, assets (storage, load
    balancers, network) and fixed costs, so the namespace counters sum to it.
    """
    costs: dict[CounterKey, float] = {}

    def add(key: CounterKey, v: float) -> None:
        if v:
            costs[key] = costs.get(key, 0.0) + v

    for (ns, attrs, component, res, source), cost in result.costs.items():
        padded = tuple(attrs) + ("",) * (n_attrs - len(attrs))
        add(NamespaceKey(ns, component, res, source, padded), cost)
    for (_node, res), cost in result.node_cost.items():
        add(ClusterKey(res), cost)
    for (_asset, res), cost in result.asset_cost.items():
        add(ClusterKey(res), cost)
    for (ns, node, _attrs), line in result.table.items():
        if ns == IDLE:
            for res, cost in line.cost_by_resource().items():
                add(NodeIdleKey(node, res), cost)
    for (ns, _node, attrs), line in result.table.items():  # a view on allocated GPU cost, not a cost
        if ns != IDLE:
            add(GpuWasteKey(ns, tuple(attrs) + ("",) * (n_attrs - len(attrs))), line.gpu_waste_cost)
    for (source, res), cost in result.pools.items():
        add(PoolKey(source, res), cost)
        if res == OVERHEAD:
            add(ClusterKey(res), cost)
    add_energy(result, n_attrs, add)
    usage: dict[str, list[float]] = {}
    for (ns, _node, _attrs), line in result.table.items():
        u = usage.setdefault(ns, [0.0, 0.0, 0.0, 0.0])
        u[0] += line.cpu_usage_seconds
        u[1] += line.cpu_request_seconds
        u[2] += line.ram_usage_byte_seconds
        u[3] += line.ram_request_byte_seconds
    efficiency = {}
    for ns, (cu, cr, mu, mr) in usage.items():
        if cr > 0:
            efficiency[(ns, "cpu")] = cu / cr
        if mr > 0:
            efficiency[(ns, "memory")] = mu / mr
    for g in table_groups(result, None):
        if (ratio := g.efficiency) is not None:
            efficiency[(g.name, "gpu")] = ratio  # busy over observed GPU time (exporter/core/gpuwaste.py)
    return Batch(result.start, result.end, costs, efficiency, term)


def add_energy(result: CostResult, n_attrs: int, add: Callable[[CounterKey, float], None]) -> None:
    """Energy and carbon counters: per (namespace, component, owner), and the cluster's, which are the
    nodes' totals (the namespaces, __idle__ included, add up to them)."""
    e = result.energy
    for (ns, _node, attrs, component), joules in e.joules.items():
        padded = tuple(attrs) + ("",) * (n_attrs - len(attrs))
        add(EnergyKey(ns, component, padded), joules)
        add(CarbonKey(ns, component, padded), e.grams.get((ns, _node, attrs, component), 0.0))
    for joules in e.node_joules.values():
        add(ClusterEnergyKey("energy"), joules)
    for grams in e.node_grams.values():
        add(ClusterEnergyKey("carbon"), grams)


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape publishes, copied under one lock so it is mutually consistent."""

    counters: dict[CounterKey, float]
    watermark: int | None
    hourly: dict[CounterKey, float]
    efficiency: dict[tuple[str, str], float]
    periods: dict[PeriodKey, float]
    period_starts: dict[str, int]


@dataclass
class Ledger:
    """Counters, watermark and the queue of batches not yet applied, for one leadership term."""

    watermark: int | None = None
    counters: dict[CounterKey, float] = field(default_factory=dict)
    hourly: dict[CounterKey, float] = field(default_factory=dict)  # rate of the last applied batch
    efficiency: dict[tuple[str, str], float] = field(default_factory=dict)
    # Calendar period-to-date cost per (period, period start, namespace, *attribution); reset at boundaries.
    periods: dict[PeriodKey, float] = field(default_factory=dict)
    period_starts: dict[str, int] = field(default_factory=dict)
    # Seconds a new series shows 0 before its first increment, and the watermark rests at UTC midnight.
    expose_for: float = 0.0
    clock: Callable[[], float] = time.time
    # The current leadership term (0 without leader election); None while not leading: nothing is accepted.
    term: int | None = 0
    # Backpressure: the accrual loop computes no further batch while this many wait.
    max_pending: int = 240
    pending: deque[Batch] = field(default_factory=deque)
    exposed: dict[CounterKey, float] = field(default_factory=dict)  # series -> when it was first shown at 0
    hold_until: float = 0.0  # set when a day's last batch applies: the next one waits until then
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def frontier(self) -> int | None:
        """Where the next batch starts: after the last queued batch, else at the watermark."""
        return self.pending[-1].end if self.pending else self.watermark

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.max_pending

    def begin(self, watermark: int, term: int | None, period_starts: dict[str, int] | None = None,
              periods: dict[PeriodKey, float] | None = None) -> bool:
        """Set the frontier of a term from the read-back (with its period-to-date sums); False if the term ended."""
        periods = dict(periods or {})
        for key in [k for k, v in periods.items() if not math.isfinite(v)]:
            log.warning("ignoring non-finite period-to-date cost %s read back for %s", periods.pop(key), "/".join(key))
        with self.lock:
            if term is None or term != self.term or self.frontier is not None:
                log.info("accrual start at %s dropped: leadership term %s is not current", iso(watermark), term)
                return False
            self.watermark = watermark
            self.period_starts.update(period_starts or {})
            self.periods.update(periods)
            return True

    def offer(self, batch: Batch) -> bool:
        """Queue a batch; False (dropped, never applied) if it was computed under a term that has ended.

        A batch with a non-finite amount is refused whole (a NaN in a counter is there for good)."""
        bad = next((k for k, v in batch.costs.items() if not math.isfinite(v)), None)
        if bad is not None:
            raise DataError(f"refusing to accrue {batch.costs[bad]} for {'/'.join([bad.family, *bad.labels()])} in "
                            f"{iso(batch.start)}..{iso(batch.end)}: the interval is retried next cycle")
        with self.lock:
            if batch.term != self.term:
                log.info("dropped the piece %s..%s of leadership term %d: the current term is %s",
                         iso(batch.start), iso(batch.end), batch.term, self.term)
                return False
            if self.frontier is None or batch.start != self.frontier:
                raise ValueError(f"batch starts at {batch.start}, expected {self.frontier}")
            now = self.clock()
            for k in batch.costs:
                if k not in self.exposed:  # shown at 0 from now on; the batch waits out `expose_for`
                    self.exposed[k] = now
                    self.counters.setdefault(k, 0.0)
            self.pending.append(batch)
            self._settle(now)
            return True

    def tick(self) -> float | None:
        """Apply every batch whose holds are over; the seconds until the next one can apply (None: none waits)."""
        with self.lock:
            now = self.clock()
            self._settle(now)
            return self._ready_at() - now if self.pending else None

    def snapshot(self) -> Snapshot:
        """What a scrape publishes. Pure: scrapes never release or apply anything."""
        with self.lock:
            return Snapshot(dict(self.counters), self.watermark, dict(self.hourly), dict(self.efficiency),
                            dict(self.periods), dict(self.period_starts))

    def _ready_at(self) -> float:
        head = self.pending[0]
        return max([self.hold_until, *(self.exposed[k] + self.expose_for for k in head.costs)])

    def _settle(self, now: float) -> None:
        while self.pending and self._ready_at() <= now:
            head = self.pending.popleft()
            for k, v in head.costs.items():
                self.counters[k] = self.counters.get(k, 0.0) + v
            hours = (head.end - head.start) / 3600
            self.hourly = {k: v / hours for k, v in head.costs.items()}
            self.efficiency = dict(head.efficiency)
            self._add_periods(head)
            self.watermark = head.end
            if head.end % 86400 == 0:
                self.hold_until = now + self.expose_for

    def _add_periods(self, batch: Batch) -> None:
        """Accumulate period-to-date cost; a batch never straddles a UTC day boundary (the server splits)."""
        for period in PERIODS:
            start, _end = period_bounds(period, batch.start)
            if self.period_starts.get(period) != start:
                self.periods = {k: v for k, v in self.periods.items() if k[0] != period}
                self.period_starts[period] = start
            for key, v in batch.costs.items():
                if isinstance(key, NamespaceKey):
                    pk = (period, str(start), key.namespace, *key.attrs)
                    self.periods[pk] = self.periods.get(pk, 0.0) + v

    def reset(self, term: int | None = None) -> None:
        """Forget everything and end the current term (lost leadership, or `term` begins).

        Work still in flight carries the old term and is dropped; the frontier stays None
        until the new term reads the watermark back from Prometheus.
        """
        with self.lock:
            self.term = term
            self.watermark = None
            self.counters.clear()
            self.hourly.clear()
            self.efficiency.clear()
            self.periods.clear()
            self.period_starts.clear()
            self.pending.clear()
            self.exposed.clear()
            self.hold_until = 0.0
