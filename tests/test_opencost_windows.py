"""The set window OpenCost reports against the part chargeback computes, and the request parameters that
change idle and sharing. Pure (parse_query); expected values by hand against a fixed 'now'."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from exporter.outputs.opencost_api import parse_query

NOW = int(datetime(2026, 11, 18, 10, 30, 20, tzinfo=timezone.utc).timestamp())  # a Wednesday


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


def sets(**params: str) -> list[tuple[int, int, int, int]]:
    q = parse_query({k: [v] for k, v in params.items()}, {}, NOW, 60)
    return [(s.bounds.start, s.bounds.end, s.compute.start, s.compute.end) for s in q.sets]


@pytest.mark.parametrize("window,bounds,computed", [
    # OpenCost: today is [00:00, next 00:00); the costs reach now (10:30, aligned to the minute).
    ("today", ("2026-11-18T00:00", "2026-11-19T00:00"), ("2026-11-18T00:00", "2026-11-18T10:30")),
    # 7d: today and the 6 days before it, whole: [11-12 00:00, 11-19 00:00).
    ("7d", ("2026-11-12T00:00", "2026-11-19T00:00"), ("2026-11-12T00:00", "2026-11-18T10:30")),
    ("1d", ("2026-11-18T00:00", "2026-11-19T00:00"), ("2026-11-18T00:00", "2026-11-18T10:30")),
    # 2w: (now - 14 d) truncated to its day plus one day, to the next midnight
    ("2w", ("2026-11-05T00:00", "2026-11-19T00:00"), ("2026-11-05T00:00", "2026-11-18T10:30")),
    # 24h ends at the next whole hour (11:00), as chargeback already rounded it
    ("24h", ("2026-11-17T11:00", "2026-11-18T11:00"), ("2026-11-17T11:00", "2026-11-18T10:30")),
    # OpenCost ends yesterday at midnight, week (from Sunday) and month at now
    ("yesterday", ("2026-11-17T00:00", "2026-11-18T00:00"), ("2026-11-17T00:00", "2026-11-18T00:00")),
    ("week", ("2026-11-15T00:00", "2026-11-18T10:30"), ("2026-11-15T00:00", "2026-11-18T10:30")),
    ("month", ("2026-11-01T00:00", "2026-11-18T10:30"), ("2026-11-01T00:00", "2026-11-18T10:30")),
    ("2026-11-10T00:00:00Z,2026-11-11T00:00:00Z", ("2026-11-10T00:00", "2026-11-11T00:00"),
     ("2026-11-10T00:00", "2026-11-11T00:00")),
])
def test_set_window_is_opencosts_and_costs_stop_at_now(window: str, bounds: tuple[str, str],
                                                       computed: tuple[str, str]) -> None:
    assert sets(window=window) == [(ts(bounds[0]), ts(bounds[1]), ts(computed[0]), ts(computed[1]))]


def test_steps_of_today_stop_at_now() -> None:
    """step=1h over today: the eleven hours begun by 10:30, the last reported whole and computed to now;
    the hours after now are not computed (OpenCost would list them empty)."""
    got = sets(window="today", step="1h", accumulate="false")
    assert len(got) == 11
    assert got[0] == (ts("2026-11-18T00:00"), ts("2026-11-18T01:00"), ts("2026-11-18T00:00"), ts("2026-11-18T01:00"))
    assert got[-1] == (ts("2026-11-18T10:00"), ts("2026-11-18T11:00"), ts("2026-11-18T10:00"),
                       ts("2026-11-18T10:30"))
    # without a step, the step is the whole set window: one set, the day
    assert sets(window="today", accumulate="false") == sets(window="today")


@pytest.mark.parametrize("params,include_idle,sharing", [
    ({}, False, {"shareIdle": False}),  # idle only when asked
    ({"includeIdle": "true"}, True, {}),
    ({"idle": "true"}, True, {}),  # Kubecost's older name
    ({"shareIdle": "true"}, False, {"shareIdle": False}),  # nothing to share without includeIdle
    ({"shareIdle": "true", "includeIdle": "true"}, True, {"shareIdle": True}),
    ({"includeIdle": "true", "idleByNode": "false"}, True, {"idleByNode": False}),
    ({"includeIdle": "1", "shareNamespaces": ""}, True, {"shareNamespaces": ""}),  # empty: shares nothing
    ({"includeIdle": "1", "shareLabels": "", "shareCost": ""}, True, {"shareLabels": "", "shareCost": 0.0}),
    ({"includeIdle": "1", "shareSplit": "even"}, True, {"shareSplit": "even"}),
    ({"includeIdle": "1", "shareSplit": ""}, True, {}),  # no split named: the configured one
    ({"includeIdle": "1", "shareTenancyCosts": "false"}, True, {"sharedCosts": []}),
])
def test_idle_and_sharing_parameters(params: dict[str, str], include_idle: bool, sharing: dict[str, object]) -> None:
    """From the configured sharing (`api.allocationSharing: config`), a request changes only what it names;
    from OpenCost's defaults (the default), it starts with no namespace, label or idle sharing."""
    q = parse_query({k: [v] for k, v in params.items()}, {}, NOW, 60, sharing="config")
    assert (q.include_idle, q.sharing) == (include_idle, sharing)
    opencost: dict[str, object] = {"shareNamespaces": [], "shareLabels": {}, "shareIdle": False, "idleByNode": False}
    q = parse_query({k: [v] for k, v in params.items()}, {}, NOW, 60)
    assert (q.include_idle, q.sharing) == (include_idle, {**opencost, **sharing})


def test_a_duration_with_no_whole_step_yet_keeps_its_trailing_span() -> None:
    """`1h` at 02:00:20 holds no whole minute of the hour from 02:00: the trailing hour is computed and
    reported (01:00 to 02:00), not a set window of two hours."""
    at = ts("2026-11-18T02:00:20")
    q = parse_query({"window": ["1h"]}, {}, at, 60)
    [s] = q.sets
    assert (s.bounds.start, s.bounds.end) == (s.compute.start, s.compute.end) == (ts("2026-11-18T01:00"),
                                                                                  ts("2026-11-18T02:00"))
