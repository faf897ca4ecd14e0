"""OpenCost's per-pod `pvs` and per-service `lbAllocations` on /allocation, on a real Prometheus: the assets
scenario (tests/scenarios.asset_cluster) plus the kube-state-metrics claim and pod-volume series.

Volumes, the hour (t0, t0+1h] (prices worked in tests/test_assets.py):
  pv-gp3      100 GiB gp3 0.08/GiB-month: 8/730 = 0.0109589, claim payments/data, mounted by payments/api all hour
  pv-noclass   50 GiB, default 0.04: 2/730 = 0.0027397, claim search/cache, mounted by search/query all hour and
               by search/query-2, which runs the second half (from t0+30m): query holds it alone 30 of the 60
               steps and half of it the other 30, 0.75; query-2 0.25 (OpenCost splits a claim evenly between the
               pods using it at once)
  pv-opencost  20 GiB at pv_hourly_cost 0.0002/GiB-h: 0.004, claim search/index, mounted by no pod: stays on
               search's row with no pod (`__unallocated__` by pod)
  pv-orphan    10 GiB gp3: 0.8/730, no claim: `__unmounted__`
Load balancers: payments/api-lb at kubecost_load_balancer_cost 0.03/h, search/web-lb at the price book's 0.025/h.
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
from .test_assets import STORAGE, TOTAL
from .test_assets_api import exporter_for, q

KSM = {"job": "kube-state-metrics"}
CLAIMS = {"pv-gp3": ("payments", "data"), "pv-noclass": ("search", "cache"), "pv-opencost": ("search", "index")}
MOUNTS = (("payments", "api", "data"), ("search", "query", "cache"), ("search", "query-2", "cache"))
GP3, NOCLASS, OPENCOST, ORPHAN = 8 / 730, 2 / 730, 20 * 0.0002, 0.8 / 730
GIB_H = GIB  # byte-hours of one GiB held an hour


@pytest.fixture(scope="module")
def volume_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    c = asset_cluster(t0)
    second = Pod("search", "query-2", "n-sp-spot", (Container("app", 1, 4 * GIB, 0, 0.25, GIB),), start=t0 + 1801)
    claims = tuple(Series("kube_persistentvolumeclaim_info", {**KSM, "namespace": ns, "persistentvolumeclaim": claim,
                                                              "volumename": pv, "storageclass": "gp3"}, base=1)
                   for pv, (ns, claim) in CLAIMS.items())
    mounts = tuple(Series("kube_pod_spec_volumes_persistentvolumeclaims_info",
                          {**KSM, "namespace": ns, "pod": pod, "volume": "v", "persistentvolumeclaim": claim}, base=1)
                   for ns, pod, claim in MOUNTS)
    # OpenCost's own series names pv-gp3's cloud volume: its `pvs` entries carry it as providerID
    pv_info = Series("kubecost_pv_info", {"job": "opencost", "persistentvolume": "pv-gp3", "provider_id": "vol-0gp3",
                                          "storageclass": "gp3"}, base=1)
    cluster = dataclasses.replace(c, pods=(*c.pods, second), extra=(*c.extra, *claims, *mounts, pv_info))
    for prom in scenario_prom(tmp_path_factory, "volumes", cluster, t0):
        yield prom, t0


def pv_key(pv: str) -> str:
    return f"cluster=cluster:name={pv}"


@pytest.mark.parametrize("chunk", ["1h", "30m"])
def test_each_pod_gets_the_volumes_it_mounted(volume_prom: Any, chunk: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """By 30-minute chunks the shares of both chunks come from one query read with the window (query alone in
    the first, halved in the second: 30 + 15 of 60 steps again); by 1h, the one chunk's own query."""
    from exporter.outputs import podrows, podvolumes

    per_chunk: list[int] = []

    def counted(*args: Any) -> podvolumes.Shares:
        per_chunk.append(1)
        return podvolumes.volume_shares(*args)

    monkeypatch.setattr(podrows, "volume_shares", counted)  # the per-chunk query podrows falls back to
    t0 = volume_prom[1]
    ex = exporter_for(volume_prom, allocation={"chunk": chunk, "nodeLabels": ["node.kubernetes.io/instance-type"]})
    pods = ex.allocation(q(window=window_arg(t0), aggregate="pod", includeIdle="true"))["data"][0]
    api = pods["api"]
    assert api["pvs"] == {pv_key("pv-gp3"): {"byteHours": pytest.approx(100 * GIB_H, rel=REL),
                                             "cost": pytest.approx(GP3, rel=REL), "providerID": "vol-0gp3",
                                             "adjustment": 0.0}}
    assert api["pvCost"] == pytest.approx(GP3, rel=REL) and api["pvByteHours"] == pytest.approx(100 * GIB_H, rel=REL)
    assert api["properties"]["node"] == "n-sp-od"  # the volume's row carries the pod's node: still one node
    # The volume's row, moved onto the pod's node, carries that node's labels (allocation.nodeLabels) as the pod's
    # other rows do, so the pod keeps them: OpenCost's clients read them (its TestGPUInfo finds GPU pods by one).
    assert api["properties"]["labels"]["node_kubernetes_io_instance_type"] == "m5.2xlarge"
    # query: 30 steps alone + 30 steps halved = 45 of 60; query-2: 15 of 60
    assert pods["query"]["pvs"][pv_key("pv-noclass")]["cost"] == pytest.approx(0.75 * NOCLASS, rel=REL)
    assert pods["query"]["pvs"][pv_key("pv-noclass")]["byteHours"] == pytest.approx(37.5 * GIB_H, rel=REL)
    assert pods["query-2"]["pvs"] == {pv_key("pv-noclass"): {
        "byteHours": pytest.approx(12.5 * GIB_H, rel=REL), "cost": pytest.approx(0.25 * NOCLASS, rel=REL),
        "providerID": "", "adjustment": 0.0}}
    # nobody mounted search/index: its volume stays on the rows with no pod, with the load balancers
    rest = pods["__unallocated__"]
    assert rest["pvs"] == {pv_key("pv-opencost"): {"byteHours": pytest.approx(20 * GIB_H, rel=REL),
                                                   "cost": pytest.approx(OPENCOST, rel=REL), "providerID": "",
                                                   "adjustment": 0.0}}
    assert rest["pvCost"] == pytest.approx(OPENCOST, rel=REL)
    assert rest["loadBalancerCost"] == pytest.approx(0.03 + 0.025, rel=REL)
    assert pods["__unmounted__"]["pvs"][pv_key("pv-orphan")]["cost"] == pytest.approx(ORPHAN, rel=REL)
    # nothing lost, nothing doubled: every volume's cost once, and the cluster's whole cost by pod
    assert sum(v["pvCost"] for v in pods.values()) == pytest.approx(sum(STORAGE.values()), rel=REL)
    assert sum(c["cost"] for v in pods.values() for c in (v["pvs"] or {}).values()) == pytest.approx(
        GP3 + NOCLASS + OPENCOST + ORPHAN, rel=REL)
    assert sum(v["totalCost"] for v in pods.values()) == pytest.approx(TOTAL, rel=REL)
    assert len(per_chunk) == (1 if chunk == "1h" else 0)
    # by namespace the same volumes, whole: search 0.0027397 + 0.004
    ns = ex.allocation(q(window=window_arg(t0), aggregate="namespace", includeIdle="true"))["data"][0]
    assert {k: v["pvCost"] for k, v in ns.items() if v["pvCost"]} == pytest.approx(STORAGE, rel=REL)
    assert ns["payments"]["pvs"][pv_key("pv-gp3")]["providerID"] == "vol-0gp3"
    assert sum(v["totalCost"] for v in ns.values()) == pytest.approx(TOTAL, rel=REL)


def test_a_pods_volume_is_split_between_its_containers(volume_prom: Any) -> None:
    """aggregate=pod,container: OpenCost divides a pod's volume cost evenly between its containers; api has one."""
    t0 = volume_prom[1]
    rows = exporter_for(volume_prom).allocation(q(window=window_arg(t0), aggregate="pod,container"))["data"][0]
    assert rows["api/app"]["pvs"][pv_key("pv-gp3")]["cost"] == pytest.approx(GP3, rel=REL)
    assert rows["query-2/app"]["pvCost"] == pytest.approx(0.25 * NOCLASS, rel=REL)


def test_load_balancer_allocations_per_service(volume_prom: Any) -> None:
    """OpenCost's lbAllocations, keyed <cluster>/<namespace>/<service>: an hour of each LoadBalancer Service."""
    t0 = volume_prom[1]
    ns = exporter_for(volume_prom).allocation(q(window=window_arg(t0), aggregate="namespace"))["data"][0]
    assert ns["payments"]["lbAllocations"] == {"cluster/payments/api-lb": {
        "service": "payments/api-lb", "cost": pytest.approx(0.03, rel=REL), "private": False, "ip": "",
        "hours": pytest.approx(1.0, rel=REL), "adjustment": 0.0}}
    assert ns["search"]["lbAllocations"] == {"cluster/search/web-lb": {
        "service": "search/web-lb", "cost": pytest.approx(0.025, rel=REL), "private": False, "ip": "",
        "hours": pytest.approx(1.0, rel=REL), "adjustment": 0.0}}
    assert ns["search"]["loadBalancerCost"] == pytest.approx(0.025, rel=REL)
    assert ns["__unmounted__"]["lbAllocations"] is None
    # one set for the cluster: both services, adding up to its loadBalancerCost
    whole = exporter_for(volume_prom).allocation(q(window=window_arg(t0), aggregate="cluster"))["data"][0]["cluster"]
    assert sorted(whole["lbAllocations"]) == ["cluster/payments/api-lb", "cluster/search/web-lb"]
    assert sum(v["cost"] for v in whole["lbAllocations"].values()) == pytest.approx(whole["loadBalancerCost"], rel=REL)


class DayAnswers:
    """A stand-in client: each query's (span, time) is noted, and its answer holds the chunk ends the subquery
    would evaluate, (at - span + 30 min, at] on the hour, each worth 1 step of one pod's volume."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float]] = []

    def query_range_raw(self, expr: str, at: float) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        self.asked.append((expr, at))
        span = int(expr.rsplit("[", 1)[1].split("s:")[0])
        ends = [float(t) for t in range(int(at) // 3600 * 3600, int(at) - span, -3600)]
        return [({"namespace": "ns", "persistentvolume": "pv", "pod": "p"}, [(t, t / 60) for t in sorted(ends)])]


def test_the_pod_volume_shares_are_asked_a_day_at_a_time() -> None:
    """`2d` at 21:37 on 26 Nov: one query per UTC day it touches (24-26 Nov), each over a day's 23.5 h of
    hourly ends (86400 - 1800 s), asked at the day's end, or today at 21:00, the last whole hour; `1d` a minute
    later asks the same two queries for 25 Nov and today again, so serve's cache answers them. Each chunk end
    of the window is keyed once, with its own value (t / 60 steps of 60 s = t byte-seconds)."""
    from exporter.config.schema import parse_config
    from exporter.core.window import parse_window
    from exporter.outputs.podvolumes import volume_shares_by_chunk
    from exporter.sources.queries import Queries

    cfg = parse_config({})
    qs = Queries(cfg.prometheus, cfg.allocation)
    day = 1_795_996_800  # 2026-11-26T00:00:00Z
    now = day + 21 * 3600 + 37 * 60
    client = DayAnswers()
    out = volume_shares_by_chunk(client, qs, parse_window("2d", now, 60), 3600, 60)  # type: ignore[arg-type]
    assert [at for _e, at in client.asked] == [day - 86400, day, day + 21 * 3600]
    assert all("[84600s:3600s]" in e for e, _at in client.asked)
    assert sorted(out) == list(range(day - 2 * 86400 + 3600, day + 21 * 3600 + 1, 3600))  # 24 Nov 01:00 .. 21:00
    assert all(out[t] == {"ns": {"pv": {"p": float(t)}}} for t in out)
    later = DayAnswers()
    volume_shares_by_chunk(later, qs, parse_window("1d", now + 60, 60), 3600, 60)  # type: ignore[arg-type]
    assert later.asked == client.asked[1:]
