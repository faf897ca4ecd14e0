"""One cluster total: chargeback_cluster_cost_total holds every cost the namespaces receive (nodes, storage,
load balancers, network, fixed fees), so the namespace counters sum to it, in the scenarios with assets."""

from __future__ import annotations

from typing import Any

import pytest

from demo.run import DEMO_CONFIG
from exporter.config.schema import parse_config
from exporter.serve.server import Exporter

from .scenarios import ASSET_CONFIG
from .test_allocate_core import REL, window_arg
from .test_assets import LB, NETWORK, NODES, STORAGE
from .test_demo_cluster import CONTROL_PLANE, PV, network
from .test_demo_cluster import LB as DEMO_LB
from .test_demo_cluster import NODES as DEMO_NODES


def accrued_hour(config: dict[str, Any], url: str, t0: int) -> tuple[dict[str, float], dict[str, float]]:
    """Accrue (t0, t0+1h] in-process; the published namespace and cluster counters, summed by resource."""
    start, until = window_arg(t0).split(",")
    raw = {**config, "prometheus": {"url": url}, "allocation": {"chunk": "20m"},
           "serve": {"start": start, "exposeNewSeriesFor": "0s"}}
    exporter = Exporter(parse_config(raw), until=until)
    exporter.run_once()
    assert exporter.health.up and exporter.ledger.watermark == t0 + 3600, exporter.health.last_error
    namespaces: dict[str, float] = {}
    cluster: dict[str, float] = {}
    for family in exporter.registry.collect():
        for s in family.samples:
            if s.name == "chargeback_namespace_cost_total":
                namespaces[s.labels["resource"]] = namespaces.get(s.labels["resource"], 0.0) + s.value
            elif s.name == "chargeback_cluster_cost_total":
                cluster[s.labels["resource"]] = s.value
    return namespaces, cluster


def test_assets_scenario_namespaces_sum_to_the_cluster_counter(asset_prom: Any) -> None:
    prom, t0 = asset_prom
    namespaces, cluster = accrued_hour(ASSET_CONFIG, prom.url, t0)
    # By hand (tests/test_assets.py): four nodes 0.25 + 0.1152 + 12.24 + 0.192 per hour; volumes 100 GiB gp3,
    # 50 GiB classless, 20 GiB at OpenCost's 0.0002/h and 10 GiB unclaimed gp3; load balancers 0.03 + 0.025;
    # network: classified egress plus the 73/month NAT gateway.
    assert sum(cluster[r] for r in ("cpu", "memory", "gpu")) == pytest.approx(NODES, rel=REL)
    assert cluster["storage"] == pytest.approx(sum(STORAGE.values()), rel=REL)
    assert cluster["load_balancer"] == pytest.approx(sum(LB.values()), rel=REL)
    assert cluster["network"] == pytest.approx(sum(NETWORK.values()), rel=REL)
    total = NODES + sum(STORAGE.values()) + sum(LB.values()) + sum(NETWORK.values())
    assert sum(cluster.values()) == pytest.approx(total, rel=REL)
    assert round(sum(namespaces.values()), 2) == round(sum(cluster.values()), 2)  # to the cent
    for res in cluster:
        assert namespaces[res] == pytest.approx(cluster[res], rel=REL), res


def test_demo_scenario_namespaces_sum_to_the_cluster_counter(demo_prom: Any) -> None:
    prom, t0 = demo_prom
    namespaces, cluster = accrued_hour(DEMO_CONFIG, prom.url, t0)
    # By hand (tests/test_demo_cluster.py): nodes, six volumes, three load balancers, egress at 0.01/GiB plus
    # the NAT gateway, and the EKS control-plane fee of 73 a month as overhead.
    total = DEMO_NODES + sum(PV.values()) + DEMO_LB + network() + CONTROL_PLANE
    assert cluster["overhead"] == pytest.approx(CONTROL_PLANE, rel=REL)
    assert cluster["storage"] == pytest.approx(sum(PV.values()), rel=REL)
    assert sum(cluster.values()) == pytest.approx(total, rel=REL)
    assert round(sum(namespaces.values()), 2) == round(sum(cluster.values()), 2)  # to the cent
    assert sum(namespaces.values()) == pytest.approx(total, rel=REL)
