"""Energy for one costed segment: Kepler's joules queried (either metric generation), the segment's nodes
and usage read off its cost result, and core/energy.py's pure computation run (the pipeline calls it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from exporter.config.schema import Config
from exporter.core.allocation import CostResult
from exporter.core.carbonsteps import StepData
from exporter.core.energy import EnergyNode, EnergyResult, RowKey, Usage, compute_energy, share_namespaces
from exporter.core.names import IDLE
from exporter.core.window import Window
from exporter.sources.energyqueries import KeplerQueries
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.queries import Queries
from exporter.vocab.durations import parse_duration
from exporter.vocab.labels import Attrs

Measured = dict[str, dict[str, float]]  # node -> namespace -> joules


class EnergyFetch:
    """Asks once an hour whether Kepler is scraped, so a cluster without it pays one index lookup."""

    def __init__(self, cfg: Config, client: PrometheusClient) -> None:
        self.cfg = cfg
        self.client = client
        e = cfg.energy
        self.q = KeplerQueries(e.keplerSelector, cfg.prometheus.clusterSelector, e.keplerZones,
                               e.keplerLegacyNodeLabel)
        self._seen: tuple[float, bool] | None = None

    def kepler(self, w: Window) -> tuple[Measured, dict[str, float], dict[str, str]]:
        """Per node: namespace joules, the node's joules, and which generation measured it."""
        if self.cfg.energy.kepler == "off":
            return {}, {}, {}
        now = time.monotonic()
        if self._seen is None or (not self._seen[1] and now - self._seen[0] > 3600):
            self._seen = (now, self.client.series_exist(self.q.present()))
        if not self._seen[1]:
            return {}, {}, {}
        at, span = float(w.end), w.seconds
        ns: Measured = {}
        node: dict[str, float] = {}
        source: dict[str, str] = {}
        for gen, pods, nodes, ns_label, node_label in self._generations():
            got: Measured = {}
            for lb, v in self.client.query(pods(span), at):
                n = lb.get(node_label, "")
                got.setdefault(n, {})[lb.get(ns_label, "")] = got.get(n, {}).get(lb.get(ns_label, ""), 0.0) + v
            totals = {lb.get(node_label, ""): v for lb, v in self.client.query(nodes(span), at)}
            for n in {*got, *totals} - set(source):  # a node measured by the current generation keeps it
                source[n] = gen
                ns[n] = got.get(n, {})
                if n in totals:
                    node[n] = totals[n]
        return ns, node, source

    def step_data(self, w: Window, q: Queries, source: Mapping[str, str], known: set[str]) -> StepData | None:
        """With energy.intensityQuery: its gCO2e/kWh per region at each step of `w` ("" for a series without the
        region label), and the per-step energy signals of the nodes measured each way (core/carbonsteps.py)."""
        e = self.cfg.energy
        if not e.intensityQuery:
            return None
        step = min(w.seconds, parse_duration(self.cfg.allocation.resolution))
        at, span = float(w.end), w.seconds
        data = StepData(tuple(w.end - k * step for k in range(max(w.seconds // step, 1)))[::-1])
        for lb, samples in self.client.query_range_raw(q.steps(e.intensityQuery, span), at):
            data.intensity.setdefault(lb.get(e.intensityRegionLabel, ""), {}).update(_stamped(samples))
        if any(n not in source for n in known):  # an estimated node: cAdvisor's use and the capacity, per step
            for res, into in (("cpu", data.cpu), ("memory", data.ram)):
                for lb, samples in self.client.query_range_raw(q.used_steps(res, span), at):
                    into[(lb.get("namespace", ""), lb.get("node", ""))] = _stamped(samples)
            for lb, samples in self.client.query_range_raw(q.capacity_steps(span), at):
                into_cap = data.vcpus if lb.get("resource") == "cpu" else data.ram_capacity
                into_cap[lb.get("node", "")] = _stamped(samples)
        # Kepler's joules over the rate window ending at each step: a weight, as the power drawn then.
        reach = max(step, parse_duration(self.cfg.allocation.usageRateWindow))
        for gen, pods, nodes, ns_label, node_label in self._generations():
            if gen not in source.values():
                continue
            for lb, samples in self.client.query_range_raw(q.steps(pods(reach), span), at):
                node = _node_name(lb.get(node_label, ""), known)
                data.kepler.setdefault(node, {})[lb.get(ns_label, "")] = _stamped(samples)
            for lb, samples in self.client.query_range_raw(q.steps(nodes(reach), span), at):
                data.kepler_node[_node_name(lb.get(node_label, ""), known)] = _stamped(samples)
        return data

    def _generations(self) -> tuple[tuple[str, Callable[[int], str], Callable[[int], str], str, str], ...]:
        """(source name, namespace joules query, node joules query, namespace label, node label) per generation."""
        return (("kepler", self.q.pods, self.q.nodes, "pod_namespace", "node_name"),
                ("kepler-0.7", self.q.legacy_containers, self.q.legacy_nodes, "container_namespace",
                 self.q.legacy_node))

    def compute(self, w: Window, result: CostResult, capacity: Mapping[tuple[str, str], float],
                shared: frozenset[str], q: Queries) -> EnergyResult:
        """The segment's energy and carbon (core/energy.py) from its cost table's usage and Kepler; a shared
        namespace's energy then goes where its cost went (so `result.costs` must be shared already)."""
        measured, node_joules, source = self.kepler(w)
        known = {n for n, _r in capacity} | set(result.nodes)
        measured = {_node_name(n, known): v for n, v in measured.items()}
        node_joules = {_node_name(n, known): v for n, v in node_joules.items()}
        source = {_node_name(n, known): v for n, v in source.items()}
        rows: dict[RowKey, Usage] = {}
        for (ns, node, attrs), line in result.table.items():
            if ns != IDLE:
                rows[(ns, node, attrs)] = Usage(line.cpu_usage_seconds, line.ram_usage_byte_seconds)
        energy_notes = [f"node {n}: Kepler reports its pods' joules but not the node's; its idle energy is "
                        "unknown (counted as 0)" for n in sorted(measured) if n not in node_joules]
        nodes = [EnergyNode(n, capacity.get((n, "cpu"), 0.0), capacity.get((n, "memory"), 0.0),
                            result.nodes[n].labels if n in result.nodes else {},
                            node_joules.get(n), source.get(n, "estimated"))
                 for n in sorted(known | set(measured))]
        energy = compute_energy(nodes, rows, measured, self.cfg.energy, self.cfg.sharing, shared,
                                steps=self.step_data(w, q, source, {n.name for n in nodes}))
        received: dict[str, dict[tuple[str, Attrs], float]] = {}
        for (ns, attrs, component, _res, src), cost in result.costs.items():
            if component == "shared" and src in shared:
                got = received.setdefault(src, {})
                got[(ns, attrs)] = got.get((ns, attrs), 0.0) + cost
        share_namespaces(energy, received)
        energy.notes += energy_notes
        return energy


def _stamped(samples: list[tuple[float, float]]) -> dict[int, float]:
    """A subquery's samples by step timestamp (whole seconds: steps are whole)."""
    return {round(t): v for t, v in samples}


def _node_name(name: str, known: set[str]) -> str:
    """Kepler 0.7's `instance` may be host:port; the node's name when that is one."""
    if name in known or ":" not in name:
        return name
    host = name.rsplit(":", 1)[0]
    return host if host in known else name
