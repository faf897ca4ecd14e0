"""Synthetic Kepler series, both metric generations, as `Series` for a Cluster's `extra`.

Joule counters grow at constant watts (value = base + watts * t), so a window's joules are watts x seconds
exactly. Kepler 0.10+: kepler_pod_cpu_joules_total / kepler_node_cpu_joules_total with `zone` and
`node_name`; Kepler 0.7-0.9: kepler_container_<zone>_joules_total (`container_namespace`, `mode`) and
kepler_node_<zone>_joules_total, the node named by `instance`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from demo.synthetic import GIB, Cluster, Series

BASE = 1e6  # counters start high, so no window sees a reset


def kepler_node(node: str, watts: Mapping[str, float], legacy: bool = False) -> tuple[Series, ...]:
    """A node's joule counters, one per zone (package, dram, core, ...)."""
    if legacy:
        return tuple(Series(f"kepler_node_{zone}_joules_total", {"instance": node, "mode": "dynamic"}, w, BASE)
                     for zone, w in watts.items())
    return tuple(Series("kepler_node_cpu_joules_total", {"node_name": node, "zone": zone, "path": "/sys/rapl"},
                        w, BASE) for zone, w in watts.items())


def kepler_pod(namespace: str, pod: str, node: str, watts: Mapping[str, float], legacy: bool = False,
               mode: str = "dynamic") -> tuple[Series, ...]:
    """A pod's joule counters (0.7-0.9: its one container's), one per zone; `mode` only for 0.7-0.9."""
    if legacy:
        return tuple(Series(f"kepler_container_{zone}_joules_total",
                            {"container_namespace": namespace, "pod_name": pod, "container_name": "app",
                             "instance": node, "mode": mode}, w, BASE) for zone, w in watts.items())
    return tuple(Series("kepler_pod_cpu_joules_total",
                        {"pod_namespace": namespace, "pod_name": pod, "pod_id": f"uid-{pod}", "state": "running",
                         "node_name": node, "zone": zone}, w, BASE) for zone, w in watts.items())


# The demo's Kepler: what each pod draws per core and per GiB it uses, and what a node draws idle.
POD_WATTS_PER_CORE, POD_WATTS_PER_GIB = 4.0, 0.4
NODE_IDLE_WATTS = {"package": 30.0, "dram": 6.0}


def with_kepler(cluster: Cluster, current: tuple[str, ...], legacy: tuple[str, ...]) -> Cluster:
    """Kepler on some nodes: 0.10+ on `current`, 0.7-0.9 on `legacy`; the others have none (estimated).

    Each pod draws 4 W per core and 0.4 W per GiB it uses (mean usage); a node draws 30 W package and 6 W
    DRAM idle, plus its pods."""
    series: list[Series] = []
    for name in (*current, *legacy):
        old = name in legacy
        node_w = dict(NODE_IDLE_WATTS)
        for p in cluster.pods:
            if p.node != name:
                continue
            cpu = sum(c.cpu_usage for c in p.containers)
            gib = sum(c.mem_usage for c in p.containers) / GIB
            watts = {"package": POD_WATTS_PER_CORE * cpu, "dram": POD_WATTS_PER_GIB * gib}
            series += kepler_pod(p.namespace, p.name, name, watts, legacy=old)
            node_w = {z: node_w[z] + w for z, w in watts.items()}
        series += kepler_node(name, node_w, legacy=old)
    return replace(cluster, extra=(*cluster.extra, *series))
