"""A namespace's volumes below it: each volume's cost split between the pods that mounted its claim. Pure.

The engine charges a volume to its claim's namespace (exporter/core/assets.py). Pod-level answers
(exporter/outputs/podrows.py) then give each pod the part of each volume it held: its byte-seconds of the
volume over the volume's (sources/podqueries.py `volume_shares`, a claim split evenly between the pods
mounting it at once, as OpenCost does), and within a pod evenly between its containers (OpenCost divides
a pod's PVC cost by its container count). Time no pod mounted the claim stays on the namespace's row with
no pod, so the parts add up to what the engine charged the namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

from exporter.core.allocation import Line
from exporter.core.window import Window
from exporter.outputs.allocitem import Row
from exporter.outputs.allocrows import AllocRow
from exporter.sources.podqueries import PodQueries
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.queries import Queries

# namespace -> volume -> pod -> byte-seconds the pod held of it
VolumeShares = Mapping[str, Mapping[str, Mapping[str, float]]]
ContainerKey = tuple[str, str, str, str]  # (namespace, node, pod, container)
# Makes a container's row (its pod's properties) from the namespace's volume row: podrows supplies it.
DAY = 86400
PodRow = Callable[[AllocRow, ContainerKey, Row, dict[str, tuple[float, float]]], AllocRow]


def split_volumes(r: AllocRow, shares: VolumeShares, containers: Mapping[tuple[str, str], list[ContainerKey]],
                  pod_row: PodRow) -> Iterator[AllocRow]:
    """The rows of a namespace's volume row (`r.pvs` set, no node): a row per container of each pod that held a
    volume, then the rest (what no pod held, and the row's load balancers and network) as it was."""
    ns, pvs = r.props.namespace, r.pvs or {}
    held: dict[str, tuple[float, float]] = {}  # volume -> (byte-seconds, cost) given to pods
    for pv, (b, c) in pvs.items():
        pods = {pod: s for pod, s in shares.get(ns, {}).get(pv, {}).items() if s > 0 and (ns, pod) in containers}
        total = sum(pods.values())
        scale = b / total if total > b > 0 else 1.0  # never more than the volume's byte-seconds
        for pod, s in sorted(pods.items()):
            part_b, part_c = s * scale, c * s * scale / b if b else 0.0
            mine = containers[(ns, pod)]
            for key in mine:
                row = Row(line=Line(pv_byte_seconds=part_b / len(mine)))
                row.cost["storage"] = part_c / len(mine)
                yield pod_row(r, key, row, {pv: (part_b / len(mine), part_c / len(mine))})
            b0, c0 = held.get(pv, (0.0, 0.0))
            held[pv] = (b0 + part_b, c0 + part_c)
    if not held:
        yield r
        return
    left = {pv: (b - held.get(pv, (0.0, 0.0))[0], c - held.get(pv, (0.0, 0.0))[1]) for pv, (b, c) in pvs.items()}
    left = {pv: part for pv, part in left.items() if part[0] > 1e-9 * max(pvs[pv][0], 1.0)}
    # What the pods did not hold; exactly none when they held every volume throughout (no -1e-19 residue).
    moved_b, moved_c = sum(b for b, _c in held.values()), sum(c for _b, c in held.values())
    rest = Row(line=replace(r.row.line, pv_byte_seconds=r.row.line.pv_byte_seconds - moved_b if left else 0.0),
               cost=dict(r.row.cost), shared=r.row.shared, energy=r.row.energy, carbon=r.row.carbon)
    rest.cost["storage"] = r.row.cost["storage"] - moved_c if left else 0.0
    if rest.total or left or r.lbs:
        yield replace(r, row=rest, pvs=left or None)


def volume_ids(client: PrometheusClient, q: Queries, w: Window) -> dict[str, str]:
    """PV -> its provider id over `w` (empty where OpenCost's kubecost_pv_info is not scraped)."""
    return {lb.get("persistentvolume", ""): lb.get("provider_id", "")
            for lb, _v in client.query(PodQueries(q).volume_ids(w.seconds), float(w.end))}


Shares = dict[str, dict[str, dict[str, float]]]  # namespace -> volume -> pod -> byte-seconds


def _add_share(out: Shares, lb: Mapping[str, str], byte_seconds: float) -> None:
    out.setdefault(lb.get("namespace", ""), {}).setdefault(lb.get("persistentvolume", ""), {})[lb.get("pod", "")] = \
        byte_seconds


def volume_shares(client: PrometheusClient, q: Queries, w: Window, step: int) -> Shares:
    """Each pod's byte-seconds of each volume over `w` (PodQueries.volume_shares)."""
    out: Shares = {}
    for lb, v in client.query(PodQueries(q).volume_shares(w.seconds), float(w.end)):
        _add_share(out, lb, v * step)
    return out


def volume_shares_by_chunk(client: PrometheusClient, q: Queries, w: Window, chunk: int, step: int
                           ) -> dict[int, Shares]:
    """volume_shares of every whole chunk of `w` ending at a multiple of `chunk`, keyed by its end: one query per
    UTC day (a whole number of chunks: `block`), not per chunk nor per window. A day is asked at its end, or
    today at its last chunk end, not at `w.end`: `12h`, `1d` and `2d`, or `2d` asked again a minute later, ask
    the same queries at the same times, which serve's answer cache keeps (`w.end` may be now, never kept)."""
    out: dict[int, Shares] = {}
    block = chunk * max(1, DAY // chunk)
    last = w.end // chunk * chunk  # every whole chunk's end is at or before it
    for start in range(w.start // block * block, last, block):
        at = min(start + block, last)  # each sample at t is the chunk (t - chunk, t]; those in (start, at] are ours
        for lb, samples in client.query_range_raw(PodQueries(q).volume_shares_by_chunk(block, chunk), float(at)):
            for t, v in samples:
                if t > start:  # at a short day's end the span reaches back past its start: that day's
                    _add_share(out.setdefault(int(t), {}), lb, v * step)
    return out
