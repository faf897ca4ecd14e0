"""serve's cache of Prometheus answers about the settled past (exporter/sources/resultcache.py): a stub
Prometheus answers each query with how many queries it has been sent, so a kept answer shows as an old count
and a fresh one as a new count; then serve's /allocation twice over the sharing scenario's hour."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from demo.localprom import PrometheusServer
from exporter.config.schema import Prometheus, parse_config
from exporter.core.window import iso
from exporter.serve.server import Exporter
from exporter.sources.resultcache import CachingClient
from exporter.vocab.errors import PrometheusError

from .test_allocate_core import window_arg
from .test_allocation_api import NAMESPACES, NODES, call, check, totals

NOW = 1_800_000_000.0
SETTLED = 120.0  # serve.lag


class Stub(BaseHTTPRequestHandler):
    """`vec`: a vector of one sample, the count; `mat`: a matrix of three samples, the count each; `fail`: an
    error the first time; `big`: a vector of 50 series."""

    sent = 0

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        expr = form["query"][0]
        Stub.sent += 1
        n = str(Stub.sent)
        if expr == "fail" and Stub.sent == 1:
            body: dict[str, Any] = {"status": "error", "errorType": "bad_data", "error": "nope"}
        elif expr == "mat":
            body = {"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"a": "1"}, "values": [[1, n], [2, n], [3, n]]}]}}
        else:
            series = 50 if expr == "big" else 1
            body = {"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"i": str(i)}, "value": [1, n]} for i in range(series)]}}
        raw = json.dumps(body).encode()
        self.send_response(200 if body["status"] == "success" else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture()
def stub() -> Iterator[str]:
    Stub.sent = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)  # bound here: no free-port race
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def client(url: str, clock: Clock, **kw: Any) -> CachingClient:
    return CachingClient(Prometheus(url=url, retries=0), settled=SETTLED, clock=clock, **kw)


def values(rows: list[tuple[dict[str, str], float]]) -> list[float]:
    return [v for _labels, v in rows]


def test_a_settled_answer_is_kept_and_an_unsettled_one_never(stub: str) -> None:
    clock = Clock()
    c = client(stub, clock)
    settled_at = NOW - SETTLED  # exactly serve.lag back: what accrual takes as final
    assert values(c.query("vec", settled_at)) == [1.0]
    assert values(c.query("vec", settled_at)) == [1.0]  # kept: the stub was not asked
    assert (Stub.sent, c.hits, c.stats.queries) == (1, 1, 1)
    # One second later than settled: always asked, each time a new answer (no stale one).
    assert values(c.query("vec", settled_at + 1)) == [2.0]
    assert values(c.query("vec", settled_at + 1)) == [3.0]
    # Another time or another query is another entry: answers are never mixed.
    assert values(c.query("vec", settled_at - 60)) == [4.0]
    assert values(c.query("vec2", settled_at)) == [5.0]
    assert values(c.query("vec", settled_at)) == [1.0]
    assert (Stub.sent, c.hits) == (5, 2)


def test_a_kept_answer_lives_ttl_seconds(stub: str) -> None:
    clock = Clock()
    c = client(stub, clock, ttl=300)
    assert values(c.query("vec", NOW - 600)) == [1.0]
    clock.now += 299
    assert values(c.query("vec", NOW - 600)) == [1.0]
    clock.now += 1  # 300 s after it was kept: asked again, and the new answer kept from now
    assert values(c.query("vec", NOW - 600)) == [2.0]
    assert values(c.query("vec", NOW - 600)) == [2.0]
    assert Stub.sent == 2


def test_a_matrix_answer_is_whole_each_time(stub: str) -> None:
    """The matrix parser empties the list it reads: each hit gets its own, so the third is still whole."""
    c = client(stub, Clock())
    answers = [c.query_range_raw("mat", NOW - 600) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2] == [({"a": "1"}, [(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)])]
    assert Stub.sent == 1


def test_failures_and_big_answers_are_not_kept(stub: str) -> None:
    c = client(stub, Clock(), max_entry_points=10)
    with pytest.raises(PrometheusError, match="nope"):
        c.query("fail", NOW - 600)
    assert values(c.query("fail", NOW - 600)) == [2.0]  # the failure was not kept
    assert values(c.query("big", NOW - 600)) == [3.0] * 50
    assert values(c.query("big", NOW - 600)) == [4.0] * 50  # 50 series > 10 points: not kept
    assert Stub.sent == 4


def test_the_cache_holds_at_most_max_points(stub: str) -> None:
    """Room for two one-series answers: a third pushes out the least recently used."""
    c = client(stub, Clock(), max_points=2)
    for expr in ("a", "b", "a", "c"):  # a asked again: b is now the least recently used
        c.query(expr, NOW - 600)
    assert Stub.sent == 3
    assert values(c.query("a", NOW - 600)) == [1.0] and values(c.query("c", NOW - 600)) == [3.0]
    assert values(c.query("b", NOW - 600)) == [4.0]  # pushed out: asked again
    assert Stub.sent == 4


def test_serve_answers_a_past_hour_again_from_the_cache(share_prom: tuple[PrometheusServer, int]) -> None:
    """The sharing scenario's hour (hand-worked in test_allocation_api) twice through serve: the same
    namespaces and amounts both times, to the last bit, the second without a query to Prometheus."""
    prom, t0 = share_prom
    ex = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))
    try:
        first = call(ex, t0, aggregate="namespace")
        sent = ex.client.stats.queries
        assert sent > 0
        second = call(ex, t0, aggregate="namespace")
        assert ex.client.stats.queries == sent and ex.client.hits > 0
        check(totals(first), NAMESPACES)
        assert second == first
    finally:
        ex.close()


def test_api_cache_points_bounds_the_cache(stub: str) -> None:
    """api.cachePoints is the cache's size: 0 keeps nothing (each settled query asked again), 1 keeps a
    one-series answer, the default 400,000."""
    past = time.time() - 600  # serve's own clock: settled
    base = {"prometheus": {"url": stub, "retries": 0}, "attribution": {"source": "prometheus"}}
    off = Exporter(parse_config({**base, "api": {"cachePoints": 0}}))
    assert values(off.client.query("vec", past)) == [1.0]
    assert values(off.client.query("vec", past)) == [2.0]
    assert off.client._kept == {} and off.client.hits == 0
    one = Exporter(parse_config({**base, "api": {"cachePoints": 1}}))
    assert values(one.client.query("vec", past)) == [3.0]
    assert values(one.client.query("vec", past)) == [3.0]
    assert Stub.sent == 3 and one.client.max_points == 1
    assert Exporter(parse_config(base)).client.max_points == 400_000
    for ex in (off, one):
        ex.close()


def test_a_matrix_answer_counts_its_samples(stub: str) -> None:
    """"mat" is one series of 3 samples, 4 points: over a 3-point entry limit it is not kept (it was once
    counted as 0 points, so every matrix answer was kept whatever its size)."""
    c = client(stub, Clock(), max_entry_points=3)
    assert c.query_range_raw("mat", NOW - 600) == [({"a": "1"}, [(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)])]
    assert c.query_range_raw("mat", NOW - 600) == [({"a": "1"}, [(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)])]
    assert Stub.sent == 2


def test_what_accrual_asks_is_never_kept(stub: str) -> None:
    """serve's accrual asks each step once: under `uncached` a settled answer is neither kept nor looked up."""
    c = client(stub, Clock())
    with c.uncached():
        assert values(c.query("vec", NOW - 600)) == [1.0]
        assert values(c.query("vec", NOW - 600)) == [2.0]
    assert values(c.query("vec", NOW - 600)) == [3.0]  # kept from now on
    assert values(c.query("vec", NOW - 600)) == [3.0]
    assert Stub.sent == 3


def test_serve_accrual_keeps_nothing(share_prom: tuple[PrometheusServer, int]) -> None:
    """An hour accrued by serve's cycle: every query was about the settled past, none was kept."""
    prom, t0 = share_prom
    ex = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
                                "serve": {"start": iso(t0), "exposeNewSeriesFor": "0s"}}), until=iso(t0 + 3600))
    try:
        assert ex.cycle(t0 + 7200) > 0 and ex.ledger.watermark == t0 + 3600
        assert ex.client.stats.queries > 0 and not ex.client._kept
    finally:
        ex.close()


def test_a_window_asked_from_another_start_reuses_its_whole_chunks(share_prom: tuple[PrometheusServer, int]) -> None:
    """Chunks are cut at multiples of allocation.chunk (1h), not from a window's start: the hour t0..t0+1h,
    then t0-30m..t0+1h (as `2d` asked a few minutes later starts elsewhere), whose second chunk is that very
    hour, so asked from the cache. Cut from the start (t0-30m..t0+30m, t0+30m..t0+1h), nothing was reused.
    The scenario is steady from before t0: the longer window costs 1.5 times the hand-worked hour."""
    prom, t0 = share_prom
    ex = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))
    try:
        hour = ex.allocation({"window": [window_arg(t0)], "includeIdle": ["true"], "aggregate": ["namespace"]})
        sent = ex.client.stats.queries
        longer = ex.allocation({"window": [window_arg(t0 - 1800, 1.5)], "includeIdle": ["true"],
                                "aggregate": ["namespace"]})
        print(sent, ex.client.stats.queries - sent, ex.client.hits)
        assert ex.client.hits >= sent // 2  # the hour's chunk queries, all asked again
        check(totals(hour), NAMESPACES)
        check(totals(longer), {ns: 1.5 * cost for ns, cost in NAMESPACES.items()}, 1.5 * NODES)
    finally:
        ex.close()
