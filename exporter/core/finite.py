"""Non-finite values (NaN, +-Inf) from Prometheus: left out at the source, and reported.

A NaN multiplied into a cost makes every sum it reaches NaN, and a NaN added to a counter
stays there for good. The client therefore returns only finite values and tells a callback
about each one it left out, naming the series, the time and what the query reads.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from exporter.core.window import iso

Labels = dict[str, str]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NonFinite:
    """A NaN or +-Inf Prometheus answered; the client leaves it out of what it returns."""

    labels: Labels
    at: float  # evaluation time (or the sample's time, for raw samples)
    value: str  # as Prometheus spelled it: NaN, +Inf, -Inf
    about: str  # the metrics the query reads, to say where it came from

    def describe(self) -> str:
        series = "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items())) + "}"
        return (f"Prometheus answered {self.value} for {series} at {iso(self.at)} (query on {self.about}); "
                "the value is left out")


def metrics_in(expr: str) -> str:
    """The metric names a query reads, in order, for messages (e.g. 'kube_node_status_capacity')."""
    names = dict.fromkeys(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
    return ", ".join(list(names)[:3]) or " ".join(expr.split())[:80]


def spelled(value: float) -> str:
    """A float as Prometheus spells it (NaN, +Inf, -Inf, or the number)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def finite_samples(rows: list[tuple[Labels, float]], at: float, expr: str,
                   report: Callable[[NonFinite], None]) -> list[tuple[Labels, float]]:
    """Keep finite values; report each NaN/Inf so the caller can warn naming the series and time. `rows`
    itself when all are finite (nearly always): a big answer is not copied (docs/scale.md)."""
    if all(math.isfinite(v) for _lb, v in rows):
        return rows
    out = []
    for labels, value in rows:
        if math.isfinite(value):
            out.append((labels, value))
        else:
            report(NonFinite(labels, at, spelled(value), metrics_in(expr)))
    return out


def log_non_finite(dropped: NonFinite) -> None:
    log.warning(dropped.describe())
