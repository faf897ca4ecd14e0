"""Reading a Prometheus API answer: what counts as a failure, which failures are worth a retry, and the
shapes a result must have. Every check ends in one line for the user, never a KeyError or a traceback.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from sys import intern
from typing import Any, NamedTuple, TypeVar

import urllib3

from exporter.vocab.errors import PrometheusError

Labels = dict[str, str]
RETRY_BACKOFF_SECONDS = 0.5  # before the first retry; doubled for each further one
RETRY_BACKOFF_CAP_SECONDS = 8.0  # also caps a server's Retry-After
T = TypeVar("T")


class Failed(PrometheusError):
    """One failed attempt: its message is the user's line; `reason` is the error counter's label, and
    `transient` whether the same query may well succeed if sent again (a restart, a reset, a cut body)."""

    def __init__(self, message: str, reason: str, transient: bool, wait: float | None = None) -> None:
        super().__init__(message)
        self.reason, self.transient, self.wait = reason, transient, wait


class PartialAnswer(Failed):
    """An answer that says it is partial: `warnings` (Prometheus, Thanos with a store down, Mimir) or
    VictoriaMetrics' `isPartial`. Worth a retry; if it stays partial, the part it concerns is uncovered
    (exporter/engine/chunkguard.py): a partial sum is never costed as the whole."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message, "partial_response", True)
        self.detail = detail


class SampleLimit(Failed):
    """Refused as over the server's sample limit (Prometheus' --query.max-samples, VictoriaMetrics'
    -search.maxSamplesPerQuery): not retried as it is, but asked again over a shorter span."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "sample_limit", False)


def partial_reason(body: dict[str, Any]) -> str | None:
    """Why an answer is partial, in one line, or None when it is whole. Every warning counts (Prometheus
    documents them as errors that did not stop the query, and "all data successfully collected" is
    returned beside them) but info-level PromQL annotations, which say nothing about the data."""
    warnings = body.get("warnings") or []
    notes = [one_line(w) for w in (warnings if isinstance(warnings, list) else [warnings])
             if not str(w).startswith("PromQL info:")]
    if body.get("isPartial") is True:
        notes.insert(0, "isPartial: true")
    return one_line("; ".join(notes)) if notes else None


def over_sample_limit(error: object) -> bool:
    """A refusal for loading too many samples (Prometheus, Thanos and Mimir share the engine's words)."""
    text = str(error)
    return "too many samples" in text or "maxSamplesPerQuery" in text


class Shape(Exception):
    """The JSON parsed but is not what the API documents."""


class Decoded(NamedTuple):
    """One series of a result as the JSON decoder hands it over (`series_hook`), its labels interned."""

    metric: Labels
    value: list[Any] | None  # [time, "value"] of an instant vector
    values: list[Any] | None  # [[time, "value"], ...] of a range vector


def series_hook(obj: dict[str, Any]) -> Any:
    """The JSON decoder's object_hook: a series object becomes a `Decoded` as soon as it is parsed, so a
    big answer is never held as a tree of dicts with its own copy of every label string (300k series at
    the envelope, docs/scale.md). Anything else, a malformed series too, stays as it is: `vector` and
    `matrix` check the shape. A labels object is told apart by its values (strings, not an object)."""
    metric = obj.get("metric")
    if isinstance(metric, dict) and ("value" in obj or "values" in obj) and all(
            isinstance(v, str) for v in metric.values()):
        value, values = obj.get("value"), obj.get("values")
        if (value is None or isinstance(value, list)) and (values is None or isinstance(values, list)):
            return Decoded({intern(k): intern(v) for k, v in metric.items()}, value, values)
    return obj


def vector_row(s: Any) -> tuple[Labels, float]:
    labels, value = _series(s, "value")
    return labels, float(value[1])


def matrix_row(s: Any) -> tuple[Labels, list[tuple[float, float]]]:
    labels, values = _series(s, "values")
    return labels, [(float(t), float(v)) for t, v in values]


ROW = {"vector": vector_row, "matrix": matrix_row}


class Rows(list[Any]):
    """A result's series converted into rows of `kind` as they were read (promstream.py), so the decoded
    series are never all held. From the first series that does not convert on (`error`), they are kept
    as decoded, and `vector`/`matrix` report that series as they would have. `kind` "": none converted
    (the answer named another type, which the parsers then report)."""

    __slots__ = ("error", "kind")

    def __init__(self, kind: str, rows: Iterable[Any] = ()) -> None:
        super().__init__(rows)
        self.kind = kind
        self.error: Exception | None = None

    def take(self, element: Any) -> None:
        """Add one element of the result, as decoded (`series_hook` applied)."""
        if self.kind and self.error is None:
            try:
                self.append(ROW[self.kind](element))
                return
            except (KeyError, IndexError, TypeError, ValueError) as e:
                self.error = e
        self.append(element)

    def converted(self, kind: str) -> Rows | None:
        """The rows when every series converted as `kind`; None when not converted as `kind`; raises the
        series' error (as the parsers below would meet it) when one did not convert."""
        if self.kind != kind:
            return None
        if self.error is not None:
            raise self.error
        return self


def _series(s: Any, field: str) -> tuple[Labels, Any]:
    """Labels and the `value` / `values` of one series, decoded by `series_hook` or a plain object."""
    if isinstance(s, Decoded):
        return s.metric, s.value if field == "value" else s.values
    return _labels(s["metric"]), s[field]


def vector(data: dict[str, Any]) -> list[tuple[Labels, float]]:
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "vector" and isinstance(result, Rows) and (rows := result.converted(kind)) is not None:
            return rows
        if kind == "scalar":
            return [({}, float(result[1]))]  # type: ignore[index]
        if kind != "vector":
            raise Shape(f"expected a vector, got {one_line(kind)}")
        out = []
        for i, s in enumerate(result):  # type: ignore[arg-type]
            out.append(vector_row(s))
            result[i] = None  # type: ignore[index]  # as in `matrix`: never the whole answer twice
        return out
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise Shape(f"a malformed {kind} result ({type(e).__name__}: {one_line(e)})") from e


def matrix(data: dict[str, Any]) -> list[tuple[Labels, list[tuple[float, float]]]]:
    kind, result = data.get("resultType"), data.get("result")
    if kind != "matrix":
        raise Shape(f"expected a range vector (matrix), got {one_line(kind)}")
    try:
        if isinstance(result, Rows) and (rows := result.converted(kind)) is not None:
            return rows
        out = []
        for i, s in enumerate(result):  # type: ignore[arg-type]
            out.append(matrix_row(s))
            result[i] = None  # type: ignore[index]  # the decoded series goes as its samples are converted:
            # a big answer is never held twice (decoded JSON and converted samples at once)
        return out
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise Shape(f"a malformed matrix result ({type(e).__name__}: {one_line(e)})") from e


def _labels(metric: object) -> Labels:
    """The series' labels, their names and values interned: the same pod, namespace and node names come
    back in every answer, and the rows and metadata kept for a window then share one string each instead
    of one per answer."""
    if not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values()):
        raise TypeError("series labels are not an object of strings")
    return {intern(k): intern(v) for k, v in metric.items()}


def timed_out(e: BaseException) -> bool:
    """A read timeout that requests reports as a ConnectionError (it happened while reading the body)."""
    seen: set[int] = set()
    todo: list[object] = [e]
    while todo:
        x = todo.pop()
        if not isinstance(x, BaseException) or id(x) in seen:
            continue
        seen.add(id(x))
        # Not urllib3's TimeoutError: a refused connection (NewConnectionError) subclasses it.
        if isinstance(x, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
            return True
        todo += [x.__cause__, x.__context__, getattr(x, "reason", None), *x.args]
    return False


def retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def json_type(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 200 else text[:197] + "..."
