"""OpenCost's /allocation answer encoded allocation by allocation, for answers too big to hold whole.

A pod-level answer has an allocation of about 40 fields per pod: as one dict, and then its JSON text,
it would take several times the groups it is made from (docs/scale.md). Here a set's allocations are
encoded one at a time from its groups, straight to the socket for the last set (earlier sets of a
stepped answer are encoded as soon as they are computed, so their groups go). The bytes are those
`json.dumps` of the whole dict would give, so `to_json()` serves in-process callers.
`response` is the namespace-level answer, built whole from the same sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.core.allocation import CostResult
from exporter.core.coverage import Coverage
from exporter.outputs.allocitem import GpuInfo, api_item, lb_allocations, pv_allocations
from exporter.outputs.allocrows import Group, aggregate, build_rows, properties_json, proportional_costs
from exporter.outputs.opencost_api import AllocationQuery, AllocationSet

FLUSH_BYTES = 1 << 16  # the size of the pieces handed to the socket


@dataclass
class SetGroups:
    """One set's groups and what its allocations need besides: the computed span, the set's bounds and,
    for includeProportionalAssetResourceCosts, each node's cost per resource."""

    groups: Mapping[str, Group]
    start: int
    end: int
    bounds: tuple[int, int]
    cluster: str
    node_cost: Mapping[tuple[str, str], float] | None = None
    kubernetes_keys: bool = False  # labelKeys=kubernetes: label and annotation keys as Kubernetes spells them
    usage_max: Mapping[tuple[str, str, str], Mapping[str, float]] | None = None  # pod-level answers only
    volume_ids: Mapping[str, str] | None = None  # PV -> provider id, for `pvs`
    gpus: Mapping[tuple[str, str, str], GpuInfo] | None = None  # the GPU each GPU container was seen on

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, g in sorted(self.groups.items()):
            proportional = None if self.node_cost is None else proportional_costs(g, self.node_cost, self.cluster)
            props = properties_json(g, self.kubernetes_keys)
            p = g.props
            gpu = self.gpus.get((p.namespace, p.pod, p.container)) if self.gpus and p.container else None
            yield name, api_item(name, g.row, self.start, self.end, self.bounds, props, proportional,
                                 pv_allocations(g.pvs, self.cluster, self.volume_ids), self.raw_only(g), gpu,
                                 lb_allocations(g.lbs, self.cluster))

    def raw_only(self, g: Group) -> dict[str, float] | None:
        """OpenCost's rawAllocationOnly: max usage, which only an allocation of one container has (a maximum
        of several containers' sum is not the sum of their maxima); null otherwise, and with no usage seen."""
        p = g.props
        peak = self.usage_max.get((p.namespace, p.pod, p.container)) if self.usage_max and p.container else None
        if not peak:
            return None
        return {"cpuCoreUsageMax": peak.get("cpu", 0.0), "ramByteUsageMax": peak.get("memory", 0.0),
                "gpuUsageMax": peak.get("gpu", 0.0)}

    def encode(self) -> Iterator[bytes]:
        """`{"name": {...}, ...}` as json.dumps writes it, in pieces of about FLUSH_BYTES."""
        parts, size = ["{"], 1
        for i, (name, item) in enumerate(self.items()):
            text = f"{', ' if i else ''}{json.dumps(name)}: {json.dumps(item)}"
            parts.append(text)
            size += len(text)
            if size >= FLUSH_BYTES:
                yield "".join(parts).encode()
                parts, size = [], 0
        parts.append("}")
        yield "".join(parts).encode()


@dataclass
class AllocationBody:
    """`{"code": 200, "data": [sets], "coverage": {...}}`: earlier sets already encoded, the last as groups."""

    done: list[bytes] = field(default_factory=list)
    last: SetGroups | None = None
    coverage: dict[str, Any] = field(default_factory=dict)

    def chunks(self) -> Iterator[bytes]:
        yield b'{"code": 200, "data": ['
        for i, encoded in enumerate(self.done):
            yield (b", " if i else b"") + encoded
        if self.last is not None:
            if self.done:
                yield b", "
            yield from self.last.encode()
        yield b'], "coverage": ' + json.dumps(self.coverage).encode() + b"}"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(b"".join(self.chunks()))
        return body


def response(results: Iterable[tuple[AllocationSet, CostResult]], query: AllocationQuery,
             label_keys: tuple[str, ...], cluster: str, volume_ids: Mapping[str, str] | None = None) -> dict[str, Any]:
    """OpenCost's body: `data` is one map per set; plus `coverage` over all sets (what the numbers stand on).
    Sets are consumed one by one, so only one set's cost table is held at a time."""
    data: list[dict[str, Any]] = []
    coverage = Coverage()
    span: tuple[int, int] | None = None
    for s, result in results:
        span = (span[0] if span else result.start, result.end)
        m = result.metadata
        rows = build_rows(result, label_keys, cluster, m.namespaces if m else {}, m.annotations if m else {})
        groups = aggregate(rows, query.aggregate, query.filter, query.include_idle, query.proportional)
        data.append(set_data(groups, result, s, query, cluster, volume_ids))
        coverage.merge(result.coverage)
    return {"code": 200, "data": data, "coverage": coverage.to_json(span)}


def set_data(groups: Mapping[str, Group], result: CostResult, s: AllocationSet, query: AllocationQuery,
             cluster: str, volume_ids: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One set of the answer: name -> OpenCost allocation."""
    return dict(SetGroups(groups, result.start, result.end, (s.bounds.start, s.bounds.end), cluster,
                          result.node_cost if query.proportional else None, query.kubernetes_keys,
                          volume_ids=volume_ids).items())
