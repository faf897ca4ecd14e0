"""Accrual: the exporter's counters and watermark, advanced one costed interval (batch) at a time.

Two rules keep `increase()` in Prometheus exact across restarts:

* Counters and the watermark change together, under one lock, so every scrape is a
  consistent snapshot. After a restart the exporter reads the last *scraped* watermark
  back from Prometheus and re-accrues from there: nothing unscraped is lost, nothing
  scraped is counted twice (the counter reset is handled by `increase()`).
* A series that does not exist yet is first exposed at 0 and the batch that creates it
  waits for one scrape, because `increase()` cannot see a counter's first sample.

Pure state, no I/O: the server feeds batches in and calls `scraped()` from /metrics.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field

from .allocation import IDLE, OVERHEAD, CostResult
from .errors import DataError
from .window import PERIODS, iso, period_bounds

log = logging.getLogger(__name__)

# ("namespace", namespace, component, resource, shared_from, *attribution values),
# ("cluster", resource), ("pool", shared_from, resource) or ("node_idle", node, resource)
CounterKey = tuple[str, ...]


@dataclass(frozen=True)
class Batch:
    start: int
    end: int
    costs: dict[CounterKey, float]
    # (namespace, resource) -> usage / request over the batch, for efficiency alerts
    efficiency: dict[tuple[str, str], float] = field(default_factory=dict)


def batch_from(result: CostResult, n_attrs: int) -> Batch:
    """Flatten a window's cost entries into counter increments (attribution padded to `n_attrs`)."""
    costs: dict[CounterKey, float] = {}

    def add(key: CounterKey, v: float) -> None:
        if v:
            costs[key] = costs.get(key, 0.0) + v

    for (ns, attrs, component, res, source), cost in result.costs.items():
        padded = tuple(attrs) + ("",) * (n_attrs - len(attrs))
        add(("namespace", ns, component, res, source, *padded), cost)
    for (_node, res), cost in result.node_cost.items():
        add(("cluster", res), cost)
    for (ns, node, _attrs), line in result.table.items():
        if ns == IDLE:
            for res, cost in line.cost_by_resource().items():
                add(("node_idle", node, res), cost)
    for (source, res), cost in result.pools.items():
        add(("pool", source, res), cost)
        if res == OVERHEAD:
            add(("cluster", res), cost)
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
    return Batch(result.start, result.end, costs, efficiency)


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape publishes, copied under one lock so it is mutually consistent."""

    counters: dict[CounterKey, float]
    watermark: int | None
    hourly: dict[CounterKey, float]
    efficiency: dict[tuple[str, str], float]
    periods: dict[CounterKey, float]
    period_starts: dict[str, int]


@dataclass
class Ledger:
    """Counters, watermark and the queue of batches not yet applied."""

    watermark: int | None = None
    counters: dict[CounterKey, float] = field(default_factory=dict)
    hourly: dict[CounterKey, float] = field(default_factory=dict)  # rate of the last applied batch
    efficiency: dict[tuple[str, str], float] = field(default_factory=dict)
    # Calendar period-to-date cost per (period, period start, namespace, *attribution); reset at boundaries.
    periods: dict[CounterKey, float] = field(default_factory=dict)
    period_starts: dict[str, int] = field(default_factory=dict)
    max_pending: int = 240
    pending: deque[Batch] = field(default_factory=deque)
    # After reaching UTC midnight, wait for one scrape: reports then find every day boundary exactly.
    hold: bool = False
    exposed: set[CounterKey] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def frontier(self) -> int | None:
        """Where the next batch starts: after the last queued batch, else at the watermark."""
        return self.pending[-1].end if self.pending else self.watermark

    def offer(self, batch: Batch) -> None:
        """Queue a batch; one with a non-finite amount is refused whole (a NaN in a counter is forever)."""
        bad = next((k for k, v in batch.costs.items() if not math.isfinite(v)), None)
        if bad is not None:
            raise DataError(f"refusing to accrue {batch.costs[bad]} for {'/'.join(bad)} in "
                            f"{iso(batch.start)}..{iso(batch.end)}: the interval is retried next cycle")
        with self.lock:
            if self.frontier is not None and batch.start != self.frontier:
                raise ValueError(f"batch starts at {batch.start}, expected {self.frontier}")
            self.pending.append(batch)
            self._settle()

    def scraped(self) -> Snapshot:
        """Snapshot for a scrape, taken before any held batch is released; it now counts as exposed."""
        with self.lock:
            snap = Snapshot(dict(self.counters), self.watermark, dict(self.hourly), dict(self.efficiency),
                            dict(self.periods), dict(self.period_starts))
            self.exposed.update(snap.counters)
            self.hold = False
            self._settle()
            return snap

    def _settle(self) -> None:
        while self.pending and not (self.hold and len(self.pending) <= self.max_pending):
            head = self.pending[0]
            new = [k for k in head.costs if k not in self.exposed]
            if new and len(self.pending) <= self.max_pending:
                for k in new:
                    self.counters.setdefault(k, 0.0)
                return
            if new:
                log.warning("no scrape for %d intervals; applying without exposing %d new series at 0 first",
                            len(self.pending), len(new))
            self.pending.popleft()
            for k, v in head.costs.items():
                self.counters[k] = self.counters.get(k, 0.0) + v
            hours = (head.end - head.start) / 3600
            self.hourly = {k: v / hours for k, v in head.costs.items()}
            self.efficiency = dict(head.efficiency)
            self._add_periods(head)
            self.watermark = head.end
            self.hold = head.end % 86400 == 0

    def _add_periods(self, batch: Batch) -> None:
        """Accumulate period-to-date cost; a batch never straddles a UTC day boundary (the server splits)."""
        for period in PERIODS:
            start, _end = period_bounds(period, batch.start)
            if self.period_starts.get(period) != start:
                self.periods = {k: v for k, v in self.periods.items() if k[0] != period}
                self.period_starts[period] = start
            for key, v in batch.costs.items():
                if key[0] == "namespace":
                    pk = (period, str(start), key[1], *key[5:])
                    self.periods[pk] = self.periods.get(pk, 0.0) + v

    def reset(self) -> None:
        """Forget everything (lost leadership): the next leader term reads the watermark back."""
        with self.lock:
            self.watermark = None
            self.counters.clear()
            self.hourly.clear()
            self.efficiency.clear()
            self.periods.clear()
            self.period_starts.clear()
            self.pending.clear()
            self.exposed.clear()

    def restore_periods(self, period_starts: dict[str, int], periods: dict[CounterKey, float]) -> None:
        """Resume period-to-date sums read back from Prometheus after a restart (non-finite ones ignored)."""
        for key in [k for k, v in periods.items() if not math.isfinite(v)]:
            log.warning("ignoring non-finite period-to-date cost %s read back for %s", periods[key], "/".join(key))
        periods = {k: v for k, v in periods.items() if math.isfinite(v)}
        with self.lock:
            self.period_starts.update(period_starts)
            self.periods.update(periods)
