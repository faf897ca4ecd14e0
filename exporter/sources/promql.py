"""The one place values are quoted into PromQL, and the queries over chargeback's own series.

Every label value that reaches a matcher goes through `quote` (a PromQL string literal) and,
for regex alternatives, `re2_escape` first. Hand-built `label="value"` strings break on
hyphens, dots, quotes and backslashes, which real namespace and label values contain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import ClassVar

# The one way a value enters PromQL: a string literal (Go syntax; JSON's escapes are a subset of it).
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def quote(value: str) -> str:
    """`value` as a PromQL string literal: quotes, backslashes and control characters escaped."""
    return json.dumps(value, ensure_ascii=False)


def re2_escape(value: str) -> str:
    """Escape RE2's metacharacters only. Python's re.escape also escapes `-`, and a `\\-` in a PromQL
    string is an escape sequence the lexer rejects; here `-` stays as it is."""
    return _RE2_SPECIAL.sub(r"\\\1", value)


def matcher(label: str, value: str, op: str = "=") -> str:
    """One label matcher, e.g. matcher("namespace", "team-web") -> namespace="team-web"."""
    return f"{label}{op}{quote(value)}"


def one_of(label: str, values: Iterable[str]) -> str:
    """A regex matcher for any of `values`, each matched literally."""
    return matcher(label, "|".join(re2_escape(v) for v in sorted(values)), "=~")


def selector(*matchers: str) -> str:
    """`{a,b}` from matchers and configured selector fragments; empty ones are skipped."""
    return "{" + ",".join(m for m in matchers if m) + "}"


def join_matchers(*matchers: str) -> str:
    """Matchers joined without braces, for composing configured selector fragments."""
    return ",".join(m for m in matchers if m)


def duration(seconds: int) -> str:
    """A range or `$window` substitution in seconds (PromQL accepts `123s` for any whole number)."""
    return f"{int(seconds)}s"


def with_window(template: str, seconds: int) -> str:
    """A user's share-weight query with `$window` replaced by a range of `seconds`."""
    return template.replace("$window", duration(seconds))


class OwnSeries:
    """Queries over the exporter's own published series (watermark, period sums, counters).

    `sel` holds configured selector fragments (serve.watermarkSelector, prometheus.clusterSelector).
    """

    def __init__(self, *fragments: str) -> None:
        self.sel = join_matchers(*fragments)

    def watermark(self, lookback: str) -> str:
        """The last watermark any replica published (max over replicas)."""
        return f"max(last_over_time(chargeback_accrued_until_timestamp_seconds{selector(self.sel)}[{lookback}]))"

    def watermark_samples(self, span: int) -> str:
        return f"chargeback_accrued_until_timestamp_seconds{selector(self.sel)}[{duration(span)}]"

    def period_cost(self, period: str, start: int, by: Iterable[str], lookback: str) -> str:
        sel = selector(self.sel, matcher("period", period), matcher("period_start", str(start)))
        return f"max by ({', '.join(by)}) (last_over_time(chargeback_period_cost{sel}[{lookback}]))"

    # The budget series the rules mixin records (rules/alerts/budgets.libsonnet): per budget, per annotation.
    BUDGET_SERIES: ClassVar[dict[str, str]] = {
        "spend": "budget:chargeback_budget_spend:sum", "usage": "budget:chargeback_budget_usage:ratio",
        "forecast": "budget:chargeback_budget_forecast:sum"}
    NAMESPACE_BUDGET_USAGE = "namespace_period:chargeback_budget_usage:ratio"

    def cost_increase(self, by: Iterable[str], range_: str, *extra: str) -> str:
        sel = selector(self.sel, *extra)
        return f"sum by ({', '.join(by)}) (increase(chargeback_namespace_cost_total{sel}[{range_}]))"

    def mean_efficiency(self, resource: str, span: int) -> str:
        sel = selector(self.sel, matcher("resource", resource))
        return f"avg by (namespace) (avg_over_time(chargeback_namespace_efficiency_ratio{sel}[{duration(span)}]))"


def inventory_queries(ksm: str, span: int) -> dict[str, str]:
    """Provider ids of nodes, volume ids of PVs, LoadBalancer Services and PV claims (reconciliation, /assets)."""
    rng = f"[{duration(span)}]"
    return {
        "nodes": f"max by (node, provider_id) (last_over_time(kube_node_info{selector(ksm)}{rng}))",
        "volumes": ("max by (persistentvolume, ebs_volume_id, csi_volume_handle, gce_persistent_disk_name) "
                    f"(last_over_time(kube_persistentvolume_info{selector(ksm)}{rng}))"),
        "services": ("max by (namespace, service) (last_over_time(kube_service_spec_type"
                     f"{selector(ksm, matcher('type', 'LoadBalancer'))}{rng}))"),
        # The claim bound to each PV (/assets' Disk claimName), from the claim's side.
        "claims": ("max by (namespace, persistentvolumeclaim, volumename) "
                   f"(last_over_time(kube_persistentvolumeclaim_info{selector(ksm)}{rng}))"),
    }
