"""A chunk's quantities per (namespace, node, owner, resource), held as arrays of doubles.

At 300k containers on 5,000 nodes nearly every pod is its own (namespace, node) pair: a chunk holds
about 150k pairs, each with an allocation, a request and a usage per resource. As dicts of floats that
was a key tuple, a float object and a dict slot per value, three dicts over; here the three quantities
of a chunk share one index of (namespace, node, owner) keys, and each (quantity, resource) is one
`array('d')` over it (docs/scale.md). A `UsageTable` is a mapping like the dict it replaces, so the
cost math reads it unchanged, in the same order: sums come out bit for bit the same.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, MutableMapping

from exporter.vocab.labels import Attrs, UsageKey

Pair = tuple[str, str, Attrs]  # (namespace, node, owner)
ABSENT = math.nan  # a slot that holds no value: every stored value is finite (the client drops NaN/Inf)


class PairIndex:
    """Row numbers of (namespace, node, owner) keys, in first-seen order; shared by a chunk's tables."""

    __slots__ = ("keys", "rows")

    def __init__(self) -> None:
        self.rows: dict[Pair, int] = {}
        self.keys: list[Pair] = []

    def row(self, pair: Pair) -> int:
        """The pair's row, a new one (at the end) for a pair not seen before."""
        i = self.rows.get(pair)
        if i is None:
            i = self.rows[pair] = len(self.keys)
            self.keys.append(pair)
        return i


class UsageTable(MutableMapping[UsageKey, float]):
    """(namespace, node, owner, resource) -> unit-seconds, as one array per resource over a `PairIndex`.

    Iteration is in order of first insertion, as a dict's: row by row in the order rows were first set
    (the index's order among the rows this table holds), and resources within a row in the order they
    were first set in the table. A dict would order a row's resources by insertion too; no consumer of a
    chunk's rows depends on that order within a row (each key is summed into its own field)."""

    __slots__ = ("columns", "count", "index", "listed", "order")

    def __init__(self, index: PairIndex | None = None) -> None:
        self.index = index if index is not None else PairIndex()
        self.columns: dict[str, array[float]] = {}
        self.order = array("q")  # the rows this table has held, in the order first set here
        self.listed = bytearray()  # 1 for the rows in `order`
        self.count = 0

    def _slot(self, key: UsageKey) -> tuple[array[float] | None, int]:
        ns, node, owner, res = key
        i = self.index.rows.get((ns, node, owner))
        col = self.columns.get(res)
        return (col, i) if i is not None and col is not None and i < len(col) else (None, -1)

    def __getitem__(self, key: UsageKey) -> float:
        col, i = self._slot(key)
        if col is None or math.isnan(v := col[i]):
            raise KeyError(key)
        return v

    def __setitem__(self, key: UsageKey, value: float) -> None:
        if math.isnan(value):
            raise ValueError(f"a NaN quantity for {key}: the client drops non-finite values before they get here")
        ns, node, owner, res = key
        i = self.index.row((ns, node, owner))
        col = self.columns.get(res)
        if col is None:
            col = self.columns[res] = array("d")
        if len(col) <= i:
            col.extend([ABSENT] * (len(self.index.keys) - len(col)))
        if math.isnan(col[i]):
            self.count += 1
            if len(self.listed) <= i:
                self.listed.extend(bytes(len(self.index.keys) - len(self.listed)))
            if not self.listed[i]:
                self.listed[i] = 1
                self.order.append(i)
        col[i] = value

    def add(self, key: UsageKey, value: float) -> None:
        """`table[key] = table.get(key, 0.0) + value`, without an exception per new key."""
        col, i = self._slot(key)
        if col is None or math.isnan(held := col[i]):
            self[key] = 0.0 + value  # as dict.get(key, 0.0) + value: -0.0 becomes 0.0 alike
        else:
            col[i] = held + value

    def __delitem__(self, key: UsageKey) -> None:
        col, i = self._slot(key)
        if col is None or math.isnan(col[i]):
            raise KeyError(key)
        col[i] = ABSENT
        self.count -= 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[UsageKey]:
        keys, columns = self.index.keys, list(self.columns.items())
        for i in self.order:
            ns, node, owner = keys[i]
            for res, col in columns:
                if i < len(col) and not math.isnan(col[i]):
                    yield (ns, node, owner, res)

    def items(self) -> Iterator[tuple[UsageKey, float]]:  # type: ignore[override]
        keys, columns = self.index.keys, list(self.columns.items())
        for i in self.order:
            ns, node, owner = keys[i]
            for res, col in columns:
                if i < len(col) and not math.isnan(v := col[i]):
                    yield (ns, node, owner, res), v
