"""Attribution: who owns a namespace's (or a pod's) cost, from pod labels first, then namespace labels. Pure.

A missing value is `__unattributed__`. A namespace whose pods resolve to different owners
is *split*: its cost is then fetched per pod and attributed pod by pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.core.names import UNATTRIBUTED
from exporter.vocab.labels import Attrs, Metadata

BUDGET_PREFIX = "chargeback.io/budget-"  # chargeback.io/budget-{daily,weekly,monthly}, chargeback.io/budget-notify


@dataclass(frozen=True)
class Budget:
    namespace: str
    period: str  # daily | weekly | monthly
    amount: float
    notify: str = ""


def annotation_budgets(meta: Metadata) -> tuple[list[Budget], list[str]]:
    """Budgets declared as namespace annotations, plus one warning per unreadable value."""
    budgets, problems = [], []
    for ns, notes in sorted(meta.annotations.items()):
        notify = notes.get(BUDGET_PREFIX + "notify", "")
        for period in ("daily", "weekly", "monthly"):
            raw = notes.get(BUDGET_PREFIX + period)
            if raw is None:
                continue
            try:
                amount = float(raw)
                if amount <= 0 or amount != amount:
                    raise ValueError
            except ValueError:
                problems.append(f"namespace {ns}: annotation {BUDGET_PREFIX}{period}={raw!r} is not a positive amount")
                continue
            budgets.append(Budget(ns, period, amount, notify))
    return budgets, problems


@dataclass(frozen=True)
class Owners:
    """Resolved owners: per namespace, per pod in split namespaces."""

    namespaces: dict[str, Attrs]
    pods: dict[tuple[str, str], Attrs]
    split: frozenset[str]
    width: int = 0  # number of attribution labels

    def of(self, namespace: str, pod: str | None = None) -> Attrs:
        """Owner of a pod or namespace; one never seen in metadata is __unattributed__ on every label."""
        if pod is not None and (namespace, pod) in self.pods:
            return self.pods[(namespace, pod)]
        return self.namespaces.get(namespace, (UNATTRIBUTED,) * self.width)


LabelSets = dict[frozenset[tuple[str, str]], dict[str, str]]


def shared_labels(labels: dict[str, str], seen: LabelSets) -> dict[str, str]:
    """The one dict `seen` holds with these items (`labels` itself the first time): the pods of a workload
    share their labels, so a cluster's pod metadata holds a dict per distinct label set, not per pod.
    Callers treat them as read-only."""
    return seen.setdefault(frozenset(labels.items()), labels)


def _attrs(keys: list[str], *sources: Mapping[str, str]) -> Attrs:
    out = []
    for k in keys:
        value = next((s[k] for s in sources if s.get(k)), UNATTRIBUTED)
        out.append(value)
    return tuple(out)


def resolve(meta: Metadata, keys: list[str]) -> Owners:
    """Owners for every namespace and labelled pod; `keys` are Kubernetes label keys in metric-label order."""
    if not keys:
        return Owners({}, {}, frozenset())
    ns_default = {ns: _attrs(keys, labels) for ns, labels in meta.namespaces.items()}
    pods: dict[tuple[str, str], Attrs] = {}
    per_ns: dict[str, set[Attrs]] = {}
    labelled: dict[str, int] = {}
    interned: dict[Attrs, Attrs] = {}  # one tuple per owner, not per pod
    for key, labels in sorted(meta.pods.items()):
        ns = key[0]
        a = _attrs(keys, labels, meta.namespaces.get(ns, {}))
        a = interned.setdefault(a, a)
        pods[key] = a
        per_ns.setdefault(ns, set()).add(a)
        labelled[ns] = labelled.get(ns, 0) + 1
    namespaces = dict(ns_default)
    split = set()
    for ns, seen in per_ns.items():
        default = ns_default.get(ns, tuple(UNATTRIBUTED for _ in keys))
        if labelled[ns] < meta.pod_counts.get(ns, labelled[ns]):
            seen = seen | {default}  # some pods carry no labels and fall back to the namespace's
        if len(seen) == 1:
            namespaces[ns] = next(iter(seen))
        else:
            namespaces[ns] = default
            split.add(ns)
    # Only split namespaces' pods are kept: elsewhere every pod has its namespace's owner, which `of` gives
    # (at 300k containers, 150,000 entries held for nothing through the whole chunk).
    return Owners(namespaces, {k: a for k, a in pods.items() if k[0] in split}, frozenset(split), len(keys))


def coverage_by_pods(meta: Metadata, keys: list[str]) -> dict[str, float]:
    """Share of pods that get each label, from the pod itself or its namespace.

    One pass over the pods: every /metrics scrape calls this, and a pass per namespace took minutes on
    big clusters (docs/scale.md)."""
    total = sum(meta.pod_counts.values())
    labelled: dict[tuple[str, str], int] = {}  # (namespace, key) -> pods carrying the label themselves
    for (ns, _pod), lb in meta.pods.items():
        for key in keys:
            if lb.get(key):
                labelled[ns, key] = labelled.get((ns, key), 0) + 1
    out: dict[str, float] = {}
    for key in keys:
        covered = sum(count if meta.namespaces.get(ns, {}).get(key) else labelled.get((ns, key), 0)
                      for ns, count in meta.pod_counts.items())
        out[key] = covered / total if total else 0.0
    return out


def coverage_by_cost(costs: Mapping[tuple[str, Attrs], float], names: list[str]) -> dict[str, tuple[float, float]]:
    """Per label: (share of tenant cost that is attributed, cost that went to __unattributed__)."""
    total = sum(costs.values())
    out: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(names):
        missing = sum(c for (_ns, attrs), c in costs.items() if len(attrs) > i and attrs[i] == UNATTRIBUTED)
        out[name] = ((total - missing) / total if total else 0.0, missing)
    return out
