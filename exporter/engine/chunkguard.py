"""A piece of a window Prometheus will not answer whole: over its sample limit, or answered only in part.

A query refused over the server's sample limit (`SampleLimit`: HTTP 422, "would load too many samples")
is asked again over halves of its span, down to one resolution step. The numbers do not change: pieces
of a window are costed exactly at any size. A partial answer (`PartialAnswer`: `warnings`, or
VictoriaMetrics' `isPartial`, still there after the client's retries) leaves the piece it concerns
uncovered: a sum missing a store's series is never costed as the whole. Each is said in one warning line
of its own kind (counted per occurrence), and a partial piece in a coverage entry.

The seam is one piece's cost (`Pipeline.cost_segment`) and one probe's fetch: the pipeline hands them
in, so how a piece is fetched inside (sub-windows, shards) does not matter here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from exporter.core.allocation import CostResult
from exporter.core.coverage import Coverage, Interval
from exporter.core.window import Window
from exporter.sources.promanswer import PartialAnswer, SampleLimit
from exporter.vocab.durations import format_duration
from exporter.vocab.errors import PrometheusError

Warn = Callable[[str, str], None]  # (text, kind), as Pipeline._warn
Series = tuple[dict[str, str], list[tuple[float, float]]]

SPLIT_NOTE = ("Prometheus refused a query over its sample limit (--query.max-samples): the chunks it refused "
              "were split in halves until each fit, down to one resolution step; a smaller allocation.chunk "
              "avoids the refusals (docs/prometheus-backends.md)")


def halves(w: Window) -> tuple[Window, Window] | None:
    """`w` cut at a step boundary near its middle; None for a single step."""
    steps = w.seconds // w.step
    if steps < 2:
        return None
    mid = w.start + steps // 2 * w.step
    return Window(w.start, mid, w.step), Window(mid, w.end, w.step)


def in_halves(cost: Callable[[Window], CostResult], w: Window,
              warn: Warn) -> Iterator[tuple[Window, CostResult | PartialAnswer]]:
    """(piece, cost(piece)) over `w`: `w` itself, or on a sample limit its halves (again and again). A
    partial answer is handed back for its piece rather than raised, so the other pieces keep their cost."""
    try:
        result: CostResult | PartialAnswer = cost(w)
    except PartialAnswer as e:
        result = e
    except SampleLimit as e:
        parts = halves(w)
        if parts is None:
            raise SampleLimit(f"{e}; even one resolution step ({format_duration(w.step)}) is over it: raise the "
                              "server's sample limit (--query.max-samples)") from e
        warn(SPLIT_NOTE, "sample_limit")
        for half in parts:
            yield from in_halves(cost, half, warn)
        return
    yield w, result


def probe_in_halves(fetch: Callable[[int, int], list[Series]], end: int, span: int, step: int,
                    warn: Warn) -> list[Series]:
    """fetch(end, span): a per-step probe over (end - span, end], or on a sample limit the probes of its
    halves, one after the other. A probe tells where data is present, so a step both halves see is
    harmless."""
    try:
        return fetch(end, span)
    except SampleLimit:
        if span <= step:
            raise
        warn(SPLIT_NOTE, "sample_limit")
        first = max(span // step // 2, 1) * step
        return [*probe_in_halves(fetch, end - span + first, first, step, warn),
                *probe_in_halves(fetch, end, span - first, step, warn)]


def partial_coverage(w: Window, e: PartialAnswer, warn: Warn) -> Coverage:
    """The coverage of a piece left out for a partial answer: its seconds, none of them covered."""
    warn(f"Prometheus answered only in part ({e.detail}): the piece of the window that answer concerns is left "
         "uncovered (see the coverage), never costed as whole (docs/prometheus-backends.md)", "partial_answer")
    return Coverage(seconds=w.seconds, uncovered=[Interval(w.start, w.end, "prometheus",
                                                           f"partial answer from Prometheus: {e.detail}")])


@contextmanager
def handed_on() -> Iterator[None]:
    """Around work that hands a piece's rows on as it goes (pod-level detail, batch by batch): asked again
    in halves or left out, the rows already handed on would count twice or stand for the whole. A
    refusal or a partial answer there ends the run with its own line instead."""
    try:
        yield
    except (SampleLimit, PartialAnswer) as e:
        raise PrometheusError(f"{e} (while reading pod-level rows, which cannot be read again in pieces: "
                              "lower allocation.chunk, or run it again when Prometheus answers in full)") from e
