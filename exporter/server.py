"""`chargeback serve`: the accrual loop plus the HTTP endpoints (/metrics, /healthz, /allocation/compute).

The loop never exits on bad input: a failed cycle sets `chargeback_up 0`, keeps the
last good values and retries from the same watermark next cycle, so no cost is lost.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .accrual import CounterKey, Ledger, batch_from
from .collector import ChargebackCollector, Health
from .config import Config, override
from .errors import ChargebackError, ConfigError
from .formatters import allocation_response, parse_aggregate
from .kube import load_api_client, metadata_source
from .leader import LeaseElector
from .pipeline import Pipeline
from .prometheus import PrometheusClient
from .window import PERIODS, Window, iso, parse_duration, parse_window, period_bounds

log = logging.getLogger(__name__)


def _parse_time(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError as e:
        raise ConfigError(f"invalid time {text!r}: use RFC3339, e.g. 2026-11-01T00:00:00Z") from e


class Exporter:
    """Owns the ledger and runs accrual cycles; thread-safe for the HTTP handlers."""

    def __init__(self, cfg: Config, until: str | None = None) -> None:
        self.cfg = cfg
        self.client = PrometheusClient(cfg.prometheus)
        self.metadata = metadata_source(cfg.attribution, watch=True)
        self.pipeline = Pipeline(cfg, self.client, self.metadata)
        self.ledger = Ledger(expose_for=cfg.serve.expose_seconds())
        self.health = Health()
        self.step = self.pipeline.step
        self.interval = parse_duration(cfg.serve.interval)
        self.lag = parse_duration(cfg.serve.lag)
        self.start = _parse_time(cfg.serve.start) if cfg.serve.start else None
        self.until = _parse_time(until) if until else None
        self.stop = threading.Event()
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
        """The last watermark Prometheus scraped from any replica of us (so no volume is needed)."""
        s = self.cfg.serve
        sel = ",".join(m for m in (s.watermarkSelector, self.cfg.prometheus.clusterSelector) if m)
        series = f"chargeback_accrued_until_timestamp_seconds{{{sel}}}"
        expr = f"max(last_over_time({series}[{s.watermarkLookback}]))"
        rows = self.client.query(expr, time.time())
        return int(rows[0][1]) if rows else None

    def read_periods(self, watermark: int) -> tuple[dict[str, int], dict[CounterKey, float]]:
        """Read back the period-to-date sums of the periods the watermark falls in (same scrape as it)."""
        s = self.cfg.serve
        starts, sums = {}, {}
        names = ["period", "period_start", "namespace", *self.cfg.attribution.labels]
        for period in PERIODS:
            start = period_bounds(period, watermark)[0]
            if start == watermark:
                continue  # the next interval opens a new period
            sel = ",".join(m for m in (s.watermarkSelector, self.cfg.prometheus.clusterSelector,
                                       f'period="{period}",period_start="{start}"') if m)
            last = f"last_over_time(chargeback_period_cost{{{sel}}}[{s.watermarkLookback}])"
            expr = f"max by ({', '.join(names)}) ({last})"
            rows = self.client.query(expr, time.time())
            starts[period] = start
            for labels, value in rows:
                sums[tuple(labels.get(n, "") for n in names)] = value
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
        """One accrual cycle: catch up from the frontier to now - lag; returns the chunks costed."""
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
            result = self.pipeline.compute_chunk(piece)
            batch = batch_from(result, len(self.cfg.attribution.labels), term)
            if self.elector is not None and not self.elector.holds(term):
                log.info("dropped the piece %s..%s: leadership term %d ended while it was computed",
                         iso(piece.start), iso(piece.end), term)
                break
            if not self.ledger.offer(batch):
                break
            self.health.rates, self.health.nodes = result.rates, result.nodes
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

    def _failed(self, message: str) -> None:
        if message != self.health.last_error:
            log.error("accrual cycle failed: %s", message)
        self.health.up = False
        self.health.last_error = message
        self.health.cycles["failure"] += 1

    def reconcile_once(self) -> None:
        """Re-read the bills and compare them with the computed cost of the reconciliation window."""
        from .billing import read_bill
        from .reconcile import inventory, reconcile

        rc = self.cfg.reconciliation
        files = sorted({f for pattern in rc.bills for f in glob.glob(pattern)})
        try:
            if not files:
                raise ConfigError(f"reconciliation.bills matches no file: {', '.join(rc.bills)}")
            window = parse_window(rc.window, time.time(), self.step)
            bill = read_bill(list(files))
            inv = inventory(self.client, window, ",".join(m for m in (self.cfg.prometheus.ksmSelector,
                                                                      self.cfg.prometheus.clusterSelector) if m))
            result = Pipeline(self.cfg, self.client).compute(window)
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
        """Alive means the loop is cycling, not that Prometheus is up (that would crash-loop the pod)."""
        last = self.health.last_attempt
        return last is None or time.time() - last < max(10 * self.interval, 600)

    def allocation(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """OpenCost's /allocation/compute, with Kubecost's sharing parameters."""
        def arg(name: str) -> str | None:
            return query.get(name, [None])[0]

        def flag(name: str) -> bool | None:
            v = arg(name)
            if v is None:
                return None
            if v.lower() not in ("true", "false"):
                raise ConfigError(f"{name}={v!r}: use true or false")
            return v.lower() == "true"

        cfg = override(self.cfg, "sharing", shareNamespaces=arg("shareNamespaces"), shareSplit=arg("shareSplit"),
                       shareIdle=flag("shareIdle"), idleByNode=flag("idleByNode"))
        parts, labels = parse_aggregate(arg("aggregate") or "namespace", cfg.attribution.labels)
        cfg = override(cfg, "attribution", labels=labels)
        window = parse_window(arg("window") or "24h", time.time(), self.step)
        result = Pipeline(cfg, self.client, self.metadata).compute(window)
        return allocation_response(result, parts, tuple(cfg.attribution.labels))


def make_handler(exporter: Exporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, payload: Any) -> None:
            self._send(code, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/metrics":
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(exporter.registry), ctype)
            elif url.path == "/healthz":
                ok = exporter.healthy()
                h = exporter.health
                self._json(200 if ok else 503, {"alive": ok, "up": h.up, "lastError": h.last_error,
                                                "accruedUntil": exporter.ledger.watermark})
            elif url.path == "/readyz":
                self._json(200 if exporter.health.up else 503, {"up": exporter.health.up,
                                                                "lastError": exporter.health.last_error})
            elif url.path == "/allocation/compute":
                try:
                    self._json(200, exporter.allocation(parse_qs(url.query)))
                except ConfigError as e:
                    self._json(400, {"code": 400, "message": str(e)})
                except ChargebackError as e:
                    self._json(502, {"code": 502, "message": str(e)})
            else:
                self._json(404, {"code": 404, "message": f"no such path {url.path}"})

    return Handler


def run_server(cfg: Config, until: str | None = None) -> None:
    exporter = Exporter(cfg, until)
    host, _, port = cfg.serve.listen.rpartition(":")
    httpd = ThreadingHTTPServer((host or "0.0.0.0", int(port)), make_handler(exporter))
    httpd.daemon_threads = True
    worker = threading.Thread(target=exporter.loop, name="accrual", daemon=True)

    def shutdown(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        exporter.close()
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("serving on %s (Prometheus %s)", cfg.serve.listen, cfg.prometheus.url)
    worker.start()
    httpd.serve_forever()
    worker.join(timeout=10)
