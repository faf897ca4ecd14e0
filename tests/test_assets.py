"""Every price source, storage, load balancers, network and a multi-GPU node, against a real Prometheus.

Scenario: scenarios.asset_cluster over one hour; amounts worked out by hand below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer
from exporter.cli import main
from exporter.config.pricebook import Storage
from exporter.core.assets import Volume, price_volumes

from .scenarios import ASSET_CONFIG
from .test_allocate_core import REL, window_arg

R = 0.031611 / 0.004237  # OpenCost's split ratio: a core weighs R GiB
# n-sp-od: m5.2xlarge on-demand under a Savings Plan: effective 0.25/h over 8 cores, 32 GiB.
RAM_A = 0.25 / (8 * R + 32)
CPU_A = RAM_A * R
# n-sp-spot: the same type on spot: 0.1152/h.
RAM_B = 0.1152 / (8 * R + 32)
CPU_B = RAM_B * R
# n-gpu: p3.8xlarge from the shipped list (12.24/h), 4 GPUs taken out first at the shipped V100 price 2.48
# (the instance type names the model; exporter/data/gpu-prices.yaml).
V100 = 2.48
RAM_G = (12.24 - 4 * V100) / (32 * R + 244)
CPU_G = RAM_G * R
# n-shipped: m5.xlarge from the shipped list (0.192/h), 4 cores, 16 GiB.
RAM_O = 0.192 / (4 * R + 16)
CPU_O = RAM_O * R

STORAGE = {"payments": 100 * 0.08 / 730, "search": 50 * 0.04 / 730 + 20 * 0.0002, "__unmounted__": 10 * 0.08 / 730}
LB = {"payments": 0.03, "search": 0.025}
NAT = 73 / 730  # a month of 730 h
NETWORK = {"payments": 0.5 * 0.12 + 1.0 * 0.01 + NAT * 2 / 3, "search": 0.25 * 0.02 + NAT * 1 / 3}
COMPUTE = {
    "payments": 2 * CPU_A + 8 * RAM_A,
    "search": 1 * CPU_B + 4 * RAM_B,
    "ml": 8 * CPU_G + 64 * RAM_G + 2 * V100,
    "web": 1 * CPU_O + 2 * RAM_O,
}
NODES = 0.25 + 0.1152 + 12.24 + 0.192
TOTAL = NODES + sum(STORAGE.values()) + sum(LB.values()) + sum(NETWORK.values())


def config(asset_prom: tuple[PrometheusServer, int], tmp_path: Path, **extra: Any) -> Path:
    raw = {**ASSET_CONFIG, "prometheus": {"url": asset_prom[0].url}, **extra}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def allocate(path: Path, t0: int, aggregate: str = "namespace") -> dict[str, Any]:
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0), "--format", "json",
                                    "--aggregate", aggregate])
    assert res.exit_code == 0, res.output
    data: dict[str, Any] = json.loads(res.stdout)["data"][0]
    return data


def test_every_asset_priced_from_every_source(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    data = allocate(config(asset_prom, tmp_path), t0)
    for ns in ("payments", "search", "ml", "web"):
        got = data[ns]
        assert got["cpuCost"] + got["ramCost"] + got["gpuCost"] == pytest.approx(COMPUTE[ns], rel=REL), ns
        assert got["pvCost"] == pytest.approx(STORAGE.get(ns, 0.0), rel=REL, abs=1e-15), ns
        assert got["loadBalancerCost"] == pytest.approx(LB.get(ns, 0.0), rel=REL, abs=1e-15), ns
        assert got["networkCost"] == pytest.approx(NETWORK.get(ns, 0.0), rel=REL, abs=1e-15), ns
    assert data["ml"]["gpuCost"] == pytest.approx(2 * V100, rel=REL)  # 2 of 4 GPUs requested
    assert data["ml"]["gpuHours"] == pytest.approx(2.0, rel=REL)
    assert data["payments"]["pvByteHours"] == pytest.approx(100 * 1024**3, rel=REL)
    assert data["__unmounted__"]["totalCost"] == pytest.approx(10 * 0.08 / 730, rel=REL)
    # GPU idle: the two unrequested GPUs.
    assert data["__idle__"]["gpuCost"] == pytest.approx(2 * V100, rel=REL)
    # Conservation: nodes + volumes + load balancers + network = every namespace, pseudo ones included.
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(TOTAL, rel=REL)


def test_spot_and_on_demand_of_one_type_and_savings_plan(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    nodes = allocate(config(asset_prom, tmp_path), t0, "node")
    assert nodes["n-sp-od"]["totalCost"] == pytest.approx(0.25, rel=REL)  # Savings Plan effective rate
    assert nodes["n-sp-spot"]["totalCost"] == pytest.approx(0.1152, rel=REL)  # spot price
    assert nodes["n-gpu"]["totalCost"] == pytest.approx(12.24, rel=REL)
    assert nodes["n-shipped"]["totalCost"] == pytest.approx(0.192, rel=REL)


def test_aws_split_gives_gpus_nine_tenths(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    cfg = yaml.safe_load(config(asset_prom, tmp_path).read_text())
    cfg["pricing"]["split"] = {"method": "aws"}
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(cfg))
    data = allocate(path, t0)
    # p3.8xlarge 12.24: GPUs weigh 9x CPU+RAM, so 9/10 of it over 4 GPUs; the rest splits 9:1 per vCPU vs GiB.
    gpu = 12.24 * 0.9 / 4
    ram = 12.24 * 0.1 / (32 * 9 + 244)
    assert data["ml"]["gpuCost"] == pytest.approx(2 * gpu, rel=REL)
    assert data["ml"]["cpuCost"] == pytest.approx(8 * 9 * ram, rel=REL)
    assert data["ml"]["ramCost"] == pytest.approx(64 * ram, rel=REL)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(TOTAL, rel=REL)


def test_prices_command_lists_every_node_and_source(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    res = CliRunner().invoke(main, ["prices", "--config", str(config(asset_prom, tmp_path)), "--format", "json",
                                    "--window", window_arg(t0)])
    assert res.exit_code == 0, res.output
    rows = {r["node"]: r for r in json.loads(res.stdout)}
    assert {n: r["source"] for n, r in rows.items()} == {
        "n-sp-od": "pricebook-effective[0]", "n-sp-spot": "pricebook-spot[0]", "n-gpu": "shipped",
        "n-shipped": "shipped"}
    assert rows["n-sp-spot"]["capacityType"] == "spot" and rows["n-sp-od"]["capacityType"] == "on-demand"
    assert rows["n-gpu"]["hourly"] == pytest.approx(12.24, rel=REL)
    assert rows["n-gpu"]["gpuShare"] == pytest.approx(4 * V100 / 12.24, rel=REL)
    assert rows["n-shipped"]["instanceType"] == "m5.xlarge"
    table = CliRunner().invoke(main, ["prices", "--config", str(config(asset_prom, tmp_path)), "--window",
                                      window_arg(t0)])
    assert "shipped on-demand prices compiled 2026-11-26" in table.stdout


def test_unmatched_rule_and_default_priced_node_warn(asset_prom: Any, tmp_path: Path) -> None:
    t0 = asset_prom[1]
    cfg = yaml.safe_load(config(asset_prom, tmp_path).read_text())
    cfg["pricing"]["rules"].append({"match": {"node.kubernetes.io/instance-type": "m5.24xlarge"}, "hourly": 4.6})
    cfg["pricing"]["shippedPrices"] = False
    path = tmp_path / "warn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["prices", "--config", str(path), "--window", window_arg(t0)])
    assert res.exit_code == 0
    assert "warning: pricing.rules.1 matches no node" in res.stderr
    assert "warning: node n-gpu has no price source; priced at default rates" in res.stderr


def test_team_view_keeps_pseudo_namespaces_apart(asset_prom: Any, tmp_path: Path) -> None:
    """No namespace here carries labels (nor has a kube_namespace_labels series): all tenants are unattributed."""
    data = allocate(config(asset_prom, tmp_path), asset_prom[1], "team")
    assert set(data) == {"__unattributed__", "__unmounted__", "__idle__"}
    assert data["__unmounted__"]["pvCost"] == pytest.approx(10 * 0.08 / 730, rel=REL)
    tenants = sum(COMPUTE.values()) + sum(LB.values()) + sum(NETWORK.values()) + STORAGE["payments"] + STORAGE["search"]
    assert data["__unattributed__"]["totalCost"] == pytest.approx(tenants, rel=REL)
    assert sum(v["totalCost"] for v in data.values()) == pytest.approx(TOTAL, rel=REL)


def test_storage_prorates_over_the_configured_month_like_every_monthly_amount() -> None:
    # A 31-day month (744 h): a 100 GiB gp3 volume at 0.08/GiB-month costs 100 x 0.08 / 744 an hour,
    # the same month length the control-plane fee and the NAT gateway are prorated over.
    gib = 1024**3
    volumes = [Volume("pv-a", 100 * gib * 3600, "gp3", "payments", None),
               Volume("pv-b", 10 * gib * 3600, "", None, None)]
    [a, b] = price_volumes(volumes, Storage(classes={"gp3": 0.08}), 744)
    assert (a.namespace, a.cost, a.source) == ("payments", pytest.approx(100 * 0.08 / 744, rel=1e-12), "class:gp3")
    assert (b.namespace, b.cost, b.source) == ("__unmounted__", pytest.approx(10 * 0.04 / 744, rel=1e-12), "default")
