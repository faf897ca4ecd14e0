"""A namespace's load balancers and network below it: each given to its pods, as OpenCost gives them. Pure.

The engine charges a LoadBalancer Service and a namespace's egress to the namespace (exporter/core/assets.py).
Pod-level answers (exporter/outputs/podrows.py) then give
- each load balancer's cost to the pods behind its Service, evenly between the Service's pods seen in the
  segment (a chunk, an hour by default: OpenCost splits by the hours each allocation overlapped the load
  balancer, which per hour is even), and within a pod evenly between its containers. A pod is behind a
  Service when the Service's Endpoints list its IP (kube-state-metrics' `kube_endpoint_address` joined to
  `kube_pod_info{pod_ip}`, podmeta.fetch_meta: kube-state-metrics exports no selectors);
- the namespace's network cost to its pods by each pod's transmitted bytes over the namespace's
  (cAdvisor's `container_network_transmit_bytes_total`, `pod_bytes`), within a pod evenly between containers.

What no pod can take (a Service with no endpoints, bytes of pods with no container in the segment) stays on
the namespace's row with no pod (`__unallocated__` at pod level), so the parts add up to the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

from exporter.core.allocation import Line
from exporter.core.window import Window
from exporter.outputs.allocitem import Row
from exporter.outputs.allocrows import AllocRow
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.queries import Queries

ContainerKey = tuple[str, str, str, str]  # (namespace, node, pod, container)
PodBytes = Mapping[str, Mapping[str, float]]  # namespace -> pod -> transmitted bytes in the segment
# A container's row from the namespace's row: podrows supplies it (its pod's properties, no pvs).
PodRow = Callable[[AllocRow, ContainerKey, Row, dict[str, tuple[float, float]]], AllocRow]
_NET = ("network_zone_cost", "network_region_cost", "network_internet_cost")


def pod_bytes(client: PrometheusClient, q: Queries, w: Window, step: int) -> dict[str, dict[str, float]]:
    """Each pod's transmitted bytes over `w` (Queries.transmitted per pod: the engine's weights, per pod)."""
    out: dict[str, dict[str, float]] = {}
    for lb, v in client.query(q.transmitted(w.seconds, "namespace, pod"), float(w.end)):
        out.setdefault(lb.get("namespace", ""), {})[lb.get("pod", "")] = v * step
    return out


def split_services(r: AllocRow, services: Mapping[tuple[str, str], tuple[str, ...]], traffic: PodBytes,
                   containers: Mapping[tuple[str, str], list[ContainerKey]], pod_row: PodRow) -> Iterator[AllocRow]:
    """The rows of a namespace's node-less row that carries load balancers (`r.lbs`) or network cost: a row
    per container of each pod that takes a part, then what is left (with the row's volumes) as it was."""
    ns, lbs = r.props.namespace, r.lbs or {}
    pods = sorted(pod for (n, pod) in containers if n == ns)
    # pod -> (service -> (seconds, cost)), and the network share of each pod
    lb_parts: dict[str, dict[str, tuple[float, float]]] = {}
    placed: dict[str, tuple[float, float]] = {}  # service -> what went to pods
    for key, (s, c) in lbs.items():
        _ns, _sep, svc = key.partition("/")
        behind = [pod for pod in pods if svc in services.get((ns, pod), ())]
        for pod in behind:
            lb_parts.setdefault(pod, {})[key] = (s / len(behind), c / len(behind))
        if behind:
            placed[key] = (s, c)
    net = r.row.cost["network"]
    sent = traffic.get(ns, {})
    total = sum(sent.values())
    shares = {p: b / total for p, b in sent.items() if p in pods and b > 0} if net and total > 0 else {}
    if not lb_parts and not shares:
        yield r
        return
    for pod in sorted(set(lb_parts) | set(shares)):
        mine = containers[(ns, pod)]
        share, held = shares.get(pod, 0.0), lb_parts.get(pod, {})
        lb_cost = sum(c for _s, c in held.values())
        for ck in mine:
            line = Line(**{f: getattr(r.row.line, f) * share / len(mine) for f in _NET})
            row = Row(line=line)
            row.cost["network"] = net * share / len(mine)
            row.cost["load_balancer"] = lb_cost / len(mine)
            out = pod_row(r, ck, row, {})
            yield replace(out, pvs=None, lbs={k: (s / len(mine), c / len(mine)) for k, (s, c) in held.items()}
                          or None)
    moved_lb = sum(c for _s, c in placed.values())
    moved_net = net * sum(shares.values())
    rest = Row(line=replace(r.row.line, **{f: getattr(r.row.line, f) * (1 - sum(shares.values())) for f in _NET}),
               cost=dict(r.row.cost), shared=r.row.shared, energy=r.row.energy, carbon=r.row.carbon)
    rest.cost["load_balancer"] = r.row.cost["load_balancer"] - moved_lb if len(placed) < len(lbs) else 0.0
    rest.cost["network"] = net - moved_net if sum(sent.get(p, 0.0) for p in shares) < sum(sent.values()) else 0.0
    left = {k: v for k, v in lbs.items() if k not in placed}
    if rest.total or left or r.pvs:
        yield replace(r, row=rest, lbs=left or None)
