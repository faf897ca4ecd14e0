"""Synthetic Kepler series, both metric generations, as `Series` for a Cluster's `extra`.

Joule counters grow at constant watts (value = base + watts * t), so a window's joules are watts x seconds
exactly. Kepler 0.10+: kepler_pod_cpu_joules_total / kepler_node_cpu_joules_total with `zone` and
`node_name`; Kepler 0.7-0.9: kepler_container_<zone>_joules_total (`container_namespace`, `mode`) and
kepler_node_<zone>_joules_total, the node named by `instance`."""

from __future__ import annotations

from collections.abc import Mapping

from demo.synthetic import Series

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
