"""Who a cost belongs to: owner label values, the key of an aggregated quantity, and the labels they come from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.vocab.errors import ConfigError

Attrs = tuple[str, ...]  # attribution label values (team, cost centre, ...) in configured order
UsageKey = tuple[str, str, Attrs, str]  # (namespace, node, attribution, resource)


def ksm_label(key: str) -> str:
    """A Kubernetes label key as kube-state-metrics exports it on kube_node_labels."""
    return "label_" + prom_key(key)


def prom_key(key: str) -> str:
    """A label or annotation key as OpenCost spells it: Prometheus's sanitised form (`cost-center` is
    `cost_center`, `chargeback.io/budget-monthly` is `chargeback_io_budget_monthly`)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def either_key(values: Mapping[str, str], key: str) -> str | None:
    """The value under `key` in either spelling, Kubernetes's or OpenCost's, whichever `values` holds."""
    if key in values:
        return values[key]
    want = prom_key(key)
    return next((v for k, v in values.items() if prom_key(k) == want), None)


@dataclass(frozen=True)
class Metadata:
    """Labels as Kubernetes spells them (`cost-center`), from the API or from kube-state-metrics."""

    source: str  # "kubernetes" or "prometheus"
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pods: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)  # only pods with labels
    # Pods per namespace, when the source lists every pod; pods missing from `pods` then have no labels.
    pod_counts: Mapping[str, int] = field(default_factory=dict)
    # Node labels, when the source is the Kubernetes API (price-book rules match on them).
    nodes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Namespaces' chargeback.io/* annotations (budgets declared next to the namespace).
    annotations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


MAX_AGGREGATE_KEYS = 32  # 2,000 `label:` keys made one PromQL query Prometheus refused after 8 s (a 502)


def aggregate_parts(text: str) -> list[str]:
    """`aggregate=a, b` split on commas, at most MAX_AGGREGATE_KEYS parts, refused before any is looked at."""
    parts = [p.strip() for p in text.split(",", MAX_AGGREGATE_KEYS)]
    if len(parts) > MAX_AGGREGATE_KEYS:
        raise ConfigError(f"aggregate={text[:40]!r}...: more than {MAX_AGGREGATE_KEYS} keys")
    return parts
