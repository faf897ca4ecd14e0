"""A real local Prometheus (Debian `prometheus` package) for the demo, the benchmark and the tests.

History is loaded with `promtool tsdb create-blocks-from openmetrics`; retention is set
long so Prometheus does not delete the backfilled blocks at start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import requests
import yaml

from demo.synthetic import Cluster, Rewrite, write_openmetrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found on PATH: install the Debian package 'prometheus'")
    return path


def backfill(cluster: Cluster, data_dir: Path, start: int, end: int, interval: int, lean: bool = False,
             block: str = "24h", extra_labels: dict[str, str] | None = None, rewrite: Rewrite | None = None) -> int:
    """Write the cluster's history to OpenMetrics and import it as TSDB blocks; returns the sample count."""
    data_dir.mkdir(parents=True, exist_ok=True)
    om = data_dir.parent / f"{data_dir.name}.om"
    with om.open("w") as fh:
        n = write_openmetrics(cluster, start, end, interval, fh, lean, extra_labels, rewrite)
    proc = subprocess.run(
        # promtool reads the file once per block: day-long blocks make a day's backfill ~3x faster than the
        # 2h default, but hold a block's series in memory, so the benchmark's 100k cluster uses shorter ones.
        [find_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", f"--max-block-duration={block}",
         str(om), str(data_dir)],
        capture_output=True,
        text=True,
    )
    om.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {proc.stderr.strip()[-500:]}")
    return n


def backfill_rules(prom: PrometheusServer, rules_file: Path, start: int, end: int) -> None:
    """Evaluate recording rules over history (promtool create-blocks-from rules) and load the blocks.

    Rules only record from the moment Prometheus loads them; history gets them this way. The
    server is restarted on the same port to pick the new blocks up, so use one that is not
    scraping: a live head holding samples newer than a moved-in block would drop them.
    """
    out = prom.data_dir.parent / f"{prom.data_dir.name}-rules"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(
        [find_binary("promtool"), "tsdb", "create-blocks-from", "rules", f"--start={start}", f"--end={end}",
         f"--url={prom.url}", f"--output-dir={out}", "--quiet", str(rules_file)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"promtool rule backfill failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    prom.stop()
    for block in out.iterdir():
        if block.is_dir():
            shutil.move(str(block), prom.data_dir / block.name)
    shutil.rmtree(out, ignore_errors=True)
    prom.start()


def wait_ready(proc: subprocess.Popen[bytes] | None, url: str, name: str, log_path: Path, timeout: float,
               interval: float) -> None:
    """Until `url` answers 200; a server that exits or stays unready raises with the tail of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log_path.read_text()[-800:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{name} not ready after {timeout}s: {log_path.read_text()[-800:]}")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """TERM, then KILL after 20 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PrometheusServer:
    """Start `prometheus` on a free loopback port; stop it on exit."""

    def __init__(
        self,
        data_dir: Path,
        scrape_targets: dict[str, str] | None = None,
        scrape_interval: str = "15s",
        extra_args: list[str] | None = None,
        port: int | None = None,
        honor_labels: frozenset[str] = frozenset(),
        rule_files: list[Path] | None = None,
        alertmanagers: list[str] | None = None,
        external_labels: dict[str, str] | None = None,
        remote_write: list[str] | None = None,
        scrape_options: dict[str, dict[str, object]] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scrape_targets = scrape_targets or {}
        self.scrape_interval = scrape_interval
        self.extra_args = extra_args or []
        self.honor_labels = honor_labels  # jobs whose exported job/instance labels are kept
        self.rule_files = rule_files or []
        self.alertmanagers = alertmanagers or []
        self.external_labels = external_labels or {}
        self.remote_write = remote_write or []
        self.scrape_options = scrape_options or {}  # job -> extra scrape config keys (scheme, tls_config, auth)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"prometheus-{self.port}.log"

    def _config(self) -> dict[str, object]:
        extra: dict[str, object] = {}
        if self.rule_files:
            extra["rule_files"] = [str(p.resolve()) for p in self.rule_files]  # relative = to the config file
        if self.alertmanagers:
            extra["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]}
        if self.remote_write:
            extra["remote_write"] = [{"url": u, "queue_config": {"batch_send_deadline": "1s"}}
                                     for u in self.remote_write]
        return {
            **extra,
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval,
                       "external_labels": self.external_labels},
            "scrape_configs": [
                {"job_name": job, "honor_labels": job in self.honor_labels, "static_configs": [{"targets": [target]}],
                 **self.scrape_options.get(job, {})}
                for job, target in self.scrape_targets.items()
            ],
        }

    def start(self) -> PrometheusServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.data_dir.parent / f"prometheus-{self.port}.yml"
        cfg.write_text(yaml.safe_dump(self._config()))
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                find_binary("prometheus"),
                f"--config.file={cfg}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=3650d",
                "--web.enable-lifecycle",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=os.setsid,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        wait_ready(self.proc, f"{self.url}/-/ready", "prometheus", self.log_path, timeout, 0.2)

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
