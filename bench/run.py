"""`make bench`: allocate a 24 h window over synthetic clusters of 1k, 10k and 100k containers.

For each size it backfills a real Prometheus, runs `chargeback allocate` as a child
process and prints: allocate wall time, the time Prometheus itself spent evaluating
the queries (its execTotalTime stats), their ratio, Python's share, and peak RSS. Then the same
24 h at pod level (`aggregate=pod` through `Exporter.allocation`, bench/podlevel.py), time and peak RSS.
A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from demo.clusters import bench_cluster
from demo.localprom import PrometheusServer, backfill, backfill_rules
from exporter.mixin.budgets import allocation_group_only

SIZES = (1_000, 10_000, 100_000)
# Samples every 15 minutes and a 15-minute resolution keep the 100k backfill to ~90M samples.
INTERVAL = 900


def allocation_rules_file(cfg: Path, work: Path) -> Path:
    """The mixin's allocation group for this config, rendered by `chargeback rules` in a child process:
    rendering Jsonnet here would grow this process, and a forked child's peak RSS starts from ours."""
    subprocess.run([sys.executable, "-m", "exporter", "rules", "--config", str(cfg), "--out", str(work / "rules")],
                   check=True, capture_output=True)
    rendered = yaml.safe_load((work / "rules" / "chargeback.rules.yaml").read_text())
    path = work / "allocation.rules.yaml"
    path.write_text(yaml.safe_dump(allocation_group_only(rendered)))
    return path


def run_child(cmd: list[str], work: Path, name: str) -> tuple[str, str, float, float, float]:
    """Run `cmd` with its output in files; (stdout, stderr, wall s, peak RSS MB, CPU s) of that child alone."""
    out_path, err_path = work / f"{name}.out", work / f"{name}.err"
    with out_path.open("w") as out_fh, err_path.open("w") as err_fh:
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out_fh, stderr=err_fh)
        # wait4 gives this child's own rusage (ru_maxrss = its peak RSS), not every child's.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t
    out, err = out_path.read_text(), err_path.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed: {err.strip()}")
    return out, err, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # Linux reports KiB


def run_one(containers: int, root: Path, concurrency: int = 1, recorded: bool = False) -> dict[str, float]:
    nodes = max(containers // 50, 10)
    namespaces = max(containers // 200, 5)
    end = int(time.time()) // 3600 * 3600
    start = end - 86400
    work = root / str(containers)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t = time.monotonic()
    print(f"[{containers}] generating {containers} containers on {nodes} nodes in {namespaces} namespaces...",
          file=sys.stderr, flush=True)
    block = "24h" if containers <= 10_000 else "4h"
    samples = backfill(bench_cluster(containers, nodes, namespaces), work / "data", start - 1800, end, INTERVAL,
                       lean=True, block=block)
    backfill_s = time.monotonic() - t
    print(f"[{containers}] backfilled {samples:,} samples in {backfill_s:.0f}s", file=sys.stderr, flush=True)
    cfg = work / "config.yaml"
    prom = PrometheusServer(work / "data", extra_args=["--query.lookback-delta=20m", "--query.max-samples=200000000",
                                                        "--query.timeout=30m"])
    raw_cfg = {
        "prometheus": {"url": prom.url, "timeout": "1800s"},
        "allocation": {"resolution": "15m", "usageRateWindow": "45m", "chunk": "1h", "concurrency": concurrency,
                       "recordedRules": "auto" if recorded else "off"},
    }
    cfg.write_text(yaml.safe_dump(raw_cfg))
    rules_s = 0.0
    with prom:
        if recorded:  # what Prometheus would have recorded live, evaluated over the history by promtool
            rules = allocation_rules_file(cfg, work)
            t = time.monotonic()
            backfill_rules(prom, rules, start - 1800, end)
            rules_s = time.monotonic() - t
            print(f"[{containers}] recorded the allocation rules over the day in {rules_s:.0f}s", file=sys.stderr,
                  flush=True)
        window = f"{start},{end}"
        cmd = [sys.executable, "-m", "exporter", "--log-level", "ERROR", "allocate", "--config", str(cfg),
               "--window", window, "--format", "json", "--stats"]
        out, err, wall, rss, cpu = run_child(cmd, work, "allocate")
        pods_out, _err, pods_wall, pods_rss, _cpu = run_child(
            [sys.executable, "-m", "bench.podlevel", str(cfg), window, "pod"], work, "podlevel")
    pods = json.loads(pods_out.strip().splitlines()[-1])
    stats = json.loads(err.strip().splitlines()[-1])
    data = json.loads(out)["data"][0]
    return {
        "containers": containers,
        "nodes": nodes,
        "namespaces": len(data) - 1,
        "samples": samples,
        "wall_s": wall,
        "prometheus_s": stats["prometheus_seconds"],
        "queries": stats["queries"],
        "peak_rss_mb": rss,
        "client_cpu_s": cpu,
        "chunks_recorded": stats["chunks"]["recorded"],
        "rules_backfill_s": rules_s,
        "pods_wall_s": pods_wall,
        "pods_rss_mb": pods_rss,
        "pods_prometheus_s": pods["prometheus_seconds"],
        "pods_groups": pods["groups"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--dir", default=".bench")
    parser.add_argument("--concurrency", type=int, default=1, help="allocation.concurrency (chunks at once)")
    parser.add_argument("--recorded", action="store_true",
                        help="backfill the mixin's allocation rules first, so allocate reads recorded series")
    args = parser.parse_args()
    rows = [run_one(int(n), Path(args.dir), args.concurrency, args.recorded) for n in args.sizes.split(",")]
    print(f"{'containers':>10} {'nodes':>6} {'samples':>12} {'allocate s':>10} {'prometheus s':>12} "
          f"{'prom/total':>10} {'python %':>8} {'client CPU s':>12} {'peak RSS MB':>11} {'pod-level s':>11} "
          f"{'pod prom s':>10} {'pod RSS MB':>10}")
    for r in rows:
        ratio = r["prometheus_s"] / r["wall_s"]
        # Serially, Python's share is the wall time Prometheus did not account for. With parallel chunks
        # Prometheus' seconds overlap (the ratio can pass 1), so the client's own CPU time is used instead.
        python = 1 - ratio if args.concurrency == 1 else r["client_cpu_s"] / r["wall_s"]
        print(f"{r['containers']:>10,} {r['nodes']:>6} {r['samples']:>12,} {r['wall_s']:>10.2f} "
              f"{r['prometheus_s']:>12.2f} {ratio:>10.2f} {100 * python:>8.1f} {r['client_cpu_s']:>12.2f} "
              f"{r['peak_rss_mb']:>11.1f} {r['pods_wall_s']:>11.2f} {r['pods_prometheus_s']:>10.2f} "
              f"{r['pods_rss_mb']:>10.1f}")
    print(f"allocation.concurrency={args.concurrency}; 24 h window at 15 m resolution, 1 h chunks; "
          + (f"recorded series read for {rows[-1]['chunks_recorded']} of 24 chunks (rule backfill "
             + ", ".join(f"{r['rules_backfill_s']:.0f}s" for r in rows) + ")" if args.recorded else "raw series"))
    print("pod-level: aggregate=pod over the same 24 h through Exporter.allocation (one row per pod: "
          + ", ".join(f"{r['pods_groups']:,}" for r in rows) + " groups), the response serialised")


if __name__ == "__main__":
    main()
