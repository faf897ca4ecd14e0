"""Data coverage: which steps of a chunk have their sources' data, which can be bridged, which cannot.

kube-state-metrics (KSM) is OOM-killed and rescheduled, cAdvisor scrapes fail: the nodes and pods
keep running, so the money is spent. A gap that is short (at most `allocation.maxGapBridge`) and has
data on both sides is bridged with the last known state; anything else is reported as uncovered and
never invented. Pure: the pipeline feeds in the presence samples of one probe query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from exporter.core.window import iso

# What each source's absence means. KSM carries capacity and placement: without it there is no cost.
SOURCES = ("ksm", "cadvisor")
SOURCE_NAMES = {"ksm": "kube-state-metrics", "cadvisor": "cAdvisor", "opencost": "OpenCost"}


class State(Enum):
    COVERED = "covered"
    BRIDGED = "bridged"
    UNCOVERED = "uncovered"


class Reason(Enum):
    """Why a gap is uncovered: the words of the warning."""

    NONE = ""
    NO_DATA = "no {name} data"
    BEFORE = "no {name} data before {at}"
    AFTER = "no {name} data after {at} yet"
    TOO_LONG = "{name} missing longer than maxGapBridge"


@dataclass(frozen=True)
class SourceState:
    state: State
    before: int | None = None  # last step the source was present (bridged, or an open gap)
    after: int | None = None  # first step it was present again (bridged)
    reason: Reason = Reason.NONE


COVERED = SourceState(State.COVERED)


@dataclass(frozen=True)
class Segment:
    """A step-aligned sub-window (start, end] in which every source is in one state."""

    start: int
    end: int
    sources: dict[str, SourceState]

    def state(self, source: str) -> SourceState:
        return self.sources.get(source, COVERED)

    @property
    def covered(self) -> bool:
        return all(s.state is State.COVERED for s in self.sources.values())


def _source_states(steps: list[int], present: set[int], step: int, max_bridge: int,
                   horizon: int | None) -> list[SourceState]:
    """The state of one source at each chunk step, from the steps (over the wider probe span) it is present."""
    ordered = sorted(present)
    out: list[SourceState] = []
    for t in steps:
        if t in present:
            out.append(COVERED)
            continue
        before = max((p for p in ordered if p < t), default=None)
        after = min((p for p in ordered if p > t), default=None)
        if before is None and after is None:
            out.append(SourceState(State.UNCOVERED, reason=Reason.NO_DATA))
        elif before is None:
            out.append(SourceState(State.UNCOVERED, after=after, reason=Reason.BEFORE))
        elif after is None and horizon is not None and horizon - before - step >= max_bridge:
            out.append(SourceState(State.UNCOVERED, before, None, Reason.TOO_LONG))  # already too long
        elif after is None:
            out.append(SourceState(State.UNCOVERED, before=before, reason=Reason.AFTER))
        elif after - before - step > max_bridge:
            out.append(SourceState(State.UNCOVERED, before, after, Reason.TOO_LONG))
        else:
            out.append(SourceState(State.BRIDGED, before, after))
    return out


def plan(start: int, end: int, step: int, present: dict[str, set[int]], max_bridge: int,
         sources: Iterable[str] = SOURCES, horizon: int | None = None) -> list[Segment]:
    """Split the chunk (start, end] into segments of equal state per source.

    `present` holds, per source, the step timestamps at which it had data, over a span reaching
    `max_bridge` either side of the chunk (so a gap crossing the chunk's edges is seen whole). A gap is
    bridged when the source is present before and after it and at most `max_bridge` seconds of steps
    are missing; otherwise it is uncovered, with the reason. `horizon` is the last step probed: a gap
    still open there but already longer than `max_bridge` is too long, not "no data after yet".
    """
    steps = list(range(start + step, end + 1, step))
    names = list(sources)
    per_source = {s: _source_states(steps, present.get(s, set()), step, max_bridge, horizon) for s in names}
    segments: list[Segment] = []
    seg_start = start
    for i, t in enumerate(steps):
        here = {s: per_source[s][i] for s in names}
        last = i == len(steps) - 1
        if last or any(per_source[s][i + 1] != here[s] for s in names):
            segments.append(Segment(seg_start, t, {s: v for s, v in here.items() if v.state is not State.COVERED}))
            seg_start = t
    return segments


def open_gap(segments: list[Segment], now: float, max_bridge: int) -> Segment | None:
    """The first segment where a source is missing with no data after it yet, for less than
    `max_bridge`: it may still be bridged, so serve waits for it rather than report it uncovered."""
    for seg in segments:
        for st in seg.sources.values():
            if st.reason is Reason.AFTER and st.before is not None and now - st.before <= max_bridge:
                return seg
    return None


def waiting_reason(seg: Segment) -> str:
    return ", ".join(f"{SOURCE_NAMES.get(s, s)} missing since {iso(st.before)}"
                     for s, st in sorted(seg.sources.items()) if st.before is not None)


@dataclass(frozen=True)
class Interval:
    start: int
    end: int
    source: str
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"start": iso(self.start), "end": iso(self.end), "source": self.source}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class Coverage:
    """What a result's numbers stand on: covered seconds, bridged and uncovered intervals per source."""

    seconds: int = 0  # length of the window(s)
    covered_seconds: int = 0  # seconds with a cost: covered or bridged
    bridged: list[Interval] = field(default_factory=list)
    uncovered: list[Interval] = field(default_factory=list)
    # Which source priced each namespace's egress: kubecost-network-costs, istio, cadvisor-unclassified.
    network: dict[str, set[str]] = field(default_factory=dict)

    def add_network(self, sources: dict[str, set[str]]) -> None:
        for source, namespaces in sources.items():
            self.network.setdefault(source, set()).update(namespaces)

    def add_segment(self, seg: Segment) -> None:
        length = seg.end - seg.start
        self.seconds += length
        if seg.state("ksm").state is not State.UNCOVERED:
            self.covered_seconds += length
        states = sorted(seg.sources.items())
        if seg.state("ksm").state is State.UNCOVERED:  # nothing is costed: the other sources do not matter
            states = [("ksm", seg.state("ksm"))]
        for source, st in states:
            if st.state is State.BRIDGED:
                _append(self.bridged, Interval(seg.start, seg.end, source))
            elif st.state is State.UNCOVERED:
                at = st.after if st.reason is Reason.BEFORE else st.before
                text = st.reason.value.format(name=SOURCE_NAMES.get(source, source), at=iso(at) if at else "")
                _append(self.uncovered, Interval(seg.start, seg.end, source, text))

    def merge(self, other: Coverage) -> None:
        self.seconds += other.seconds
        self.covered_seconds += other.covered_seconds
        for iv in other.bridged:
            _append(self.bridged, iv)
        for iv in other.uncovered:
            _append(self.uncovered, iv)
        self.add_network(other.network)

    def uncovered_seconds(self, source: str) -> int:
        return sum(iv.end - iv.start for iv in self.uncovered if iv.source == source)

    def bridged_seconds(self, source: str) -> int:
        return sum(iv.end - iv.start for iv in self.bridged if iv.source == source)

    def to_json(self, window: tuple[int, int] | None = None) -> dict[str, object]:
        """With `window` (start, end) named, so that an empty answer still says what it covers."""
        named = {"window": {"start": iso(window[0]), "end": iso(window[1])}} if window else {}
        return {**named, "windowSeconds": self.seconds, "coveredSeconds": self.covered_seconds,
                "bridged": [iv.to_json() for iv in self.bridged],
                "uncovered": [iv.to_json() for iv in self.uncovered],
                "network": {source: sorted(ns) for source, ns in sorted(self.network.items())}}

    def warnings(self) -> list[str]:
        """One line naming every uncovered interval and how much of the window the costs cover."""
        if not self.uncovered:
            return []
        parts = ", ".join(f"{iso(iv.start)}..{iso(iv.end)} uncovered ({iv.reason})" for iv in self.uncovered)
        return [f"{parts}; costs cover {_hours(self.covered_seconds)} of {_hours(self.seconds)}"]


def _append(intervals: list[Interval], iv: Interval) -> None:
    """Adjacent intervals of one source (consecutive chunks) join into one. A chunk far from any data
    says "no data"; its neighbour nearer the data names where the data starts, which says more."""
    for i, last in enumerate(intervals):
        if last.end == iv.start and last.source == iv.source:
            reason = iv.reason if last.reason.startswith("no") and last.reason.endswith(" data") else last.reason
            intervals[i] = Interval(last.start, iv.end, iv.source, reason)
            return
    intervals.append(iv)
    intervals.sort(key=lambda x: (x.start, x.source))


def _hours(seconds: int) -> str:
    h = seconds / 3600
    return f"{h:.0f}h" if h == int(h) else f"{h:.2f}h"


def rule_gap(start: int, end: int, steps: int, held: int, evaluations: int, resolution: str) -> str:
    """Why a chunk the mixin's allocation rules ran over is read from raw series: `held` of its `steps` hold
    an evaluation, and a step with none would cost nothing (its capacity all idle)."""
    if evaluations > held:  # some step holds two or more: the rules run more often than the steps
        why = (f"the rule group evaluates more often than allocation.resolution ({resolution}), so a missed "
               f"evaluation can leave a step without one; set its interval to {resolution}")
    else:
        why = (f"an interval longer than allocation.resolution ({resolution}), or evaluations missed "
               "(Prometheus down); the rule group's interval must be the resolution")
    return (f"the recorded allocation rules evaluated at {held} of {steps} steps of "
            f"{iso(start)}..{iso(end)} ({evaluations} evaluations): {why}; reading raw series there")

