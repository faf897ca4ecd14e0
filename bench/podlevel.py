"""The pod-level figure of `make bench`, run as a child so that its peak RSS is its own.

`python -m bench.podlevel CONFIG WINDOW AGGREGATE` answers one /allocation request the way serve does
(`Exporter.allocation`, pod-level rows grouped as they come) and prints one JSON line of stats.
"""

from __future__ import annotations

import json
import sys
import time

from exporter.config.schema import load_config, override
from exporter.serve.server import Exporter


def main() -> None:
    config, window, aggregate = sys.argv[1:4]
    cfg = override(load_config(config), "attribution", source="prometheus")
    ex = Exporter(cfg)
    try:
        t = time.monotonic()
        body = ex.allocation({"window": [window], "aggregate": [aggregate], "accumulate": ["true"]})
        text = json.dumps(body)  # the response as serve would write it
        wall = time.monotonic() - t
        s = ex.client.stats
        print(json.dumps({"wall_s": wall, "groups": len(body["data"][0]), "bytes": len(text),
                          "queries": s.queries, "prometheus_seconds": s.server_seconds}))
    finally:
        ex.close()


if __name__ == "__main__":
    main()
