"""A day of history of a one-node cluster, and `chargeback serve` subprocesses over it, for the limits tests.

Hand-worked amounts for the 24 h window (T0 - 24h, T0]:
  n1: 4 cores x 0.04 + 16 GiB x 0.005 = 0.24 per hour          -> 24 h: 5.76
  team-a/web requests 1 core, 2 GiB (uses half): 0.04 + 0.01 = 0.05/h -> 24 h: 1.20
  __idle__ = 5.76 - 1.20 = 4.56
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml

from demo.localprom import free_port
from demo.synthetic import GIB, Cluster, Container, Node, Pod

DAY = 86400
HOURLY_NODE, HOURLY_TEAM_A = 4 * 0.04 + 16 * 0.005, 1 * 0.04 + 2 * 0.005


def day_cluster() -> Cluster:
    node = Node("n1", 4, 16 * GIB, opencost={"cpu": 0.04, "ram": 0.005})
    return Cluster((node,), (Pod("team-a", "web", "n1", (Container("app", 1, 2 * GIB, 0, 0.5, 1 * GIB),)),))


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) in bytes and Threads of a process, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            out[key] = int(value)
    return out


def limit_memory(limit: int = 1536 << 20) -> None:
    """preexec_fn: a regression that allocates per chunk dies with MemoryError instead of eating the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class Serve:
    """`chargeback serve` on a free port against `prom_url`, with extra config sections (https: the CA file)."""

    def __init__(self, root: Path, prom_url: str, https: Path | None = None, **sections: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{self.port}"
        self.verify: str | bool = str(https) if https else True
        cfg: dict[str, Any] = {"prometheus": {"url": prom_url}, **sections}
        cfg["serve"] = {"interval": "1h", "listen": f"127.0.0.1:{self.port}", **sections.get("serve", {})}
        self.config = root / f"serve-{self.port}.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = root / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Serve:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit_memory)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                requests.get(f"{self.url}/readyz", timeout=2, verify=self.verify)
                return self
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError(f"serve did not start: {self.log.read_text()[-800:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def queries(self) -> float:
        for line in requests.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith("chargeback_prometheus_queries_total "):
                return float(line.split()[1])
        raise AssertionError("no chargeback_prometheus_queries_total")

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
