"""The compact usage table (core/usagetable.py) reads exactly as the dict of floats it replaces."""

from __future__ import annotations

import math

import pytest

from exporter.core.allocation import ChunkUsage, cost_chunk
from exporter.core.pricing import NodeFacts, NodeRates
from exporter.core.usagetable import PairIndex, UsageTable

T = ("team-a",)


def test_a_table_is_a_dict_of_sums() -> None:
    index = PairIndex()
    table = UsageTable(index)
    other = UsageTable(index)  # shares the index: a row it adds is not one of `table`'s
    other.add(("ns0", "n0", T, "cpu"), 7.0)
    table.add(("ns1", "n1", T, "cpu"), 1.5)
    table.add(("ns2", "n1", T, "memory"), 4.0)
    table.add(("ns1", "n1", T, "memory"), 2.0)
    table.add(("ns1", "n1", T, "cpu"), 0.25)  # 1.5 + 0.25
    assert len(table) == 3 and len(other) == 1
    # Rows in first-set order (ns1 before ns2), a row's resources in the order first set in the table.
    assert list(table.items()) == [(("ns1", "n1", T, "cpu"), 1.75), (("ns1", "n1", T, "memory"), 2.0),
                                   (("ns2", "n1", T, "memory"), 4.0)]
    assert table[("ns2", "n1", T, "memory")] == 4.0
    assert table.get(("ns0", "n0", T, "cpu")) is None  # the other table's row
    assert ("ns2", "n1", T, "cpu") not in table
    del table[("ns1", "n1", T, "memory")]
    assert dict(table) == {("ns1", "n1", T, "cpu"): 1.75, ("ns2", "n1", T, "memory"): 4.0}
    table.update({("ns3", "n2", (), "gpu"): 3.0})
    assert len(table) == 3 and table[("ns3", "n2", (), "gpu")] == 3.0
    with pytest.raises(KeyError):
        del table[("ns1", "n1", T, "memory")]
    with pytest.raises(ValueError, match="NaN"):
        table[("ns1", "n1", T, "gpu")] = math.nan


def test_cost_chunk_costs_a_table_as_its_dict() -> None:
    # One node of 4 cores at 0.01/core-hour for an hour: node cost 4 * 3600 / 3600 * 0.01 = 0.04.
    # ns1 allocated 1 core for the hour (3600 core-seconds): 0.01; idle 0.03.
    rates = {"n1": NodeRates(cpu=0.01, ram=0.0, gpu=0.0, source="test")}
    nodes = {"n1": NodeFacts(name="n1", cores=4.0, ram_bytes=0.0, gpus=0.0, labels={}, opencost={})}
    index = PairIndex()
    alloc, req, used = UsageTable(index), UsageTable(index), UsageTable(index)
    alloc.add(("ns1", "n1", T, "cpu"), 3600.0)
    req.add(("ns1", "n1", T, "cpu"), 1800.0)
    used.add(("ns1", "n1", T, "cpu"), 3600.0)
    got = cost_chunk(ChunkUsage(0, 3600, alloc, req, used, {("n1", "cpu"): 4 * 3600.0}, nodes), rates)
    assert got.table[("ns1", "n1", T)].cpu_cost == pytest.approx(0.01, rel=1e-12)
    assert got.table[("ns1", "n1", T)].cpu_request_seconds == 1800.0
    assert got.table[("__idle__", "n1", ())].cpu_cost == pytest.approx(0.03, rel=1e-12)
    assert sum(line.cpu_cost for line in got.table.values()) == pytest.approx(0.04, rel=1e-12)
