"""Energy and carbon per namespace: Kepler's measured joules, else Cloud Carbon Footprint's estimate. Pure.

A separate quantity from money: nothing here reads or changes a cost. Per node, energy is either measured
(Kepler's RAPL joules, per pod and per node) or estimated from the node's vCPUs and memory: per vCPU
min + utilisation x (max - min) watts, memory watts per GiB, times the provider's PUE. What the namespaces
on a node did not use is the node's idle energy, kept as `__idle__` or shared as idle cost is
(`sharing.shareIdle`, `sharing.idleByNode`). Carbon is each node's joules times its region's grid
intensity, so the namespaces (idle included) add up to the nodes for both.
"""

from __future__ import annotations

import fnmatch
import functools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from exporter.config.energy import EnergyConfig
from exporter.config.schema import Sharing
from exporter.core.carbonsteps import NodeSteps, StepData, estimated_steps, measured_steps, step_intensity
from exporter.core.names import IDLE, is_pseudo
from exporter.vocab.labels import Attrs, ksm_label

JOULES_PER_KWH = 3.6e6
GIB = 1073741824.0
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
# A node label prefix that tells its cloud (EKS, GKE, AKS add these).
PROVIDER_LABELS = (("eks.amazonaws.com/", "aws"), ("cloud.google.com/", "gcp"), ("kubernetes.azure.com/", "azure"))

EnergyKey = tuple[str, str, Attrs, str]  # (namespace, node, attribution values, component: allocated|idle|shared)
RowKey = tuple[str, str, Attrs]  # (namespace, node, attribution values)


@dataclass(frozen=True)
class Coefficients:
    """The shipped table (exporter/data/energy-coefficients.yaml, dated)."""

    compiled: str
    memory_watts_per_gb: float
    providers: dict[str, tuple[float, float, float]]  # provider -> (min W, max W, PUE)
    families: dict[str, tuple[float, float]]  # micro-architecture -> (min W, max W)
    intensity: dict[str, float]  # region -> gCO2e/kWh


@functools.cache
def load_coefficients() -> Coefficients:
    raw: dict[str, Any] = yaml.safe_load(
        resources.files("exporter").joinpath("data/energy-coefficients.yaml").read_text())
    return Coefficients(
        str(raw["compiled"]), float(raw["memoryWattsPerGB"]),
        {k: (float(v["minWatts"]), float(v["maxWatts"]), float(v["pue"])) for k, v in raw["providers"].items()},
        {k: (float(v["minWatts"]), float(v["maxWatts"])) for k, v in raw["families"].items()},
        {str(k): float(v) for k, v in raw["gridIntensity"].items()})


@dataclass(frozen=True)
class EnergyNode:
    """One node as energy sees it over a window: capacity integrals, labels, and Kepler's joules if measured."""

    name: str
    vcpu_seconds: float
    ram_byte_seconds: float
    labels: Mapping[str, str] = field(default_factory=dict)  # kube_node_labels form: label_<sanitised key>
    measured_joules: float | None = None  # Kepler's node joules over the window (before PUE)
    source: str = "estimated"  # estimated | kepler | kepler-0.7


@dataclass(frozen=True)
class NodeModel:
    """How a node's energy is turned into facility energy and carbon."""

    min_watts: float
    max_watts: float
    pue: float
    intensity: float  # gCO2e/kWh
    region: str


def node_model(node: EnergyNode, cfg: EnergyConfig, co: Coefficients, notes: list[str]) -> NodeModel:
    """The node's watts (a matching `energy.nodes` rule, else its provider's average), PUE and grid intensity
    from the tables (a live series, core/carbonsteps.py, goes over it step by step)."""
    labels = node.labels
    rule = next((r for r in cfg.nodes if all(
        (v := node.name if k == "node" else labels.get(ksm_label(k))) is not None and fnmatch.fnmatchcase(v, p)
        for k, p in r.match.items())), None)
    provider: str = (rule.provider if rule and rule.provider else None) or next(
        (p for prefix, p in PROVIDER_LABELS if any(k.startswith(ksm_label(prefix)) for k in labels)), cfg.provider)
    lo, hi, pue = co.providers[provider]
    if rule and rule.family:
        if rule.family in co.families:
            lo, hi = co.families[rule.family]
        else:
            notes.append(f"node {node.name}: CPU family {rule.family!r} is not in the shipped table "
                         f"({', '.join(sorted(co.families))}); using the {provider} average")
    if rule and rule.minWatts is not None:
        lo = rule.minWatts
    if rule and rule.maxWatts is not None:
        hi = rule.maxWatts
    region = next((labels[ksm_label(k)] for k in REGION_LABELS if labels.get(ksm_label(k))), "")
    table = {**co.intensity, **cfg.gridIntensity}
    if region in table:
        intensity = table[region]
    elif "default" in cfg.gridIntensity:
        intensity = cfg.gridIntensity["default"]
    else:
        # A node with no region label gets CCF's average without a word (docs/energy-and-carbon.md): every
        # command on a cluster without topology labels would warn per node. A region the table lacks is news.
        intensity = co.intensity["unknown"]
        if region:
            notes.append(f"node {node.name}: no grid intensity for region {region}; using "
                         f"{intensity:g} gCO2e/kWh (set energy.gridIntensity)")
    return NodeModel(lo, max(hi, lo), cfg.pue if cfg.pue is not None else pue, intensity, region)


@dataclass
class EnergyResult:
    """A window's energy (J) and carbon (gCO2e) per tenant row, and the node totals they add up to."""

    joules: dict[EnergyKey, float] = field(default_factory=dict)
    grams: dict[EnergyKey, float] = field(default_factory=dict)
    node_joules: dict[str, float] = field(default_factory=dict)
    node_grams: dict[str, float] = field(default_factory=dict)
    node_idle_joules: dict[str, float] = field(default_factory=dict)  # before any idle sharing
    node_source: dict[str, str] = field(default_factory=dict)  # estimated | kepler | kepler-0.7 (latest)
    notes: list[str] = field(default_factory=list)

    def merge(self, other: EnergyResult) -> None:
        for mine, theirs in ((self.joules, other.joules), (self.grams, other.grams)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0.0) + v
        for m, t in ((self.node_joules, other.node_joules), (self.node_grams, other.node_grams),
                     (self.node_idle_joules, other.node_idle_joules)):
            for n, v in t.items():
                m[n] = m.get(n, 0.0) + v
        self.node_source.update(other.node_source)

    def by_namespace(self) -> dict[str, tuple[float, float]]:
        """(joules, grams) per namespace, idle shares included."""
        out: dict[str, tuple[float, float]] = {}
        for (ns, _node, _attrs, _c), j in self.joules.items():
            prev = out.get(ns, (0.0, 0.0))
            out[ns] = (prev[0] + j, prev[1])
        for (ns, _node, _attrs, _c), g in self.grams.items():
            prev = out.get(ns, (0.0, 0.0))
            out[ns] = (prev[0], prev[1] + g)
        return out


@dataclass(frozen=True, slots=True)  # slots: one per (namespace, node, owner) row of a chunk
class Usage:
    """A row's used CPU core-seconds and memory byte-seconds (the cost table's usage)."""

    cpu_seconds: float
    ram_byte_seconds: float


def node_energy(node: EnergyNode, rows: Mapping[RowKey, Usage], measured: Mapping[str, float], model: NodeModel,
                memory_watts: float) -> tuple[dict[RowKey, float], float]:
    """Each tenant row's joules on `node` and the node's total, both facility energy (x PUE).

    Measured: the namespace's Kepler joules, split over its owners on the node by CPU used (evenly if none).
    Estimated: CCF's linear model per row, (max - min) W x core-seconds used + memory W x GiB-seconds used;
    the node adds min W x vCPU-seconds and the memory nobody used. Idle is the node's total less the rows."""
    out: dict[RowKey, float] = {}
    mine = {k: u for k, u in rows.items() if k[1] == node.name and not is_pseudo(k[0])}
    if node.measured_joules is not None or measured:
        by_ns: dict[str, list[RowKey]] = defaultdict(list)
        for k in mine:
            by_ns[k[0]].append(k)
        for ns, joules in measured.items():
            keys = by_ns.get(ns)
            if not keys:  # no pod of it in the cost table here (Kepler's system processes): the node's idle
                continue
            cpu = sum(mine[k].cpu_seconds for k in keys)
            for k in keys:
                weight = mine[k].cpu_seconds / cpu if cpu > 0 else 1 / len(keys)
                out[k] = out.get(k, 0.0) + joules * weight * model.pue
        total = max(node.measured_joules or 0.0, sum(measured.values())) * model.pue
        return out, total
    dyn, mem = model.max_watts - model.min_watts, memory_watts / GIB
    ram_used = 0.0
    for k, u in mine.items():
        out[k] = (dyn * u.cpu_seconds + mem * u.ram_byte_seconds) * model.pue
        ram_used += u.ram_byte_seconds
    cpu_used = sum(u.cpu_seconds for u in mine.values())
    total = (model.min_watts * node.vcpu_seconds + dyn * cpu_used
             + mem * max(node.ram_byte_seconds, ram_used)) * model.pue
    return out, total


def compute_energy(nodes: list[EnergyNode], rows: Mapping[RowKey, Usage],
                   measured: Mapping[str, Mapping[str, float]], cfg: EnergyConfig, sharing: Sharing,
                   shared: frozenset[str] = frozenset(), co: Coefficients | None = None,
                   steps: StepData | None = None) -> EnergyResult:
    """Energy and carbon of one window per (namespace, owner), idle kept or shared as idle cost is.

    `measured` is Kepler's joules per node per namespace (before PUE), for nodes whose `measured_joules`
    is set or that have any. With `steps` (a live intensity series), each part's grams weigh its joules by
    the intensity of the steps it drew them in (core/carbonsteps.py). Shared namespaces' energy follows
    their cost afterwards (share_namespaces)."""
    co = co or load_coefficients()
    memory_watts = cfg.memoryWattsPerGB if cfg.memoryWattsPerGB is not None else co.memory_watts_per_gb
    res = EnergyResult()
    # Each node's rows, in the table's order: one pass, not one per node (5,000 nodes x 150k rows at 300k).
    by_node: dict[str, dict[RowKey, Usage]] = {}
    for k, u in rows.items():
        by_node.setdefault(k[1], {})[k] = u
    grams_per_joule: dict[tuple[str, str | None], float] = {}  # (node, namespace; None = idle) -> g/J
    flat: dict[str, float] = {}  # without steps, a node's one g/J for all its parts (not one entry per row)
    missing: dict[tuple[str, float], list[int]] = {}  # (region, table g/kWh) -> [steps without a sample, steps]

    def per_joule(node_name: str, ns: str | None) -> float:
        return flat[node_name] if node_name in flat else grams_per_joule[(node_name, ns)]

    weights: dict[str, dict[tuple[str, Attrs], float]] = defaultdict(lambda: defaultdict(float))
    for node in nodes:  # each node's rows let go once its parts are booked
        model = node_model(node, cfg, co, res.notes)
        out, total = node_energy(node, by_node.pop(node.name, {}), measured.get(node.name, {}), model, memory_watts)
        res.node_joules[node.name] = total
        res.node_idle_joules[node.name] = total - sum(out.values())
        res.node_source[node.name] = node.source
        if steps is None:
            flat[node.name] = model.intensity / JOULES_PER_KWH
        else:
            namespaces = {ns for ns, _n, _a in out}
            intensity, lacking = step_intensity(steps, model.region, model.intensity)
            seen = missing.setdefault((model.region, model.intensity), [0, 0])
            seen[0], seen[1] = seen[0] + lacking, seen[1] + len(steps.steps)
            if node.measured_joules is not None or measured.get(node.name):
                parts, idle_steps = measured_steps(steps, node.name, namespaces)
            else:
                parts, idle_steps = estimated_steps(steps, node.name, namespaces, model.min_watts, model.max_watts,
                                                    memory_watts / GIB)
            ns_steps = NodeSteps(intensity, parts, idle_steps)
            for ns in namespaces:
                grams_per_joule[(node.name, ns)] = ns_steps.weighted(parts.get(ns), steps.steps) / JOULES_PER_KWH
            grams_per_joule[(node.name, None)] = ns_steps.weighted(idle_steps, steps.steps) / JOULES_PER_KWH
        grams = 0.0
        for (ns, _n, attrs), j in out.items():
            g = per_joule(node.name, ns)
            grams += j * g
            _add(res, (ns, node.name, attrs, "allocated"), j, j * g)
            if ns not in shared:
                weights[node.name if sharing.idleByNode else ""][(ns, attrs)] += j
        res.node_grams[node.name] = grams + res.node_idle_joules[node.name] * per_joule(node.name, None)
    for (region, table), (lacking, total_steps) in sorted(missing.items()):
        if lacking:
            res.notes.append(f"live grid intensity (energy.intensityQuery): no sample for region {region or '(none)'} "
                             f"at {lacking} of {total_steps} node-steps; the table's {table:g} gCO2e/kWh used there")
    for node_name, idle in res.node_idle_joules.items():
        g = per_joule(node_name, None)
        tenants = weights[node_name if sharing.idleByNode else ""] if sharing.shareIdle else {}
        total = sum(w for w in tenants.values() if w > 0)
        if total <= 0:
            _add(res, (IDLE, node_name, (), "idle"), idle, idle * g)
            continue
        for (ns, attrs), w in tenants.items():
            if w > 0:
                _add(res, (ns, node_name, attrs, "idle"), idle * w / total, idle * w / total * g)
    return res


def share_namespaces(res: EnergyResult, received: Mapping[str, Mapping[tuple[str, Attrs], float]]) -> None:
    """A shared namespace's energy goes where its cost went: to each tenant in proportion to the cost it
    received from that namespace (`received`: source -> (namespace, attrs) -> cost), as component `shared`,
    keeping each node's carbon. A source whose cost no tenant took keeps its energy, as it keeps its cost."""
    for key in [k for k in res.joules if k[0] in received]:
        weights = {t: w for t, w in received[key[0]].items() if w > 0}
        total = sum(weights.values())
        if total <= 0:
            continue
        joules, grams = res.joules.pop(key), res.grams.pop(key, 0.0)
        for (ns, attrs), w in sorted(weights.items()):
            _add(res, (ns, key[1], attrs, "shared"), joules * w / total, grams * w / total)


def _add(res: EnergyResult, key: EnergyKey, joules: float, grams: float) -> None:
    if joules:
        res.joules[key] = res.joules.get(key, 0.0) + joules
        res.grams[key] = res.grams.get(key, 0.0) + grams
