"""Bounds on what one request may cost: window length, concurrent computations, time, chunks in flight.

A single `/allocation/compute?window=1000000y` once grew the process until the OOM killer came;
these limits make every request's memory, threads and Prometheus load bounded and named.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar

from exporter.core.window import Window
from exporter.vocab.durations import format_duration, parse_duration
from exporter.vocab.errors import ChargebackError, ConfigError

T = TypeVar("T")
R = TypeVar("R")


class Cancelled(ChargebackError):
    """The caller gave up (a request deadline passed): no more chunks are queried."""


class Busy(ChargebackError):
    """Every API worker is computing; the caller should retry later."""


class DeadlineExceeded(ChargebackError):
    """The request did not finish within api.timeout."""


def check_window(window: Window, max_window: str, key: str = "api.maxWindow") -> None:
    """Refuse a window longer than the limit before anything is allocated for it."""
    limit = parse_duration(max_window)
    if window.seconds > limit:
        raise ConfigError(f"window of {window.seconds / 86400:.6g} days is longer than {key} ({max_window}): "
                          f"ask for a shorter window, or raise {key}")


def in_order(items: Iterable[T], fn: Callable[[T], R], pool: ThreadPoolExecutor | None, ahead: int,
             cancel: threading.Event | None = None) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) in input order, with at most `ahead` items submitted and not yet yielded.

    Unlike Executor.map, which submits every item at once, this reads `items` lazily, so a long
    window holds a few chunk futures, not one per chunk. `cancel` stops it between items.
    """
    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the computation was cancelled (its deadline passed, or the server is stopping)")

    if pool is None:
        for item in items:
            check()
            yield item, fn(item)
        return
    queue: deque[tuple[T, Future[R]]] = deque()
    source, exhausted = iter(items), False
    try:
        while True:
            while not exhausted and len(queue) < ahead:
                check()
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                queue.append((item, pool.submit(fn, item)))
            if not queue:
                return
            item, fut = queue.popleft()
            yield item, fut.result()
            check()
    finally:
        for _, fut in queue:
            fut.cancel()


@dataclass
class Admission:
    """At most `slots` API computations at once, each bounded by `timeout` seconds.

    A computation runs on a worker thread, so the request can be answered at its deadline while
    the worker stops at its next chunk; the slot is freed only when the worker has stopped, so the
    Prometheus load stays bounded by `slots` even when clients give up.
    """

    slots: int
    timeout: float

    def __post_init__(self) -> None:
        self._free = threading.BoundedSemaphore(self.slots)
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="api")
        self._running: set[threading.Event] = set()
        self._lock = threading.Lock()

    def _submit(self, job: Callable[[threading.Event], T]) -> tuple[Future[T], threading.Event]:
        """job(cancel) on a worker, its slot freed when the worker stops; Busy when all slots are taken."""
        if not self._free.acquire(blocking=False):
            raise Busy(f"all {self.slots} API workers are busy (api.maxConcurrent): retry later")
        cancel = threading.Event()
        with self._lock:
            self._running.add(cancel)

        def done(_f: Future[T]) -> None:
            with self._lock:
                self._running.discard(cancel)
            self._free.release()

        try:
            fut = self._pool.submit(job, cancel)
        except RuntimeError:  # shutting down
            with self._lock:
                self._running.discard(cancel)
            self._free.release()
            raise Busy("shutting down: retry on another replica") from None
        fut.add_done_callback(done)
        return fut, cancel

    def _late(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the computation did not finish within api.timeout ({format_duration(int(self.timeout))}); "
            "its remaining Prometheus queries were cancelled: ask for a shorter window")

    def run(self, job: Callable[[threading.Event], T]) -> T:
        """job(cancel) on a worker; Busy when all slots are taken, DeadlineExceeded past the timeout."""
        fut, cancel = self._submit(job)
        try:
            return fut.result(timeout=self.timeout)
        except FutureTimeout:
            cancel.set()
            raise self._late() from None

    async def run_async(self, job: Callable[[threading.Event], T]) -> T:
        """`run` for the event loop: the caller waits without holding a thread; a caller that goes away
        (its task cancelled) stops the worker at its next chunk, as a deadline does."""
        fut, cancel = self._submit(job)
        result = asyncio.wrap_future(fut)
        result.add_done_callback(lambda f: f.cancelled() or f.exception())  # read even when nobody waits any more
        try:
            return await asyncio.wait_for(asyncio.shield(result), self.timeout)
        except TimeoutError:
            cancel.set()
            raise self._late() from None
        except asyncio.CancelledError:
            cancel.set()
            raise

    def close(self) -> None:
        """On shutdown: stop every computation at its next chunk, so exit does not wait for whole windows."""
        with self._lock:
            for cancel in self._running:
                cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
