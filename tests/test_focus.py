"""`allocate --format focus` / `report --format focus`: FOCUS 1.0 rows of the cluster split, against a real Prometheus.

Amounts are worked out by hand (the core scenario's in test_allocate_core, the midnight scenario's below),
money is checked against `allocate --format json`, and the FinOps Foundation's validator checks the file.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer, backfill
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.cli import main

from .test_allocate_core import EXPECTED, NODES_TOTAL, REL, run_allocate, window_arg

FOCUS_MANDATORY = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingCurrency",
                   "ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd", "ChargeCategory",
                   "ServiceName", "ServiceCategory", "ResourceId", "ResourceName", "SubAccountId", "ProviderName",
                   "PublisherName", "InvoiceIssuerName", "Tags", "x_Component", "x_Resource")


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def focus(config: Path, window: str, *extra: str, command: str = "allocate") -> tuple[str, list[dict[str, str]]]:
    args = [command, "--config", str(config), "--window", window, "--format", "focus", *extra]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return res.stdout, list(csv.DictReader(io.StringIO(res.stdout)))


def by(rows: list[dict[str, str]], *keys: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for r in rows:
        out[tuple(r[k] for k in keys)] += float(r["EffectiveCost"])
    return dict(out)


# ---- the FinOps Foundation's validator ------------------------------------------------------------
# focus-validator 1.0.0 (the only release on PyPI that runs offline) validates "1.0" with rule files that
# still spell four columns by their 1.0-preview names, and one rule (SkuPriceId_Nullable) queries the
# 0.5 column ChargeType, which no 1.0 file has, so it fails on every 1.0 file with a KeyError. The test
# renames those four headers to the validator's spelling and skips that one rule; every other 1.0 rule runs.
DRAFT_NAMES = {"InvoiceIssuerName": "InvoiceIssuer", "ProviderName": "Provider", "PublisherName": "Publisher",
               "ResourceId": "ResourceID"}
BROKEN_RULES = ["SkuPriceId_Nullable"]


def validate(text: str, tmp_path: Path, as_is: bool = False) -> str:
    """Run the validator's console script from the venv; it exits 0 either way, so return what it prints.

    `as_is`: the file exactly as exported, with every rule (the draft spellings and the broken rule fail).
    """
    header, _, body = text.partition("\n")
    data = tmp_path / "focus-for-validator.csv"
    names = {} if as_is else DRAFT_NAMES
    data.write_text(",".join(names.get(h, h) for h in header.split(",")) + "\n" + body)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"overrides": [] if as_is else BROKEN_RULES}))
    spec = importlib.util.find_spec("focus_validator")
    assert spec is not None and spec.origin is not None, "focus-validator is not installed (make deps)"
    # It reads its ISO 4217 list from a path relative to the working directory: run it from site-packages.
    proc = subprocess.run([str(Path(sys.executable).parent / "focus-validator"), "--data-file", str(data),
                           "--validate-version", "1.0", "--override-file", str(overrides)],
                          capture_output=True, text=True, timeout=120, cwd=Path(spec.origin).parent.parent)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ---- core scenario: one hour, six namespaces, hand-worked in test_allocate_core ----------------------

def test_core_hour_conserves_allocate_and_validates(core_config: Path, core_t0: int, tmp_path: Path) -> None:
    window = window_arg(core_t0)
    text, rows = focus(core_config, window, "--cluster-name", "prod-eu")
    assert set(FOCUS_MANDATORY) <= set(rows[0])
    # One UTC day holds the hour: one charge period, the hour itself, in its calendar month.
    assert {(r["ChargePeriodStart"], r["ChargePeriodEnd"]) for r in rows} == {(iso(core_t0), iso(core_t0 + 3600))}
    month = datetime.fromtimestamp(core_t0, tz=timezone.utc).replace(day=1, hour=0, minute=0, second=0)
    assert {r["BillingPeriodStart"] for r in rows} == {month.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert {r["SubAccountId"] for r in rows} == {"prod-eu"} and {r["BillingCurrency"] for r in rows} == {"USD"}
    for r in rows:
        assert r["BilledCost"] == r["EffectiveCost"] == r["ListCost"] == r["ContractedCost"]
        assert r["ResourceId"] == f"prod-eu/{r['ResourceName']}"
        assert r["ChargeCategory"] == "Usage" and r["ServiceName"] == "Kubernetes"
    # Grain: (namespace, component, resource). Hand-worked amounts per namespace and resource.
    cost = by(rows, "ResourceName", "x_Component", "x_Resource")
    for ns, exp in EXPECTED.items():
        component = "idle" if ns == "__idle__" else "allocated"
        for res, amount in exp.items():
            assert cost.get((ns, component, res), 0.0) == pytest.approx(amount, rel=REL, abs=1e-12), (ns, res)
    assert len(cost) == len(rows)  # one row per key
    # team-a's CPU: 4 core-hours (scaled 5 -> 4 on n-od) at 0.04.
    a_cpu = next(r for r in rows if r["ResourceName"] == "team-a" and r["x_Resource"] == "cpu")
    assert float(a_cpu["PricingQuantity"]) == pytest.approx(4.0, rel=REL) and a_cpu["PricingUnit"] == "Core-Hours"
    assert float(a_cpu["ListUnitPrice"]) == pytest.approx(0.04, rel=REL)
    assert json.loads(a_cpu["Tags"]) == {"namespace": "team-a"}
    # Conservation: every row, __idle__ included, adds up to the nodes' cost and to allocate's JSON.
    data = run_allocate(core_config, window)["data"][0]
    assert sum(float(r["EffectiveCost"]) for r in rows) == pytest.approx(NODES_TOTAL, rel=REL)
    per_ns = by(rows, "ResourceName")
    assert set(per_ns) == {(ns,) for ns in data}
    for ns, item in data.items():
        assert per_ns[(ns,)] == pytest.approx(item["totalCost"], rel=REL), ns
    out = validate(text, tmp_path)
    assert "Validation succeeded." in out, out
    # As exported, only the validator's own defects fail: the four draft spellings and the ChargeType rule.
    failed = set(re.findall(r"^(\S+) failed:$", validate(text, tmp_path, as_is=True), re.MULTILINE))
    assert failed == {f"{draft}_Required" for draft in DRAFT_NAMES.values()} | set(BROKEN_RULES)


def test_validator_rejects_a_broken_file(core_config: Path, core_t0: int, tmp_path: Path) -> None:
    """The check above can fail: a ServiceCategory outside FOCUS's list and a non-JSON Tags are reported."""
    text, _rows = focus(core_config, window_arg(core_t0))
    broken = text.replace(",Compute,", ",Containers,", 1).replace('"{""namespace"": ""team-a""}"', "team-a", 1)
    out = validate(broken, tmp_path)
    assert "Validation failed!" in out
    assert "ServiceCategory_Enum failed" in out and "Tags_IsJSONObject failed" in out


def test_node_and_cluster_views(core_config: Path, core_t0: int) -> None:
    """--aggregate node: allocated + idle per node is the node's price; cluster: one group, all the money."""
    _text, rows = focus(core_config, window_arg(core_t0), "--aggregate", "node")
    nodes = by(rows, "ResourceName")
    assert nodes[("n-od",)] == pytest.approx(4 * 0.04 + 16 * 0.005, rel=REL)  # 4 cores, 16 GiB at OpenCost prices
    assert nodes[("n-total",)] == pytest.approx(0.0832, rel=REL)  # the t3.large hourly price
    gpu = by(rows, "ResourceName", "x_Component", "x_Resource")
    assert gpu[("n-gpu", "allocated", "gpu")] == pytest.approx(1 * 2.0, rel=REL)  # train's 1 GPU of 4
    assert gpu[("n-gpu", "idle", "gpu")] == pytest.approx(3 * 2.0, rel=REL)
    assert sum(nodes.values()) == pytest.approx(NODES_TOTAL, rel=REL)
    # Half an hour at hourly node prices is half NODES_TOTAL.
    _text, rows = focus(core_config, window_arg(core_t0, 0.5), "--aggregate", "cluster")
    assert {r["ResourceName"] for r in rows} == {"cluster"}
    assert {r["ResourceType"] for r in rows} == {"Kubernetes Cluster"}
    assert sum(float(r["EffectiveCost"]) for r in rows) == pytest.approx(NODES_TOTAL / 2, rel=REL)


# ---- a scenario across UTC midnight, hand-worked ---------------------------------------------------
# One node, OpenCost prices 0.10 per core-hour and 0.01 per GiB-hour, 4 cores and 16 GiB: 0.56 an hour.
# Window (M-1h, M+1h] with M a UTC midnight. Every container uses less than it requests, so allocation
# is the request. kube-system is shared (weighted by the tenants' total cost, per resource pool).
#   alpha (team a, CC-1): 1 core, 4 GiB, both hours          -> 0.10 cpu + 0.04 memory an hour
#   beta  (team b, CC-2): 2 cores, 2 GiB, from M+1m (hour 2)  -> 0.20 cpu + 0.02 memory
#   kube-system:          0.5 core, 1 GiB, both hours         -> pools 0.05 cpu, 0.01 memory an hour
# Day 1 (M-1h, M]: alpha is the only tenant, so it takes the whole pools.
#   idle cpu (4 - 1 - 0.5) x 0.10 = 0.25; idle memory (16 - 4 - 1) x 0.01 = 0.11
# Day 2 (M, M+1h]: weights alpha 0.14, beta 0.22 (of 0.36):
#   alpha shared cpu 0.05 x 14/36, memory 0.01 x 14/36; beta 0.05 x 22/36, 0.01 x 22/36
#   idle cpu (4 - 1 - 2 - 0.5) x 0.10 = 0.05; idle memory (16 - 4 - 2 - 1) x 0.01 = 0.09
MIDNIGHT_DAY1 = {
    ("alpha", "allocated", "cpu"): 0.10, ("alpha", "allocated", "memory"): 0.04,
    ("alpha", "shared", "cpu"): 0.05, ("alpha", "shared", "memory"): 0.01,
    ("__idle__", "idle", "cpu"): 0.25, ("__idle__", "idle", "memory"): 0.11,
}
MIDNIGHT_DAY2 = {
    ("alpha", "allocated", "cpu"): 0.10, ("alpha", "allocated", "memory"): 0.04,
    ("alpha", "shared", "cpu"): 0.05 * 14 / 36, ("alpha", "shared", "memory"): 0.01 * 14 / 36,
    ("beta", "allocated", "cpu"): 0.20, ("beta", "allocated", "memory"): 0.02,
    ("beta", "shared", "cpu"): 0.05 * 22 / 36, ("beta", "shared", "memory"): 0.01 * 22 / 36,
    ("__idle__", "idle", "cpu"): 0.05, ("__idle__", "idle", "memory"): 0.09,
}
HOURLY_NODE = 4 * 0.10 + 16 * 0.01  # 0.56


@pytest.fixture(scope="module")
def midnight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    import time

    m = int(time.time()) // 86400 * 86400 - 86400  # yesterday's UTC midnight: both hours are history
    node = Node("n1", 4, 16 * GIB, opencost={"cpu": 0.10, "ram": 0.01})
    pods = (Pod("alpha", "app", "n1", (Container("app", 1, 4 * GIB, 0, 0.5, 2 * GIB),)),
            Pod("beta", "job", "n1", (Container("job", 2, 2 * GIB, 0, 1, 1 * GIB),), start=m + 60),
            Pod("kube-system", "dns", "n1", (Container("dns", 0.5, 1 * GIB, 0, 0.1, 0.5 * GIB),)))
    namespaces = {"alpha": {"team": "a", "cost-center": "CC-1"}, "beta": {"team": "b", "cost-center": "CC-2"},
                  "kube-system": {}}
    root = tmp_path_factory.mktemp("midnight")
    backfill(Cluster((node,), pods, namespaces), root / "data", m - 3600 - 1800, m + 3600 + 600, 60)
    with PrometheusServer(root / "data") as prom:
        yield prom, m


@pytest.fixture()
def midnight_config(tmp_path: Path, midnight: tuple[PrometheusServer, int]) -> Path:
    path = tmp_path / "midnight.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": midnight[0].url},
                                    "attribution": {"source": "prometheus"},
                                    "sharing": {"shareNamespaces": ["kube-system"]},
                                    "serve": {"clusterName": "edge-1"}}))
    return path


def test_days_split_at_utc_midnight(midnight: tuple[PrometheusServer, int], midnight_config: Path,
                                    tmp_path: Path) -> None:
    m = midnight[1]
    window = f"{iso(m - 3600)},{iso(m + 3600)}"
    text, rows = focus(midnight_config, window)
    days = {(r["ChargePeriodStart"], r["ChargePeriodEnd"]) for r in rows}
    assert days == {(iso(m - 3600), iso(m)), (iso(m), iso(m + 3600))}
    for start, expected in ((iso(m - 3600), MIDNIGHT_DAY1), (iso(m), MIDNIGHT_DAY2)):
        got = by([r for r in rows if r["ChargePeriodStart"] == start], "ResourceName", "x_Component", "x_Resource")
        assert set(got) == set(expected), start
        for key, amount in expected.items():
            assert got[key] == pytest.approx(amount, rel=REL), (start, key)
        assert sum(got.values()) == pytest.approx(HOURLY_NODE, rel=REL)  # conservation per day
    # Day 1 is the last day of one month when M is the 1st: billing periods follow the charge period.
    for r in rows:
        assert r["BillingPeriodStart"] <= r["ChargePeriodStart"] < r["ChargePeriodEnd"] <= r["BillingPeriodEnd"]
    assert {r["SubAccountId"] for r in rows} == {"edge-1"}  # serve.clusterName
    tags = {r["ResourceName"]: json.loads(r["Tags"]) for r in rows}
    assert tags["alpha"] == {"namespace": "alpha", "team": "a", "cost-center": "CC-1"}
    assert tags["__idle__"] == {}
    # The same money as allocate over the whole window, per namespace and in total.
    data = run_allocate(midnight_config, window)["data"][0]
    per_ns = by(rows, "ResourceName")
    assert {k[0] for k in per_ns} == set(data)
    for ns, item in data.items():
        assert per_ns[(ns,)] == pytest.approx(item["totalCost"], rel=REL), ns
    assert sum(per_ns.values()) == pytest.approx(2 * HOURLY_NODE, rel=REL)
    out = validate(text, tmp_path)
    assert "Validation succeeded." in out, out


def test_hour_and_window_periods(midnight: tuple[PrometheusServer, int], midnight_config: Path) -> None:
    """hour: the same two periods as day here; window: one period unless a month ends at M."""
    m = midnight[1]
    window = f"{iso(m - 3600)},{iso(m + 3600)}"
    _text, hourly = focus(midnight_config, window, "--focus-period", "hour")
    assert {r["ChargePeriodStart"] for r in hourly} == {iso(m - 3600), iso(m)}
    _text, whole = focus(midnight_config, window, "--focus-period", "window")
    month_ends = datetime.fromtimestamp(m, tz=timezone.utc).day == 1
    assert {(r["ChargePeriodStart"], r["ChargePeriodEnd"]) for r in whole} == (
        {(iso(m - 3600), iso(m)), (iso(m), iso(m + 3600))} if month_ends else {(iso(m - 3600), iso(m + 3600))})
    got = by(whole, "ResourceName", "x_Component", "x_Resource")
    for key in {*MIDNIGHT_DAY1, *MIDNIGHT_DAY2}:  # hourly chunks: the window is the sum of its hours
        assert got[key] == pytest.approx(MIDNIGHT_DAY1.get(key, 0.0) + MIDNIGHT_DAY2.get(key, 0.0), rel=REL), key


def test_report_focus_by_team(midnight: tuple[PrometheusServer, int], midnight_config: Path, tmp_path: Path) -> None:
    """`report --format focus --by team`: the same split grouped by team, written with --out."""
    m = midnight[1]
    out = tmp_path / "team.csv"
    res = CliRunner().invoke(main, ["report", "--config", str(midnight_config), "--window",
                                    f"{iso(m - 3600)},{iso(m + 3600)}", "--by", "team", "--format", "focus",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    cost = by(rows, "ResourceName")
    day1, day2 = MIDNIGHT_DAY1, MIDNIGHT_DAY2
    team_a = sum(v for k, v in day1.items() if k[0] == "alpha") + sum(v for k, v in day2.items() if k[0] == "alpha")
    team_b = sum(v for k, v in day2.items() if k[0] == "beta")
    assert cost[("a",)] == pytest.approx(team_a, rel=REL)
    assert cost[("b",)] == pytest.approx(team_b, rel=REL)
    assert cost[("__idle__",)] == pytest.approx(0.25 + 0.11 + 0.05 + 0.09, rel=REL)
    assert sum(cost.values()) == pytest.approx(2 * HOURLY_NODE, rel=REL)
    assert {r["ResourceType"] for r in rows} == {"Kubernetes team"}
    team_tags = {json.dumps(json.loads(r["Tags"]), sort_keys=True) for r in rows if r["ResourceName"] == "a"}
    assert team_tags == {json.dumps({"namespace": "alpha", "team": "a", "cost-center": "CC-1"}, sort_keys=True)}


def test_focus_bad_input_is_one_line(core_config: Path, core_t0: int) -> None:
    res = CliRunner().invoke(main, ["report", "--config", str(core_config), "--window", window_arg(core_t0),
                                    "--by", "namespace", "--format", "focus", "--send"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "chargeback: error: --format focus is written, not sent: use --out"
