"""`make soak`: serve's accrual over 30 days of backfilled history, with its RSS sampled as it goes.

The parent backfills a small synthetic cluster at a coarse step (15-minute samples and resolution)
into a real Prometheus, then runs the accrual in a child process: one `Exporter.cycle` per chunk,
each followed by a tick of the ledger and a scrape, as `serve` does live. The child reads its own VmRSS from
/proc/self/status after every chunk. The curve is printed per day, with whether it is flat (the
last day's peak within 10% of the first day's). A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from demo.clusters import bench_cluster
from demo.localprom import PrometheusServer, backfill
from demo.synthetic import Cluster, Series
from exporter.serve.accrual import ClusterKey

INTERVAL = 900
FLAT = 0.10


def soak_cluster(containers: int) -> Cluster:
    """The bench cluster plus a volume whose size is always NaN (a broken CSI exporter): every chunk then
    raises a warning naming its own window, the kind of message that used to pile up in serve."""
    cluster = bench_cluster(containers, max(containers // 25, 2), max(containers // 20, 2))
    broken = Series("kube_persistentvolume_capacity_bytes",
                    {"job": "kube-state-metrics", "persistentvolume": "pv-broken"}, base=float("nan"))
    return Cluster(cluster.nodes, cluster.pods, cluster.namespaces, (*cluster.extra, broken))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(config: Path, start: int, days: int) -> None:
    """Accrue chunk by chunk from `start`; print one JSON line per chunk: time reached, RSS, warnings."""
    from exporter.config.schema import load_config
    from exporter.serve.server import Exporter

    exporter = Exporter(load_config(str(config)))
    chunk = exporter.pipeline.chunk
    for t in range(start + chunk, start + days * 86400 + 1, chunk):
        exporter.until = t
        exporter.cycle(time.time())
        exporter.ledger.tick()  # held batches applied (new series are exposed for 0 s in the soak)
        list(exporter.registry.collect())  # what a scrape builds
        cost = sum(v for k, v in exporter.ledger.counters.items() if isinstance(k, ClusterKey))
        print(json.dumps({"t": t, "rss": rss_mb(), "watermark": exporter.ledger.watermark, "cost": cost,
                          "series": len(exporter.ledger.counters), "warnings": exporter.warnings.counts()}),
              flush=True)


def run(root: Path, containers: int, days: int, chunk: str) -> list[dict[str, float]]:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    end = int(time.time()) // 86400 * 86400
    start = end - days * 86400
    t = time.monotonic()
    samples = backfill(soak_cluster(containers), root / "data", start - 3600, end, INTERVAL, lean=True, block="72h")
    print(f"backfilled {samples:,} samples ({days} days of {containers} containers) in {time.monotonic() - t:.0f}s",
          file=sys.stderr, flush=True)
    prom = PrometheusServer(root / "data", extra_args=["--query.lookback-delta=20m"])
    cfg = root / "config.yaml"
    with prom:
        cfg.write_text(yaml.safe_dump({
            "prometheus": {"url": prom.url, "timeout": "300s"},
            "allocation": {"resolution": "15m", "usageRateWindow": "45m", "chunk": chunk, "recordedRules": "off"},
            "serve": {"lag": "1m", "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                      "exposeNewSeriesFor": "0s"},
        }))
        t = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "bench.soak", "--child", str(cfg), "--start", str(start),
                               "--days", str(days)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"soak child failed: {proc.stderr.strip()[-2000:]}")
        print(f"accrued {days} days in {time.monotonic() - t:.0f}s", file=sys.stderr, flush=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for r in rows:
        r["day"] = (r["t"] - start - 1) // 86400 + 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=".bench/soak")
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--chunk", default="1h", help="accrual piece per cycle")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.start, args.days)
        return
    rows = run(Path(args.dir), args.containers, args.days, args.chunk)
    peak: dict[float, float] = {}
    for r in rows:
        peak[r["day"]] = max(peak.get(r["day"], 0.0), r["rss"])
    print(f"serve accrual over {args.days} days, {args.containers} containers, {args.chunk} chunks "
          f"({len(rows)} cycles); peak RSS per day:")
    print("  " + "  ".join(f"d{d}: {mb:.1f}" for d, mb in sorted(peak.items())))
    first, last = peak[min(peak)], peak[max(peak)]
    growth = (last - first) / first
    print(f"first day {first:.1f} MB, last day {last:.1f} MB ({100 * growth:+.1f}%): "
          f"{'flat' if abs(growth) <= FLAT else 'NOT flat'} (within {100 * FLAT:.0f}%)")
    end = rows[-1]
    print(f"after the first cycle {rows[0]['rss']:.1f} MB; {end['series']} counter series; "
          f"cluster cost accrued {end['cost']:.2f}; warnings counted {end['warnings']}")


if __name__ == "__main__":
    main()
