"""Where a bench child's memory and time go: `tracemalloc` near the traced peak, `cProfile` top 20.

Used by the accrual child of bench/serve.py (`--profile`) and by bench/child.py (`BENCH_PROFILE`), so that a
goal missed comes with its profile. Profilers slow the child down and inflate its RSS: their runs are for the
breakdown, never for the figures.
"""

from __future__ import annotations

import cProfile
import pstats
import threading
import tracemalloc
from collections import defaultdict
from pathlib import Path


class PeakSnapshot:
    """tracemalloc's allocations near the traced peak: a polling thread takes a snapshot whenever the traced size
    passes the last snapshot's by a quarter (from 32 MB on), and keeps only the newest, so the one reported is
    within about 25 % of the peak (or was taken while the peak was building). Snapshots of millions of blocks
    take seconds, hence few of them and short tracebacks. The snapshot held doubles the child's memory: only its
    breakdown is meant to be read."""

    def __init__(self, frames: int = 12) -> None:
        self.size, self.when, self.taken = 0, "", 0
        self.label = "start"
        self._snap: tracemalloc.Snapshot | None = None
        self._stop = threading.Event()
        tracemalloc.start(frames)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            current = tracemalloc.get_traced_memory()[0]
            if current > max(self.size * 1.25, 32 << 20):
                self._snap = None
                self._snap = tracemalloc.take_snapshot()
                self.size, self.when, self.taken = current, self.label, self.taken + 1

    def write(self, path: Path) -> None:
        self._stop.set()
        self._thread.join()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()  # the snapshot stays whole; grouping it untraced is faster
        lines = [f"tracemalloc: traced peak {peak / 2**20:.1f} MB, now {current / 2**20:.1f} MB; the snapshot below "
                 f"({self.taken} taken) was taken at {self.size / 2**20:.1f} MB traced, during {self.when}", ""]
        if self._snap:
            # Grouped from the raw traces (domain, size, frames innermost first, depth): Snapshot.statistics builds
            # a Traceback object per trace, minutes for millions of blocks.
            by_line: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
            by_stack: dict[tuple[tuple[str, int], ...], list[int]] = defaultdict(lambda: [0, 0])
            for _domain, size, frames, *_ in self._snap.traces._traces:  # type: ignore[attr-defined]
                # The stack from the innermost exporter frame out: who holds it, not which json line made it.
                own = next((i for i, f in enumerate(frames) if "/exporter/" in f[0]), 0)
                for key, table in ((frames[0], by_line), (frames[own:own + 3], by_stack)):
                    entry = table[key]
                    entry[0] += size
                    entry[1] += 1
            lines += [f"{size / 2**20:8.1f} MB {count:>9,} blocks  {file}:{line}"
                      for (file, line), (size, count) in sorted(by_line.items(), key=lambda kv: -kv[1][0])[:25]]
            lines += ["", "by the innermost exporter frame and its two callers:"]
            for stack, (size, count) in sorted(by_stack.items(), key=lambda kv: -kv[1][0])[:12]:
                lines.append(f"{size / 2**20:8.1f} MB {count:>9,} blocks")
                lines += [f"        {file}:{line}" for file, line in stack]
        path.write_text("\n".join(lines) + "\n")


def write_cprofile(profile: cProfile.Profile, path: Path) -> None:
    """Top 20 by cumulative time, then by own time."""
    with path.open("w") as fh:
        for key in ("cumulative", "tottime"):
            pstats.Stats(profile, stream=fh).sort_stats(key).print_stats(20)
