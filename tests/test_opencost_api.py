"""OpenCost's /allocation parameters, pure: window forms, step/accumulate set counts and bounds, the v2
filter grammar and its errors. Expected values worked out by hand against a fixed 'now'."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from exporter.core.window import Window, parse_window
from exporter.outputs.allocfilter import FilterError, Props, parse_filter
from exporter.outputs.opencost_api import api_window, parse_aggregate_keys, parse_query
from exporter.vocab.errors import ConfigError


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


NOW = ts("2026-11-26T21:37:42")  # a Thursday
LABELS = {"team": "team", "cost_center": "cost-center"}


@pytest.mark.parametrize("expr,start,end", [
    # OpenCost rounds single-unit durations: 24h ends at the next whole hour (22:00), starts 24h before;
    # the end is then cut at now (21:37, aligned to the minute).
    ("24h", "2026-11-25T22:00:00", "2026-11-26T21:37:00"),
    ("30m", "2026-11-26T21:08:00", "2026-11-26T21:37:00"),  # next minute 21:38 - 30m
    ("7d", "2026-11-20T00:00:00", "2026-11-26T21:37:00"),  # next midnight 11-27 - 7 days
    ("2w", "2026-11-13T00:00:00", "2026-11-26T21:37:00"),  # (now - 14d) to midnight, + 1 day
    ("today", "2026-11-26T00:00:00", "2026-11-26T21:37:00"),
    ("yesterday", "2026-11-25T00:00:00", "2026-11-26T00:00:00"),
    ("week", "2026-11-22T00:00:00", "2026-11-26T21:37:00"),  # Sunday
    ("lastweek", "2026-11-15T00:00:00", "2026-11-22T00:00:00"),
    ("month", "2026-11-01T00:00:00", "2026-11-26T21:37:00"),
    ("lastmonth", "2026-10-01T00:00:00", "2026-11-01T00:00:00"),
    ("2026-11-01T00:00:00Z,2026-11-02T06:30:00Z", "2026-11-01T00:00:00", "2026-11-02T06:30:00"),
    # unix pairs, with OpenCost's ',' and '-' separators: 1793491200 = 2026-11-01T00:00:00Z
    ("1793491200,1793577600", "2026-11-01T00:00:00", "2026-11-02T00:00:00"),
    ("1793491200-1793577600", "2026-11-01T00:00:00", "2026-11-02T00:00:00"),
    # date-only: the end date is a whole day, so this is all of November
    ("2026-11-01,2026-11-30", "2026-11-01T00:00:00", "2026-12-01T00:00:00"),
])
def test_every_opencost_window_form(expr: str, start: str, end: str) -> None:
    assert api_window(expr, NOW, 60) == Window(ts(start), ts(end), 60)


@pytest.mark.parametrize("now,start,end", [
    # 02:00:30: the rounded hour [02:00, 03:00) cut at now holds no whole minute; the trailing hour answers
    ("2026-11-26T02:00:30", "2026-11-26T01:00:00", "2026-11-26T02:00:00"),
    ("2026-11-26T02:01:00", "2026-11-26T02:00:00", "2026-11-26T02:01:00"),  # one whole minute: rounded
])
def test_one_hour_window_is_never_empty(now: str, start: str, end: str) -> None:
    assert api_window("1h", ts(now), 60) == Window(ts(start), ts(end), 60)


def test_date_only_pair_is_whole_days_for_the_cli_too() -> None:
    assert parse_window("2026-11-30,2026-11-30", NOW, 60) == Window(ts("2026-11-30T00:00:00"),
                                                                    ts("2026-12-01T00:00:00"), 60)


def bounds(query: dict[str, str]) -> list[tuple[int, int, int]]:
    q = parse_query({k: [v] for k, v in query.items()}, LABELS, NOW, 60)
    return [(s.bounds.start, s.bounds.end, s.compute.end) for s in q.sets]


def test_hourly_steps_over_24h_are_opencosts_24_sets() -> None:
    sets = bounds({"window": "24h", "step": "1h", "accumulate": "false"})
    assert len(sets) == 24
    assert sets[0] == (ts("2026-11-25T22:00:00"), ts("2026-11-25T23:00:00"), ts("2026-11-25T23:00:00"))
    # the last set is the hour in progress: OpenCost's bounds, computed up to now
    assert sets[-1] == (ts("2026-11-26T21:00:00"), ts("2026-11-26T22:00:00"), ts("2026-11-26T21:37:00"))
    assert len(bounds({"window": "24h", "step": "1h", "accumulate": "true"})) == 1
    assert len(bounds({"window": "24h"})) == 1  # no step: one set for the window
    assert len(bounds({"window": "7d", "step": "day"})) == 7


def test_calendar_accumulation_widens_to_whole_periods() -> None:
    w = "2026-11-20T06:00:00Z,2026-11-22T06:00:00Z"
    assert [b[:2] for b in bounds({"window": w, "accumulate": "day"})] == [
        (ts("2026-11-20T00:00:00"), ts("2026-11-21T00:00:00")),
        (ts("2026-11-21T00:00:00"), ts("2026-11-22T00:00:00")),
        (ts("2026-11-22T00:00:00"), ts("2026-11-23T00:00:00"))]
    # Weeks from Sunday: the 20th is in the week of the 15th, the 22nd opens the next one.
    assert [b[:2] for b in bounds({"window": w, "accumulate": "week"})] == [
        (ts("2026-11-15T00:00:00"), ts("2026-11-22T00:00:00")),
        (ts("2026-11-22T00:00:00"), ts("2026-11-29T00:00:00"))]
    assert bounds({"window": "month", "accumulate": "month"}) == [
        (ts("2026-11-01T00:00:00"), ts("2026-12-01T00:00:00"), ts("2026-11-26T21:37:00"))]
    assert [b[:2] for b in bounds({"window": "2026-11-01,2026-11-30", "accumulate": "month"})] == [
        (ts("2026-11-01T00:00:00"), ts("2026-12-01T00:00:00"))]
    assert len(bounds({"window": "2026-01-01,2026-06-30", "accumulate": "quarter"})) == 2


def test_step_not_dividing_the_window_cuts_the_last_set() -> None:
    sets = bounds({"window": "2026-11-01T00:00:00Z,2026-11-01T01:30:00Z", "step": "1h"})
    assert sets == [(ts("2026-11-01T00:00:00"), ts("2026-11-01T01:00:00"), ts("2026-11-01T01:00:00")),
                    (ts("2026-11-01T01:00:00"), ts("2026-11-01T02:00:00"), ts("2026-11-01T01:30:00"))]


@pytest.mark.parametrize("query,message", [
    ({"window": "30d", "step": "1m"}, "more than 1000 sets"),
    ({"accumulate": "sometimes"}, "accumulate='sometimes': use true, false"),
    ({"step": "90s"}, "whole multiple of the 60s resolution"),
    ({"aggregate": "squad"}, "unknown property 'squad'"),
    ({"includeIdle": "maybe"}, "includeIdle='maybe': use true or false"),
])
def test_bad_parameters_name_the_cause(query: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_query({k: [v] for k, v in query.items()}, LABELS, NOW, 60)


@pytest.mark.parametrize("query,pod_level", [
    ({"aggregate": "namespace,team"}, False),
    ({"aggregate": "node", "filter": 'label[team]:"a"'}, False),
    ({"aggregate": "namespace,pod"}, True),
    ({"aggregate": "controller"}, True),
    ({"aggregate": "annotation:owner"}, True),  # a pod's annotations, over its namespace's
    ({"filter": 'controllerName:"api"'}, True),
    ({"filter": 'namespace:"a"+container:"app"'}, True),
    ({"filter": 'services:"web"'}, True),
])
def test_only_pod_level_keys_and_fields_ask_for_pod_rows(query: dict[str, str], pod_level: bool) -> None:
    assert parse_query({k: [v] for k, v in query.items()}, LABELS, NOW, 60).pod_level is pod_level


def test_aggregate_keys_and_aliases() -> None:
    keys, labels = parse_aggregate_keys("namespace,team,label:app,annotation:owner", LABELS)
    assert [(k.kind, k.key) for k in keys] == [("namespace", ""), ("label", "team"), ("label", "app"),
                                              ("annotation", "owner")]
    assert labels == {**LABELS, "label_app": "app"}  # label:app is attributed for this query


WEB = Props(cluster="c1", node="n-od-2", namespace="web", labels={"team": "web-a", "app": "front"})
KS = Props(cluster="c1", node="n-spot", namespace="kube-system", labels={})


@pytest.mark.parametrize("text,web,ks", [
    ('namespace:"web"', True, False),
    ('namespace:"web","kube-system"', True, True),  # alternatives
    ('namespace!:"web","kube-system"', False, False),  # negated alternatives must all hold
    ('namespace~:"ube"', False, True),
    ('node<~:"n-od"', True, False),
    ('node~>:"spot"', False, True),  # OpenCost's suffix operator
    ('node>~:"spot"', False, True),  # the spelling issue 15 uses
    ('node!~>:"spot"', True, False),
    ('label[team]:"web-a"', True, False),
    ('team:"web-a"', True, False),  # alias field
    ('label:"app"', True, False),  # key-less: the label is set
    ('label[team]:"__unallocated__"', False, True),  # OpenCost: the empty value is __unallocated__
    ('namespace:"web"+label[app]:"front"', True, False),
    ('namespace:"kube-system" | (node<~:"n-od" + label[team]!:"x")', True, True),
    ('(namespace:"web"|namespace:"kube-system")+cluster:"c1"', True, True),
    ('cluster!:"c1"', False, False),
])
def test_filter_grammar(text: str, web: bool, ks: bool) -> None:
    node = parse_filter(text, {"cost_center": "cost-center"})
    assert node is not None
    assert (node.matches(WEB), node.matches(KS)) == (web, ks)


@pytest.mark.parametrize("text,message", [
    ("namespace:kube-system", "filter position 10: expected a quoted value"),
    ('namespace="x"', "filter position 9: unexpected character '='"),
    ('(namespace:"a"', "filter position 0: '\\(' without a matching '\\)'"),
    ('namespace:"a")', "filter position 13: '\\)' without a matching '\\('"),
    ('namespace:"a"+node:"b"|node:"c"', "filter position 22: '\\+' and '\\|' are mixed in one scope"),
    ('squad:"x"', "filter position 0: unknown field 'squad'"),
    ('namespace:"abc', "filter position 10: unterminated string"),
    ('label[team:"x"', "filter position 5: unterminated key access"),
    ('namespace:"a"+', "filter position 14: expected a field"),
    ('namespace "a"', "filter position 10: expected an operator"),
    ('namespace:"a" node:"b"', "filter position 14: expected '\\+', '\\|' or the end"),
])
def test_bad_filters_name_the_position(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter(text)
