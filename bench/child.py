"""`python bench/child.py ARGS` runs `chargeback ARGS` and, at exit, writes its own peak RSS to
$BENCH_PEAK_FILE: VmHWM, which starts afresh at exec, unlike ru_maxrss, which keeps the high-water
mark of the forking parent (the bench, grown by generating the cluster)."""

from __future__ import annotations

import atexit
import os
import runpy
import sys


def _write_peak() -> None:
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    exporter = sys.modules.get("exporter")
    with open(os.environ["BENCH_PEAK_FILE"], "w") as out:
        out.write(f"{kib} {getattr(exporter, '__file__', '')}\n")


atexit.register(_write_peak)
sys.argv = ["chargeback", *sys.argv[1:]]
runpy.run_module("exporter", run_name="__main__", alter_sys=True)
