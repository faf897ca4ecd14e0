"""Warnings with a kind: counted per kind, logged sparingly, held in bounded memory.

`serve` runs for months and some warnings are unique per window (they name it), so a list of
every message grows without bound and floods the log. Each warning therefore has a short,
stable kind (`default_priced`, `non_finite`, ...): the count per kind is published as
`chargeback_warnings_total{kind}`, and only the last message of each kind is kept.

Two ways to log: `every=None` (one-shot commands such as `allocate`) logs each distinct
message once; `every=3600` (serve) logs a kind at most once an hour, with the number of
warnings of that kind suppressed since it was last logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger("exporter.engine.pipeline")

MAX_DISTINCT = 1000  # one-shot mode: distinct messages remembered for de-duplication


@dataclass
class KindState:
    """What is kept for one kind: never more than its last message."""

    count: int = 0
    last_message: str = ""
    logged_at: float | None = None
    suppressed: int = 0  # warnings of this kind not logged since `logged_at`


class WarningLog:
    """Thread-safe: chunks run in parallel and the collector reads the counts."""

    def __init__(self, every: float | None = None, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.every = every
        self.clock = clock
        self.log = logger
        self.kinds: dict[str, KindState] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def warn(self, kind: str, message: str) -> None:
        """Count the warning and log it unless its kind (or, one-shot, its message) was logged recently."""
        with self._lock:
            state = self.kinds.setdefault(kind, KindState())
            state.count += 1
            state.last_message = message
            line = self._line(state, message)
        if line is not None:
            self.log.warning(line)

    def _line(self, state: KindState, message: str) -> str | None:
        if self.every is None:
            if message in self._seen:
                return None
            if len(self._seen) < MAX_DISTINCT:
                self._seen.add(message)
            return message
        now = self.clock()
        if state.logged_at is not None and now - state.logged_at < self.every:
            state.suppressed += 1
            return None
        line = message
        if state.suppressed:
            line += f" ({state.suppressed} more warning(s) of this kind since it was last logged)"
        state.logged_at, state.suppressed = now, 0
        return line

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: s.count for kind, s in self.kinds.items()}

    def messages(self) -> list[str]:
        """The last message of each kind."""
        with self._lock:
            return [s.last_message for s in self.kinds.values()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.messages())

    def __contains__(self, text: object) -> bool:
        return text in self.messages()
