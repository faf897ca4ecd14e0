"""The Prometheus HTTP API client: instant queries with retries, stats and one-line errors.

Every answer is checked (`promanswer`), every value left out if it is not finite (`finite`),
and every URL shown redacted (`redact`). The PromQL itself comes from `queries.Queries`
and `promql`.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from exporter.config.schema import Prometheus
from exporter.core.finite import NonFinite, finite_samples, log_non_finite, metrics_in, spelled
from exporter.sources.promanswer import (
    RETRY_BACKOFF_CAP_SECONDS,
    RETRY_BACKOFF_SECONDS,
    Failed,
    PartialAnswer,
    SampleLimit,
    Shape,
    T,
    json_type,
    matrix,
    one_line,
    over_sample_limit,
    partial_reason,
    retry_after,
    timed_out,
    vector,
)
from exporter.sources.promstream import CHUNK_BYTES, NotJSON, read_body
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import PrometheusError
from exporter.vocab.redact import redact, redact_url, remember

Labels = dict[str, str]
log = logging.getLogger(__name__)


@dataclass
class QueryStats:
    """Counts kept by the client; the exporter publishes them and the benchmark prints them."""

    queries: int = 0
    errors: int = 0
    wall_seconds: float = 0.0
    server_seconds: float = 0.0
    errors_by_reason: dict[str, int] = field(default_factory=dict)

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def failed(self, reason: str) -> None:
        with self.lock:
            self.errors += 1
            self.errors_by_reason[reason] = self.errors_by_reason.get(reason, 0) + 1

    def add(self, wall: float = 0.0, server: float = 0.0, queries: int = 0) -> None:
        """Counted under a lock: the accrual loop, the HTTP API and parallel chunks share one client."""
        with self.lock:
            self.queries += queries
            self.wall_seconds += wall
            self.server_seconds += server


class PrometheusClient:
    """Instant queries over HTTP; transient failures are retried with backoff; raises PrometheusError.

    Every failure, whatever the transport or the body, ends as one PrometheusError line counted by
    reason (unreachable, timeout, query_error, bad_response): never a traceback, never a zero.
    """

    def __init__(self, cfg: Prometheus) -> None:
        self.url = cfg.url
        self.timeout = parse_duration(cfg.timeout)
        self.retries = cfg.retries
        # partialResponse: deny asks Thanos Query (partial_response) and VictoriaMetrics cluster
        # (deny_partial_response) to fail a query rather than answer without a store; Prometheus ignores both.
        self.partial_params = ({"partial_response": "false", "deny_partial_response": "1"}
                               if cfg.partialResponse == "deny" else {})
        self.stats = QueryStats()
        # Told about every non-finite value left out; the pipeline points it at its warning log.
        self.on_non_finite: Callable[[NonFinite], None] = log_non_finite
        self._session = requests.Session()
        # No urllib3 retries: one loop (`_call`) retries every transient failure, body reads included,
        # with one backoff and one count, and never resends a query that timed out.
        self._session.mount("http://", HTTPAdapter(max_retries=0))
        self._session.mount("https://", HTTPAdapter(max_retries=0))
        if cfg.bearerTokenFile:
            try:
                with open(cfg.bearerTokenFile, encoding="utf-8") as fh:
                    token = remember(fh.read().strip())
            except (OSError, UnicodeDecodeError) as e:
                why = getattr(e, "strerror", None) or "not UTF-8 text"
                raise PrometheusError(f"prometheus.bearerTokenFile {cfg.bearerTokenFile}: cannot read: {why}") from e
            self._session.headers["Authorization"] = f"Bearer {token}"

    @property
    def url(self) -> str:
        """The base URL as messages show it: redacted (no user:password@, no ?token=). Requests use the real one."""
        return self._shown

    @url.setter
    def url(self, value: str) -> None:
        self._base = value.rstrip("/")
        self._shown = redact_url(self._base)

    def query(self, expr: str, at: float) -> list[tuple[Labels, float]]:
        """Evaluate `expr` at unix time `at`; return (labels, value) for each series of a vector result.

        Only finite values are returned: a NaN or Inf is reported to `on_non_finite` and left out, so it
        can never be multiplied into a cost or reach a counter."""
        return self._finite_rows(expr, at, self._parse(expr, self._instant(expr, at), vector))

    def _instant(self, expr: str, at: float, kind: str = "vector") -> dict[str, Any]:
        """POST an instant query; the `data` of a successful answer, its result's series converted to rows
        of `kind` ("vector" or "matrix") as they are read (`promstream`), else a one-line PrometheusError."""
        started = time.monotonic()
        self.stats.add(queries=1)
        try:
            # nocache=1: VictoriaMetrics otherwise answers a query for the last 30 s (-search.latencyOffset) as of
            # 30 s ago, so a restarted serve would read back an older watermark and count a cycle twice.
            # Prometheus, Thanos and Mimir ignore the parameter.
            params = {"query": expr, "time": f"{at:.3f}", "timeout": f"{self.timeout}s", "stats": "all",
                      "nocache": "1", **self.partial_params}
            data = self._call("POST", params, expr, self.timeout + 5, kind)
        finally:
            self.stats.add(wall=time.monotonic() - started)
        stats = data.get("stats")
        timings = stats.get("timings") if isinstance(stats, dict) else None
        if isinstance(timings, dict) and isinstance(timings.get("execTotalTime"), (int, float)):
            self.stats.add(server=float(timings["execTotalTime"]))
        return data

    def series_exist(self, match: str) -> bool:
        """Whether the TSDB holds any series matching `match`, at any time (an index lookup, no samples)."""
        try:
            resp = self._session.get(f"{self._base}/api/v1/series", params={"match[]": match, **self.partial_params},
                                     timeout=self.timeout)
            body = resp.json()
        except (requests.RequestException, ValueError) as e:
            raise PrometheusError(f"Prometheus at {self.url} is unreachable: {_root_cause(e)}") from e
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else "not a JSON object"
            raise PrometheusError(f"Prometheus series lookup failed: {one_line(error)} for {_short(match)}")
        partial = partial_reason(body)
        if partial and not body.get("data"):  # "none" from a partial answer is not known; "some" is
            self.stats.failed("partial_response")
            raise PartialAnswer(f"Prometheus at {self.url} answered a series lookup only in part ({partial}) "
                                f"for {_short(match)}", partial)
        return bool(body.get("data"))

    def query_range_raw(self, expr: str, at: float) -> list[tuple[Labels, list[tuple[float, float]]]]:
        """Evaluate a range-vector selector at `at` and return raw samples (used to read counters back).

        Non-finite samples are left out and reported, as in `query`."""
        parsed = self._parse(expr, self._instant(expr, at, "matrix"), matrix)
        for labels, samples in parsed:  # filtered in place: a big answer is not copied for a rare NaN
            if not all(math.isfinite(v) for _t, v in samples):
                for t, v in samples:
                    if not math.isfinite(v):
                        self.on_non_finite(NonFinite(labels, t, spelled(v), metrics_in(expr)))
                samples[:] = [(t, v) for t, v in samples if math.isfinite(v)]
        return parsed

    def _finite_rows(self, expr: str, at: float, rows: list[tuple[Labels, float]]) -> list[tuple[Labels, float]]:
        """Only finite values: each NaN/Inf is reported to `on_non_finite` and left out."""
        return finite_samples(rows, at, expr, self.on_non_finite)

    def _parse(self, expr: str, data: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> T:
        try:
            return parse(data)
        except Shape as e:  # a well-formed answer of the wrong type: the query's fault, not the wire's
            self.stats.failed("bad_response")
            raise PrometheusError(f"unexpected answer from Prometheus at {self.url}: {e} in: {_short(expr)}") from e

    def _call(self, method: str, params: dict[str, str], expr: str, timeout: float, kind: str) -> dict[str, Any]:
        """The `data` object of a successful answer, after up to `retries` retries of transient failures."""
        for attempt in itertools.count():
            try:
                return self._attempt(method, params, expr, timeout, kind)
            except Failed as e:
                if not e.transient or attempt >= self.retries:
                    self.stats.failed(e.reason)
                    raise
                wait = e.wait if e.wait is not None else RETRY_BACKOFF_SECONDS * 2**attempt
                wait = min(wait, RETRY_BACKOFF_CAP_SECONDS)
                log.info("%s; retry %d of %d in %.1fs", e, attempt + 1, self.retries, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _attempt(self, method: str, params: dict[str, str], expr: str, timeout: float, kind: str) -> dict[str, Any]:
        url = self.url
        try:
            # stream: the body is parsed as it arrives, never held whole (promstream.py)
            resp = self._session.request(method, f"{self._base}/api/v1/query", timeout=timeout,
                                         data=params if method == "POST" else None,
                                         params=params if method == "GET" else None, stream=True)
        except requests.RequestException as e:
            raise _transport(e, url, timeout) from e
        code = resp.status_code
        retry = code >= 500 or code == 429
        wait = retry_after(resp.headers.get("Retry-After"))
        try:
            body = read_body(resp.iter_content(CHUNK_BYTES), kind)
        except requests.RequestException as e:  # the body cut by a dropped connection, a read timeout
            raise _transport(e, url, timeout) from e
        except NotJSON as e:  # an HTML error page, a cut or garbled body
            ctype = resp.headers.get("Content-Type") or "no content type"
            raise Failed(f"Prometheus at {url} answered HTTP {code} with a non-JSON body "
                          f"({ctype}, {e.size} bytes: {e.detail})", "bad_response", retry or code == 200,
                          wait) from e
        finally:
            resp.close()
        if not isinstance(body, dict):
            raise Failed(f"Prometheus at {url} answered HTTP {code} with a JSON {json_type(body)} where an "
                          "object was expected", "bad_response", True, wait)
        if body.get("status") == "error":
            error_type = body.get("errorType")
            server_timeout = error_type == "timeout"
            # A query caught by a shutting-down Prometheus ("block is closing", HTTP 422) is the restart's
            # fault, not the query's: retried like a refused connection.
            closing = error_type == "execution" and "is closing" in str(body.get("error"))
            if over_sample_limit(body.get("error")):
                raise SampleLimit(f"Prometheus refused a query over its sample limit (HTTP {code}): "
                                  f"{one_line(body.get('error'))} in: {_short(expr)}")
            raise Failed(f"Prometheus query failed (HTTP {code}, {error_type}): "
                          f"{one_line(body.get('error'))} in: {_short(expr)}",
                          "timeout" if server_timeout else "query_error", (retry or closing) and not server_timeout,
                          wait)
        if body.get("status") != "success":
            raise Failed(f"Prometheus at {url} answered HTTP {code} with JSON whose status is "
                          f"{one_line(body.get('status'))}, not 'success' or 'error'", "bad_response", True, wait)
        data = body.get("data")
        if not isinstance(data, dict):
            what = "no 'data'" if data is None else f"'data' as a JSON {json_type(data)}, not an object"
            raise Failed(f"Prometheus at {url} answered 'success' with {what}", "bad_response", True, wait)
        partial = partial_reason(body)
        if partial:
            raise PartialAnswer(f"Prometheus at {url} answered only in part ({partial}) in: {_short(expr)}", partial)
        return data


def _transport(e: requests.RequestException, url: str, timeout: float) -> Failed:
    """A failure to get the answer (or all of its body), as the attempt's one line."""
    if isinstance(e, requests.Timeout) or timed_out(e):
        return Failed(f"Prometheus at {url} timed out after {timeout:g}s", "timeout", False)
    if isinstance(e, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return Failed(f"Prometheus at {url} dropped the connection mid-answer: {_root_cause(e)}", "bad_response", True)
    transient = isinstance(e, requests.ConnectionError)
    return Failed(f"Prometheus at {url} is unreachable: {_root_cause(e)}", "unreachable", transient)


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = redact(str(e))  # urllib3's text can hold the request URL and its credentials
    return text.split("] ", 1)[-1] if text else type(e).__name__


def _short(expr: str) -> str:
    flat = " ".join(expr.split())
    return flat if len(flat) <= 160 else flat[:157] + "..."
