"""The bench's yardsticks, measured against the same Prometheus as `allocate`.

* The bare reference: the four plain aggregations any cost engine must at least make, as range
  queries at the bench resolution. Their time is the floor the allocation paths are compared to.
* The rule cost: one evaluation of each rule of the mixin's allocation group (what Prometheus pays
  per rule interval to keep the recorded series), as instant queries at one time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from exporter.sources.recordedqueries import RECORDED_PARTS

CONTAINERS = 'container!="",container!="POD",namespace!="",pod!=""'
ON_NODE = '* on (namespace, pod) group_left (node) max by (namespace, pod, node) (kube_pod_info{node!=""})'


def reference_queries(rate_window: str) -> dict[str, str]:
    """CPU usage, memory working set, CPU and memory requests, each `sum by (namespace, node)`."""
    def by_node(expr: str) -> str:
        return f"sum by (namespace, node) ({expr} {ON_NODE})"

    return {
        "cpu usage": by_node(f"rate(container_cpu_usage_seconds_total{{{CONTAINERS}}}[{rate_window}])"),
        "memory usage": by_node(f"container_memory_working_set_bytes{{{CONTAINERS}}}"),
        "cpu requests": by_node('kube_pod_container_resource_requests{resource="cpu"}'),
        "memory requests": by_node('kube_pod_container_resource_requests{resource="memory"}'),
    }


@dataclass
class Timed:
    wall_s: float = 0.0
    prometheus_s: float = 0.0  # the sum of execTotalTime
    # Per query, where the time went: (Prometheus s, series answered, the record's name or the query's start).
    items: list[tuple[float, int, str]] = field(default_factory=list)


def _exec_time(body: dict) -> float:  # type: ignore[type-arg]
    return float(body["data"].get("stats", {}).get("timings", {}).get("execTotalTime", 0.0))


def bare_reference(url: str, start: int, end: int, step: int, rate_window: str) -> Timed:
    """The four aggregations over (start, end] at `step`: the same steps `allocate` evaluates."""
    out = Timed()
    for expr in reference_queries(rate_window).values():
        t = time.monotonic()
        resp = requests.post(f"{url}/api/v1/query_range", timeout=3600,
                             data={"query": expr, "start": start + step, "end": end, "step": step, "stats": "all"})
        resp.raise_for_status()
        out.wall_s += time.monotonic() - t
        out.prometheus_s += _exec_time(resp.json())
    return out


def rule_cost(url: str, rules_file: Path, at: int) -> Timed:
    """One evaluation of every rule in the file at `at` (what the rule engine pays per interval), rule by rule
    in `items`."""
    out = Timed()
    for group in yaml.safe_load(rules_file.read_text())["groups"]:
        for rule in group["rules"]:
            t = time.monotonic()
            resp = requests.post(f"{url}/api/v1/query", timeout=3600,
                                 data={"query": rule["expr"], "time": at, "stats": "all"})
            resp.raise_for_status()
            out.wall_s += time.monotonic() - t
            body = resp.json()
            secs = _exec_time(body)
            out.prometheus_s += secs
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(rule.get("labels", {}).items()))
            out.items.append((secs, len(body["data"].get("result") or []), f"{rule['record']}{{{labels}}}"))
    return out


def split_derived(rules: Path, work: Path) -> tuple[Path, Path]:
    """The allocation group as two rule files: the rules reading raw series, and those selecting from the
    group's own labelled record (the deprecated names, rules/rules/allocation.libsonnet), whose cost can only
    be measured once that record exists."""
    [group] = yaml.safe_load(rules.read_text())["groups"]
    out = []
    for name, keep in (("own", False), ("derived", True)):
        path = work / f"allocation-{name}.rules.yaml"
        picked = [r for r in group["rules"] if (RECORDED_PARTS in r["expr"]) == keep]
        path.write_text(yaml.safe_dump({"groups": [{**group, "rules": picked}]}))
        out.append(path)
    return out[0], out[1]
