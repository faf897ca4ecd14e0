"""Load balancers and network below the namespace on /allocation (aggregate=pod), on a real Prometheus: the assets
scenario (tests/scenarios.asset_cluster, prices worked in tests/test_assets.py) plus

- payments/api-2, a second pod on n-sp-od (1 core, 2 GiB) sending 1 GiB/h (api sends 2 GiB/h);
- payments/api-lb's Endpoints listing api (10.0.0.1) and api-2 (10.0.0.2); search/web-lb lists nobody;
- 1 GiB/h sent by search/ghost, a pod cAdvisor saw that kube-state-metrics never listed (no container).

The hour (t0, t0+1h]:
  load balancers: payments/api-lb 0.03 (kubecost_load_balancer_cost), split evenly between its two pods:
                  api 0.015, api-2 0.015; search/web-lb 0.025 has no endpoints: stays on `__unallocated__`.
  network: the classified prices as in test_assets (payments 0.5 GiB internet x 0.12 + 1 GiB cross-zone
           x 0.01 = 0.07; search 0.25 GiB cross-region x 0.02 = 0.005), plus the NAT's 0.1 an hour (73/730)
           spread by transmitted bytes: payments 2 + 1 = 3 GiB, search 1 + 1 (ghost) = 2 GiB of 5:
           payments 0.07 + 0.1 x 3/5 = 0.13, search 0.005 + 0.1 x 2/5 = 0.045.
           By pod, each namespace's cost by the pod's transmitted bytes over the namespace's:
           api 0.13 x 2/3, api-2 0.13 x 1/3; query 0.045 x 1/2, and ghost's half stays: 0.0225.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from demo.localprom import PrometheusServer
from demo.synthetic import GIB, Container, Pod, Series

from .conftest import aligned_past, scenario_prom
from .scenarios import asset_cluster
from .test_allocate_core import REL, window_arg
from .test_assets_api import exporter_for, q

KSM = {"job": "kube-state-metrics"}
CAD = {"job": "kubelet", "metrics_path": "/metrics/cadvisor", "container": "", "interface": "eth0"}
GIB_H = GIB / 3600  # bytes per second for 1 GiB an hour
PAYMENTS_NET = 0.5 * 0.12 + 1.0 * 0.01 + 0.1 * 3 / 5  # 0.13
SEARCH_NET = 0.25 * 0.02 + 0.1 * 2 / 5  # 0.045


@pytest.fixture(scope="module")
def service_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    c = asset_cluster(t0)
    ips = {"api": "10.0.0.1", "query": "10.0.0.3"}
    pods = tuple(dataclasses.replace(p, ip=ips[p.name], services=("api-lb",) if p.name == "api" else ())
                 if p.name in ips else p for p in c.pods)
    api2 = Pod("payments", "api-2", "n-sp-od", (Container("app", 1, 2 * GIB, 0, 0.25, GIB),), ip="10.0.0.2",
               services=("api-lb",))
    extra = (Series("container_network_transmit_bytes_total", {**CAD, "namespace": "payments", "pod": "api-2"}, GIB_H),
             Series("container_network_transmit_bytes_total", {**CAD, "namespace": "search", "pod": "ghost"}, GIB_H))
    cluster = dataclasses.replace(c, pods=(*pods, api2), extra=(*c.extra, *extra))
    for prom in scenario_prom(tmp_path_factory, "podservices", cluster, t0):
        yield prom, t0


def test_load_balancers_and_network_go_to_pods(service_prom: Any) -> None:
    t0 = service_prom[1]
    ex = exporter_for(service_prom)
    pods = ex.allocation(q(window=window_arg(t0), aggregate="pod", includeIdle="true"))["data"][0]
    assert pods["api"]["loadBalancerCost"] == pytest.approx(0.015, rel=REL)
    assert pods["api-2"]["loadBalancerCost"] == pytest.approx(0.015, rel=REL)
    assert pods["api"]["lbAllocations"] == {"cluster/payments/api-lb": {
        "service": "payments/api-lb", "cost": pytest.approx(0.015, rel=REL), "private": False, "ip": "",
        "hours": pytest.approx(0.5, rel=REL), "adjustment": 0.0}}
    assert pods["query"]["loadBalancerCost"] == 0.0
    assert pods["api"]["networkCost"] == pytest.approx(PAYMENTS_NET * 2 / 3, rel=REL)
    assert pods["api-2"]["networkCost"] == pytest.approx(PAYMENTS_NET / 3, rel=REL)
    assert pods["query"]["networkCost"] == pytest.approx(SEARCH_NET / 2, rel=REL)
    rest = pods["__unallocated__"]
    # search/web-lb has no endpoints; ghost's bytes have no pod; the volumes (no pod mounts them here: this
    # scenario has no claim series): payments' 100 GiB gp3 8/730, search's 2/730 + 0.004
    assert rest["loadBalancerCost"] == pytest.approx(0.025, rel=REL)
    assert list(rest["lbAllocations"]) == ["cluster/search/web-lb"]
    assert rest["networkCost"] == pytest.approx(SEARCH_NET / 2, rel=REL)
    assert rest["pvCost"] == pytest.approx(8 / 730 + 2 / 730 + 0.004, rel=REL)
    # nothing lost, nothing doubled: by pod, every load balancer and byte's cost once, and the whole cluster
    assert sum(v["loadBalancerCost"] for v in pods.values()) == pytest.approx(0.03 + 0.025, rel=REL)
    assert sum(v["networkCost"] for v in pods.values()) == pytest.approx(PAYMENTS_NET + SEARCH_NET, rel=REL)
    ns = ex.allocation(q(window=window_arg(t0), aggregate="namespace", includeIdle="true"))["data"][0]
    assert ns["payments"]["networkCost"] == pytest.approx(PAYMENTS_NET, rel=REL)
    assert ns["search"]["networkCost"] == pytest.approx(SEARCH_NET, rel=REL)
    assert sum(v["totalCost"] for v in pods.values()) == pytest.approx(sum(v["totalCost"] for v in ns.values()),
                                                                       rel=REL)
    # by namespace and pod: each namespace's pods (and its own `__unallocated__`) add up to its total
    both = ex.allocation(q(window=window_arg(t0), aggregate="namespace,pod", includeIdle="true"))["data"][0]
    for name in ("payments", "search", "ml", "web"):
        mine = sum(v["totalCost"] for k, v in both.items() if k.split("/")[0] == name)
        assert mine == pytest.approx(ns[name]["totalCost"], rel=REL), name
    assert both["search/__unallocated__"]["totalCost"] == pytest.approx(0.025 + SEARCH_NET / 2 + 2 / 730 + 0.004,
                                                                        rel=REL)
    assert both["payments/api"]["loadBalancerCost"] == pytest.approx(0.015, rel=REL)


def test_containers_split_a_pods_part_evenly(service_prom: Any) -> None:
    """aggregate=pod,container: api has one container, so it holds the pod's whole part."""
    t0 = service_prom[1]
    rows = exporter_for(service_prom).allocation(q(window=window_arg(t0), aggregate="pod,container"))["data"][0]
    assert rows["api-2/app"]["networkCost"] == pytest.approx(PAYMENTS_NET / 3, rel=REL)
    assert rows["api-2/app"]["loadBalancerCost"] == pytest.approx(0.015, rel=REL)
