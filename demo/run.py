"""`make demo`: a real local Prometheus holding a synthetic six-team cluster, and `chargeback serve` on it.

24 h of history is backfilled with promtool; a live simulator keeps the cluster's
series coming, Prometheus scrapes it and the exporter. Runs until Ctrl-C.
"""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml
from tabulate import tabulate

from demo.clusters import demo_cluster, with_gpu_nodes
from demo.energy import with_kepler
from demo.localprom import PrometheusServer, backfill, backfill_rules, free_port
from demo.mesh import egress_table, with_mesh
from demo.synthetic import Cluster, Dcgm, exposition, with_dcgm
from exporter.config.schema import Config, parse_config
from exporter.core.allocation import CostResult
from exporter.core.assets import AssetCost
from exporter.core.coverage import SOURCE_NAMES
from exporter.core.gpu import GpuPodCost
from exporter.core.names import IDLE
from exporter.core.window import iso, parse_window
from exporter.mixin.budgets import Budget, allocation_config, allocation_group_only
from exporter.mixin.budgets import render as render_rules
from exporter.outputs.assets_api import RecordingPipeline
from exporter.outputs.formatters import allocation_response, to_table
from exporter.outputs.reconcile import inventory, reconcile
from exporter.outputs.reconcile import to_table as reconcile_table
from exporter.outputs.report import make_report
from exporter.outputs.reportformat import render as render_report
from exporter.sources.billing import read_bill
from exporter.sources.prometheus import PrometheusClient

IT = "node.kubernetes.io/instance-type"
RELEASED_GONE = 26 * 3600  # how long before the demo's start its released volume was deleted (demo/clusters.py)

# The demo's config: what a user would write. OpenCost prices four nodes; the price book the rest.
DEMO_CONFIG: dict[str, object] = {
    "pricing": {
        "currency": "USD",
        "rules": [
            {"match": {IT: "p3.2xlarge"}, "hourly": 3.06, "gpu": 2.5},
            {"match": {IT: "m5.xlarge"}, "hourly": 0.192},
        ],
        "storage": {"classes": {"gp3": 0.08, "gp2": 0.10, "io2": 0.125}},
        "loadBalancer": {"hourly": 0.0225},
        "network": {"unclassified": "zone", "zonePerGiB": 0.01,
                    "monthly": [{"name": "nat-gateway", "monthly": 32.85}]},
    },
    # nodeLabels: OpenCost copies these node labels into allocations' labels (its suite reads the GPU count).
    "allocation": {"policy": "max", "resolution": "1m", "nodeLabels": ["nvidia.com/gpu.count"]},
    # Platform namespaces are shared, so a newcomer sees shared costs at once.
    "sharing": {
        "shareNamespaces": ["kube-system", "monitoring"],
        "sharedCosts": [{"name": "eks-control-plane", "monthly": 73}],
        "policies": {"ingress-nginx": {
            "split": "metric", "namespaceLabel": "exported_namespace",
            "query": "sum by (exported_namespace) (increase(nginx_ingress_controller_requests[$window]))"}},
        "shareLabels": {"platform": "true"},
    },
    "attribution": {"source": "prometheus"},
    # The demo's nodes carry no region label: their grid intensity is us-east-1's (CCF), as their zones say.
    "energy": {"gridIntensity": {"default": 379.069}},
}


def serve_simulator(cluster: Cluster, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = exposition(cluster, int(time.time())).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@dataclass
class DemoStack:
    """What `make demo` runs: Prometheus (history + the live simulator) and `chargeback serve` on it."""

    root: Path
    now: int
    prom: PrometheusServer
    exporter: subprocess.Popen[bytes]
    cfg_path: Path
    cfg: Config
    rules_file: Path
    base: str  # serve's URL
    result: CostResult  # the last 24 h, computed before serve starts
    bill_path: Path  # the sample FOCUS bill written from it, which serve's config reads
    assets: list[AssetCost]  # the priced assets of that computation (the egress table reads their classes)

    def stop(self) -> None:
        self.exporter.terminate()
        self.exporter.wait(10)
        self.prom.stop()


def start(root: Path, say: Callable[[str], None] = print, hours: int = 24) -> DemoStack:
    """Backfill `hours` of the demo cluster into root/data, then start Prometheus scraping the simulator and
    serve. Shared by `make demo` and the OpenCost suite's test (tests/test_opencost_suite.py), which asks 48:
    the suite compares two-day windows."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    now = int(time.time()) // 60 * 60
    # kube-state-metrics was OOM-killed six hours ago for 10 minutes: the allocation bridges the gap.
    # dcgm-exporter sees the trainer's V100 12% busy: the GPU waste panels and report section have data.
    # Plus three GPU nodes: an A100 in MIG slices and a time-sliced L4 shared by ml and search, eight H100s.
    # The released volume pv-released-2023 (no claim, kept by reclaimPolicy Retain) was deleted by an admin
    # 26 hours ago: 24 h windows hold no claim-less volume, two-day ones `__unmounted__` and its cost.
    cluster = with_gpu_nodes(with_dcgm(demo_cluster(ksm_gap_at=now - 6 * 3600, released_deleted_at=now - RELEASED_GONE),
                                       util=0.12, fb_mib=6144, dcgm=Dcgm("Tesla V100-SXM2-16GB", 16384)))
    cluster = with_mesh(cluster)  # Istio sidecars: egress classified by zone and internet (demo/mesh.py)
    # Kepler on four general nodes (two of each metric generation); the others' energy is estimated.
    cluster = with_kepler(cluster, ("ip-10-0-1-1", "ip-10-0-1-2"), ("ip-10-0-1-3", "ip-10-0-1-4"))
    history_start = now - hours * 3600 - 1800
    say(f"backfilling {hours}h of a six-team cluster ({len(cluster.nodes)} nodes, {len(cluster.pods)} pods)...")
    samples = backfill(cluster, root / "data", history_start, now - 60, 60)
    say(f"  {samples:,} samples loaded with promtool")

    # Budgets as code, rendered through the mixin. ml spends tens an hour (GPUs); its daily budget is one
    # unit per hour elapsed since UTC midnight, so it is already overrun whenever the demo starts.
    hours_today = (now % 86400) / 3600
    ml_daily = round(max(hours_today, 0.05), 2)
    budgets = [Budget(name="ml-daily", scope={"team": "ml"}, period="daily", amount=ml_daily),
               Budget(name="payments-monthly", scope={"team": "payments"}, period="monthly", amount=500.0)]
    # The allocation rules are rendered for the demo's own config, so the exporter can read them.
    groups, _ = render_rules(budgets, config={"ruleInterval": "15s", **allocation_config(parse_config(DEMO_CONFIG))})
    rules_file = root / "chargeback.rules.yaml"
    rules_file.write_text(yaml.safe_dump(groups, sort_keys=False))
    sim_port, exporter_port = free_port(), free_port()
    serve_simulator(cluster, sim_port)
    targets = {"synthetic-cluster": f"127.0.0.1:{sim_port}", "chargeback": f"127.0.0.1:{exporter_port}"}
    # Rules record only from when they are loaded; give the history its recorded allocation too. This
    # runs on a Prometheus that scrapes nothing, before the live one starts: blocks moved in under a
    # live head would make it drop the newer samples it already holds.
    allocation_file = root / "allocation.rules.yaml"
    allocation_file.write_text(yaml.safe_dump(allocation_group_only(groups), sort_keys=False))
    started = time.monotonic()
    with PrometheusServer(root / "data") as history:
        backfill_rules(history, allocation_file, history_start + 600, now - 60)
    say(f"  recorded allocation rules backfilled over the history in {time.monotonic() - started:.0f}s "
        "(long windows read them)")
    prom = PrometheusServer(root / "data", targets, "15s", honor_labels=frozenset({"synthetic-cluster"}),
                            rule_files=[rules_file])
    prom.start()
    bill_file = root / "bill-focus.csv"  # written below, before serve starts: /cloudCost and /customCost read it
    cfg_raw = dict(DEMO_CONFIG, prometheus={"url": prom.url},
                   serve={"interval": "30s", "lag": "2m", "listen": f"127.0.0.1:{exporter_port}",
                          "exposeNewSeriesFor": "30s"},  # 2x the 15 s scrape interval
                   reconciliation={"bills": [str(bill_file)]},
                   # A laptop (or a loaded 2-core CI runner) answering OpenCost's suite: its 14-day and pod-level
                   # two-day windows can pass the 120 s default, and a 503 there is the machine, not the answer.
                   api={"timeout": "10m",
                        # OpenCost's suite asks pod-level 12h, 1d and 2d windows again and again, each 2-day one
                        # about 970,000 points of answers on this cluster: at the 400,000 default the cache
                        # would drop each chunk's answers before they are asked again (docs/scale.md).
                        "cachePoints": 2_000_000})
    cfg_path = root / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg_raw, sort_keys=False))
    cfg = parse_config(cfg_raw)
    pipeline = RecordingPipeline(cfg, PrometheusClient(cfg.prometheus))  # keeps the priced assets too
    result = pipeline.compute(parse_window("24h", now, 60))
    bill_path = write_sample_bill(result, bill_file)
    exporter = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--config", str(cfg_path), "--start", iso(now - 86400)],
        stdout=(root / "serve.log").open("w"), stderr=subprocess.STDOUT)
    return DemoStack(root, now, prom, exporter, cfg_path, cfg, rules_file, f"http://127.0.0.1:{exporter_port}",
                     result, bill_path, pipeline.fetcher.recorded)


def main(root: Path = Path(".demo")) -> None:
    stack = start(root, lambda line: print(line, flush=True))
    now, cfg, cfg_path, prom, rules_file = stack.now, stack.cfg, stack.cfg_path, stack.prom, stack.rules_file
    result, bill_path = stack.result, stack.bill_path
    print()
    print("Cost per namespace, last 24 h (chargeback allocate --window 24h):")
    attrs = tuple(cfg.attribution.labels)
    print(to_table(result, ["namespace"], attrs, cfg.pricing.currency))
    print("(storage, load balancers and network are in the 'pv+lb+net' column; `--format json` itemises them)")
    for iv in result.coverage.bridged:  # the 10-minute KSM outage, less the 5 minutes Prometheus looks back
        print(f"Coverage: {iso(iv.start)} .. {iso(iv.end)} bridged: {SOURCE_NAMES[iv.source]} was silent, its last "
              "known state is carried over (allocation.maxGapBridge; `--format json` has a `coverage` field)")
    for line in result.coverage.warnings():
        print(f"Coverage: {line}")
    print()
    print("The same by team (chargeback allocate --window 24h --aggregate team): payments owns two namespaces,")
    print("web-shared is split between web and growth by pod label:")
    print(to_table(result, ["team"], attrs, cfg.pricing.currency))
    print()
    print(gpu_sharing(result))
    print()
    print(energy_table(result, attrs))
    print()
    print("Network egress by team, last 24 h, classified from Istio's telemetry (docs/network.md):")
    print(egress_table(result, stack.assets))
    print()
    print(f"Reconciliation against the sample FOCUS bill the demo wrote and configured ({bill_path}):")
    client = PrometheusClient(cfg.prometheus)
    window = parse_window("24h", now, 60)
    rec = reconcile(read_bill([bill_path]), inventory(client, window, ""), result, window)
    print(reconcile_table(rec))
    print()
    print("A sample showback report (chargeback report --window 12h --by team):")
    print(render_report(make_report(cfg, parse_window("12h", now, 60), "team", now, "computed"), "markdown"))
    base = stack.base
    _wait_metrics(base)
    print(f"""
Prometheus UI        {prom.url}/graph?g0.expr=sum%20by%20(namespace)%20(chargeback_namespace_cost_total)
Budget alerts        {prom.url}/alerts   (ml-daily fires within a minute; rules: {rules_file})
Exporter /metrics    {base}/metrics
Allocation API       {base}/allocation/compute?window=24h&aggregate=namespace
Assets, cloud costs  {base}/assets?window=24h   {base}/cloudCost/view/table?window=7d&aggregate=service
External costs       {base}/customCost/total?window=7d   (the bill's lines outside the cluster, fixed costs)
Health               {base}/healthz
Config               {cfg_path}   (exporter log: {root / "serve.log"})

Grafana dashboards   dashboards/generated/*.json: in Grafana, Dashboards > New > Import, upload each file
                     and pick a Prometheus data source pointing at {prom.url}
                     (in a cluster, kubectl apply -k deploy/ ships them as Grafana sidecar ConfigMaps)

Try:  .venv/bin/chargeback allocate --config {cfg_path} --window today
Ctrl-C stops everything.""", flush=True)

    # A plain flag: a handler calling Event.set() deadlocks when a second signal (make forwarding a TERM,
    # then Ctrl-C) arrives while the first is inside it, holding the Event's lock.
    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: stop.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    try:
        while not stop:
            time.sleep(1)
            if stack.exporter.poll() is not None:
                print(f"exporter exited with {stack.exporter.returncode}; see {root / 'serve.log'}", file=sys.stderr)
                break
    finally:
        stack.stop()


def energy_table(result: CostResult, attrs: tuple[str, ...]) -> str:
    """Energy and carbon by team (docs/energy-and-carbon.md), from the same result as the cost tables."""
    data = allocation_response(result, ["team"], attrs)["data"][0]
    rows = sorted(((n, r["energyKWh"], r["carbonGrams"] / 1000) for n, r in data.items()), key=lambda r: -r[1])
    sources = sorted({f"{n}: {s}" for n, s in result.energy.node_source.items()})
    return ("Energy and carbon by team, last 24 h (measured by Kepler on four nodes, estimated on the others):\n"
            + tabulate(rows, headers=["team", "energy kWh", "carbon kg CO2e"], floatfmt=".3f")
            + f"\n(node sources: {', '.join(sources)})")


def gpu_sharing(result: CostResult) -> str:
    """The GPU nodes, and who holds what of each: MIG slices and time-sliced replicas priced as shares."""
    lines = ["GPU nodes, last 24 h: each tenant pays the share of a physical GPU it holds (GPUs held on average, "
             "cost); what no one holds is the node's idle"]
    seconds = max(result.end - result.start, 1)
    for name, f in sorted(result.nodes.items()):
        if f.gpu is None:
            continue
        rate = result.rates[name].gpu if name in result.rates else 0.0
        idle = sum(line.gpu_cost for (ns, node, _a), line in result.table.items() if ns == IDLE and node == name)
        lines.append(f"  {name}: {f.gpus:g} x {f.gpu_model or 'unknown model'} ({f.gpu.mode}) at {rate:.4g}/GPU-h, "
                     f"idle {idle:.2f}")
        pods: dict[tuple[str, str], GpuPodCost] = {}
        for (ns, node, pod, _container), held in result.gpu_pods.items():
            if node == name:
                pods.setdefault((ns, pod), GpuPodCost()).add(held)
        for (ns, pod), held in sorted(pods.items()):
            lines.append(f"    {ns:<10} {pod:<16} {held.gpu_seconds / seconds:6.3f} GPU {held.cost:10.2f}")
    return "\n".join(lines)


def write_sample_bill(result: CostResult, path: Path) -> Path:
    """A FOCUS export for the demo's 24 h: on-demand nodes under a 28% Savings Plan, spot at list, the GPU
    node with a credit, the volumes at their class price, a NAT gateway and a tax line."""
    start, end = iso(result.start), iso(result.end)
    hours = (result.end - result.start) / 3600
    node_cost: dict[str, float] = {}
    for (node, _res), c in result.node_cost.items():
        node_cost[node] = node_cost.get(node, 0.0) + c
    rows = []
    for node, cost in sorted(node_cost.items()):
        factor = 1.0 if "-2-" in node else 0.72  # ip-10-0-2-* are the spot nodes
        rows.append((f"i-{node}", "Amazon EC2", "Compute", "Usage", round(cost * factor, 4), round(cost, 4)))
    rows.append(("i-ip-10-0-3-1", "Amazon EC2", "Compute", "Credit", -5.0, 0.0))
    for (asset, res), cost in sorted(result.asset_cost.items()):
        if res == "storage":
            rows.append((asset, "Amazon EBS", "Storage", "Usage", round(cost, 4), round(cost, 4)))
    rows.append(("nat-0demo", "Amazon VPC", "Networking", "Usage", 1.08, 1.08))
    rows.append(("", "Tax", "Other", "Tax", 9.5, 9.5))
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["BilledCost", "EffectiveCost", "ListCost", "BillingCurrency", "ChargePeriodStart",
                    "ChargePeriodEnd", "ChargeCategory", "ResourceId", "ServiceName", "ServiceCategory", "Tags",
                    "PricingQuantity", "PricingUnit"])
        for rid, service, category, charge, effective, listed in rows:
            usage = category == "Compute" and charge == "Usage"  # instance-hours
            w.writerow([effective, effective, listed, "USD", start, end, charge, rid, service, category, "{}",
                        hours if usage else "", "Hours" if usage else ""])
    return path


def _wait_metrics(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "chargeback_accrued_until_timestamp_seconds" in requests.get(f"{base}/metrics", timeout=2).text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)


if __name__ == "__main__":
    main()
