"""Sharing: distribute shared namespaces, fixed costs and (optionally) idle over the tenants. Pure.

Order, as in Kubecost: idle is shared first (tenants only, in proportion to their cost of
that resource, cluster-wide or per node); then each shared source (a shared namespace's
cost per resource, or a fixed cost prorated to the window) is split over the tenants by
its policy. Shared namespaces disappear as cost owners; every amount lands somewhere, so
the entries still sum to the cluster's cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.config.schema import SharePolicy, Sharing
from exporter.core.allocation import OVERHEAD, CostResult, EntryKey
from exporter.core.names import IDLE, SHARED, is_pseudo
from exporter.vocab.labels import Attrs

# Fixed costs that cannot be placed (no tenant in the window) stay visible here.

Tenant = tuple[str, Attrs]


@dataclass(frozen=True)
class ShareInputs:
    """What the pipeline fetched for one window that sharing needs beyond the cost table."""

    shared: frozenset[str] = frozenset()
    fixed: Mapping[str, float] = field(default_factory=dict)  # fixed cost name -> amount for this window
    weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # metric policies: ns -> weight
    attr_names: tuple[str, ...] = ()


@dataclass
class Shared:
    costs: dict[EntryKey, float]
    pools: dict[tuple[str, str], float]  # (source, resource) before distribution
    notes: list[str]  # fallbacks taken, for a log line and a metric
    fallbacks: set[str]


def spread(amount: float, weights: Mapping[Tenant, float]) -> dict[Tenant, float]:
    """Split `amount` in proportion to positive weights; empty if there are none."""
    total = sum(w for w in weights.values() if w > 0)
    if total <= 0:
        return {}
    return {k: amount * w / total for k, w in weights.items() if w > 0}


def _within(groups: Mapping[str, float], members: Mapping[str, list[Tenant]],
            alloc: Mapping[Tenant, float]) -> dict[Tenant, float]:
    """Group weights, then split each group's weight over its tenants by allocated cost (evenly if all 0)."""
    out: dict[Tenant, float] = {}
    gtotal = sum(w for g, w in groups.items() if w > 0 and members.get(g))
    for g, gw in groups.items():
        rows = members.get(g, [])
        if gw <= 0 or not rows:
            continue
        sub = {t: alloc.get(t, 0.0) for t in rows}
        if sum(sub.values()) <= 0:
            sub = dict.fromkeys(rows, 1.0)
        stotal = sum(sub.values())
        for t, w in sub.items():
            out[t] = gw / gtotal * w / stotal
    return out


def policy_weights(source: str, policy: SharePolicy, alloc: Mapping[Tenant, float], inputs: ShareInputs,
                   notes: list[str], fallbacks: set[str]) -> Mapping[Tenant, float]:
    """Weights per tenant row for one shared source; falls back to `weighted` when a policy has no data."""
    by_ns: dict[str, list[Tenant]] = defaultdict(list)
    for t in alloc:
        by_ns[t[0]].append(t)
    if policy.split == "even":
        return _within(dict.fromkeys(by_ns, 1.0), by_ns, alloc)
    if policy.split == "fixed":
        if policy.fixedBy == "namespace":
            groups, members = policy.percentages, by_ns
        else:
            idx = inputs.attr_names.index(policy.fixedBy)
            members = defaultdict(list)
            for t in alloc:
                members[t[1][idx]].append(t)
            groups = policy.percentages
        weights = _within(groups, members, alloc)
        if weights:
            return weights
        notes.append(f"{source}: none of the fixed-split {policy.fixedBy}s has cost in this window; "
                     "falling back to weighted")
    elif policy.split == "metric":
        got = {ns: w for ns, w in inputs.weights.get(source, {}).items() if ns in by_ns}
        weights = _within(got, by_ns, alloc)
        if weights:
            return weights
        notes.append(f"{source}: weight query returned no weight for any tenant namespace; falling back to weighted")
    else:
        return alloc
    fallbacks.add(source)
    return alloc


@dataclass
class _Sorted:
    """The window's cost table sorted by what happens to each amount next."""

    costs: dict[EntryKey, float] = field(default_factory=lambda: defaultdict(float))
    pools: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))  # (source, res)
    idle: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))  # (node, resource)
    alloc: dict[Tenant, float] = field(default_factory=lambda: defaultdict(float))  # all resources, cluster-wide
    alloc_res: dict[tuple[str, str], dict[Tenant, float]] = field(  # (node, resource)
        default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    owner: dict[str, Attrs] = field(default_factory=dict)


def _sort_table(result: CostResult, inputs: ShareInputs) -> _Sorted:
    """Idle, shared sources and tenants apart; pseudo-namespaces keep their cost and receive no shares."""
    led = _Sorted()
    for (ns, node, attrs), line in result.table.items():
        for res, cost in line.cost_by_resource().items():
            if not cost:
                continue
            if ns == IDLE:
                led.idle[(node, res)] += cost
            elif ns in inputs.shared:
                led.pools[(ns, res)] += cost
                led.owner.setdefault(ns, attrs)
            else:
                led.costs[(ns, attrs, "allocated", res, "")] += cost
                if not is_pseudo(ns):  # __unmounted__, __unallocated__ share nothing
                    led.alloc[(ns, attrs)] += cost
                    led.alloc_res[(node, res)][(ns, attrs)] += cost
    return led


def _share_idle(led: _Sorted, sharing: Sharing) -> None:
    """Idle kept as __idle__, or shared by each tenant's cost of that resource (per node or cluster-wide)."""
    pooled: dict[tuple[str, str], float] = defaultdict(float)
    for (node, res), amount in led.idle.items():
        pooled[(node if sharing.idleByNode else "", res)] += amount
    for (node, res), amount in pooled.items():
        shares: dict[Tenant, float] = {}
        if sharing.shareIdle:
            shares = spread(amount, led.alloc_res[(node, res)] if node else _cluster_wide(led, res))
        if not shares:
            led.costs[(IDLE, (), "idle", res, "")] += amount
        for (ns, attrs), c in shares.items():
            led.costs[(ns, attrs, "idle", res, "")] += c


def _cluster_wide(led: _Sorted, res: str) -> dict[Tenant, float]:
    weights: dict[Tenant, float] = defaultdict(float)
    for (_node, r), rows in led.alloc_res.items():
        if r == res:
            for t, c in rows.items():
                weights[t] += c
    return weights


def _share_pools(led: _Sorted, sharing: Sharing, inputs: ShareInputs, notes: list[str], fallbacks: set[str]) -> None:
    """Shared namespaces and fixed costs to tenants by each source's policy."""
    weights_by_source: dict[str, Mapping[Tenant, float]] = {}
    for (source, res), amount in sorted(led.pools.items()):
        if source not in weights_by_source:
            policy = sharing.policies.get(source) or SharePolicy(split=sharing.shareSplit)
            weights_by_source[source] = policy_weights(source, policy, led.alloc, inputs, notes, fallbacks)
        shares = spread(amount, weights_by_source[source])
        if not shares:  # no tenant has cost in this window: the source keeps its own cost
            if source in inputs.shared:
                led.costs[(source, led.owner.get(source, ()), "allocated", res, "")] += amount
            else:
                led.costs[(SHARED, (), "shared", res, source)] += amount
            continue
        for (ns, attrs), c in shares.items():
            led.costs[(ns, attrs, "shared", res, source)] += c


def distribute(result: CostResult, sharing: Sharing, inputs: ShareInputs) -> Shared:
    """Every amount of the window lands on a tenant or a pseudo-namespace: idle first, then the pools."""
    led = _sort_table(result, inputs)
    _share_idle(led, sharing)
    for name, amount in inputs.fixed.items():
        led.pools[(name, OVERHEAD)] += amount
    notes: list[str] = []
    fallbacks: set[str] = set()
    _share_pools(led, sharing, inputs, notes, fallbacks)
    return Shared(dict(led.costs), dict(led.pools), notes, fallbacks)
