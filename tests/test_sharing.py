"""Shared costs, idle sharing and team attribution against a real Prometheus; amounts by hand.

Scenario (scenarios.share_cluster), one hour, cpu 0.10/core-h, ram 0.01/GiB-h, allocation = requests:
  tenants   payments/payments 2 cores 4 GiB = 0.24     search/search 1 core 2 GiB = 0.12
            web/web-a 1 core 2 GiB = 0.12   web/web-b 0.5/1 = 0.06   web/web (legacy) 0.5/1 = 0.06
            tools/__unattributed__ 1 core 2 GiB = 0.12                              (sum 0.72)
  shared    kube-system 1 core 2 GiB = 0.12 (cpu 0.10, ram 0.02)
            monitoring  2 cores 8 GiB = 0.28 (cpu 0.20, ram 0.08)                  (sum 0.40)
  idle      n1: 4 cores 0.40, 24 GiB 0.24;  n2: 3 cores 0.30, 18 GiB 0.18           (sum 1.12)
  nodes     2 x (8 x 0.10 + 32 x 0.01) = 2.24
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

from .test_allocate_core import REL, window_arg

NODES = 2.24
TENANTS = {"payments": 0.24, "search": 0.12, "web": 0.24, "tools": 0.12}
TEAMS = {"payments": 0.24, "search": 0.12, "web-a": 0.12, "web-b": 0.06, "web": 0.06, "__unattributed__": 0.12}
SHARED = 0.12 + 0.28
IDLE = 0.40 + 0.24 + 0.30 + 0.18
BASE_SHARING = {"shareNamespaces": ["kube-system"], "shareLabels": {"platform": "true"}}


def run(share_prom: tuple[PrometheusServer, int], tmp_path: Path, sharing: dict[str, Any] | None = None,
        aggregate: str = "namespace", extra: tuple[str, ...] = (), **cfg: Any) -> dict[str, dict[str, float]]:
    prom, t0 = share_prom
    raw = {"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}, **cfg}
    if sharing is not None:
        raw["sharing"] = sharing
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0), "--format", "json",
                                    "--aggregate", aggregate, *extra])
    assert res.exit_code == 0, res.output
    data: dict[str, dict[str, float]] = json.loads(res.stdout)["data"][0]
    return data


def totals(data: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: v["totalCost"] for k, v in data.items()}


def assert_costs(got: dict[str, float], expected: dict[str, float], total: float = NODES) -> None:
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=REL, abs=1e-12), k
    assert sum(got.values()) == pytest.approx(total, rel=REL)  # conservation


def test_no_sharing_keeps_platform_namespaces_as_owners(share_prom: Any, tmp_path: Path) -> None:
    got = totals(run(share_prom, tmp_path))
    assert_costs(got, {**TENANTS, "kube-system": 0.12, "monitoring": 0.28, "__idle__": IDLE})


def test_weighted_split_by_allocated_cost(share_prom: Any, tmp_path: Path) -> None:
    data = run(share_prom, tmp_path, BASE_SHARING)
    # Each tenant pays SHARED x its allocated cost / 0.72; kube-system and monitoring vanish as owners.
    expected = {ns: c + SHARED * c / 0.72 for ns, c in TENANTS.items()}
    assert_costs(totals(data), {**expected, "__idle__": IDLE})
    assert data["payments"]["sharedCost"] == pytest.approx(SHARED / 3, rel=REL)
    assert data["payments"]["cpuCost"] == pytest.approx(0.2, rel=REL)


def test_even_split_over_tenant_namespaces(share_prom: Any, tmp_path: Path) -> None:
    got = totals(run(share_prom, tmp_path, {**BASE_SHARING, "shareSplit": "even"}))
    expected = {ns: c + SHARED / 4 for ns, c in TENANTS.items()}
    assert_costs(got, {**expected, "__idle__": IDLE})
    # Within web, its quarter follows allocated cost: web-a 0.12, web-b 0.06, legacy 0.06 of 0.24.
    teams = totals(run(share_prom, tmp_path, {**BASE_SHARING, "shareSplit": "even"}, "team"))
    assert teams["web-a"] == pytest.approx(0.12 + SHARED / 4 * 0.5, rel=REL)
    assert teams["web-b"] == pytest.approx(0.06 + SHARED / 4 * 0.25, rel=REL)


def test_fixed_percentages_by_team(share_prom: Any, tmp_path: Path) -> None:
    sharing = {**BASE_SHARING, "policies": {"monitoring": {"split": "fixed", "fixedBy": "team",
                                                           "percentages": {"payments": 50, "search": 30, "web": 20}}}}
    got = totals(run(share_prom, tmp_path, sharing, "team"))
    ks = 0.12  # kube-system stays weighted: team cost / 0.72
    expected = {
        "payments": 0.24 + 0.28 * 0.50 + ks * 0.24 / 0.72,
        "search": 0.12 + 0.28 * 0.30 + ks * 0.12 / 0.72,
        "web": 0.06 + 0.28 * 0.20 + ks * 0.06 / 0.72,  # team "web" is the legacy pod only
        "web-a": 0.12 + ks * 0.12 / 0.72,
        "web-b": 0.06 + ks * 0.06 / 0.72,
        "__unattributed__": 0.12 + ks * 0.12 / 0.72,
        "__idle__": IDLE,
    }
    assert_costs(got, expected)


def test_metric_split_by_ingress_requests(share_prom: Any, tmp_path: Path) -> None:
    query = "sum by (exported_namespace) (increase(nginx_ingress_controller_requests[$window]))"
    sharing = {**BASE_SHARING, "policies": {"kube-system": {"split": "metric", "query": query,
                                                            "namespaceLabel": "exported_namespace"}}}
    got = totals(run(share_prom, tmp_path, sharing))
    # Requests per second: payments 3, search 1, web 1 (tools none) -> 3/5, 1/5, 1/5 of kube-system's 0.12.
    mon = 0.28  # monitoring stays weighted
    expected = {
        "payments": 0.24 + 0.12 * 3 / 5 + mon * 0.24 / 0.72,
        "search": 0.12 + 0.12 * 1 / 5 + mon * 0.12 / 0.72,
        "web": 0.24 + 0.12 * 1 / 5 + mon * 0.24 / 0.72,
        "tools": 0.12 + mon * 0.12 / 0.72,
        "__idle__": IDLE,
    }
    assert_costs(got, expected)


def test_metric_split_without_data_falls_back_to_weighted(share_prom: Any, tmp_path: Path) -> None:
    prom, t0 = share_prom
    empty = "sum by (namespace) (rate(nothing_here[$window]))"
    sharing = {**BASE_SHARING, "policies": {"kube-system": {"split": "metric", "query": empty}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, "sharing": sharing,
                                    "attribution": {"source": "prometheus"}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "kube-system: weight query returned no weight for any tenant namespace; " \
           "falling back to weighted" in res.stderr
    got = totals(json.loads(res.stdout)["data"][0])
    assert_costs(got, {**{ns: c + SHARED * c / 0.72 for ns, c in TENANTS.items()}, "__idle__": IDLE})


def test_fixed_monthly_cost_is_prorated_and_shared(share_prom: Any, tmp_path: Path) -> None:
    # EKS control plane: 73 a month of 730 hours = 0.10 for this hour; plus a 146/month licence = 0.20.
    sharing = {**BASE_SHARING, "sharedCosts": [{"name": "eks-control-plane", "monthly": 73}], "shareCost": 146}
    data = run(share_prom, tmp_path, sharing)
    fixed = 0.10 + 0.20
    expected = {ns: c + (SHARED + fixed) * c / 0.72 for ns, c in TENANTS.items()}
    assert_costs(totals(data), {**expected, "__idle__": IDLE}, total=NODES + fixed)


def test_idle_shared_cluster_wide(share_prom: Any, tmp_path: Path) -> None:
    data = run(share_prom, tmp_path, {**BASE_SHARING, "shareIdle": True}, "team")
    # Idle cpu 0.70 goes by tenant cpu cost (of 0.60), idle memory 0.42 by tenant memory cost (of 0.12).
    cpu = {"payments": 0.2, "search": 0.1, "web-a": 0.1, "web-b": 0.05, "web": 0.05, "__unattributed__": 0.1}
    ram = {"payments": 0.04, "search": 0.02, "web-a": 0.02, "web-b": 0.01, "web": 0.01, "__unattributed__": 0.02}
    expected = {t: TEAMS[t] + SHARED * TEAMS[t] / 0.72 + 0.70 * cpu[t] / 0.60 + 0.42 * ram[t] / 0.12 for t in TEAMS}
    assert_costs(totals(data), expected)  # no __idle__ left
    assert data["payments"]["cpuCost"] == pytest.approx(0.2 + 0.70 / 3, rel=REL)


def test_idle_shared_per_node(share_prom: Any, tmp_path: Path) -> None:
    got = totals(run(share_prom, tmp_path, {**BASE_SHARING, "shareIdle": True, "idleByNode": True}, "team"))
    # n1 (payments, search): cpu 0.40 by 0.2:0.1, memory 0.24 by 0.04:0.02.
    # n2 (web-a, web-b, web, tools): cpu 0.30 by 0.1:0.05:0.05:0.1, memory 0.18 by 0.02:0.01:0.01:0.02.
    idle = {"payments": 0.40 * 2 / 3 + 0.24 * 2 / 3, "search": 0.40 / 3 + 0.24 / 3,
            "web-a": 0.30 / 3 + 0.18 / 3, "web-b": 0.30 / 6 + 0.18 / 6, "web": 0.30 / 6 + 0.18 / 6,
            "__unattributed__": 0.30 / 3 + 0.18 / 3}
    assert_costs(got, {t: TEAMS[t] + SHARED * TEAMS[t] / 0.72 + idle[t] for t in TEAMS})


def test_cli_flags_override_config(share_prom: Any, tmp_path: Path) -> None:
    got = totals(run(share_prom, tmp_path, None, "namespace",
                     ("--share-namespaces", "kube-system,monitoring", "--share-split", "even", "--share-idle")))
    # Even split of 0.40 over four namespaces; idle cpu/memory by each namespace's cpu/memory cost.
    cpu = {"payments": 0.2, "search": 0.1, "web": 0.2, "tools": 0.1}
    ram = {"payments": 0.04, "search": 0.02, "web": 0.04, "tools": 0.02}
    assert_costs(got, {ns: c + SHARED / 4 + 0.70 * cpu[ns] / 0.60 + 0.42 * ram[ns] / 0.12
                       for ns, c in TENANTS.items()})


def test_attribution_precedence_split_namespace_and_unattributed(share_prom: Any, tmp_path: Path) -> None:
    teams = totals(run(share_prom, tmp_path, {}, "team"))
    assert_costs(teams, {**TEAMS, "__unattributed__": 0.12 + 0.12 + 0.28, "__idle__": IDLE})
    both = totals(run(share_prom, tmp_path, {}, "namespace,team"))
    assert both["web/web-a"] == pytest.approx(0.12, rel=REL)  # pod label wins over namespace label
    assert both["web/web"] == pytest.approx(0.06, rel=REL)  # unlabelled pod: namespace label
    assert both["tools/__unattributed__"] == pytest.approx(0.12, rel=REL)
    centers = totals(run(share_prom, tmp_path, BASE_SHARING, "cost_center"))
    assert centers["CC-300"] == pytest.approx(0.24 + SHARED / 3, rel=REL)  # all of web, from its namespace
    by_label = totals(run(share_prom, tmp_path, BASE_SHARING, "label:cost-center"))
    assert by_label == pytest.approx(centers, rel=REL)


def test_unknown_aggregate_is_rejected(share_prom: Any, tmp_path: Path) -> None:
    prom, t0 = share_prom
    res = CliRunner().invoke(main, ["allocate", "--prometheus-url", prom.url, "--aggregate", "squad",
                                    "--window", window_arg(t0)])
    assert res.exit_code == 2 and "unknown property 'squad'" in res.stderr


def test_http_endpoint_takes_kubecost_parameters(share_prom: Any) -> None:
    from exporter.config.schema import parse_config
    from exporter.serve.server import Exporter
    from exporter.vocab.errors import ConfigError

    prom, t0 = share_prom
    exporter = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))
    body = exporter.allocation({"window": [window_arg(t0)], "aggregate": ["namespace"],
                                "shareNamespaces": ["kube-system,monitoring"], "shareSplit": ["even"],
                                "shareIdle": ["true"], "idleByNode": ["false"], "includeIdle": ["true"]})
    cpu = {"payments": 0.2, "search": 0.1, "web": 0.2, "tools": 0.1}
    ram = {"payments": 0.04, "search": 0.02, "web": 0.04, "tools": 0.02}
    assert_costs(totals(body["data"][0]), {ns: c + SHARED / 4 + 0.70 * cpu[ns] / 0.60 + 0.42 * ram[ns] / 0.12
                                           for ns, c in TENANTS.items()})
    teams = exporter.allocation({"window": [window_arg(t0)], "aggregate": ["namespace,team"]})["data"][0]
    assert teams["web/web-b"]["totalCost"] == pytest.approx(0.06, rel=REL)
    with pytest.raises(ConfigError, match="shareIdle='yes': use true or false"):
        exporter.allocation({"window": [window_arg(t0)], "shareIdle": ["yes"]})
    with pytest.raises(ConfigError, match=r"sharing\.shareSplit"):
        exporter.allocation({"window": [window_arg(t0)], "shareSplit": ["random"]})


def test_fallback_is_published_as_a_metric(share_prom: Any) -> None:
    from exporter.config.schema import parse_config
    from exporter.serve.server import Exporter

    prom, t0 = share_prom
    empty = "sum by (namespace) (rate(nothing_here[$window]))"
    raw = {"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
           "sharing": {**BASE_SHARING, "policies": {"kube-system": {"split": "metric", "query": empty}}},
           "serve": {"start": window_arg(t0).split(",")[0]}}
    exporter = Exporter(parse_config(raw), until=window_arg(t0).split(",")[1])
    exporter.run_once()
    assert exporter.health.up
    assert exporter.registry.get_sample_value("chargeback_share_weight_fallback", {"shared_from": "kube-system"}) == 1
    assert exporter.registry.get_sample_value("chargeback_share_weight_fallback", {"shared_from": "monitoring"}) is None
