"""`make bench`: allocate a 24 h window over synthetic clusters of 1k, 10k and 100k containers.

For each size it backfills a real Prometheus and measures, in one run against that Prometheus:

* the bare reference: the four plain aggregations as range queries at the bench resolution
  (bench/reference.py), the floor every path is compared to;
* `chargeback allocate` on raw series, then (after promtool records the mixin's allocation rules
  over the day) on recorded series, each as a child process: wall time, Prometheus time (its
  execTotalTime stats), the client's own CPU and its peak RSS;
* serve's cost per cycle: one step allocated on raw series, plus one evaluation of the allocation
  rules; and the 24 h catch-up, which serve runs chunk by chunk as `allocate` does;
* with `--baseline REF`, the same allocate runs for the code at git REF, against the same data.

A benchmark, not a test: nothing here asserts. Ratios against the reference of the same run are
what to compare, since the machine is shared.
Then the same 24 h at pod level (`aggregate=pod` through `Exporter.allocation`,
bench/podlevel.py): time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.reference import Timed, bare_reference, rule_cost, split_derived
from demo.clusters import bench_cluster
from demo.localprom import PrometheusServer, backfill, backfill_rules
from exporter.config.schema import parse_config
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.mixin.budgets import allocation_group_only
from exporter.sources.prometheus import PrometheusClient

SIZES = (1_000, 10_000, 100_000)
PARTS = frozenset({"raw", "recorded", "pods"})
ONLY = frozenset({"rules"})  # not in the default run: "recorded" measures the rules too
# Samples every 15 minutes and a 15-minute resolution keep the 100k backfill to ~90M samples.
INTERVAL = 900
STEP = 900
RATE_WINDOW = "45m"
CHUNK = "2h"  # 8 steps: long enough for the recorded path (5 steps at least)


@dataclass
class Run:
    wall_s: float
    prometheus_s: float
    queries: int
    client_cpu_s: float
    peak_rss_mb: float
    chunks_recorded: int

    @property
    def python_share(self) -> float:
        """The client's own CPU over the wall time (Prometheus runs in another process)."""
        return self.client_cpu_s / self.wall_s if self.wall_s else 0.0


def allocation_rules_file(cfg: Path, work: Path) -> Path:
    """The mixin's allocation group for this config, rendered by `chargeback rules` in a child process:
    rendering Jsonnet here would grow this process, and a forked child's peak RSS starts from ours."""
    subprocess.run([sys.executable, "-m", "exporter", "rules", "--config", str(cfg), "--out", str(work / "rules")],
                   check=True, capture_output=True)
    rendered = yaml.safe_load((work / "rules" / "chargeback.rules.yaml").read_text())
    path = work / "allocation.rules.yaml"
    path.write_text(yaml.safe_dump(allocation_group_only(rendered)))
    return path


def run_child(cmd: list[str], work: Path, name: str) -> tuple[str, str, float, float]:
    """Run `cmd` with its output in files; (stdout, stderr, wall s, CPU s) of that child alone. Its peak RSS
    it must report itself: wait4's ru_maxrss keeps this process's high-water mark from the fork (1.4 GB
    here at 100k, from the reference's answers), which is how the pod-level figure once read 1,354 MB."""
    out_path, err_path = work / f"{name}.out", work / f"{name}.err"
    with out_path.open("w") as out_fh, err_path.open("w") as err_fh:
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out_fh, stderr=err_fh)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time, not every child's
        wall = time.monotonic() - t
    out, err = out_path.read_text(), err_path.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed: {err.strip()}")
    return out, err, wall, usage.ru_utime + usage.ru_stime


def allocate(cfg: Path, window: str, out: Path, code: Path | None = None, profile: str | None = None) -> Run:
    """`chargeback allocate --stats` as a child process; `code` is a directory holding another `exporter`;
    `profile` (memory, cpu) runs it under that profiler, its report in OUT.KIND.txt (bench/child.py)."""
    cmd = [sys.executable, str(Path(__file__).with_name("child.py")), "--log-level", "ERROR", "allocate",
           "--config", str(cfg), "--window", window, "--format", "json", "--stats"]
    err_path, peak_path = out.with_suffix(".err"), out.with_suffix(".peak")
    env = {**os.environ, "BENCH_PEAK_FILE": str(peak_path), **({"PYTHONPATH": str(code)} if code else {}),
           **({"BENCH_PROFILE": profile, "BENCH_PROFILE_FILE": str(out.with_suffix(f".{profile}.txt"))}
              if profile else {})}
    with out.open("w") as out_fh, err_path.open("w") as err_fh:
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out_fh, stderr=err_fh, env=env)
        # wait4 gives this child's own CPU time, not every child's.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t
    err = err_path.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"allocate failed: {err.strip()[-2000:]}")
    stats = json.loads(err.strip().splitlines()[-1])
    kib, module = peak_path.read_text().split()
    if code and not module.startswith(str(code)):
        raise SystemExit(f"the baseline run imported {module}, not the code under {code}")
    return Run(wall, stats["prometheus_seconds"], stats["queries"], usage.ru_utime + usage.ru_stime,
               int(kib) / 1024, stats["chunks"]["recorded"])


def namespace_totals(path: Path) -> dict[str, float]:
    return {ns: row["totalCost"] for ns, row in json.loads(path.read_text())["data"][0].items()}


def max_relative_difference(a: dict[str, float], b: dict[str, float]) -> float:
    """Over namespaces; 1.0 where one side lacks a namespace. Prometheus sums in map order, so exact
    equality is not expected between two query plans (nor between two runs of one)."""
    return max((abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) if k in a and k in b else 1.0) for k in {*a, *b})


def serve_cycle(cfg: Path, end: int) -> float:
    """Prometheus seconds of one serve cycle (the last step) as serve runs it, recorded series allowed."""
    config = parse_config(yaml.safe_load(cfg.read_text()))
    client = PrometheusClient(config.prometheus)
    pipeline = Pipeline(config, client)
    pipeline.fetcher.min_recorded_steps = 1
    pipeline.compute_chunk(Window(end - STEP, end, STEP))
    return client.stats.server_seconds


def baseline_code(ref: str, root: Path) -> Path:
    """The `exporter` package at git `ref`, extracted next to the bench data."""
    dest = root / f"baseline-{ref}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "exporter"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


@dataclass
class Data:
    """A backfilled cluster: what `--reuse` finds again in `meta.json` beside the TSDB."""

    containers: int
    nodes: int
    namespaces: int
    start: int
    end: int
    samples: int


def prepare(containers: int, work: Path, reuse: bool) -> Data:
    """Backfill a day of the size's cluster into `work/data`, or, with `reuse`, take the one already there
    (the 100k backfill alone takes a quarter of an hour); the rules' blocks are recorded anew each run."""
    meta = work / "meta.json"
    if reuse and meta.exists() and (data := Data(**json.loads(meta.read_text()))).containers == containers:
        # The run adds the rules' blocks, and Prometheus compacts: start again from the backfill's blocks
        # (hard links: blocks are immutable, Prometheus replaces files rather than writing into them).
        shutil.rmtree(work / "data", ignore_errors=True)
        shutil.copytree(work / "backfill", work / "data", copy_function=os.link)
        print(f"[{containers}] reusing the backfill of {data.samples:,} samples in {work / 'data'}",
              file=sys.stderr, flush=True)
        return data
    nodes, namespaces = max(containers // 50, 10), max(containers // 200, 5)
    end = int(time.time()) // 3600 * 3600
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t = time.monotonic()
    print(f"[{containers}] generating {containers} containers on {nodes} nodes in {namespaces} namespaces...",
          file=sys.stderr, flush=True)
    block = "24h" if containers <= 10_000 else "4h"
    samples = backfill(bench_cluster(containers, nodes, namespaces), work / "data", end - 86400 - 1800, end,
                       INTERVAL, lean=True, block=block)
    print(f"[{containers}] backfilled {samples:,} samples in {time.monotonic() - t:.0f}s", file=sys.stderr,
          flush=True)
    data = Data(containers, nodes, namespaces, end - 86400, end, samples)
    shutil.copytree(work / "data", work / "backfill", copy_function=os.link)
    meta.write_text(json.dumps(data.__dict__))
    return data


def run_one(containers: int, root: Path, concurrency: int = 1, baseline: Path | None = None,
            reuse: bool = False, parts: frozenset[str] = PARTS, profile: tuple[str, int] | None = None,
            hours: int = 24) -> dict[str, Any]:
    work = root / str(containers)
    data = prepare(containers, work, reuse)
    nodes, end, samples = data.nodes, data.end, data.samples
    start = max(data.start, end - hours * 3600)  # a shorter window: the same steps, fewer of them
    if not parts:
        return {}
    prom = PrometheusServer(work / "data", extra_args=["--query.lookback-delta=20m", "--query.max-samples=200000000",
                                                        "--query.timeout=30m"])
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "prometheus": {"url": prom.url, "timeout": "1800s"},
        "allocation": {"resolution": f"{STEP // 60}m", "usageRateWindow": RATE_WINDOW, "chunk": CHUNK,
                       "concurrency": concurrency, "recordedRules": "auto"},
    }))
    day, one_step = f"{start},{end}", f"{end - STEP},{end}"
    row: dict[str, Any] = {"containers": containers, "nodes": nodes, "samples": samples}

    def log(what: str, r: Run) -> None:
        print(f"[{containers}] {what}: {r.wall_s:.1f}s wall, {r.prometheus_s:.1f}s Prometheus, "
              f"{r.client_cpu_s:.1f}s client CPU, {r.peak_rss_mb:.0f} MB", file=sys.stderr, flush=True)

    with prom:
        if profile:  # only the profiled raw allocate over the day's last hours
            kind, hours = profile
            r = allocate(cfg, f"{end - hours * 3600},{end}", work / f"raw-{hours}h.json", profile=kind)
            log(f"allocate raw over the last {hours} h under the {kind} profiler (report in "
                f"{work / f'raw-{hours}h.{kind}.txt'})", r)
            return {}
        # Each measurement runs twice where a baseline is given, interleaved, so both see the same load.
        row["reference"] = ref = bare_reference(prom.url, start, end, STEP, RATE_WINDOW)
        print(f"[{containers}] bare reference: {ref.wall_s:.1f}s wall, {ref.prometheus_s:.1f}s Prometheus",
              file=sys.stderr, flush=True)
        codes = {"new": None, **({"old": baseline} if baseline else {})}
        if "raw" in parts:
            for name, code in codes.items():
                row[f"raw_{name}"] = r = allocate(cfg, day, work / f"raw-{name}.json", code)
                log(f"allocate raw ({name})", r)
                row[f"cycle_{name}"] = r = allocate(cfg, one_step, work / f"cycle-{name}.json", code)
                log(f"serve cycle ({name})", r)
            if baseline:
                row["raw_difference"] = max_relative_difference(namespace_totals(work / "raw-new.json"),
                                                                namespace_totals(work / "raw-old.json"))
        if "pods" in parts:  # on raw series, before the rules are recorded
            pods_out, _err, row["pods_wall_s"], _cpu = run_child(
                [sys.executable, "-m", "bench.podlevel", str(cfg), day, "pod"], work, "podlevel")
            pods = json.loads(pods_out.strip().splitlines()[-1])
            row["pods_prometheus_s"], row["pods_groups"] = pods["prometheus_seconds"], pods["groups"]
            row["pods_rss_mb"] = pods["peak_rss_mb"]  # its own VmHWM (see bench/podlevel.py)
            print(f"[{containers}] pod level: {row['pods_wall_s']:.1f}s wall, {row['pods_prometheus_s']:.1f}s "
                  f"Prometheus, {row['pods_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        if parts & {"recorded", "rules"}:
            rules = allocation_rules_file(cfg, work)
            own, derived = split_derived(rules, work)
            row["rules"] = rule_cost(prom.url, own, end)
            print(f"[{containers}] one evaluation of the allocation rules: {row['rules'].prometheus_s:.1f}s "
                  "Prometheus" + ("" if "recorded" in parts else " (the deprecated names select from the labelled "
                                  "record, not recorded in this run: not counted)"), file=sys.stderr, flush=True)
        if "recorded" in parts:
            t = time.monotonic()
            backfill_rules(prom, rules, start - 1800, end)
            row["rules_backfill_s"] = time.monotonic() - t
            # The deprecated names select from the labelled record: their share is measured once it exists.
            dc = rule_cost(prom.url, derived, end)
            row["rules"].prometheus_s += dc.prometheus_s
            row["rules"].items += dc.items
            print(f"[{containers}] the deprecated records' share: {dc.prometheus_s:.1f}s Prometheus",
                  file=sys.stderr, flush=True)
            for name, code in codes.items():
                row[f"recorded_{name}"] = r = allocate(cfg, day, work / f"recorded-{name}.json", code)
                log(f"allocate recorded ({name})", r)
            row["cycle_recorded"] = serve_cycle(cfg, end)
    return row


def print_table(rows: list[dict[str, Any]], concurrency: int) -> None:
    """The side-by-side table for the sizes that ran both allocate paths; a line per size for the rest."""
    full = [r for r in rows if "raw_new" in r and "recorded_new" in r]
    paths = [p for p in ("raw_old", "raw_new", "recorded_old", "recorded_new") if full and p in full[0]]
    print(f"\n24 h window at {STEP // 60} m resolution, {CHUNK} chunks, allocation.concurrency={concurrency}. "
          "Each path: wall s, then x = its wall / the reference's wall [its Prometheus time / the reference's]")
    print(f"{'containers':>10} {'reference':>10} " + " ".join(f"{p:>24}" for p in paths)
          + f" {'raw cycle':>14} {'steady cycle':>13} {'peak RSS MB':>11} {'python %':>8}")
    for r in full:
        ref: Timed = r["reference"]
        cells = [f"{r[p].wall_s:7.1f} {r[p].wall_s / ref.wall_s:5.2f}x [{r[p].prometheus_s / ref.prometheus_s:5.2f}x]"
                 for p in paths]
        new, rec = r["raw_new"], r["recorded_new"]
        raw_cycle = (f"{r['cycle_old'].prometheus_s:.2f}->" if "cycle_old" in r else "") + \
            f"{r['cycle_new'].prometheus_s:.2f}"
        steady = r["rules"].prometheus_s + r["cycle_recorded"]
        print(f"{r['containers']:>10,} {ref.wall_s:>9.1f}s " + " ".join(f"{c:>24}" for c in cells)
              + f" {raw_cycle:>14} {steady:>13.2f} {new.peak_rss_mb:>5.0f}/{rec.peak_rss_mb:<5.0f} "
              f"{100 * new.python_share:>3.0f}/{100 * rec.python_share:.0f}")
    for r in full:
        print(f"{r['containers']:,} containers, {r['nodes']} nodes: "
              f"recorded chunks {r['recorded_new'].chunks_recorded}; "
              f"24 h catch-up (serve's chunks, in order) {r['recorded_new'].wall_s:.0f}s on recorded series, "
              f"{r['raw_new'].wall_s:.0f}s on raw; rule backfill {r['rules_backfill_s']:.0f}s; one rule evaluation "
              f"{r['rules'].prometheus_s:.2f}s"
              + (f"; raw namespace totals vs the baseline: max relative difference {r['raw_difference']:.1e}"
                 if "raw_difference" in r else ""))
    if full:
        print("cycles are Prometheus seconds for one step: raw = on raw series (old->new); steady = one evaluation "
              "of the allocation rules + serve's cycle on the recorded series. peak RSS and python % (the client's "
              "own CPU / wall) are for the raw/recorded allocate runs.")
    for r in rows:
        if "raw_new" in r and r not in full:
            ref, new = r["reference"], r["raw_new"]
            print(f"{r['containers']:,} containers, raw path only: reference {ref.wall_s:.1f}s wall, "
                  f"{ref.prometheus_s:.1f}s Prometheus; allocate {new.wall_s:.1f}s wall "
                  f"{new.wall_s / ref.wall_s:.2f}x, "
                  f"{new.prometheus_s:.1f}s Prometheus {new.prometheus_s / ref.prometheus_s:.2f}x, client CPU "
                  f"{new.client_cpu_s:.1f}s (python {100 * new.python_share:.0f}%), peak RSS {new.peak_rss_mb:.0f} MB; "
                  f"raw one-step cycle {r['cycle_new'].prometheus_s:.2f}s Prometheus")
        if "rules" in r and r not in full:
            rule_s, per_step = r["rules"].prometheus_s, r["reference"].prometheus_s * STEP / 86400
            print(f"{r['containers']:,} containers: one evaluation of the allocation rules {rule_s:.2f}s "
                  f"Prometheus ({rule_s / per_step:.2f}x the reference's time per step)")
        if "pods_wall_s" in r:
            ref = r["reference"]
            print(f"{r['containers']:,} containers, pod level (aggregate=pod over the same 24 h through "
                  f"Exporter.allocation, {r['pods_groups']:,} groups, the response serialised): "
                  f"{r['pods_wall_s']:.1f}s wall {r['pods_wall_s'] / ref.wall_s:.2f}x, {r['pods_prometheus_s']:.1f}s "
                  f"Prometheus {r['pods_prometheus_s'] / ref.prometheus_s:.2f}x, peak RSS {r['pods_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--dir", default=".bench")
    parser.add_argument("--concurrency", type=int, default=1, help="allocation.concurrency (chunks at once)")
    parser.add_argument("--baseline", metavar="REF", help="also run allocate as of this git ref, side by side")
    parser.add_argument("--reuse", action="store_true", help="reuse each size's backfill from an earlier run")
    parser.add_argument("--parts", default=",".join(sorted(PARTS)),
                        help="what to measure besides the reference (empty: only backfill)")
    parser.add_argument("--profile", choices=("memory", "cpu"),
                        help="instead: the raw allocate alone under tracemalloc or cProfile (best with --reuse)")
    parser.add_argument("--profile-hours", type=int, default=6, help="the profiled window: the day's last hours")
    parser.add_argument("--hours", type=int, default=24,
                        help="measure the day's last hours only (the reference too): the same steps, fewer")
    args = parser.parse_args()
    root = Path(args.dir).resolve()
    baseline = baseline_code(args.baseline, root) if args.baseline else None
    parts = frozenset(p for p in args.parts.split(",") if p)
    if parts - PARTS - ONLY:
        parser.error(f"--parts takes {', '.join(sorted(PARTS | ONLY))}, not {', '.join(sorted(parts - PARTS - ONLY))}")
    profile = (args.profile, args.profile_hours) if args.profile else None
    rows = [run_one(int(n), root, args.concurrency, baseline, args.reuse, parts, profile, args.hours)
            for n in args.sizes.split(",")]
    if parts and not profile:
        print_table([r for r in rows if r], args.concurrency)


if __name__ == "__main__":
    main()
