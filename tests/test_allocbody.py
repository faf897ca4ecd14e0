"""The streamed /allocation body: byte for byte what json.dumps of the whole answer gives."""

from __future__ import annotations

import json

import pytest

from exporter.outputs import allocbody
from exporter.outputs.allocbody import AllocationBody, SetGroups
from exporter.outputs.allocfilter import Props
from exporter.outputs.allocitem import Row
from exporter.outputs.allocrows import Group


def group(ns: str, pod: str, cpu: float) -> Group:
    row = Row()
    row.cost["cpu"] = cpu
    return Group(Props(cluster="c", node="n1", namespace=ns, pod=pod, labels={"team": "t"}), row, {})


def one_set(start: int, *pods: tuple[str, float]) -> SetGroups:
    return SetGroups({p: group("ns", p, c) for p, c in pods}, start, start + 3600, (start, start + 3600), "c")


@pytest.mark.parametrize("flush", [1, 1 << 16])  # every allocation its own piece, or all in one
@pytest.mark.parametrize("sets", [0, 1, 3])
def test_streamed_bytes_are_json_dumps_of_the_whole(monkeypatch: pytest.MonkeyPatch, flush: int, sets: int) -> None:
    monkeypatch.setattr(allocbody, "FLUSH_BYTES", flush)
    made = [one_set(3600 * i, ("b-pod", 0.25 * i), ("a-pod", 1.5), ('q"x\\y', 0.1)) for i in range(sets)]
    body = AllocationBody([b"".join(s.encode()) for s in made[:-1]], made[-1] if made else None, {"uncovered": []})
    whole = {"code": 200, "data": [dict(s.items()) for s in made], "coverage": {"uncovered": []}}
    assert b"".join(body.chunks()) == json.dumps(whole).encode()
    assert body.to_json() == whole
    if made:  # sorted by name, as the dict answer is; amounts as given
        first = body.to_json()["data"][0]
        assert list(first) == ["a-pod", "b-pod", 'q"x\\y']
        assert first["a-pod"]["cpuCost"] == 1.5 and first["a-pod"]["properties"]["pod"] == "a-pod"
