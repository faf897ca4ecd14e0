"""/assets in OpenCost's shape, on a real Prometheus: the assets scenario (tests/scenarios.asset_cluster) plus
the kube-state-metrics PVC series OpenCost reads claim names from.

OpenCost answers `data` as one object keyed provider/account/project/category/cluster/type/service/
providerID/name (`__undefined__` for an empty part), each asset with its type's fields in its order, and
filters with `filter=assetType:"node"` (the integration suite's form). Amounts are tests/test_assets.py's,
worked by hand there: nodes 0.25 + 0.1152 + 12.24 + 0.192; disks 100 GiB x 0.08 / 730, 50 GiB x 0.04 / 730
+ 20 GiB x 0.0002, 10 GiB x 0.08 / 730; load balancers 0.03 and 0.025; network 0.06 + 0.01 + 0.005 + 73 / 730.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from demo.localprom import PrometheusServer, free_port
from demo.synthetic import Series
from exporter.serve.httpapi import make_app
from exporter.serve.httpserver import AsyncHTTPServer

from .conftest import aligned_past, scenario_prom
from .scenarios import asset_cluster
from .test_allocate_core import REL, window_arg
from .test_assets import LB, NETWORK, NODES, STORAGE, TOTAL
from .test_assets_api import exporter_for, q, totals

# Field order of OpenCost's MarshalJSON per asset type (core/pkg/opencost/asset_json.go).
NODE_FIELDS = ["type", "properties", "labels", "window", "start", "end", "minutes", "nodeType", "cpuCores",
               "ramBytes", "cpuCoreHours", "ramByteHours", "GPUHours", "cpuBreakdown", "ramBreakdown", "preemptible",
               "discount", "cpuCost", "gpuCost", "gpuCount", "ramCost", "adjustment", "totalCost",
               "physicalGpuCount"]  # chargeback's extension
DISK_FIELDS = ["type", "properties", "labels", "window", "start", "end", "minutes", "byteHours", "bytes",
               "byteHoursUsed", "byteUsageMax", "breakdown", "adjustment", "totalCost", "storageClass", "volumeName",
               "claimName", "claimNamespace"]
LB_FIELDS = ["type", "properties", "labels", "window", "start", "end", "minutes", "adjustment", "totalCost",
             "private", "ip"]
NETWORK_FIELDS = ["type", "properties", "labels", "window", "start", "end", "minutes", "adjustment", "totalCost"]
CM_FIELDS = ["type", "properties", "labels", "window", "start", "end", "minutes", "totalCost"]
U = "__undefined__"
CLAIMS = {"pv-gp3": ("payments", "data"), "pv-noclass": ("search", "cache"), "pv-opencost": ("search", "index")}


@pytest.fixture(scope="module")
def pvc_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    c = asset_cluster(t0)
    claims = tuple(Series("kube_persistentvolumeclaim_info", {"job": "kube-state-metrics", "namespace": ns,
                                                              "persistentvolumeclaim": claim, "volumename": pv,
                                                              "storageclass": "gp3"}, base=1)
                   for pv, (ns, claim) in CLAIMS.items())
    for prom in scenario_prom(tmp_path_factory, "assets-pvc", dataclasses.replace(c, extra=c.extra + claims), t0):
        yield prom, t0


def test_one_set_keyed_by_asset_with_each_types_fields(pvc_prom: Any) -> None:
    t0 = pvc_prom[1]
    data = exporter_for(pvc_prom).assets(q(window=window_arg(t0)))["data"]
    assert isinstance(data, dict)  # OpenCost's AssetSet: not a list of sets
    node = data[f"AWS/{U}/{U}/Compute/cluster/Node/Kubernetes/aws:///us-east-1a/i-n-sp-spot/n-sp-spot"]
    assert list(node) == NODE_FIELDS
    assert node["properties"] == {"category": "Compute", "provider": "AWS", "service": "Kubernetes",
                                  "cluster": "cluster", "name": "n-sp-spot",
                                  "providerID": "aws:///us-east-1a/i-n-sp-spot"}
    # kube_node_labels without label_, OpenCost's spelling; the spot node is preemptible, its type its label's
    assert node["labels"]["karpenter_sh_capacity_type"] == "spot" and node["preemptible"] == 1.0
    assert node["nodeType"] == "m5.2xlarge" and "job" not in node["labels"]  # only the label_* columns
    assert node["window"] == {"start": node["start"], "end": node["end"]}
    assert node["totalCost"] == pytest.approx(0.1152, rel=REL)  # the spot rule's price, one hour
    assert node["cpuCores"] == pytest.approx(8, rel=REL) and node["ramBytes"] == pytest.approx(32 * 1024**3, rel=REL)
    # search/query holds 1 of 8 cores and 4 of 32 GiB: 7/8 and 28/32 idle
    assert node["cpuBreakdown"] == {"idle": pytest.approx(7 / 8), "other": 0.0, "system": 0.0,
                                    "user": pytest.approx(1 / 8)}
    assert node["ramBreakdown"]["idle"] == pytest.approx(28 / 32)
    od = data[f"AWS/{U}/{U}/Compute/cluster/Node/Kubernetes/aws:///us-east-1a/i-n-sp-od/n-sp-od"]
    assert od["preemptible"] == 0.0 and od["labels"]["karpenter_sh_capacity_type"] == "on-demand"

    disk = data[f"{U}/{U}/{U}/Storage/cluster/Disk/Kubernetes/{U}/pv-gp3"]
    assert list(disk) == DISK_FIELDS
    assert (disk["volumeName"], disk["claimName"], disk["claimNamespace"], disk["storageClass"]) == \
        ("pv-gp3", "data", "payments", "gp3")
    assert disk["totalCost"] == pytest.approx(100 * 0.08 / 730, rel=REL)
    assert disk["bytes"] == pytest.approx(100 * 1024**3, rel=REL) and disk["byteHoursUsed"] is None
    orphan = data[f"{U}/{U}/{U}/Storage/cluster/Disk/Kubernetes/{U}/pv-orphan"]
    assert (orphan["claimName"], orphan["claimNamespace"], orphan["breakdown"]["idle"]) == ("", "", 1.0)

    lb = data[f"{U}/{U}/{U}/Network/cluster/LoadBalancer/Kubernetes/{U}/payments/api-lb"]
    assert list(lb) == LB_FIELDS and lb["totalCost"] == pytest.approx(0.03, rel=REL)
    assert lb["private"] is False
    nat = data[f"{U}/{U}/{U}/Network/cluster/Network/Kubernetes/{U}/nat-gateway"]
    assert list(nat) == NETWORK_FIELDS and nat["totalCost"] == pytest.approx(73 / 730, rel=REL)
    assert sum(totals(data).values()) == pytest.approx(TOTAL, rel=REL)


def test_filter_by_asset_type_and_properties_conserves_the_total(pvc_prom: Any) -> None:
    t0 = pvc_prom[1]
    ex = exporter_for(pvc_prom, sharing={"sharedCosts": [{"name": "eks-control-plane", "monthly": 73}]})
    w = window_arg(t0)

    def got(flt: str) -> dict[str, Any]:
        return dict(ex.assets(q(window=w, filter=flt))["data"])

    by_type = {t: got(f'assetType:"{t}"') for t in ("node", "disk", "loadbalancer", "network", "clustermanagement")}
    assert {v["type"] for v in by_type["node"].values()} == {"Node"} and len(by_type["node"]) == 4
    assert sum(totals(by_type["node"]).values()) == pytest.approx(NODES, rel=REL)
    assert sum(totals(by_type["disk"]).values()) == pytest.approx(sum(STORAGE.values()), rel=REL)
    assert sum(totals(by_type["loadbalancer"]).values()) == pytest.approx(sum(LB.values()), rel=REL)
    assert sum(totals(by_type["network"]).values()) == pytest.approx(sum(NETWORK.values()), rel=REL)
    [cm] = by_type["clustermanagement"].values()
    assert list(cm) == CM_FIELDS and cm["totalCost"] == pytest.approx(73 / 730, rel=REL)  # the fee, an hour
    # Conservation: the five types are all the assets, and the assets are the allocation of the window.
    alloc = ex.allocation(q(window=w, aggregate="namespace", includeIdle="true"))["data"][0]
    every = sum(sum(totals(s).values()) for s in by_type.values())
    assert every == pytest.approx(TOTAL + 73 / 730, rel=REL)
    assert every == pytest.approx(sum(v["totalCost"] for v in alloc.values()), abs=1e-9)

    assert list(totals(got('assetType:"node"+name:"n-gpu"')).values()) == [pytest.approx(12.24, rel=REL)]
    assert len(got('provider:"AWS"')) == 4  # the nodes: disks and the rest have no provider
    assert len(got('assetType!:"node"+assetType!:"disk"')) == 2 + 4 + 1  # 2 LBs, 4 network amounts, the fee
    spot = got('label[karpenter_sh_capacity_type]:"spot"')
    assert [v["properties"]["name"] for v in spot.values()] == ["n-sp-spot"]
    assert len(got('category:"Storage"')) == 4 and len(got('name<~:"pv-"')) == 4
    # aggregate=type with the filter: one Node entry, keyed by the type alone
    by = ex.assets(q(window=w, filter='assetType:"node"', aggregate="type"))["data"]
    assert totals(by) == {"Node": pytest.approx(NODES, rel=REL)}


def test_over_http_errors_name_the_cause(pvc_prom: Any) -> None:
    ex = exporter_for(pvc_prom)
    port = free_port()
    httpd = AsyncHTTPServer(("127.0.0.1", port), make_app(ex))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url, w = f"http://127.0.0.1:{port}/assets", window_arg(pvc_prom[1])
        r = requests.get(url, params={"window": w, "filter": 'assetType:"node"'}, timeout=60)
        body = r.json()
        assert r.status_code == 200 and body["code"] == 200 and body["status"] == "success"
        assert sum(totals(body["data"]).values()) == pytest.approx(NODES, rel=REL)
        r = requests.get(url, params={"window": w, "filter": 'namespace:"x"'}, timeout=60)
        assert r.status_code == 400 and "unknown field 'namespace'" in r.json()["message"]
        # the web UI's Assets page asks aggregate=type&accumulate=true: one object, keyed by type
        r = requests.get(url, params={"window": w, "aggregate": "type", "accumulate": "true"}, timeout=60)
        assert sorted(r.json()["data"]) == ["Disk", "LoadBalancer", "Network", "Node"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        ex.close()
