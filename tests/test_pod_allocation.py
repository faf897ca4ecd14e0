"""Pod-, controller- and container-level /allocation against a real Prometheus; every amount by hand.

Scenario (pod_cluster below), the hour (t0, t0+1h], both nodes priced by OpenCost's metrics at
cpu 0.10/core-h and ram 0.01/GiB-h; under the default max(request, usage) policy:

  n1 (8 cores, 32 GiB: 0.80 + 0.32 = 1.12), every container uses half its request, so allocation = requests:
    shop/api-1   Deployment api (via a ReplicaSet)  app 1 core 2 GiB = 0.12, sidecar 0.5 core 1 GiB = 0.06
    shop/api-2   Deployment api                     app 0.12, sidecar 0.06
    shop/cache-0 StatefulSet cache, pod label team=cache (splits shop)  redis 1 core 4 GiB = 0.14
    batch/report-x CronJob nightly (via a Job)      job 2 cores 4 GiB = 0.24
    allocated cpu 6 cores = 0.60, ram 14 GiB = 0.14; idle 0.20 + 0.18 = 0.38
  n2 (4 cores, 16 GiB: 0.40 + 0.16 = 0.56):
    batch/bare   no owner, worker requests 1 core 2 GiB but uses 3.5 cores
    shop/web-0   Deployment web, nginx 1 core 1 GiB, uses 0.5
    cpu 3.5 + 1 = 4.5 > 4 cores: both scaled by 4/4.5 = 8/9 at every step:
    worker cpu 3.5 x 8/9 = 28/9 cores = 2.8/9, ram 2 GiB = 0.02; nginx cpu 8/9 core = 0.8/9, ram 0.01
    allocated cpu 0.40 (all of it), ram 0.03; idle 0 + 0.13 = 0.13
  Services: api-1 behind `api`; api-2 behind `api` and `api-internal`; web-0 behind `web`.
  Annotations: owner=alice on api-1 and api-2, owner=bob on report-x.
  Cluster 1.12 + 0.56 = 1.68; idle 0.38 + 0.13 = 0.51.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from demo.localprom import PrometheusServer
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.config.schema import parse_config
from exporter.serve.server import Exporter
from exporter.vocab.errors import ConfigError

from .conftest import aligned_past, scenario_prom
from .test_allocate_core import REL, window_arg
from .test_allocation_api import check as check_amounts
from .test_allocation_api import totals

PRICES = {"cpu": 0.10, "ram": 0.01}
TOTAL, IDLE = 1.68, 0.51
WORKER = 2.8 / 9 + 0.02  # batch/bare/worker on the overflowing n2
NGINX = 0.8 / 9 + 0.01  # shop/web-0/nginx
API_POD = 0.12 + 0.06
SHOP = 2 * API_POD + 0.14 + NGINX
BATCH = 0.24 + WORKER


def pod_cluster() -> Cluster:
    def c(name: str, cpu: float, gib: float, used: float | None = None) -> Container:
        return Container(name, cpu, gib * GIB, 0, cpu / 2 if used is None else used, gib * GIB / 2)

    api = (c("app", 1, 2), c("sidecar", 0.5, 1))
    alice = {"owner": "alice"}
    pods = (
        Pod("shop", "api-1", "n1", api, labels={"app": "api"}, owner=("Deployment", "api"), annotations=alice,
            ip="10.1.0.1", services=("api",)),
        Pod("shop", "api-2", "n1", api, labels={"app": "api"}, owner=("Deployment", "api"), annotations=alice,
            ip="10.1.0.2", services=("api", "api-internal")),
        Pod("shop", "cache-0", "n1", (c("redis", 1, 4),), labels={"app": "cache", "team": "cache"},
            owner=("StatefulSet", "cache")),
        Pod("batch", "report-x", "n1", (c("job", 2, 4),), owner=("CronJob", "nightly"), annotations={"owner": "bob"},
            ip="10.2.0.1"),
        Pod("batch", "bare", "n2", (c("worker", 1, 2, used=3.5),)),
        Pod("shop", "web-0", "n2", (c("nginx", 1, 1),), labels={"app": "web"}, owner=("Deployment", "web"),
            ip="10.1.0.3", services=("web",)),
    )
    nodes = (Node("n1", 8, 32 * GIB, opencost=PRICES, provider_id="aws:///eu-west-1a/i-n1"),
             Node("n2", 4, 16 * GIB, opencost=PRICES, provider_id="aws:///eu-west-1b/i-n2"))
    return Cluster(nodes, pods, {"shop": {"team": "shop"}, "batch": {}})


@pytest.fixture(scope="module")
def pods_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "pods", pod_cluster(), t0):
        yield prom, t0


@pytest.fixture(scope="module")
def exporter(pods_prom: tuple[PrometheusServer, int]) -> Iterator[Exporter]:
    ex = Exporter(parse_config({"prometheus": {"url": pods_prom[0].url}, "attribution": {"source": "prometheus"}}))
    yield ex
    ex.close()


def call(exporter: Exporter, t0: int, **params: str) -> dict[str, Any]:
    return exporter.allocation({"window": [window_arg(t0)], "includeIdle": ["true"],
                                **{k: [v] for k, v in params.items()}})


def check(got: dict[str, float], expected: dict[str, float], total: float | None = TOTAL) -> None:
    """test_allocation_api's check against this scenario's cluster total (conservation)."""
    check_amounts(got, expected, total)


@pytest.mark.parametrize("aggregate,expected", [
    ("pod", {"api-1": API_POD, "api-2": API_POD, "cache-0": 0.14, "report-x": 0.24, "bare": WORKER,
             "web-0": NGINX, "__idle__": IDLE}),
    ("container", {"app": 0.24, "sidecar": 0.12, "redis": 0.14, "job": 0.24, "worker": WORKER, "nginx": NGINX,
                   "__idle__": IDLE}),
    # OpenCost names controllers kind:name; a bare pod has none.
    ("controller", {"deployment:api": 2 * API_POD, "statefulset:cache": 0.14, "cronjob:nightly": 0.24,
                    "deployment:web": NGINX, "__unallocated__": WORKER, "__idle__": IDLE}),
    ("controllerKind", {"deployment": 2 * API_POD + NGINX, "statefulset": 0.14, "cronjob": 0.24,
                        "__unallocated__": WORKER, "__idle__": IDLE}),
    # api-2 is behind two Services: grouped under its first, as OpenCost does.
    ("service", {"api": 2 * API_POD, "web": NGINX, "__unallocated__": 0.14 + 0.24 + WORKER, "__idle__": IDLE}),
    ("annotation:owner", {"alice": 2 * API_POD, "bob": 0.24, "__unallocated__": 0.14 + WORKER + NGINX,
                          "__idle__": IDLE}),
    ("namespace,controller,label:team", {
        "shop/deployment:api/shop": 2 * API_POD, "shop/statefulset:cache/cache": 0.14,
        "shop/deployment:web/shop": NGINX, "batch/cronjob:nightly/__unallocated__": 0.24,
        "batch/__unallocated__/__unallocated__": WORKER, "__idle__": IDLE}),
    ("namespace,pod,container", {
        "shop/api-1/app": 0.12, "shop/api-1/sidecar": 0.06, "shop/api-2/app": 0.12, "shop/api-2/sidecar": 0.06,
        "shop/cache-0/redis": 0.14, "batch/report-x/job": 0.24, "batch/bare/worker": WORKER,
        "shop/web-0/nginx": NGINX, "__idle__": IDLE}),
    ("node,controllerKind", {"n1/deployment": 2 * API_POD, "n1/statefulset": 0.14, "n1/cronjob": 0.24,
                             "n2/__unallocated__": WORKER, "n2/deployment": NGINX, "__idle__": IDLE}),
])
def test_each_pod_level_key_conserves(exporter: Exporter, pods_prom: Any, aggregate: str,
                                      expected: dict[str, float]) -> None:
    check(totals(call(exporter, pods_prom[1], aggregate=aggregate)), expected)


def test_pod_rows_add_up_to_the_namespace_level_answer(exporter: Exporter, pods_prom: Any) -> None:
    t0 = pods_prom[1]
    by_ns = totals(call(exporter, t0, aggregate="namespace"))  # the namespace-level path, unchanged
    check(by_ns, {"shop": SHOP, "batch": BATCH, "__idle__": IDLE})
    pods = totals(call(exporter, t0, aggregate="namespace,pod"))
    for ns in ("shop", "batch"):
        assert sum(v for k, v in pods.items() if k.startswith(ns + "/")) == pytest.approx(by_ns[ns], rel=REL)
    # A pod-level filter that keeps every row (idle's pod "" is not "no-such-pod" either): the same answer.
    check(totals(call(exporter, t0, aggregate="namespace", filter='pod!:"no-such-pod"')), by_ns)
    # Only rows of a pod: idle has none.
    check(totals(call(exporter, t0, aggregate="namespace", filter='pod<~:"a"|pod<~:"b"|pod<~:"c"|pod<~:"r"|pod<~:"w"')),
          {"shop": SHOP, "batch": BATCH}, SHOP + BATCH)


def test_filters_on_pod_level_fields(exporter: Exporter, pods_prom: Any) -> None:
    t0 = pods_prom[1]
    check(totals(call(exporter, t0, aggregate="pod", filter='controllerKind:"deployment"')),
          {"api-1": API_POD, "api-2": API_POD, "web-0": NGINX}, None)
    check(totals(call(exporter, t0, aggregate="namespace", filter='container:"app"+namespace:"shop"')),
          {"shop": 0.24}, None)
    check(totals(call(exporter, t0, aggregate="pod", filter='services~:"internal"')), {"api-2": API_POD}, None)
    check(totals(call(exporter, t0, aggregate="namespace", filter='annotation[owner]:"bob"')), {"batch": 0.24}, None)
    check(totals(call(exporter, t0, aggregate="controller", filter='pod<~:"api"|controllerName:"nightly"')),
          {"deployment:api": 2 * API_POD, "cronjob:nightly": 0.24}, None)
    check(totals(call(exporter, t0, aggregate="container", filter='providerID~>:"i-n2"')),
          {"worker": WORKER, "nginx": NGINX}, None)


def test_properties_are_kept_when_every_item_shares_them(exporter: Exporter, pods_prom: Any) -> None:
    t0 = pods_prom[1]
    pods = call(exporter, t0, aggregate="pod")["data"][0]
    # api-2's two containers differ only in container: it is dropped, the rest is the pod's.
    assert pods["api-2"]["properties"] == {
        "cluster": "cluster", "node": "n1", "namespace": "shop", "controllerKind": "deployment",
        "controller": "api", "pod": "api-2", "providerID": "aws:///eu-west-1a/i-n1",
        "services": ["api", "api-internal"], "labels": {"app": "api", "team": "shop"},
        "namespaceLabels": {"team": "shop"}, "annotations": {"owner": "alice"}}
    # two pods of one Deployment: pod and the differing Service lists go, the controller stays.
    api = call(exporter, t0, aggregate="controller")["data"][0]["deployment:api"]["properties"]
    assert api["controller"] == "api" and api["controllerKind"] == "deployment"
    assert "pod" not in api and "services" not in api
    container = call(exporter, t0, aggregate="namespace,pod,container")["data"][0]["batch/bare/worker"]
    assert container["properties"]["container"] == "worker"
    assert "controller" not in container["properties"]
    # quantities are the container's own: worker held max(1, 3.5) = 3.5 cores (OpenCost's cpuCores), charged
    # 3.5 x 8/9 = 28/9 core-hours, requested 1, used 3.5.
    assert container["cpuCores"] == pytest.approx(3.5, rel=REL)
    assert container["chargedCpuCoreHours"] == pytest.approx(28 / 9, rel=REL)
    assert container["cpuCoreRequestAverage"] == pytest.approx(1.0, rel=REL)
    assert container["cpuCoreUsageAverage"] == pytest.approx(3.5, rel=REL)
    assert container["ramBytes"] == pytest.approx(2 * GIB, rel=REL)


def test_steps_and_sharing_at_pod_level(exporter: Exporter, pods_prom: Any) -> None:
    t0 = pods_prom[1]
    body = call(exporter, t0, aggregate="controller", step="30m", accumulate="false")
    assert len(body["data"]) == 2
    for i in range(2):  # every container runs all hour: each half-hour is half of everything
        check(totals(body, i), {"deployment:api": API_POD, "statefulset:cache": 0.07, "cronjob:nightly": 0.12,
                                "deployment:web": NGINX / 2, "__unallocated__": WORKER / 2, "__idle__": IDLE / 2},
              TOTAL / 2)
    # idle shared per resource by each pod's cost of it, cluster-wide (the default): idle cpu 0.20 over the
    # allocated cpu 1.00, idle ram 0.18 + 0.13 = 0.31 over the allocated ram 0.14 + 0.03 = 0.17.
    shared = totals(call(exporter, t0, aggregate="pod", shareIdle="true"))
    cpu_ram = {"api-1": (0.15, 0.03), "api-2": (0.15, 0.03), "cache-0": (0.10, 0.04), "report-x": (0.20, 0.04),
               "bare": (2.8 / 9, 0.02), "web-0": (0.8 / 9, 0.01)}
    check(shared, {k: c * (1 + 0.20 / 1.00) + m * (1 + 0.31 / 0.17) for k, (c, m) in cpu_ram.items()})
    # a shared namespace (batch) goes to shop's pods by their cost (0.59 + 0.8/9 of it is shop's, all of it)
    moved = call(exporter, t0, aggregate="pod", shareNamespaces="batch")["data"][0]
    assert moved["api-1"]["sharedCost"] == pytest.approx(BATCH * API_POD / SHOP, rel=REL)
    check({k: v["totalCost"] for k, v in moved.items()},
          {"api-1": API_POD * (1 + BATCH / SHOP), "api-2": API_POD * (1 + BATCH / SHOP),
           "cache-0": 0.14 * (1 + BATCH / SHOP), "web-0": NGINX * (1 + BATCH / SHOP), "__idle__": IDLE})
    assert "node" not in moved["api-1"]["properties"]  # its shared cost has no node, as at namespace level


def test_unknown_key_still_names_the_choices(exporter: Exporter, pods_prom: Any) -> None:
    with pytest.raises(ConfigError, match=r"unknown property 'deployment'.*controller"):
        call(exporter, pods_prom[1], aggregate="deployment")


def test_namespace_level_requests_read_no_container_rows(exporter: Exporter, pods_prom: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Finer granularity only when asked: the namespace path sends none of the pod-level queries."""
    sent: list[str] = []
    for name in ("query", "query_range_raw"):
        real = getattr(exporter.client, name)

        def recording(expr: str, at: float, real: Any = real) -> Any:
            sent.append(expr)
            return real(expr, at)

        monkeypatch.setattr(exporter.client, name, recording)
    call(exporter, pods_prom[1], aggregate="namespace,label:team", filter='node:"n1"')
    assert sent and not [e for e in sent if "node, pod, container" in e or "kube_endpoint_address" in e]
    call(exporter, pods_prom[1], aggregate="pod")
    assert [e for e in sent if "by (namespace, node, pod, container, resource, part)" in e]


def test_namespace_batches_give_the_same_rows(exporter: Exporter, pods_prom: Any) -> None:
    """A cluster bigger than one batch of per-container queries: here a batch per namespace (batch_pods=1),
    each with the overflow scale of the whole node (worker and nginx share n2 across the two batches),
    whether the scales come from the pipeline's raw pass or from the segment's own node-level pass."""
    from exporter.core.window import Window
    from exporter.engine.pipeline import Pipeline
    from exporter.outputs.allocrows import finish
    from exporter.outputs.opencost_api import AggKey
    from exporter.outputs.podrows import PodGranularity
    from exporter.sources.stepfetch import namespace_batches as batches

    # in name order, a batch closes before it would pass the limit; a bigger namespace is alone; unknown counts 1
    assert batches(["c", "a", "b", "d"], {"a": 1, "b": 2, "c": 4}, 3) == [["a", "b"], ["c"], ["d"]]
    t0 = pods_prom[1]
    class OwnScales(PodGranularity):
        """As on the recorded path, which has no per-step node scales: the segment reads them itself."""

        def add_segment(self, pipeline: Any, w: Any, q: Any, meta: Any, owners: Any, result: Any,
                        node_scales: Any = None) -> None:
            super().add_segment(pipeline, w, q, meta, owners, result, None)

    for grain in (PodGranularity([AggKey("pod")], None, True, ("team", "cost-center"), "cluster", batch_pods=1),
                  OwnScales([AggKey("pod")], None, True, ("team", "cost-center"), "cluster", batch_pods=1)):
        pipeline = Pipeline(exporter.cfg, exporter.client)
        result = pipeline.compute(Window(t0, t0 + 3600, 60), granularity=grain)
        check({k: g.row.total for k, g in finish(grain.groups).items()},
              {"api-1": API_POD, "api-2": API_POD, "cache-0": 0.14, "report-x": 0.24, "bare": WORKER,
               "web-0": NGINX, "__idle__": IDLE})
        assert result.total_cost == pytest.approx(TOTAL, rel=REL)


def test_namespace_shards_sum_node_totals_across_shards(exporter: Exporter, pods_prom: Any) -> None:
    """A big cluster's chunk is read in namespace shards (here one pod each): batch/bare and shop/web-0
    share the overflowing n2 from different shards, so the 8/9 scale needs both; hand-worked as above."""
    from exporter.core.window import Window
    from exporter.engine.pipeline import Pipeline

    t0 = pods_prom[1]
    pipeline = Pipeline(exporter.cfg, exporter.client)
    pipeline.fetcher.steps.shard_pods = 1
    result = pipeline.compute(Window(t0, t0 + 3600, 60))
    by_ns: dict[str, float] = {}
    for (ns, _attrs, _component, _res, _src), c in result.costs.items():
        by_ns[ns] = by_ns.get(ns, 0.0) + c
    check(by_ns, {"shop": SHOP, "batch": BATCH, "__idle__": IDLE})
    assert result.total_cost == pytest.approx(TOTAL, rel=REL)


# The linear policies, per container, in batches of one pod (each batch scaled by its node's whole total).
#   request: allocation = requests; n2 has 2 cores requested of 4, no overflow: worker 0.10 + 0.02,
#     nginx 0.10 + 0.01; idle n1 0.38 + n2 (0.40 - 0.20) + (0.16 - 0.03) = 0.71.
#   usage: n1 containers use half their requests (app 0.5 core 1 GiB = 0.06, sidecar 0.03, redis 0.5 core
#     2 GiB = 0.07, job 0.12); n2: worker 3.5 cores + 1 GiB = 0.36, nginx 0.5 core + 0.5 GiB = 0.055, cpu
#     4 of 4 (scale 1); idle n1 (0.80 - 0.30) + (0.32 - 0.07) = 0.75, n2 0 + (0.16 - 0.015) = 0.145.
#   weighted 0.7: 0.7 request + 0.3 usage; n1 0.85 x request (app 0.085 + 0.017 = 0.102, sidecar 0.051,
#     redis 0.085 + 0.034 = 0.119, job 0.204); worker 1.75 cores 1.7 GiB = 0.192, nginx 0.85 core
#     0.85 GiB = 0.0935; idle n1 (0.80 - 0.51) + (0.32 - 0.119) = 0.491, n2 (0.40 - 0.26) + (0.16 - 0.0255).
@pytest.mark.parametrize("policy,per_container,idle", [
    ("request", {"app": 0.12, "sidecar": 0.06, "redis": 0.14, "job": 0.24, "worker": 0.12, "nginx": 0.11}, 0.71),
    ("usage", {"app": 0.06, "sidecar": 0.03, "redis": 0.07, "job": 0.12, "worker": 0.36, "nginx": 0.055},
     0.75 + 0.145),
    ("weighted", {"app": 0.102, "sidecar": 0.051, "redis": 0.119, "job": 0.204, "worker": 0.192, "nginx": 0.0935},
     0.491 + 0.14 + 0.1345),
])
def test_linear_policies_per_container(pods_prom: Any, policy: str, per_container: dict[str, float],
                                       idle: float) -> None:
    from exporter.core.window import Window
    from exporter.engine.pipeline import Pipeline
    from exporter.outputs.allocrows import finish
    from exporter.outputs.opencost_api import AggKey
    from exporter.outputs.podrows import PodGranularity

    prom, t0 = pods_prom
    cfg = parse_config({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"},
                        "allocation": {"policy": policy, "requestWeight": 0.7}})
    ex = Exporter(cfg)
    try:
        grain = PodGranularity([AggKey("container")], None, True, ("team",), "cluster", batch_pods=1)
        result = Pipeline(cfg, ex.client).compute(Window(t0, t0 + 3600, 60), granularity=grain)
    finally:
        ex.close()
    expected = {**per_container, "app": 2 * per_container["app"], "sidecar": 2 * per_container["sidecar"],
                "__idle__": idle}
    check({k: g.row.total for k, g in finish(grain.groups).items()}, expected)
    assert result.total_cost == pytest.approx(TOTAL, rel=REL)


def test_services_and_controllers_from_kube_state_metrics_series() -> None:
    """Pure: Endpoints addresses joined to pod IPs within a namespace; kind:name split, bare pods have none."""
    from exporter.outputs.podmeta import controllers_of, services_of

    ips = {("shop", "api-1"): "10.0.0.1", ("shop", "api-2"): "10.0.0.2", ("other", "x"): "10.0.0.1"}
    endpoints = [("shop", "api", "10.0.0.1"), ("shop", "api", "10.0.0.2"), ("shop", "admin", "10.0.0.2"),
                 ("shop", "ghost", "10.9.9.9")]
    assert services_of(ips, endpoints) == {("shop", "api-1"): ("api",), ("shop", "api-2"): ("admin", "api")}
    assert controllers_of({("shop", "api-1"): "deployment:api", ("batch", "bare"): "bare"}) == {
        ("shop", "api-1"): ("deployment", "api")}


def test_proportional_asset_costs_at_pod_level(exporter: Exporter, pods_prom: Any) -> None:
    """bare's worker holds 28/9 of n2's 4 cores (7/9 of its cpu cost) and 2 of its 16 GiB (1/8)."""
    t0 = pods_prom[1]
    data = call(exporter, t0, aggregate="pod", includeProportionalAssetResourceCosts="true")["data"][0]
    share = data["bare"]["proportionalAssetResourceCosts"]["cluster,n2"]
    assert share["cpuPercentage"] == pytest.approx(7 / 9, rel=REL)
    assert share["ramPercentage"] == pytest.approx(1 / 8, rel=REL)
    assert "proportionalAssetResourceCosts" not in call(exporter, t0, aggregate="pod")["data"][0]["bare"]
