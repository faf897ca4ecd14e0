"""OpenCost's per-allocation detail in /allocation: `pvs` itemising pvCost by volume (the assets scenario)
and `rawAllocationOnly`'s max usage (the sharing scenario), against a real Prometheus; amounts by hand.

Volumes (scenarios.asset_cluster), the hour (t0, t0+1h], 730 h a month:
  pv-gp3      100 GiB, class gp3 at 0.08/GiB-month, claimed by payments: 100 x 0.08 / 730 = 0.010959/h
  pv-noclass   50 GiB, no class: OpenCost's default 0.04/GiB-month, search: 50 x 0.04 / 730 = 0.002740/h
  pv-opencost  20 GiB, pv_hourly_cost 0.0002/GiB-h, search: 20 x 0.0002 = 0.004/h
  pv-orphan    10 GiB, gp3, no claim: __unmounted__: 10 x 0.08 / 730 = 0.001096/h
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from demo.localprom import PrometheusServer
from exporter.config.schema import parse_config
from exporter.serve.server import Exporter

from .scenarios import ASSET_CONFIG
from .test_allocate_core import REL, window_arg

GIB = 1024**3


@pytest.fixture(scope="module")
def exporter(asset_prom: tuple[PrometheusServer, int]) -> Iterator[Exporter]:
    ex = Exporter(parse_config({**ASSET_CONFIG, "prometheus": {"url": asset_prom[0].url}}))
    yield ex
    ex.close()


def pv(byte_hours: float, cost: float) -> dict[str, Any]:
    return {"byteHours": pytest.approx(byte_hours, rel=REL), "cost": pytest.approx(cost, rel=REL),
            "providerID": "", "adjustment": 0.0}


def test_pvs_itemise_pv_cost(exporter: Exporter, asset_prom: Any) -> None:
    t0 = asset_prom[1]
    data = exporter.allocation({"window": [window_arg(t0)], "aggregate": ["namespace"]})["data"][0]
    assert data["payments"]["pvs"] == {"cluster=cluster:name=pv-gp3": pv(100 * GIB, 100 * 0.08 / 730)}
    assert data["search"]["pvs"] == {"cluster=cluster:name=pv-noclass": pv(50 * GIB, 50 * 0.04 / 730),
                                     "cluster=cluster:name=pv-opencost": pv(20 * GIB, 20 * 0.0002)}
    # the unclaimed volume is __unmounted__'s, itemised too
    assert data["__unmounted__"]["pvs"] == {"cluster=cluster:name=pv-orphan": pv(10 * GIB, 10 * 0.08 / 730)}
    assert data["__unmounted__"]["pvCost"] == pytest.approx(10 * 0.08 / 730, rel=REL)
    for name, item in data.items():  # pvCost is the sum of pvs' costs (the suite's totalCost check)
        assert item["pvCost"] == pytest.approx(sum(v["cost"] for v in (item["pvs"] or {}).values()), rel=REL,
                                               abs=1e-15), name
    assert data["ml"]["pvs"] is None and data["web"]["pvs"] is None  # no volume: null, as OpenCost writes it
    # one allocation over all namespaces holds every volume
    cluster = exporter.allocation({"window": [window_arg(t0)], "aggregate": ["cluster"]})["data"][0]["cluster"]
    assert set(cluster["pvs"]) == {f"cluster=cluster:name={n}" for n in ("pv-gp3", "pv-noclass", "pv-opencost")}


def test_raw_allocation_only_holds_one_containers_max_usage(share_prom: tuple[PrometheusServer, int]) -> None:
    """The sharing scenario's containers use half their request all hour: payments' api 1 of 2 cores and
    2 of 4 GiB, monitoring's prometheus 1 of 2 cores and 4 of 8 GiB. Max usage is that constant."""
    prom, t0 = share_prom
    ex = Exporter(parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))
    try:
        def get(**params: str) -> dict[str, Any]:
            query = {"window": [window_arg(t0)], **{k: [v] for k, v in params.items()}}
            data: dict[str, Any] = ex.allocation(query)["data"][0]
            return data

        pods = get(aggregate="pod")
        # No GPU: gpuUsageMax 0 (test_opencost_fields.py has one).
        assert pods["api"]["rawAllocationOnly"] == {"cpuCoreUsageMax": pytest.approx(1.0, rel=REL),
                                                    "ramByteUsageMax": pytest.approx(2 * GIB, rel=REL),
                                                    "gpuUsageMax": 0.0}
        assert pods["prometheus"]["rawAllocationOnly"] == {"cpuCoreUsageMax": pytest.approx(1.0, rel=REL),
                                                           "ramByteUsageMax": pytest.approx(4 * GIB, rel=REL),
                                                           "gpuUsageMax": 0.0}
        containers = get(aggregate="namespace,pod,container")
        assert containers["payments/api/app"]["rawAllocationOnly"] == pods["api"]["rawAllocationOnly"]
        # an aggregate of several containers has no single maximum: null, as OpenCost's aggregates
        assert get(aggregate="container")["app"]["rawAllocationOnly"] is None
        assert get(aggregate="namespace")["payments"]["rawAllocationOnly"] is None
    finally:
        ex.close()
