"""Label coverage audit: for each attribution label, who is missing it and what cost rides on that.

Pure but for `label_audit`, which gathers the inputs for `audit-labels` and the MCP tool alike.

Run it before switching the Kyverno policy from Audit to Enforce.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from exporter.core.allocation import CostResult
from exporter.core.names import IDLE, UNATTRIBUTED
from exporter.core.workloads import PodKey, name_of
from exporter.vocab.labels import Attrs, Metadata

if TYPE_CHECKING:
    import threading

    from exporter.core.window import Window
    from exporter.engine.pipeline import Pipeline
    from exporter.sources.prometheus import PrometheusClient


@dataclass
class NamespaceGap:
    namespace: str
    pods_missing: int
    pods_total: int
    cost_at_stake: float
    workloads: list[str]


@dataclass
class LabelAudit:
    label: str  # metric label name
    key: str  # Kubernetes label key
    pods_total: int
    pods_covered: int
    cost_total: float
    cost_unattributed: float
    namespaces: list[NamespaceGap] = field(default_factory=list)

    @property
    def pod_coverage(self) -> float:
        return self.pods_covered / self.pods_total if self.pods_total else 0.0

    @property
    def cost_coverage(self) -> float:
        return (self.cost_total - self.cost_unattributed) / self.cost_total if self.cost_total else 0.0


def audit(meta: Metadata, all_pods: Mapping[str, list[str]], labels: Mapping[str, str],
          costs: Mapping[tuple[str, Attrs], float], workloads: Mapping[PodKey, str] | None = None
          ) -> list[LabelAudit]:
    """`all_pods`: namespace -> pod names; `costs`: tenant cost per (namespace, attribution) over the window;
    `workloads`: each pod's controller (workloads.resolve), so the fix is named where it is made."""
    out = []
    total_cost = sum(costs.values())
    for i, (name, key) in enumerate(labels.items()):
        gaps = []
        covered = total = 0
        for ns, pods in sorted(all_pods.items()):
            total += len(pods)
            if meta.namespaces.get(ns, {}).get(key):
                covered += len(pods)
                continue
            missing = [p for p in pods if not meta.pods.get((ns, p), {}).get(key)]
            covered += len(pods) - len(missing)
            if missing:
                stake = sum(c for (cns, attrs), c in costs.items()
                            if cns == ns and len(attrs) > i and attrs[i] == UNATTRIBUTED)
                names = sorted({name_of(workloads or {}, ns, p) for p in missing})
                gaps.append(NamespaceGap(ns, len(missing), len(pods), stake, names))
        gaps.sort(key=lambda g: (-g.cost_at_stake, g.namespace))
        lost = sum(c for (_ns, attrs), c in costs.items() if len(attrs) > i and attrs[i] == UNATTRIBUTED)
        out.append(LabelAudit(name, key, total, covered, total_cost, lost, gaps))
    return out


def to_json(audits: list[LabelAudit]) -> list[dict[str, Any]]:
    return [{**asdict(a), "podCoverage": a.pod_coverage, "costCoverage": a.cost_coverage} for a in audits]


def to_text(audits: list[LabelAudit], currency: str, window: str) -> str:
    parts = []
    for a in audits:
        parts.append(f"label {a.label} (Kubernetes label {a.key!r}): {100 * a.pod_coverage:.1f}% of pods "
                     f"({a.pods_covered}/{a.pods_total}), {100 * a.cost_coverage:.1f}% of cost; "
                     f"{a.cost_unattributed:.4f} {currency} unattributed over {window}")
        if a.namespaces:
            rows = [[g.namespace, f"{g.pods_missing}/{g.pods_total}", g.cost_at_stake, ", ".join(g.workloads)]
                    for g in a.namespaces]
            table = tabulate(rows, headers=["namespace", "pods missing", f"cost at stake {currency}", "workloads"],
                             floatfmt=".4f")
            parts.append("\n".join("  " + line for line in table.splitlines()))
        else:
            parts.append("  every pod carries it")
    return "\n".join(parts)


def label_audit(pipeline: Pipeline, client: PrometheusClient, window: Window, result: CostResult | None = None,
                cancel: threading.Event | None = None) -> tuple[Metadata, list[LabelAudit]]:
    """Every pod of the window (but shared namespaces', whose labels decide nothing) against the labels."""
    from exporter.core.names import SHARED

    if result is None:
        result = pipeline.compute(window, cancel=cancel)
    meta = pipeline.metadata(window)
    pods: dict[str, list[str]] = {}
    if not window.seconds:  # `today` at 00:00:30: no pod ran in the window, so none is missing a label
        pass
    elif meta.source == "kubernetes":
        for ns, pod in meta.pods:
            pods.setdefault(ns, []).append(pod)
    else:
        for lb, _ in client.query(pipeline.queries.all_pods(window.seconds), float(window.end)):
            pods.setdefault(lb["namespace"], []).append(lb["pod"])
    shared = pipeline.share_inputs(window, meta).shared
    pods = {ns: p for ns, p in pods.items() if ns not in shared}
    costs: dict[tuple[str, tuple[str, ...]], float] = {}
    for (ns, attrs, _component, _res, _source), c in result.costs.items():
        if ns not in (IDLE, SHARED):
            costs[(ns, attrs)] = costs.get((ns, attrs), 0.0) + c
    return meta, audit(meta, pods, pipeline.cfg.attribution.labels, costs, pipeline.fetcher.workloads(window))
