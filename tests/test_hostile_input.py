"""Hostile API parameters are refused by name before any arithmetic, query or output (issue 25 item 6).

Each case was a 5xx before: RecursionError (filter nesting), ValueError (a window ending in the year
10000), OverflowError (a step of 10^17 hours), a 502 after 8 s (2,000 aggregate keys).
"""

from __future__ import annotations

import pytest

from exporter.outputs.allocfilter import MAX_DEPTH, FilterError, Props, parse_filter
from exporter.outputs.assetjson import parse_aggregate_parts
from exporter.outputs.formatters import parse_aggregate
from exporter.outputs.opencost_api import api_window, parse_aggregate_keys, parse_query
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import MAX_AGGREGATE_KEYS

from .test_opencost_api import LABELS, NOW, ts


def nested(n: int) -> str:
    return "(" * n + 'namespace:"web"' + ")" * n


def test_filter_nesting_is_capped_at_32() -> None:
    assert MAX_DEPTH == 32
    node = parse_filter(nested(32))
    assert node is not None and node.matches(Props(namespace="web")) and not node.matches(Props(namespace="x"))
    # the 33rd '(' is at 0-based position 32
    for n in (33, 500, 100_000):
        with pytest.raises(FilterError, match=r"^filter position 32: parentheses nested more than 32 deep$"):
            parse_filter(nested(n))


def query(**params: str) -> None:
    parse_query({k: [v] for k, v in params.items()}, LABELS, NOW, 60)


@pytest.mark.parametrize("params,message", [
    # a date-only end is the whole day: 9999-12-31 ends at 10000-01-01, which no datetime can print
    ({"window": "9999-12-31,9999-12-31"}, "window '9999-12-31,9999-12-31' ends after 9999-12-31T23:59:59Z"),
    ({"window": "253402300700,253402300800"}, "window bound '253402300800': out of range (1970 to 9999)"),
    ({"window": "99999999999d"}, "starts before 1970-01-01T00:00:00Z"),  # 10^11 days before 2026
    ({"window": "1" * 5000 + "h"}, "a duration of more than 12 digits"),
    ({"window": "2026-11-01T00:00:00Z,2026-11-01T01:00:00Z", "step": "99999999999999999h"},
     "step='99999999999999999h': the last set would end after 9999-12-31T23:59:59Z"),
    ({"window": "9999-12-30T00:00:00Z,9999-12-31T00:00:00Z", "accumulate": "month"},
     "accumulate=month: the month holding 9999-12-01T00:00:00Z ends after 9999-12-31T23:59:59Z"),
    ({"shareCost": "1e999"}, "shareCost='1e999': a finite monthly amount"),
    ({"shareCost": "-inf"}, "shareCost='-inf': a finite monthly amount"),
    ({"aggregate": ",".join(f"label:k{i}" for i in range(2000))}, "more than 32 keys"),
])
def test_out_of_range_parameters_are_refused_by_name(params: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        query(**params)
    assert message in str(e.value)


def test_windows_up_to_the_last_printable_instant_are_accepted() -> None:
    w = api_window("9999-12-31T00:00:00Z,9999-12-31T23:59:59Z", NOW, 60)
    assert (w.start, w.end) == (253402214400, 253402300740)  # 23:59:59 aligned down to the minute
    assert api_window("1970-01-01T00:00:00Z,1970-01-01T01:00:00Z", NOW, 60).start == 0
    # a step as long as the window is one set, however long
    q = parse_query({"window": ["2026-11-01T00:00:00Z,2026-11-02T00:00:00Z"], "step": ["1d"]}, LABELS, NOW, 60)
    assert [(s.bounds.start, s.bounds.end) for s in q.sets] == [(ts("2026-11-01T00:00:00"),
                                                                ts("2026-11-02T00:00:00"))]


def test_aggregate_keys_are_capped_in_every_door() -> None:
    assert MAX_AGGREGATE_KEYS == 32
    ok, too_many = ",".join(f"label:k{i}" for i in range(32)), ",".join(f"label:k{i}" for i in range(33))
    assert len(parse_aggregate_keys(ok, LABELS)[0]) == 32
    assert len(parse_aggregate(ok, LABELS)[0]) == 32  # allocate --aggregate
    assert parse_aggregate_parts(",".join(["type"] * 32)) == ["type"] * 32  # /assets, /cloudCost
    for parse in (lambda: parse_aggregate_keys(too_many, LABELS), lambda: parse_aggregate(too_many, LABELS),
                  lambda: parse_aggregate_parts(",".join(["type"] * 33))):
        with pytest.raises(ConfigError, match="more than 32 keys"):
            parse()
