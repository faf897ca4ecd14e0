"""`chargeback serve`: the accrual loop, and what the HTTP endpoints ask of it (routing: serve/httpapi.py).

The loop never exits on bad input: a failed cycle sets `chargeback_up 0`, keeps the
last good values and retries from the same watermark next cycle, so no cost is lost.
"""

from __future__ import annotations

import glob
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.config.schema import Config, override
from exporter.core.coverage import open_gap, waiting_reason
from exporter.core.window import PERIODS, Window, iso, parse_instant, parse_window, period_bounds
from exporter.engine.limits import check_window
from exporter.engine.pipeline import Pipeline
from exporter.engine.warnlog import WarningLog
from exporter.outputs.allocbody import AllocationBody
from exporter.outputs.allocbody import response as allocation_sets
from exporter.outputs.allocrows import cluster_name
from exporter.outputs.opencost_api import AllocationQuery, parse_query
from exporter.outputs.podvolumes import volume_ids
from exporter.serve.accrual import Ledger, PeriodKey, batch_from
from exporter.serve.collector import ChargebackCollector, Health
from exporter.serve.leader import LeaseElector
from exporter.sources.kube import load_api_client, metadata_source
from exporter.sources.promql import LEDGER, OwnSeries, join_matchers, own_label
from exporter.sources.resultcache import CachingClient
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ChargebackError, ConfigError, DataError

log = logging.getLogger(__name__)

WARNING_LOG_INTERVAL = 3600.0  # seconds between two log lines of one warning kind


def _parse_time(text: str) -> int:
    """`--start`/`--until`: the same parser as allocate's windows (UTC without a zone, unix seconds)."""
    return int(parse_instant(text))


def own_series(cfg: Config) -> OwnSeries:
    """The queries over this exporter's own series (serve.watermarkSelector is deprecated but still narrows)."""
    if cfg.serve.watermarkSelector is not None:
        log.warning("serve.watermarkSelector is deprecated: the watermark is found by its %s label under any "
                    "scrape job; remove the key (it still narrows the search to %s)", LEDGER,
                    cfg.serve.watermarkSelector)
    return OwnSeries.of(cfg.serve, cfg.prometheus.clusterSelector)


class Exporter:
    """Owns the ledger and runs accrual cycles; thread-safe for the HTTP handlers."""

    def __init__(self, cfg: Config, until: str | None = None) -> None:
        self.cfg = cfg
        # Answers about the settled past (older than serve.lag, what accrual takes as final) are kept a few
        # minutes: OpenCost clients ask the same windows, so the same chunk queries, again and again.
        self.client = CachingClient(cfg.prometheus, settled=parse_duration(cfg.serve.lag),
                                    max_points=cfg.api.cachePoints)
        self.metadata = metadata_source(cfg.attribution, watch=True)
        self.own = own_series(cfg)
        # One warning log for every pipeline of the process: a kind is logged at most hourly, all counted.
        self.warnings = WarningLog(every=WARNING_LOG_INTERVAL)
        self.pipeline = Pipeline(cfg, self.client, self.metadata, self.warnings)
        # Steady state: each 1-step cycle reads the mixin's recorded series where its rules ran (one cheap
        # heartbeat query), so the per-container work is the rule engine's, once per interval.
        self.pipeline.fetcher.min_recorded_steps = 1
        # A partial answer fails the cycle (retried next cycle): accrued history is never left uncovered
        # for a store that is only briefly away.
        self.pipeline.partial_fails = True
        self.ledger = Ledger(expose_for=cfg.serve.expose_seconds())
        self.health = Health()
        self.step = self.pipeline.step
        self.interval = parse_duration(cfg.serve.interval)
        self.lag = parse_duration(cfg.serve.lag)
        self.start = _parse_time(cfg.serve.start) if cfg.serve.start else None
        self.until = _parse_time(until) if until else None
        self.stop = threading.Event()
        self.clock: Callable[[], float] = time.time  # liveness reads it; tests inject their own
        self.progress_at = self.clock()  # last finished cycle or accrued chunk
        self.last_reconcile = 0.0
        self.reconciler: threading.Thread | None = None
        self.elector: LeaseElector | None = None
        le = cfg.serve.leaderElection
        if le.enabled:
            identity = os.environ.get("POD_NAME") or socket.gethostname()
            # Each acquisition starts a term with an empty ledger; a loss ends it (term None: accept nothing).
            self.elector = LeaseElector(load_api_client(le.kubeconfig), le.namespace, le.name, identity,
                                        parse_duration(le.leaseDuration), on_lost=self.ledger.reset,
                                        on_acquired=self.ledger.reset)
            self.ledger.term = None
            self.health.leader = False
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ChargebackCollector(self.ledger, self.health, self.client.stats, self.pipeline))

    def close(self) -> None:
        """Stop the accrual loop and any Kubernetes watches."""
        self.stop.set()
        if self.elector is not None:
            self.elector.stop.set()
        owner = getattr(self.metadata, "__self__", None)
        if owner is not None:
            owner.close()

    def read_watermark(self) -> int | None:
        """The last watermark Prometheus scraped from any replica of us (so no volume is needed), found by
        its chargeback_ledger label under whatever job scraped it. None only if no watermark could be
        ours: with serve.start set, another ledger's in scope refuses the start (it may be ours renamed)."""
        lookback, now = self.cfg.serve.watermarkLookback, time.time()
        # `or on () vector(-1)` answers "no watermark" explicitly: an empty answer then means the client left
        # a NaN/Inf out, and starting over from serve.start would count the past twice.
        rows = self.client.query(self.own.watermark(lookback), now)
        if not rows:
            raise DataError("the watermark read back from Prometheus is not a finite number; not accruing")
        found = {lb.get(self.own.cluster_label, ""): v for lb, v in rows if v >= 0}
        if len(found) > 1:
            raise DataError(f"watermarks of {LEDGER}={self.own.ledger!r} come from several clusters "
                            f"({', '.join(sorted(found))}); scope this exporter with prometheus.clusterSelector, "
                            "or give each cluster's exporter its own serve.clusterName")
        if found:
            return int(max(found.values()))
        others = sorted(f"{LEDGER}={lb.get(LEDGER, '')!r} (job {lb.get('job', '')!r})"
                        for lb, _v in self.client.query(self.own.other_watermarks(lookback), now))
        if others and self.start is not None:
            raise DataError(f"no watermark of {LEDGER}={self.own.ledger!r} in Prometheus but {', '.join(others)}: "
                            "starting at serve.start would accrue that history twice if it was this exporter's; "
                            "restore its serve.clusterName (or remove serve.watermarkSelector), or scope this "
                            "exporter with prometheus.clusterSelector")
        if others:
            log.warning("no watermark of %s=%r in Prometheus (other exporters': %s); accruing from now",
                        LEDGER, self.own.ledger, ", ".join(others))
        return None

    def read_periods(self, watermark: int) -> tuple[dict[str, int], dict[PeriodKey, float]]:
        """Read back the period-to-date sums of the periods the watermark falls in (same scrape as it)."""
        s = self.cfg.serve
        starts, sums = {}, {}
        names = ["period", "period_start", "namespace", *self.cfg.attribution.labels]
        for period in PERIODS:
            start = period_bounds(period, watermark)[0]
            if start == watermark:
                continue  # the next interval opens a new period
            rows = self.client.query(self.own.period_cost(period, start, names, s.watermarkLookback), time.time())
            starts[period] = start
            for labels, value in rows:
                sums[tuple(own_label(labels, n) for n in names)] = value
        return starts, sums

    def begin(self, now: float, term: int) -> bool:
        """Start a term (or a run): the frontier comes only from the watermark read back from Prometheus."""
        found = self.read_watermark()
        initial = found if found is not None else (self.start or int(now - self.lag))
        initial = initial // self.step * self.step
        starts, sums = self.read_periods(initial) if found is not None else ({}, {})
        if not self.ledger.begin(initial, term, starts, sums):
            return False
        log.info("accrual starts at %s (%s)", iso(initial),
                 "watermark read back from Prometheus" if found is not None else "no watermark in Prometheus")
        if found is not None:
            log.info("restored period-to-date cost for %s (%d series)", ", ".join(starts) or "no period", len(sums))
        return True

    def cycle(self, now: float) -> int:
        """One accrual cycle: catch up from the frontier to now - lag; returns the chunks costed. Its answers
        stay out of the API's cache (each step is asked once: kept, they only held memory, docs/scale.md)."""
        with self.client.uncached():
            return self._cycle(now)

    def _cycle(self, now: float) -> int:
        term = self.ledger.term
        if term is None:
            return 0  # not leading
        self.ledger.tick()
        if self.ledger.frontier is None and not self.begin(now, term):
            return 0
        frontier = self.ledger.frontier
        if frontier is None:
            return 0  # the term ended since
        target = int(now - self.lag) // self.step * self.step
        if self.until is not None:
            target = min(target, self.until)
        if target <= frontier:
            return 0
        # Pieces never cross UTC midnight, so each falls in one day, week and month for budgets.
        pieces = Window(frontier, target, self.step).chunks(self.pipeline.chunk, boundary=86400)
        for i, piece in enumerate(pieces, 1):
            if self.stop.is_set() or self.ledger.full:
                break  # full: held batches wait for their exposure time; the next cycle goes on
            segments = self.pipeline.coverage_plan(piece, now)
            waiting = open_gap(segments, now, self.pipeline.queries.max_gap_bridge)
            if waiting is not None:  # a source is missing and may yet come back: accrue up to it, retry later
                segments = [s for s in segments if s.end <= waiting.start]
                if not segments:
                    log.info("waiting for data: %s", waiting_reason(waiting))
                    return i - 1
                piece = Window(piece.start, segments[-1].end, self.step)
            result = self.pipeline.compute_chunk(piece, segments)
            batch = batch_from(result, len(self.cfg.attribution.labels), term)
            if self.elector is not None and not self.elector.holds(term):
                log.info("dropped the piece %s..%s: leadership term %d ended while it was computed",
                         iso(piece.start), iso(piece.end), term)
                break
            if not self.ledger.offer(batch):
                break
            self.progress_at = self.clock()
            self.health.publish(result)
            for line in result.coverage.warnings():
                log.warning(line)
            if waiting is not None:
                return i
            if len(pieces) > 1:
                log.info("catching up: %d/%d chunks, accrued to %s", i, len(pieces), iso(piece.end))
        return len(pieces)

    def run_once(self) -> None:
        started = time.monotonic()
        self.health.last_attempt = time.time()
        if self.elector is not None:
            self.health.leader = self.elector.leader.is_set()
            if not self.health.leader:
                self.health.up = True  # a healthy standby: nothing to accrue
                self.health.last_error = None
                self.progress_at = self.clock()
                return
        try:
            self.cycle(time.time())
        except ChargebackError as e:
            self._failed(str(e))
        except Exception as e:  # never crash-loop: report, keep serving, retry next cycle
            log.exception("accrual cycle failed unexpectedly")
            self._failed(f"unexpected {type(e).__name__}: {e}")
        else:
            self.health.up = True
            self.health.last_error = None
            self.health.last_success = time.time()
            self.health.cycles["success"] += 1
        self.health.cycle_seconds = time.monotonic() - started
        self.progress_at = self.clock()

    def _failed(self, message: str) -> None:
        if message != self.health.last_error:
            log.error("accrual cycle failed: %s", message)
        self.health.up = False
        self.health.last_error = message
        self.health.cycles["failure"] += 1

    def reconcile_once(self) -> None:
        """Re-read the bills and compare them with the computed cost of the reconciliation window."""
        from exporter.outputs.reconcile import inventory, reconcile
        from exporter.sources.billing import read_bill

        rc = self.cfg.reconciliation
        files = sorted({f for pattern in rc.bills for f in glob.glob(pattern)})
        try:
            if not files:
                raise ConfigError(f"reconciliation.bills matches no file: {', '.join(rc.bills)}")
            window = parse_window(rc.window, time.time(), self.step)
            bill = read_bill(list(files))
            inv = inventory(self.client, window, join_matchers(self.cfg.prometheus.ksmSelector,
                                                               self.cfg.prometheus.clusterSelector))
            result = Pipeline(self.cfg, self.client, self.metadata, self.warnings).compute(window)
            self.health.reconciliation = reconcile(bill, inv, result, window, rc.clusterTags)
            self.health.reconciliation_error = None
        except ChargebackError as e:
            log.error("reconciliation failed: %s", e)
            self.health.reconciliation_error = str(e)
        self.last_reconcile = time.time()

    def loop(self) -> None:
        if self.elector is not None:
            self.elector.start()
        while not self.stop.is_set():
            self.run_once()
            next_cycle = time.time() + self.interval
            due = time.time() - self.last_reconcile >= parse_duration(self.cfg.reconciliation.interval)
            busy = self.reconciler is not None and self.reconciler.is_alive()
            if self.cfg.reconciliation.bills and due and not busy and self.health.leader is not False:
                # A month's computation can take minutes: never hold up accrual for it.
                self.last_reconcile = time.time()
                self.reconciler = threading.Thread(target=self.reconcile_once, name="reconcile", daemon=True)
                self.reconciler.start()
            # Held batches apply on the clock, not on scrapes: wake when the next hold ends.
            while not self.stop.is_set() and (left := next_cycle - time.time()) > 0:
                hold = self.ledger.tick()
                self.stop.wait(min(left, max(hold, 0.05)) if hold is not None else left)

    def healthy(self) -> bool:
        """Alive means the loop makes progress: it finishes cycles (good or failed), or a catch-up keeps
        accruing chunks. Not that Prometheus is up (that would crash-loop the pod), nor that a cycle is
        short (a long catch-up on a big cluster would be restarted mid-way and start over)."""
        return self.clock() - self.progress_at < max(10 * self.interval, 600)

    def allocation(self, query: dict[str, list[str]], cancel: threading.Event | None = None,
                   now: float | None = None) -> dict[str, Any]:
        """`allocation_body` as one dict, for in-process callers (MCP, tests)."""
        body = self.allocation_body(query, cancel, now)
        return body.to_json() if isinstance(body, AllocationBody) else body

    def allocation_body(self, query: dict[str, list[str]], cancel: threading.Event | None = None,
                        now: float | None = None) -> dict[str, Any] | AllocationBody:
        """OpenCost's /allocation (windows, step, accumulate, aggregate, filter), with Kubecost's sharing
        parameters: one `Pipeline.compute` per set (exporter/outputs/opencost_api.py plans them)."""
        return self._allocation_body(self.parse_allocation(query, now), cancel)

    def parse_allocation(self, query: dict[str, list[str]], now: float | None = None) -> AllocationQuery:
        return parse_query(query, self.cfg.attribution.labels, time.time() if now is None else now, self.step,
                           self.cfg.api.allocationSharing)

    def allocation_summary(self, query: dict[str, list[str]], cancel: threading.Event | None = None,
                           now: float | None = None, topline: bool = False) -> dict[str, Any]:
        """OpenCost's /allocation/summary (or its topline) from /allocation's answer to the same query."""
        from exporter.outputs.allocsummary import summary_response, topline_response

        q = self.parse_allocation(query, now)
        body = self._allocation_body(q, cancel)
        whole = body.to_json() if isinstance(body, AllocationBody) else body
        return (topline_response if topline else summary_response)(whole, q.sets)

    def _allocation_body(self, q: AllocationQuery, cancel: threading.Event | None) -> dict[str, Any] | AllocationBody:
        cfg = override(self.cfg, "sharing", **q.sharing) if q.sharing else self.cfg
        cfg = override(cfg, "attribution", labels=q.labels)
        if q.sets:
            check_window(Window(q.sets[0].compute.start, q.sets[-1].compute.end, self.step), self.cfg.api.maxWindow)
        pipeline = Pipeline(cfg, self.client, self.metadata, self.warnings)
        pipeline.running_spans = True  # OpenCost's start, end, minutes and per-time fields (engine/spans.py)
        label_keys, cluster = tuple(cfg.attribution.labels.values()), cluster_name(cfg.prometheus.clusterSelector)
        ids = volume_ids(self.client, pipeline.queries, Window(q.sets[0].compute.start, q.sets[-1].compute.end,
                                                               self.step)) if q.sets else {}
        if q.pod_level:  # pods, controllers, containers, Services or pod annotations: exporter/outputs/podrows.py
            from exporter.outputs.podrows import response as pod_allocation_sets

            return pod_allocation_sets(pipeline, q, label_keys, cluster, cancel, ids)
        results = ((s, pipeline.compute(s.compute, cancel=cancel)) for s in q.sets)
        return allocation_sets(results, q, label_keys, cluster, ids)

    def assets(self, query: dict[str, list[str]], cancel: threading.Event | None = None) -> dict[str, Any]:
        """OpenCost's /assets (exporter/outputs/assets_api.py)."""
        from exporter.outputs.assets_api import RecordingPipeline, assets_response

        return assets_response(self.cfg, self.client,
                               lambda cfg, bill: RecordingPipeline(cfg, self.client, self.metadata, self.warnings,
                                                                   bill),
                               query, time.time(), cancel)

    def cloud_costs(self, query: dict[str, list[str]], cancel: threading.Event | None = None) -> dict[str, Any]:
        """OpenCost's /cloudCost from the configured bills (exporter/outputs/cloudcost.py)."""
        from exporter.outputs.cloudcost import cloud_cost_response

        return cloud_cost_response(self.cfg, self.client, query, time.time(), self.step)

    def cloud_view(self, kind: str, query: dict[str, list[str]], cancel: threading.Event | None = None
                   ) -> dict[str, Any]:
        """OpenCost's /cloudCost/view/{table,totals,graph} and /cloudCost/status (exporter/outputs/cloudviews.py)."""
        from exporter.outputs.cloudviews import status_response, view_response

        if kind == "status":
            return status_response(self.cfg, time.time())
        return view_response(kind, self.cfg, self.client, query, time.time(), self.step)

    def custom_costs(self, kind: str, query: dict[str, list[str]], cancel: threading.Event | None = None
                     ) -> dict[str, Any]:
        """OpenCost's /customCost/{total,timeseries}: costs outside the cluster (exporter/outputs/customcost.py)."""
        from exporter.outputs.customcost import custom_cost_response

        return custom_cost_response(kind, self.cfg, self.client, query, time.time(), self.step)
