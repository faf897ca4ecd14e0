"""`python -m bench.serve`: `serve` at the Kubernetes envelope, 300k containers on 5,000 nodes (issue 16).

The goal: rules plus exporter cost at most 10 s of Prometheus CPU per 1-minute cycle, and serve's peak
RSS under 300 MB. A day at that size would take hours to backfill and to record the rules over, and
serve's steady state needs neither: it needs the usage rate window (5m) of raw history before the steps
it accrues, and the allocation rules recorded at those steps. So this backfills a short history at 60 s
samples (20 minutes by default), records the rules over the last few steps only, and measures, against
one Prometheus:

* the raw one-step cycle: `chargeback allocate` over the last step before any rule is recorded (what serve
  pays where the rules are not installed), as a child process (bench/child.py) for its own peak RSS;
* one evaluation of the mixin's allocation rule group (bench/reference.py `rule_cost`: every rule as an
  instant query at one time), which the rule engine pays once per interval;
* serve's steady cycles: `Exporter.cycle` (serve's accrual loop body) one step at a time on the recorded
  series, each followed by a scrape, in a child process whose peak RSS (VmHWM) is its own;
* a real `chargeback serve` child accruing the same steps (one catch-up cycle, then idle): its VmHWM read
  from /proc before it is stopped.

`--profile memory` or `--profile cpu` (with `--reuse` or `--from`, on recorded data) measures instead where
the cost goes: every rule's Prometheus time and answer size, then the accrual child under `tracemalloc`
(its top allocations near its traced peak) or `cProfile` (top 20 by cumulative time), written beside the data.

Prometheus time is its execTotalTime (what the query stats report); Prometheus CPU is its process's
user + system time over the same span (/proc/PID/stat), which also counts work outside query execution.
A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.profiling import PeakSnapshot, write_cprofile
from bench.reference import Timed, rule_cost, split_derived
from bench.run import allocate, allocation_rules_file
from demo.clusters import bench_cluster
from demo.localprom import PrometheusServer, backfill, backfill_rules, free_port, stop_process
from exporter.core.window import iso

STEP = 60  # serve's default interval and resolution
RATE_WINDOW = "5m"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (utime and stime, fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_mb(pid: int | str, key: str) -> float:
    """VmHWM (peak RSS) or VmRSS of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def log(containers: int, message: str) -> None:
    print(f"[serve {containers}] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@dataclass
class Cycle:
    """One accrual cycle of the serve child, as it measured it."""

    end: int
    wall_s: float
    prometheus_s: float  # execTotalTime of its queries
    prometheus_cpu_s: float  # the Prometheus process's CPU over the cycle
    queries: int
    recorded: int  # chunks read from recorded series
    raw: int
    scrape_s: float  # building /metrics after the cycle (Prometheus' default scrape timeout is 10 s)
    top: list[tuple[float, int, str]]  # the costliest queries: (Prometheus s, series answered, the query's start)


TOP = 12  # queries listed per cycle
CLIENT_CPU = "client-cpu "  # the child's stderr line of its own CPU per cycle


def child(config: Path, start: int, cycles: int, prometheus_pid: int, profile: str | None = None) -> None:
    """serve's accrual, one step per cycle from `start`: a JSON line per cycle, then the peak RSS. Its own CPU
    per cycle goes to stderr; with `profile`, a report to PROFILE.txt beside the config."""
    from exporter.config.schema import load_config, override
    from exporter.serve.server import Exporter

    ex = Exporter(override(load_config(str(config)), "attribution", source="prometheus"))
    stats, sources = ex.client.stats, ex.pipeline.fetcher.sources
    seen: list[tuple[float, int, str]] = []
    instant = ex.client._instant

    def profiled(expr: str, at: float, kind: str = "vector") -> dict[str, Any]:
        """Each query's own Prometheus time and answer size: where a cycle's time goes."""
        server = stats.server_seconds
        data = instant(expr, at, kind)
        result = data.get("result")
        seen.append((round(stats.server_seconds - server, 3), len(result) if isinstance(result, list) else 0,
                     " ".join(expr.split())[:160]))
        return data

    ex.client._instant = profiled  # type: ignore[method-assign]
    memory = PeakSnapshot() if profile == "memory" else None
    cpu = cProfile.Profile() if profile == "cpu" else None
    for i in range(1, cycles + 1):
        ex.until = start + i * STEP
        seen.clear()
        before = (time.monotonic(), stats.server_seconds, cpu_seconds(prometheus_pid), stats.queries,
                  sources["recorded"], sources["raw"], cpu_seconds(os.getpid()))
        if memory:
            memory.label = f"cycle {i}"
        if cpu:
            cpu.enable()
        ex.cycle(time.time())
        ex.ledger.tick()
        if memory:
            memory.label = f"cycle {i}'s scrape"
        scrape = time.monotonic()
        list(ex.registry.collect())  # what a scrape builds
        scrape = time.monotonic() - scrape
        if cpu:
            cpu.disable()
        c = Cycle(ex.until, time.monotonic() - before[0], stats.server_seconds - before[1],
                  cpu_seconds(prometheus_pid) - before[2], stats.queries - before[3],
                  sources["recorded"] - before[4], sources["raw"] - before[5], scrape, sorted(seen, reverse=True)[:TOP])
        print(json.dumps(c.__dict__), flush=True)
        print(CLIENT_CPU + json.dumps({"end": c.end, "client_cpu_s": cpu_seconds(os.getpid()) - before[6]}),
              file=sys.stderr, flush=True)
    if ex.ledger.watermark != start + cycles * STEP:
        raise SystemExit(f"accrued to {ex.ledger.watermark}, not {start + cycles * STEP}")
    if memory:
        memory.write(config.parent / "memory.txt")
    if cpu:
        write_cprofile(cpu, config.parent / "cpu.txt")
    print(json.dumps({"peak_rss_mb": status_mb("self", "VmHWM")}), flush=True)


def real_serve(cfg: Path, end: int, work: Path, timeout: float) -> tuple[float, float, float]:
    """`chargeback serve --until end` until a scrape shows it accrued to `end`: (its VmHWM in MB, seconds
    taken, the last scrape's seconds). One scrape at a time, each waited for: an abandoned one would go on
    in a thread of its own, and pile up."""
    port = free_port()
    err = (work / "serve.err").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "--log-level", "WARNING", "serve", "--config",
                             str(cfg), "--listen", f"127.0.0.1:{port}", "--until", str(end)],
                            stdout=subprocess.DEVNULL, stderr=err)
    t = time.monotonic()
    try:
        while time.monotonic() - t < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"chargeback serve exited: {(work / 'serve.err').read_text()[-1500:]}")
            scrape = time.monotonic()
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout).text
            except requests.RequestException:
                text = ""
            scrape = time.monotonic() - scrape
            m = re.search(r"^chargeback_accrued_until_timestamp_seconds(?:{[^}]*})? (\S+)$", text, re.M)
            if m and float(m.group(1)) >= end:
                return status_mb(proc.pid, "VmHWM"), time.monotonic() - t, scrape
            time.sleep(2)
        raise SystemExit(f"chargeback serve did not accrue to {iso(end)} in {timeout:.0f}s")
    finally:
        stop_process(proc)
        err.close()


def take_from(source: Path, work: Path) -> None:
    """Another run's backfill (its `serve-N` directory) as this run's, blocks hard-linked: blocks are immutable
    (Prometheus replaces their files rather than writing into them), so two runs can share them, while the
    WAL and head are left behind. The source is not written to."""
    if not (source / "meta.json").exists():
        raise SystemExit(f"--from {source}: no meta.json (not a bench.serve directory)")
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    shutil.copy(source / "meta.json", work / "meta.json")
    for block in (source / "data").iterdir():
        if block.is_dir() and (block / "meta.json").exists():
            shutil.copytree(block, work / "data" / block.name, copy_function=os.link)


def prepare(containers: int, nodes: int, namespaces: int, minutes: int, cycles: int, work: Path,
            reuse: bool) -> dict[str, Any]:
    """Backfill the cluster into `work/data`, or with `reuse` take the one there (rules recorded or not)."""
    shape = {"containers": containers, "nodes": nodes, "namespaces": namespaces, "minutes": minutes,
             "cycles": cycles}
    meta = work / "meta.json"
    old = json.loads(meta.read_text()) if reuse and meta.exists() else {}
    if old and {k: v for k, v in old.items() if k in shape} == shape:
        log(containers, f"reusing the backfill of {old['samples']:,} samples in {work / 'data'}")
        return dict(old)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # Two steps back, so that serve (lag 1m) finds every step up to `end` already due however soon it runs.
    end = int(time.time()) // STEP * STEP - 2 * STEP
    t = time.monotonic()
    log(containers, f"generating {containers:,} containers ({containers // 2:,} pods) on {nodes:,} nodes in "
                    f"{namespaces:,} namespaces; backfilling {minutes} minutes at {STEP}s samples...")
    # Blocks of 2h: promtool reads the file once per block, and a short history then fits one or two.
    samples = backfill(bench_cluster(containers, nodes, namespaces), work / "data", end - minutes * 60, end,
                       STEP, lean=True, block="2h")
    log(containers, f"backfilled {samples:,} samples in {time.monotonic() - t:.0f}s")
    data = {**shape, "end": end, "samples": samples, "rules_recorded": False}
    meta.write_text(json.dumps(data))
    return data


def log_items(containers: int, timed: Timed) -> None:
    for secs, n, what in sorted(timed.items, reverse=True):
        log(containers, f"    {secs:6.2f}s {n:>7,} series  {what}")


def serve_child(cfg: Path, first: int, cycles: int, prometheus_pid: int,
                profile: str | None) -> tuple[list[Cycle], float, dict[int, float]]:
    """The accrual child's cycles, its peak RSS and its own CPU per cycle (by the cycle's end)."""
    proc = subprocess.run([sys.executable, "-m", "bench.serve", "--child", str(cfg), "--start", str(first),
                           "--cycles", str(cycles), "--prometheus-pid", str(prometheus_pid),
                           *(["--profile", profile] if profile else [])], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"serve child failed: {proc.stderr.strip()[-2000:]}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    cpu = {c["end"]: c["client_cpu_s"] for line in proc.stderr.splitlines() if line.startswith(CLIENT_CPU)
           for c in [json.loads(line[len(CLIENT_CPU):])]}
    return [Cycle(**c) for c in lines[:-1]], lines[-1]["peak_rss_mb"], cpu


def run(containers: int, nodes: int, namespaces: int, minutes: int, cycles: int, root: Path,
        reuse: bool = False, source: Path | None = None, profile: str | None = None) -> dict[str, Any]:
    work = root / f"serve-{containers}"
    if source:
        take_from(source.resolve() / f"serve-{containers}" if (source / f"serve-{containers}").is_dir()
                  else source.resolve(), work)
    data = prepare(containers, nodes, namespaces, minutes, cycles, work, reuse or source is not None)
    if profile and not data["rules_recorded"]:
        raise SystemExit("--profile needs recorded data: run once without it, then with --reuse")
    end = data["end"]
    row: dict[str, Any] = {"containers": containers, "nodes": nodes, "namespaces": namespaces, "pods": containers // 2,
                           "samples": data["samples"]}
    prom = PrometheusServer(work / "data", extra_args=["--query.max-samples=500000000", "--query.timeout=60m"])
    cfg = work / "config.yaml"
    first = end - cycles * STEP
    with prom:
        cfg.write_text(yaml.safe_dump({
            "prometheus": {"url": prom.url, "timeout": "3600s"},
            "allocation": {"resolution": f"{STEP // 60}m", "usageRateWindow": RATE_WINDOW, "recordedRules": "auto"},
            "attribution": {"source": "prometheus"},
            "serve": {"start": iso(first), "lag": "1m", "interval": f"{STEP}s", "exposeNewSeriesFor": "0s"},
        }))
        assert prom.proc is not None
        if not profile:
            log(containers, "raw one-step cycle (allocate over the last step: fewer than 5 steps read raw series)...")
            cpu = cpu_seconds(prom.proc.pid)
            raw = allocate(cfg, f"{end - STEP},{end}", work / "raw-cycle.json")
            row["raw"] = {"wall_s": raw.wall_s, "prometheus_s": raw.prometheus_s, "queries": raw.queries,
                          "prometheus_cpu_s": cpu_seconds(prom.proc.pid) - cpu, "peak_rss_mb": raw.peak_rss_mb,
                          "client_cpu_s": raw.client_cpu_s}
            log(containers, f"raw cycle: {raw.wall_s:.1f}s wall, {raw.prometheus_s:.2f}s Prometheus, "
                            f"{row['raw']['prometheus_cpu_s']:.1f}s Prometheus CPU, {raw.client_cpu_s:.1f}s client "
                            f"CPU, {raw.peak_rss_mb:.0f} MB")
        rules = allocation_rules_file(cfg, work)
        own, derived = split_derived(rules, work)
        cpu = cpu_seconds(prom.proc.pid)
        rc = rule_cost(prom.url, own, end)
        row["rules"] = {"wall_s": rc.wall_s, "prometheus_s": rc.prometheus_s,
                        "prometheus_cpu_s": cpu_seconds(prom.proc.pid) - cpu}
        log(containers, f"one evaluation of the allocation rules: {rc.wall_s:.1f}s wall, {rc.prometheus_s:.2f}s "
                        f"Prometheus, {row['rules']['prometheus_cpu_s']:.1f}s Prometheus CPU")
        log_items(containers, rc)
        if data["rules_recorded"]:
            log(containers, "the rules were recorded by the run that backfilled")
        else:
            t = time.monotonic()
            log(containers, f"recording the rules over the last {cycles + 1} steps (promtool)...")
            backfill_rules(prom, rules, first - STEP, end)
            log(containers, f"rules recorded in {time.monotonic() - t:.0f}s; Prometheus restarted")
            (work / "meta.json").write_text(json.dumps({**data, "rules_recorded": True}))
        assert prom.proc is not None
        # The deprecated names select from the labelled record, which exists only once recorded: their share
        # of an evaluation is measured now, at the last recorded step, and added to the group's.
        cpu = cpu_seconds(prom.proc.pid)
        dc = rule_cost(prom.url, derived, end)
        row["rules"]["deprecated_s"] = dc.prometheus_s
        row["rules"]["prometheus_s"] += dc.prometheus_s
        row["rules"]["prometheus_cpu_s"] += cpu_seconds(prom.proc.pid) - cpu
        log(containers, f"the deprecated records' share: {dc.wall_s:.1f}s wall, {dc.prometheus_s:.2f}s Prometheus")
        log_items(containers, dc)
        log(containers, "serve: one-step cycles in a child" + (f" under the {profile} profiler" if profile
                                                                else "") + "...")
        # Under a profiler one cycle only (profilers slow the child several times over): the first, where serve's
        # peak was in the runs measured.
        row["cycles"], row["serve_rss_mb"], client_cpu = serve_child(cfg, first, 1 if profile else cycles,
                                                                     prom.proc.pid, profile)
        row["client_cpu"] = client_cpu
        for c in row["cycles"]:
            log(containers, f"serve cycle to {iso(c.end)}: {c.wall_s:.1f}s wall, {c.prometheus_s:.2f}s Prometheus, "
                            f"{c.prometheus_cpu_s:.1f}s Prometheus CPU, {client_cpu.get(c.end, 0):.1f}s client CPU, "
                            f"{c.queries} queries, scrape {c.scrape_s:.1f}s, "
                            f"{'recorded' if c.recorded and not c.raw else 'RAW'} series")
            for secs, n, expr in c.top:
                log(containers, f"    {secs:6.2f}s {n:>7,} series  {expr}")
        if profile:
            log(containers, f"peak RSS under the profiler {row['serve_rss_mb']:.0f} MB; report in "
                            f"{work / (profile + '.txt')}")
            return row
        log(containers, f"serve child peak RSS {row['serve_rss_mb']:.0f} MB; now a real `chargeback serve`...")
        row["real_serve_rss_mb"], real_s, row["scrape_s"] = real_serve(cfg, end, work, timeout=3600)
        log(containers, f"chargeback serve accrued {cycles} steps in {real_s:.0f}s, peak RSS "
                        f"{row['real_serve_rss_mb']:.0f} MB; its last /metrics scrape took {row['scrape_s']:.1f}s")
        row["prometheus_rss_mb"] = status_mb(prom.proc.pid, "VmHWM")
    return row


def summary(r: dict[str, Any]) -> str:
    steady = r["cycles"][1:] or r["cycles"]  # the first cycle also reads the watermark and starts the ledger
    cycle_s = sum(c.prometheus_s for c in steady) / len(steady)
    cycle_cpu = sum(c.prometheus_cpu_s for c in steady) / len(steady)
    rules, raw = r["rules"], r["raw"]
    total, total_cpu = rules["prometheus_s"] + cycle_s, rules["prometheus_cpu_s"] + cycle_cpu
    rss = max(r["serve_rss_mb"], r["real_serve_rss_mb"])
    client = [r["client_cpu"].get(c.end, 0.0) for c in steady]
    wall = sum(c.wall_s for c in steady)
    python = f"{sum(client) / len(steady):.1f}s of its own CPU ({100 * sum(client) / wall:.0f}% of its wall time)"
    return (f"serve at {r['containers']:,} containers / {r['nodes']:,} nodes ({r['pods']:,} pods, "
            f"{r['namespaces']:,} namespaces, {r['samples']:,} samples): rule evaluation "
            f"{rules['prometheus_s']:.2f}s + serve recorded cycle {cycle_s:.2f}s = {total:.2f}s Prometheus per "
            f"1-minute cycle (the cycle: the mean of all but the first, {python}; "
            f"{'within' if total <= 10 else 'OVER'} the 10 s goal; Prometheus process CPU "
            f"{rules['prometheus_cpu_s']:.1f}+{cycle_cpu:.1f}={total_cpu:.1f}s); raw cycle "
            f"{raw['prometheus_s']:.2f}s Prometheus ({raw['prometheus_cpu_s']:.1f}s CPU); serve peak RSS "
            f"{r['serve_rss_mb']:.0f} MB (accrual child), {r['real_serve_rss_mb']:.0f} MB (chargeback serve), "
            f"{'under' if rss < 300 else 'OVER'} the 300 MB goal; a /metrics scrape {r['scrape_s']:.1f}s; "
            f"Prometheus peak RSS {r['prometheus_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=300_000)
    parser.add_argument("--sizes", help="several sizes, comma-separated (instead of --containers)")
    parser.add_argument("--nodes", type=int, help="default: containers / 60 (5,000 at 300k)")
    parser.add_argument("--namespaces", type=int, help="default: containers / 200, as make bench")
    parser.add_argument("--minutes", type=int, default=20, help="history backfilled at 60 s samples")
    parser.add_argument("--cycles", type=int, default=3, help="serve's one-step cycles measured")
    parser.add_argument("--dir", default=".bench")
    parser.add_argument("--reuse", action="store_true", help="reuse the backfill (and rules) of an earlier run")
    parser.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="reuse another run's backfill (its --dir, or its serve-N directory), hard-linked")
    parser.add_argument("--profile", choices=("memory", "cpu"),
                        help="on recorded data: per-rule costs, then the accrual child under tracemalloc or cProfile")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prometheus-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.start, args.cycles, args.prometheus_pid, args.profile)
        return
    if args.minutes * 60 < 2 * 300 + (args.cycles + 1) * STEP:
        parser.error("--minutes must cover the 5m rate window and the cycles with room to spare")
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else [args.containers]
    rows = [run(n, args.nodes or max(n // 60, 10), args.namespaces or max(n // 200, 5), args.minutes, args.cycles,
                Path(args.dir).resolve(), args.reuse, args.source, args.profile) for n in sizes]
    for r in rows:
        if not args.profile:
            print(summary(r))


if __name__ == "__main__":
    main()
