"""OpenCost's /allocation parameters: window, step, accumulate, aggregate, filter and the sharing flags.

Pure: turns a query string into an `AllocationQuery` (the sets to compute, what to group by, what to
keep) so the handler only runs `Pipeline.compute` per set. Windows and set bounds follow OpenCost's
`parseWindow` and `ComputeAllocationHandler` (see the README's "OpenCost API" section for differences).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from exporter.core.window import LATEST, Window, check_bounds, iso, parse_window
from exporter.outputs.allocfilter import Node, comparisons, parse_filter
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import aggregate_parts, ksm_label, prom_key

# Aggregate keys answered from namespace-level rows; the others need pod-level rows (exporter/outputs/podrows.py).
NAMESPACE_KINDS = ("cluster", "node", "namespace")
POD_KINDS = ("controllerKind", "controller", "service", "pod", "container")
# Filter fields that only pod-level rows carry (annotations: a pod's own, over its namespace's).
POD_FIELDS = frozenset({"controllerKind", "controller", "pod", "container", "services", "providerID", "annotation"})
MAX_SETS = 1000  # step=1m over a month would be 43,200 computations: refused by name instead
_OC_DURATION = re.compile(r"^(\d+)(m|h|d|w)$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAMED_STEPS = {"hour": 3600, "day": 86400, "week": 604800}
_CALENDAR = ("hour", "day", "week", "month", "quarter")


@dataclass(frozen=True)
class AggKey:
    """One aggregate property: `namespace`, `node`, `pod`, ..., or a label/annotation key."""

    # cluster | node | namespace | controllerKind | controller | service | pod | container | label | annotation
    kind: str
    key: str = ""  # the Kubernetes label or annotation key


@dataclass(frozen=True)
class AllocationSet:
    """One set of the answer: the bounds OpenCost reports (`window`) and the part that is computed."""

    bounds: Window
    compute: Window


@dataclass(frozen=True)
class AllocationQuery:
    sets: list[AllocationSet]
    aggregate: list[AggKey]
    labels: dict[str, str]  # attribution labels for this query (metric name -> Kubernetes key)
    filter: Node | None
    include_idle: bool
    sharing: dict[str, object] = field(default_factory=dict)  # overrides of the `sharing` config section
    proportional: bool = False
    pod_level: bool = False  # some key or filter field needs rows below (namespace, node)
    kubernetes_keys: bool = False  # labelKeys=kubernetes: properties' label keys as Kubernetes spells them


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _rounded(n: int, unit: str, now: float) -> tuple[int, int]:
    """OpenCost's bounds of a single-unit duration: `Nd`/`Nw` are whole days to the next midnight; `Nh`
    and `Nm` end at the next whole hour/minute (chargeback's rounding, as it always answered them)."""
    size = _UNIT[unit]
    if unit == "w":
        return (int(now) - n * size) // 86400 * 86400 + 86400, int(now) // 86400 * 86400 + 86400
    end = -(-int(now) // size) * size if unit != "d" else (int(now) // 86400 + 1) * 86400
    return end - n * size, end


def api_window(text: str, now: float, step: int, allow_empty: bool = False) -> Window:
    """An OpenCost window. Single-unit durations round as OpenCost does (`24h` ends at the next whole
    hour, `7d` and `2w` at the next midnight), then every window stops at `now`; the rest is parse_window.
    A rounded window holding no whole step yet falls back to the trailing duration; `allow_empty` as in
    parse_window (`today` at 00:00:30 is empty)."""
    t = text.strip()
    m = _OC_DURATION.match(t)
    if m is None:
        return parse_window(t, now, step, allow_empty)
    if len(m.group(1)) > 12:  # a trillion weeks is no window, and int() refuses 4,300+ digits (it was a 500)
        raise ConfigError(f"invalid window {t[:40]!r}: a duration of more than 12 digits")
    n, unit = int(m.group(1)), m.group(2)
    if n <= 0:
        raise ConfigError(f"invalid window {text!r}: the duration must be positive")
    start, end = _rounded(n, unit, now)
    check_bounds(start, end, t)
    hi = min(end, int(now)) // step * step
    lo = start // step * step
    if hi <= lo:
        # `1h` in the first minute of an hour: the rounded window holds no whole step yet. An error
        # here would fail a client's query only at some times of day; answer the trailing hour instead.
        return parse_window(t, now, step)
    return Window(lo, hi, step)


def api_bounds(text: str, now: float, window: Window) -> Window:
    """The set window OpenCost reports for `text` (core/pkg/opencost/window.go's parseWindow): `today` is
    the whole day, single-unit durations their rounded bounds. Costs cover only `window`, which stops at
    now (docs/api.md, "Windows and coverage"); a duration that fell back to its trailing span keeps it."""
    t = text.strip().lower()
    m = _OC_DURATION.match(t)
    if t == "today":
        return Window(window.start, int(now) // 86400 * 86400 + 86400, window.step)
    if m is None:
        return window
    start, end = _rounded(int(m.group(1)), m.group(2), now)
    return Window(window.start, end, window.step) if window.start == start // window.step * window.step else window


def calendar_start(t: int, unit: str) -> int:
    """The start of the UTC hour/day/week (Sunday)/month/quarter holding t."""
    d = _utc(t)
    if unit == "hour":
        return t // 3600 * 3600
    day = d.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "week":  # OpenCost's weeks start on Sunday
        day -= timedelta(days=(day.weekday() + 1) % 7)
    elif unit == "month":
        day = day.replace(day=1)
    elif unit == "quarter":
        day = day.replace(day=1, month=(day.month - 1) // 3 * 3 + 1)
    return int(day.timestamp())


def calendar_next(t: int, unit: str) -> int:
    """The start of the period after the one starting at t."""
    d = _utc(t)
    y, mo = divmod(d.month - 1 + (1 if unit == "month" else 3), 12)
    if unit in ("hour", "day", "week"):
        nxt = t + {"hour": 3600, "day": 86400, "week": 604800}[unit]
    else:  # the year 10000 is no datetime: compare before building it
        nxt = LATEST + 1 if d.year + y > 9999 else int(d.replace(year=d.year + y, month=mo + 1).timestamp())
    if nxt > LATEST:  # its bounds could not be printed (a 500)
        raise ConfigError(f"accumulate={unit}: the {unit} holding {iso(t)} ends after {iso(LATEST)}")
    return nxt


def parse_step(text: str | None, window: Window) -> int:
    """`step`: a duration (`1h`, `1d`) or hour/day/week; absent means one set for the whole window."""
    if text is None or not text.strip():
        return window.seconds
    t = text.strip().lower()
    try:
        step = _NAMED_STEPS.get(t) or parse_duration(t)
    except ConfigError as e:
        raise ConfigError(f"step={text!r}: {e}") from e
    if window.start + -(-window.seconds // step) * step > LATEST:  # checked before any set is made or printed
        raise ConfigError(f"step={text.strip()[:40]!r}: the last set would end after {iso(LATEST)}; use a "
                          "shorter step")
    if step % window.step:
        raise ConfigError(f"step={text!r}: must be a positive multiple of the resolution; {text.strip()} is not "
                          f"a whole multiple of the {window.step}s resolution")
    return step


def parse_accumulate(text: str | None) -> str:
    """OpenCost's accumulate: true/all (one set), false/none (a set per step), or a calendar period."""
    t = (text or "").strip().lower()
    if t in ("", "false", "none", "0"):
        return "none"
    if t in ("true", "all", "1"):
        return "all"
    if t in _CALENDAR:
        return t
    raise ConfigError(f"accumulate={text!r}: use true, false, hour, day, week, month or quarter")


def plan_sets(window: Window, step_text: str | None, accumulate: str, now: float,
              bounds: Window | None = None) -> list[AllocationSet]:
    """The sets OpenCost returns. none: one per step from the window's start (the last one cut at the
    window's end); all: one; hour/day/week/month/quarter: the calendar periods the window touches, whole
    (OpenCost widens the query to them), each computed up to now at most. `bounds` is OpenCost's own set
    window (api_bounds: `today` ends at midnight); the computed part stops at `window`'s end, and step sets
    wholly after it (the rest of today) are left out."""
    last = int(now) // window.step * window.step
    bounds = bounds or window
    sets: list[AllocationSet] = []
    if accumulate == "all" or not window.seconds:  # an empty window (`today` at 00:00:30) is one empty set
        return [AllocationSet(bounds, window)]
    if accumulate == "none":
        step = parse_step(step_text, bounds)
        if -(-window.seconds // step) > MAX_SETS:
            raise ConfigError(f"step={step_text!r} makes more than {MAX_SETS} sets over this window; "
                              "use a longer step or a shorter window")
        t = window.start
        while t < window.end:
            sets.append(AllocationSet(Window(t, t + step, window.step), Window(t, min(t + step, window.end),
                                                                                window.step)))
            t += step
        return sets
    t = calendar_start(window.start, accumulate)
    while t < window.end:
        nxt = calendar_next(t, accumulate)
        if len(sets) >= MAX_SETS:
            raise ConfigError(f"accumulate={accumulate} makes more than {MAX_SETS} sets over this window")
        compute = Window(t, min(nxt, last), window.step)
        sets.append(AllocationSet(Window(t, nxt, window.step), compute))
        t = nxt
    return [s for s in sets if s.compute.end > s.compute.start]


def step_windows(window: Window, step_text: str | None) -> list[Window]:
    """What each set of a step-only query (/assets, /cloudCost with step) computes: /allocation's sets
    with accumulate=false, the last one cut at the window's end."""
    return [s.compute for s in plan_sets(window, step_text, "none", window.end)]


def parse_aggregate_keys(text: str, labels: Mapping[str, str]) -> tuple[list[AggKey], dict[str, str]]:
    """`namespace,label:app,team` into keys; label keys not yet attributed are added for this query."""
    labels = dict(labels)
    keys: list[AggKey] = []
    for raw in aggregate_parts(text):
        if raw in NAMESPACE_KINDS or raw in POD_KINDS:
            keys.append(AggKey(raw))
        elif raw.startswith(("label:", "annotation:")) and raw.split(":", 1)[1]:
            kind, key = raw.split(":", 1)
            if kind == "label":  # either spelling of a configured key: cost_center is cost-center
                key = next((k for k in labels.values() if prom_key(k) == prom_key(key)), key)
                if key not in labels.values():
                    labels[ksm_label(key)] = key
            keys.append(AggKey(kind, key))
        elif raw in labels:  # the project's aliases: team, cost_center, ...
            keys.append(AggKey("label", labels[raw]))
        else:
            choices = ", ".join([*NAMESPACE_KINDS, *POD_KINDS, "label:<key>", "annotation:<key>", *labels])
            raise ConfigError(f"aggregate={text!r}: unknown property {raw!r}; use {choices}")
    return keys, labels


def _flag(query: Mapping[str, list[str]], name: str, default: bool | None = None) -> bool | None:
    v = query.get(name, [None])[0]
    if v is None or v == "":
        return default
    if v.lower() not in ("true", "false", "1", "0"):
        raise ConfigError(f"{name}={v!r}: use true or false")
    return v.lower() in ("true", "1")


# OpenCost's defaults for what the `sharing` config section also sets: no shared namespace, no idle sharing.
# Fixed (tenancy) costs stay shared, as OpenCost's shareTenancyCosts defaults to true.
OPENCOST_SHARING: dict[str, object] = {"shareNamespaces": [], "shareLabels": {}, "shareIdle": False,
                                       "idleByNode": False}
SHARING_BASES = ("opencost", "config")


def sharing_base(query: Mapping[str, list[str]], default: str) -> str:
    """`sharing=opencost|config`: what a request's sharing starts from (api.allocationSharing by default)."""
    base = (query.get("sharing", [""])[0] or default).strip().lower()
    if base not in SHARING_BASES:
        raise ConfigError(f"sharing={query['sharing'][0]!r}: use opencost (share only what the request asks) or "
                          "config (the configured sharing section)")
    return base


def sharing_overrides(query: Mapping[str, list[str]], include_idle: bool, base: str = "opencost") -> dict[str, object]:
    """What this request changes in the `sharing` config section. From OpenCost's defaults (`base` opencost:
    no namespace, label or idle sharing unless the request asks, so kube-system's pods show in aggregate=pod),
    or from the configured section (`base` config). Each sharing parameter given then replaces the value, an
    empty one included: `shareNamespaces=` shares no namespace. Idle exists only with includeIdle, as in
    OpenCost, so without it shareIdle has nothing to share and is off."""
    sharing: dict[str, object] = dict(OPENCOST_SHARING) if base == "opencost" else {}
    for name in ("shareNamespaces", "shareLabels"):
        if name in query:
            sharing[name] = query[name][0]
    split = query.get("shareSplit", [""])[0]
    if split:
        sharing["shareSplit"] = split
    if "shareCost" in query:
        try:
            share_cost = float(query["shareCost"][0] or 0)
        except ValueError as e:
            raise ConfigError(f"shareCost={query['shareCost'][0]!r}: a monthly amount such as 30.42") from e
        if not math.isfinite(share_cost):  # 1e999 is float infinity
            raise ConfigError(f"shareCost={query['shareCost'][0]!r}: a finite monthly amount such as 30.42")
        sharing["shareCost"] = share_cost
    for name in ("shareIdle", "idleByNode"):
        value = _flag(query, name)
        if value is not None:
            sharing[name] = value
    if not include_idle:
        sharing["shareIdle"] = False
    if _flag(query, "shareTenancyCosts") is False:
        sharing["sharedCosts"] = []  # the configured fixed costs (control plane, ...) are left out
    return sharing


def parse_query(query: Mapping[str, list[str]], labels: Mapping[str, str], now: float,
                step: int, sharing: str = "opencost") -> AllocationQuery:
    """Every OpenCost /allocation parameter this engine answers, validated; bad ones raise ConfigError.
    `sharing`: what a request without `sharing=` starts from (api.allocationSharing)."""
    def arg(name: str) -> str | None:
        return query.get(name, [None])[0]

    text = arg("window") or "24h"
    window = api_window(text, now, step, allow_empty=True)
    accumulate = parse_accumulate(arg("accumulate"))
    keys, labels = parse_aggregate_keys(arg("aggregate") or "namespace", labels)
    aliases = {name: key for name, key in labels.items()}
    node = parse_filter(arg("filter") or "", aliases)
    pod_level = (any(k.kind in POD_KINDS or k.kind == "annotation" for k in keys)
                 or any(c.field in POD_FIELDS for c in (comparisons(node) if node is not None else [])))
    include_idle = bool(_flag(query, "includeIdle", _flag(query, "idle", False)))
    overrides = sharing_overrides(query, include_idle, sharing_base(query, sharing))
    sets = plan_sets(window, arg("step"), accumulate, now, api_bounds(text, now, window))
    spelling = (arg("labelKeys") or "opencost").strip().lower()
    if spelling not in ("opencost", "kubernetes"):
        raise ConfigError(f"labelKeys={arg('labelKeys')!r}: use opencost (cost_center) or kubernetes (cost-center)")
    return AllocationQuery(sets, keys, labels, node, include_idle, overrides,
                           bool(_flag(query, "includeProportionalAssetResourceCosts")), pod_level,
                           spelling == "kubernetes")
