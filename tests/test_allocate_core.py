"""`chargeback allocate` against a real Prometheus holding the core scenario.

Every expected amount below is worked out by hand from the numbers in scenarios.core_cluster.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from exporter.cli import main

from .console import CHARGEBACK

REL = 1e-9

# OpenCost default rates (per core-hour / GiB-hour), and the total-price split ratio.
D_CPU, D_RAM, D_SPOT_CPU, D_SPOT_RAM = 0.031611, 0.004237, 0.006655, 0.000892
RATIO = D_CPU / D_RAM
# n-total: t3.large at 0.0832/h over 2 cores and 8 GiB, split like OpenCost.
T_RAM = 0.0832 / (2 * RATIO + 8)
T_CPU = T_RAM * RATIO

# ---- expected cost for the hour (T0, T0+1h], by hand -------------------------------------------
# n-od (cpu 0.04, ram 0.005): web alloc 1 core (request > 0.5 used), burst alloc 4 (usage > request);
# 5 > 4 cores, so both are scaled by 4/5: 0.8 + 3.2 = 4 core-hours. Memory: 2 + 1 GiB (requests).
TEAM_A = {"cpu": 4 * 0.04, "memory": 3 * 0.005, "gpu": 0.0}
# n-spot (default spot rates): batch runs 30 of 60 minutes at 2 cores/4 GiB; api 0.5 core/1 GiB all hour.
TEAM_B = {"cpu": (2 * 0.5 + 0.5) * D_SPOT_CPU, "memory": (4 * 0.5 + 1) * D_SPOT_RAM, "gpu": 0.0}
# n-gpu (price book cpu 0.05, ram 0.006, gpu 2.0): train 4 cores, 32 GiB, 1 GPU.
# n-total: small 0.5 core, 2 GiB at the split rates.
TEAM_C = {"cpu": 4 * 0.05 + 0.5 * T_CPU, "memory": 32 * 0.006 + 2 * T_RAM, "gpu": 1 * 2.0}
# n-default (default rates): besteffort has no requests, so its usage 0.25 core / 0.25 GiB is charged.
TEAM_D = {"cpu": 0.25 * D_CPU, "memory": 0.25 * D_RAM, "gpu": 0.0}
KUBE_SYSTEM = {"cpu": 0.25 * D_CPU, "memory": 0.25 * D_RAM, "gpu": 0.0}
IDLE = {
    "cpu": 0 * 0.04 + (8 - 1.5) * D_SPOT_CPU + (8 - 4) * 0.05 + (2 - 0.5) * T_CPU + (2 - 0.5) * D_CPU,
    "memory": (16 - 3) * 0.005 + (32 - 3) * D_SPOT_RAM + (64 - 32) * 0.006 + (8 - 2) * T_RAM + (4 - 0.5) * D_RAM,
    "gpu": (4 - 1) * 2.0,
}
NODES_TOTAL = (
    (4 * 0.04 + 16 * 0.005)
    + (8 * D_SPOT_CPU + 32 * D_SPOT_RAM)
    + (8 * 0.05 + 64 * 0.006 + 4 * 2.0)
    + 0.0832
    + (2 * D_CPU + 4 * D_RAM)
)
EXPECTED = {"team-a": TEAM_A, "team-b": TEAM_B, "team-c": TEAM_C, "team-d": TEAM_D,
            "kube-system": KUBE_SYSTEM, "__idle__": IDLE}


def window_arg(t0: int, hours: float = 1) -> str:
    def fmt(t: float) -> str:
        return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{fmt(t0)},{fmt(t0 + hours * 3600)}"


def run_allocate(config: Path, window: str, *extra: str) -> Any:
    res = CliRunner().invoke(main, ["allocate", "--config", str(config), "--window", window, "--format", "json",
                                    *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def assert_expected(data: dict[str, Any], expected: dict[str, dict[str, float]] | None = None) -> None:
    """An allocation set (namespace -> OpenCost fields) equals the hand-worked amounts to 1e-9, namespace by
    namespace and resource by resource (also the deployment-shape matrix's baseline, tests/shapes.py)."""
    expected = expected or EXPECTED
    assert set(data) == set(expected), sorted(data)
    for ns, exp in expected.items():
        got = data[ns]
        assert got["cpuCost"] == pytest.approx(exp["cpu"], rel=REL), ns
        assert got["ramCost"] == pytest.approx(exp["memory"], rel=REL), ns
        assert got["gpuCost"] == pytest.approx(exp["gpu"], rel=REL, abs=1e-12), ns
        assert got["totalCost"] == pytest.approx(sum(exp.values()), rel=REL), ns


def test_hand_computed_costs_per_namespace(core_config: Path, core_t0: int) -> None:
    body = run_allocate(core_config, window_arg(core_t0))
    assert body["code"] == 200
    data = body["data"][0]
    assert_expected(data)
    # Conservation: every namespace, __idle__ included, adds up to the nodes' cost.
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=1e-4)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)


def test_opencost_shape_and_efficiency(core_config: Path, core_t0: int) -> None:
    a = run_allocate(core_config, window_arg(core_t0))["data"][0]["team-a"]
    assert a["name"] == "team-a"
    assert a["minutes"] == 60
    assert a["start"].endswith("Z") and a["end"].endswith("Z")
    # Requests 1 + 1 core, usage 0.5 + 4 cores (pod-level and pause series ignored).
    assert a["cpuCoreRequestAverage"] == pytest.approx(2.0, rel=REL)
    assert a["cpuCoreUsageAverage"] == pytest.approx(4.5, rel=REL)
    assert a["cpuEfficiency"] == pytest.approx(4.5 / 2.0, rel=REL)
    # OpenCost's cpuCoreHours: max(request, usage) as held, 1 + 4 = 5; chargeback prices them scaled to the
    # 4-core node (x 0.8), 4 core-hours.
    assert a["cpuCoreHours"] == pytest.approx(5.0, rel=REL)
    assert a["chargedCpuCoreHours"] == pytest.approx(4.0, rel=REL)
    assert a["ramByteHours"] == pytest.approx(3 * 1024**3, rel=REL)
    assert a["ramByteUsageAverage"] == pytest.approx(1.5 * 1024**3, rel=REL)
    assert a["ramEfficiency"] == pytest.approx(1.5 / 3, rel=REL)
    for field in ("pvCost", "networkCost", "loadBalancerCost", "sharedCost", "gpuHours"):
        assert field in a
    b = run_allocate(core_config, window_arg(core_t0))["data"][0]["team-b"]
    # batch ran 30 of 60 minutes: 2 cores x 0.5 h + api 0.5 core x 1 h.
    assert b["cpuCoreHours"] == pytest.approx(1.5, rel=REL)
    c = run_allocate(core_config, window_arg(core_t0))["data"][0]["team-c"]
    assert c["gpuHours"] == pytest.approx(1.0, rel=REL)


@pytest.mark.parametrize(
    ("policy", "team_a_cpu_core_hours"),
    [
        ("request", 1 + 1),  # requests only: 2 cores, no overflow
        ("usage", 4.0),  # 0.5 + 4 = 4.5 > 4 cores, scaled down to capacity
        ("weighted", (0.7 * 1 + 0.3 * 0.5) + (0.7 * 1 + 0.3 * 4)),  # 0.85 + 1.9 = 2.75
    ],
)
def test_allocation_policies(core_config: Path, core_t0: int, tmp_path: Path, policy: str,
                             team_a_cpu_core_hours: float) -> None:
    cfg = yaml.safe_load(core_config.read_text())
    cfg["allocation"] = {"policy": policy, "requestWeight": 0.7}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    data = run_allocate(path, window_arg(core_t0))["data"][0]
    assert data["team-a"]["cpuCost"] == pytest.approx(team_a_cpu_core_hours * 0.04, rel=REL)
    assert data["__idle__"]["cpuCost"] >= 0
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)


def test_multi_chunk_window_equals_sum_of_parts(core_config: Path, core_t0: int, tmp_path: Path) -> None:
    """Chunks tile the window: 10-minute chunks give the same hour as one chunk, and halves add up."""
    cfg = yaml.safe_load(core_config.read_text())
    cfg["allocation"] = {"chunk": "10m"}
    path = tmp_path / "chunks.yaml"
    path.write_text(yaml.safe_dump(cfg))
    data = run_allocate(path, window_arg(core_t0))["data"][0]
    for ns, exp in EXPECTED.items():
        assert data[ns]["totalCost"] == pytest.approx(sum(exp.values()), rel=REL), ns
    first = run_allocate(core_config, window_arg(core_t0, 0.5))["data"][0]
    second = run_allocate(core_config, window_arg(core_t0 + 1800, 0.5))["data"][0]
    # team-b: batch (2 cores) runs only in the first half; api (0.5 core) in both.
    assert first["team-b"]["cpuCost"] == pytest.approx((2 + 0.5) * 0.5 * D_SPOT_CPU, rel=REL)
    assert second["team-b"]["cpuCost"] == pytest.approx(0.5 * 0.5 * D_SPOT_CPU, rel=REL)
    for ns in EXPECTED:
        assert first[ns]["totalCost"] + second[ns]["totalCost"] == pytest.approx(data[ns]["totalCost"], rel=REL)


def test_parallel_chunks_give_the_serial_result_exactly(core_config: Path, core_t0: int, tmp_path: Path) -> None:
    """Six 10-minute chunks queried four at a time, merged in window order: the same bits as one by one."""
    cfg = yaml.safe_load(core_config.read_text())
    serial = tmp_path / "serial.yaml"
    serial.write_text(yaml.safe_dump({**cfg, "allocation": {"chunk": "10m"}}))
    parallel = tmp_path / "parallel.yaml"
    parallel.write_text(yaml.safe_dump({**cfg, "allocation": {"chunk": "10m", "concurrency": 4}}))
    one, four = run_allocate(serial, window_arg(core_t0)), run_allocate(parallel, window_arg(core_t0))
    assert four == one
    # The flag reaches the validated config: 0 is refused by name.
    res = CliRunner().invoke(main, ["allocate", "--config", str(serial), "--window", window_arg(core_t0),
                                    "--concurrency", "0"])
    assert res.exit_code == 2 and "allocation.concurrency: Input should be greater than or equal to 1" in res.stderr
    data = four["data"][0]
    for ns, exp in EXPECTED.items():
        assert data[ns]["totalCost"] == pytest.approx(sum(exp.values()), rel=REL), ns
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(NODES_TOTAL, rel=REL)


def test_aggregate_by_node_and_cluster(core_config: Path, core_t0: int) -> None:
    nodes = run_allocate(core_config, window_arg(core_t0), "--aggregate", "node")["data"][0]
    assert nodes["n-od"]["totalCost"] == pytest.approx(4 * 0.04 + 16 * 0.005, rel=REL)
    assert nodes["n-total"]["totalCost"] == pytest.approx(0.0832, rel=REL)
    assert nodes["n-gpu"]["gpuCost"] == pytest.approx(4 * 2.0, rel=REL)
    cluster = run_allocate(core_config, window_arg(core_t0), "--aggregate", "cluster")["data"][0]
    assert cluster["cluster"]["totalCost"] == pytest.approx(NODES_TOTAL, rel=REL)


def test_table_and_csv_formats(core_config: Path, core_t0: int) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["allocate", "--config", str(core_config), "--window", window_arg(core_t0)])
    assert table.exit_code == 0, table.output
    assert "team-a" in table.stdout and "__idle__" in table.stdout
    total_row = next(line for line in table.stdout.splitlines() if line.startswith("TOTAL"))
    assert f"{NODES_TOTAL:.4f}" in total_row
    out = runner.invoke(main, ["allocate", "--config", str(core_config), "--window", window_arg(core_t0),
                               "--format", "csv"])
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert float(rows["team-d"]["totalCost"]) == pytest.approx(0.25 * D_CPU + 0.25 * D_RAM, rel=REL)


def test_console_script_output_works_with_opencost_jq(core_config: Path, core_t0: int) -> None:
    """The venv's `chargeback` script (next to sys.executable, not PATH); the JSON answers OpenCost's jq one-liner."""
    proc = subprocess.run([CHARGEBACK, "allocate", "--config", str(core_config), "--window",
                           window_arg(core_t0), "--format", "json"], capture_output=True, text=True, check=True)
    jq = subprocess.run(["jq", "-c", ".data[0] | to_entries[] | {namespace: .key, totalCost: .value.totalCost}"],
                        input=proc.stdout, capture_output=True, text=True, check=True)
    rows = {r["namespace"]: r["totalCost"] for r in map(json.loads, jq.stdout.splitlines())}
    assert rows["team-a"] == pytest.approx(4 * 0.04 + 3 * 0.005, rel=REL)
