"""`python bench/child.py ARGS` runs `chargeback ARGS` and, at exit, writes its own peak RSS to
$BENCH_PEAK_FILE: VmHWM, which starts afresh at exec, unlike ru_maxrss, which keeps the high-water
mark of the forking parent (the bench, grown by generating the cluster).

With $BENCH_PROFILE set to `memory` or `cpu`, it runs under tracemalloc or cProfile and writes the
report (bench/profiling.py) to $BENCH_PROFILE_FILE."""

from __future__ import annotations

import atexit
import os
import runpy
import sys
from pathlib import Path


def _write_peak() -> None:
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    exporter = sys.modules.get("exporter")
    with open(os.environ["BENCH_PEAK_FILE"], "w") as out:
        out.write(f"{kib} {getattr(exporter, '__file__', '')}\n")


def _profiled(kind: str, out: Path) -> None:
    """The run under a profiler; the bench package is appended to the path, so `exporter` still comes first
    from wherever PYTHONPATH says."""
    sys.path.append(str(Path(__file__).resolve().parent.parent))
    from bench.profiling import PeakSnapshot, write_cprofile

    if kind == "memory":
        snapshot = PeakSnapshot()
        snapshot.label = "allocate"
        atexit.register(snapshot.write, out)
    else:
        import cProfile

        profile = cProfile.Profile()
        atexit.register(lambda: write_cprofile(profile, out))
        profile.enable()
        atexit.register(profile.disable)  # atexit runs last-in first-out: disabled before written


atexit.register(_write_peak)
if os.environ.get("BENCH_PROFILE"):
    _profiled(os.environ["BENCH_PROFILE"], Path(os.environ["BENCH_PROFILE_FILE"]))
sys.argv = ["chargeback", *sys.argv[1:]]
runpy.run_module("exporter", run_name="__main__", alter_sys=True)
