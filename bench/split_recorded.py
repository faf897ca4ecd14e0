"""Prometheus seconds of one chunk holding a namespace split between teams: raw throughout (how such chunks
were read before) against recorded amounts split by raw per-pod rows of that namespace only (now), with the
same chunk without any split as the floor. A measurement, not a test: nothing here asserts.

    .venv/bin/python -m bench.split_recorded [--containers 10000] [--work /tmp/bench-split]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from demo.clusters import bench_cluster
from demo.localprom import PrometheusServer, backfill, backfill_rules
from exporter.config.schema import parse_config
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.mixin.budgets import allocation_rules
from exporter.sources.prometheus import PrometheusClient

STEP, CHUNK = 900, 7200  # the bench's 15-minute resolution and 2 h chunks


Measured = tuple[float, float, int, dict[str, int], float, dict[str, float]]


def measure(cfg: dict[str, Any], end: int) -> Measured:
    """(Prometheus s, wall s, queries, chunk sources, total cost, ns-0000's cost per team) of the chunk
    ending at `end`."""
    config = parse_config(cfg)
    client = PrometheusClient(config.prometheus)
    pipeline = Pipeline(config, client)
    t = time.monotonic()
    result = pipeline.compute_chunk(Window(end - CHUNK, end, STEP))
    teams: dict[str, float] = {}
    for (ns, attrs, *_rest), v in result.costs.items():
        if ns == "ns-0000":
            teams[attrs[0] if attrs else ""] = teams.get(attrs[0] if attrs else "", 0.0) + v
    return (client.stats.server_seconds, time.monotonic() - t, client.stats.queries, dict(pipeline.fetcher.sources),
            sum(result.costs.values()), teams)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=10_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-split"))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    n = args.containers
    nodes, namespaces = max(n // 50, 10), max(n // 200, 5)
    cluster = bench_cluster(n, nodes, namespaces)
    # ns-0000's pods alternate between their team and team "split": the namespace is split.
    pods = tuple(dataclasses.replace(p, labels={**p.labels, "team": "split"})
                 if p.namespace == "ns-0000" and i % 2 else p for i, p in enumerate(cluster.pods))
    cluster = dataclasses.replace(cluster, pods=pods)
    end = int(time.time()) // 3600 * 3600 - 3600
    shutil.rmtree(args.work, ignore_errors=True)
    backfill(cluster, args.work / "data", end - CHUNK - 3600, end + 900, STEP, lean=True)
    prom = PrometheusServer(args.work / "data", extra_args=["--query.lookback-delta=20m",
                                                             "--query.max-samples=200000000"])
    base: dict[str, Any] = {
        "prometheus": {"url": prom.url, "timeout": "1800s"}, "attribution": {"source": "prometheus"},
        "allocation": {"resolution": "15m", "usageRateWindow": "45m", "chunk": "2h"}}
    rules = args.work / "allocation.rules.yaml"
    rules.write_text(yaml.safe_dump(allocation_rules(parse_config(base))))
    with prom:
        backfill_rules(prom, rules, end - CHUNK - 1800, end)
        runs: dict[str, dict[str, Any]] = {
            "split, raw throughout (before)": {**base, "allocation": {**base["allocation"], "recordedRules": "off"}},
            "split, recorded + per-pod shares (now)": base,
            "no split (attribution by an absent label), recorded": {
                **base, "attribution": {"source": "prometheus", "labels": {"team": "absent-label"}}},
        }
        best: dict[str, Measured] = {}
        for _ in range(args.repeat):
            for name, cfg in runs.items():
                got = measure(cfg, end)
                if name not in best or got[0] < best[name][0]:
                    best[name] = got
    print(f"{n} containers on {nodes} nodes, {namespaces} namespaces (one split), one {CHUNK // 3600} h chunk at "
          f"{STEP // 60} m; best of {args.repeat}")
    for name, (prom_s, wall, queries, sources, total, teams) in best.items():
        print(f"  {name:55} {prom_s:6.2f} s Prometheus {wall:6.2f} s wall {queries:3d} queries {sources} "
              f"total {total:.6f}; ns-0000 by team: {', '.join(f'{k} {v:.6f}' for k, v in sorted(teams.items()))}")


if __name__ == "__main__":
    main()
