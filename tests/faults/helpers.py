"""Running the real console script against a (faulty) Prometheus and judging its answer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..console import CHARGEBACK
from ..scenarios import CORE_CONFIG


def write_config(tmp_path: Path, url: str, **prometheus: Any) -> Path:
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(dict(CORE_CONFIG, prometheus={"url": url, **prometheus})))
    return path


def allocate(config: Path, window: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`chargeback allocate` as a user runs it: the console script, in its own process."""
    return subprocess.run([CHARGEBACK, "allocate", "--config", str(config), "--window", window, "--format", "json"],
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """rc 2, one stderr line `chargeback: error: ...` naming the cause, no traceback, nothing on stdout."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("chargeback: error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def costs(proc: subprocess.CompletedProcess[str]) -> dict[str, float]:
    """Total cost per namespace from a successful run (never a silent zero: rc 0 and every namespace)."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)["data"][0]
    return {ns: float(v["totalCost"]) for ns, v in data.items()}


def assert_costs(got: dict[str, float], expected: dict[str, float], total: float, rel: float) -> None:
    assert set(got) == set(expected)
    for ns, exp in expected.items():
        assert got[ns] == pytest.approx(exp, rel=rel), ns
    assert sum(got.values()) == pytest.approx(total, rel=rel)  # conservation: the nodes' cost, __idle__ included
