"""The pod-level figure of `make bench`, run as a child so that its peak RSS is its own.

`python -m bench.podlevel CONFIG WINDOW AGGREGATE` answers one /allocation request the way serve does
(`Exporter.allocation_body`, pod-level rows grouped as they come, the answer encoded allocation by
allocation as serve writes it) and prints one JSON line of stats.
"""

from __future__ import annotations

import json
import sys
import time

from exporter.config.schema import load_config, override
from exporter.outputs.allocbody import AllocationBody
from exporter.serve.server import Exporter


def peak_rss_mb() -> float:
    """This process's own peak (VmHWM starts afresh at exec). Not wait4's ru_maxrss: that keeps the forking
    parent's high-water mark, and the bench's own (the reference's answers at 100k) is 1.4 GB."""
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) / 1024


def main() -> None:
    config, window, aggregate = sys.argv[1:4]
    cfg = override(load_config(config), "attribution", source="prometheus")
    ex = Exporter(cfg)
    try:
        t = time.monotonic()
        body = ex.allocation_body({"window": [window], "aggregate": [aggregate], "accumulate": ["true"]})
        assert isinstance(body, AllocationBody)
        size = sum(len(piece) for piece in body.chunks())  # encoded piece by piece, as serve writes it
        wall = time.monotonic() - t
        s = ex.client.stats
        groups = len(body.last.groups) if body.last else 0
        print(json.dumps({"wall_s": wall, "groups": groups, "bytes": size, "peak_rss_mb": peak_rss_mb(),
                          "queries": s.queries, "prometheus_seconds": s.server_seconds}))
    finally:
        ex.close()


if __name__ == "__main__":
    main()
