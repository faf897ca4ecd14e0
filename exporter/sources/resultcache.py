"""A short-lived cache of Prometheus answers about the settled past, for serve's API.

OpenCost's clients ask the same windows again and again (24h, 48h, yesterday, with other aggregations and
filters), and a window is costed chunk by chunk: the same instant queries at the same chunk ends. As
Thanos' query-frontend keeps results older than its max_freshness, the API's client keeps an answer only
when it was evaluated at or before now - `settled` (serve passes `serve.lag`: the data its accrual takes as
final), for at most `ttl` seconds, and only small answers, up to a total of points. A query at a later time
(an open window's last chunk, a coverage probe reaching now) always goes to Prometheus; a failed or partial
answer is never kept. A hit goes through the same parsing and checks as a fresh answer, and no caller can
change a kept answer: each hit gets its own list of rows, and its own list of each matrix row's samples.
serve's accrual does not use it: it asks each step once, and its answers would only fill the cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from exporter.config.schema import Prometheus
from exporter.sources.promanswer import Rows
from exporter.sources.prometheus import PrometheusClient, QueryStats

TTL_SECONDS = 300.0
MAX_POINTS = 400_000  # samples and series kept in all; a few tens of MB of decoded JSON
MAX_ENTRY_POINTS = 20_000  # a bigger answer (a big cluster's chunk) is not kept: memory stays bounded


def _points(data: dict[str, Any]) -> int:
    """Series and samples: a matrix's rows (label set, samples) count 1 + their samples."""
    result = data.get("result")
    if isinstance(result, Rows) and result.kind == "matrix" and result.error is None:
        return sum(1 + len(samples) for _labels, samples in result)
    return len(result) if isinstance(result, list) else 1


def _own(data: dict[str, Any]) -> dict[str, Any]:
    """A copy whose result list, and each matrix row's sample list, is its own: a caller may trim them in
    place (`in_span`, non-finite samples). The labels and the vector rows are only read, never changed."""
    result = data.get("result")
    if not isinstance(result, list):
        return dict(data)
    if isinstance(result, Rows):  # with an `error`, the parsers raise it before they read a row
        whole = result.kind == "matrix" and result.error is None
        rows = Rows(result.kind, ((lb, list(samples)) for lb, samples in result) if whole else result)
        rows.error = result.error
        return {**data, "result": rows}
    return {**data, "result": list(result)}


class CachingClient(PrometheusClient):
    """A PrometheusClient that keeps answers about the settled past (module docstring); `stats` are shared
    with the client it stands beside, so serve's query counters count both."""

    def __init__(self, cfg: Prometheus, settled: float, stats: QueryStats | None = None, ttl: float = TTL_SECONDS,
                 max_points: int = MAX_POINTS, max_entry_points: int = MAX_ENTRY_POINTS,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(cfg)
        if stats is not None:
            self.stats = stats
        self.settled, self.ttl, self.clock = settled, ttl, clock
        self.max_points, self.max_entry_points = max_points, max_entry_points
        self._kept: OrderedDict[tuple[str, ...], tuple[float, int, dict[str, Any]]] = OrderedDict()
        self._points = 0
        self._lock = threading.Lock()
        self._bypass = threading.local()
        self.hits = 0

    @contextmanager
    def uncached(self) -> Iterator[None]:
        """This thread's queries neither kept nor looked up, while it lasts (serve's accrual)."""
        self._bypass.on = True
        try:
            yield
        finally:
            self._bypass.on = False

    def _instant(self, expr: str, at: float, kind: str = "vector") -> dict[str, Any]:
        now = self.clock()
        if at > now - self.settled or getattr(self._bypass, "on", False):
            return super()._instant(expr, at, kind)
        # Another URL (tests repoint the client) is another server; rows are converted for one `kind`.
        key = (self._base, expr, f"{at:.3f}", kind)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] > now:
                self._kept.move_to_end(key)
                self.hits += 1
                return _own(kept[2])
        data = super()._instant(expr, at, kind)
        points = _points(data)
        if points <= min(self.max_entry_points, self.max_points):
            with self._lock:
                self._drop(key)
                self._kept[key] = (now + self.ttl, points, _own(data))
                self._points += points
                while self._points > self.max_points or (self._kept and next(iter(self._kept.values()))[0] <= now):
                    self._drop(next(iter(self._kept)))
        return data

    def _drop(self, key: tuple[str, ...]) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._points -= kept[1]
