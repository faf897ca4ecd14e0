"""A real local VictoriaMetrics stack (Debian `victoria-metrics` package) for the tests: the single-node
server, `vmagent` and `vmalert`, each on a free loopback port.

History goes in through `/api/v1/import/prometheus` (text format with millisecond timestamps), the
synthetic cluster's own OpenMetrics converted line by line. Recording rules get history from `vmalert`'s
replay mode, as promtool's `create-blocks-from rules` gives it to Prometheus.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import requests
import yaml

from demo.localprom import free_port, stop_process, wait_ready
from demo.synthetic import Cluster, write_openmetrics

BINARIES = ("victoria-metrics", "vmagent", "vmalert")
S = TypeVar("S", bound="_Service")


def missing_binaries() -> list[str]:
    """The VictoriaMetrics binaries not on PATH (tests skip on any, and say which)."""
    return [b for b in BINARIES if not shutil.which(b)]


def _binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found on PATH: install the Debian package 'victoria-metrics'")
    return path


def _rfc3339(t: int) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Service:
    """One VictoriaMetrics binary run in the background until stopped, its output in a log file."""

    name = ""
    ready_path = "/health"

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"{self.name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self: S) -> S:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([_binary(self.name), f"-httpListenAddr=127.0.0.1:{self.port}",
                                          "-loggerLevel=WARN", *self.args()],
                                         stdout=log, stderr=subprocess.STDOUT, preexec_fn=os.setsid)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        wait_ready(self.proc, f"{self.url}{self.ready_path}", self.name, self.log_path, timeout, 0.1)

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class VictoriaMetricsServer(_Service):
    """The single-node server: storage, the Prometheus query API (MetricsQL) and the remote-write receiver.

    The response cache is off: it assumes samples arrive in time order, which a backfill breaks. The
    search latency offset stays at its default (30 s): a query for "now" is answered as of 30 s ago
    unless it says `nocache=1`, which chargeback's client always does (docs/victoriametrics.md).
    """

    name = "victoria-metrics"

    def args(self) -> list[str]:
        return [f"-storageDataPath={self.root / f'vm-{self.port}'}", "-retentionPeriod=100y",
                "-search.disableCache"]

    @property
    def write_url(self) -> str:
        """The Prometheus remote-write endpoint."""
        return f"{self.url}/api/v1/write"

    def flush(self) -> None:
        """Make everything received so far searchable now (it would be within a second or so anyway)."""
        requests.get(f"{self.url}/internal/force_flush", timeout=30).raise_for_status()

    def import_cluster(self, cluster: Cluster, start: int, end: int, interval: int,
                       extra_labels: dict[str, str] | None = None) -> int:
        """The cluster's history from start to end (inclusive) at `interval`; returns the sample count."""
        om = self.root / f"import-{self.port}.om"
        with om.open("w") as fh:
            n = write_openmetrics(cluster, start, end, interval, fh, extra_labels=extra_labels)
        try:
            with om.open() as fh:
                resp = requests.post(f"{self.url}/api/v1/import/prometheus", data=_millisecond_lines(fh), timeout=120)
            resp.raise_for_status()
        finally:
            om.unlink()
        self.flush()
        return n


def _millisecond_lines(lines: Iterator[str]) -> Iterator[bytes]:
    """OpenMetrics sample lines (timestamps in seconds) as Prometheus text lines (milliseconds), batched."""
    batch: list[str] = []
    for line in lines:
        if line.startswith("#"):
            continue
        head, ts = line.rsplit(" ", 1)
        batch.append(f"{head} {int(ts)}000\n")
        if len(batch) >= 10000:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


class VMAgent(_Service):
    """Scrapes `targets` (job -> host:port) every `interval` and remote-writes to `remote_write`,
    adding `labels` to every series (as a Prometheus' external labels would)."""

    name = "vmagent"
    ready_path = "/-/ready"

    def __init__(self, root: Path, targets: dict[str, str], remote_write: str, interval: str = "1s",
                 labels: dict[str, str] | None = None) -> None:
        super().__init__(root)
        self.targets, self.remote_write, self.interval = targets, remote_write, interval
        self.labels = labels or {}

    def args(self) -> list[str]:
        cfg = self.root / f"vmagent-{self.port}.yml"
        cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": self.interval},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in self.targets.items()],
        }))
        return [f"-promscrape.config={cfg}", f"-remoteWrite.url={self.remote_write}",
                f"-remoteWrite.tmpDataPath={self.root / f'vmagent-{self.port}-queue'}",
                "-remoteWrite.flushInterval=1s",
                *(f"-remoteWrite.label={k}={v}" for k, v in self.labels.items())]


class VMAlert(_Service):
    """Evaluates Prometheus-format rule files against `datasource` every group interval,
    remote-writes the recorded series to `remote_write` (both a VictoriaMetrics URL) and sends
    alerts to the Alertmanager at `notifier`."""

    name = "vmalert"

    def __init__(self, root: Path, rule_files: list[Path], datasource: str, remote_write: str,
                 interval: str = "1m", notifier: str | None = None) -> None:
        super().__init__(root)
        self.notifier = notifier
        self.rule_files, self.datasource, self.remote_write = rule_files, datasource, remote_write
        self.interval = interval

    def common(self) -> list[str]:
        # nocache=1: rules see the samples of the last 30 s (-search.latencyOffset), as on Prometheus.
        # queryStep 0: each group's interval is the step, so replay records every interval (not every 5m).
        return [*(f"-rule={p.resolve()}" for p in self.rule_files), f"-datasource.url={self.datasource}?nocache=1",
                f"-remoteWrite.url={self.remote_write}", "-remoteWrite.flushInterval=1s",
                "-datasource.queryStep=0s"]

    def args(self) -> list[str]:
        # vmalert will not run alerting rules without an Alertmanager to notify; the tests have none, so
        # it gets a free port: the sends fail and are logged, the recording rules run.
        return [*self.common(), f"-evaluationInterval={self.interval}",
                f"-notifier.url={self.notifier or f'http://127.0.0.1:{free_port()}'}"]

    def replay(self, start: int, end: int) -> None:
        """Evaluate the rules over history [start, end] once (vmalert's replay mode) and wait for it to finish."""
        proc = subprocess.run(
            [_binary(self.name), "-httpListenAddr=", *self.common(), f"-replay.timeFrom={_rfc3339(start)}",
             f"-replay.timeTo={_rfc3339(end)}", "-replay.disableProgressBar", "-replay.rulesDelay=0s"],
            capture_output=True, text=True, timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"vmalert replay failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
