"""The one place values are quoted into PromQL, and the queries over chargeback's own series.

Every label value that reaches a matcher goes through `quote` (a PromQL string literal) and,
for regex alternatives, `re2_escape` first. Hand-built `label="value"` strings break on
hyphens, dots, quotes and backslashes, which real namespace and label values contain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from exporter.config.schema import Serve

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


LEDGER = "chargeback_ledger"  # the label the exporter owns on its watermark: which ledger it is
WATERMARK = "chargeback_accrued_until_timestamp_seconds"


def own_label(labels: dict[str, str], name: str) -> str:
    """A label of our own series as read back: exported_<name> where a target label of that name displaced it
    (honorLabels: false)."""
    return labels.get(f"exported_{name}") or labels.get(name, "")


class OwnSeries:
    """Queries over the exporter's own published series (watermark, period sums, counters).

    The watermark is found by the label the exporter owns, `chargeback_ledger` (serve.clusterName, else
    "default"), never by the scrape job: a PodMonitor's `monitoring/chargeback`, a renamed job or relabelled
    targets find it alike, and no scrape config rewrites a label no target carries. A watermark without
    the label is a previous version's and counts as ours. The other own series are those of the targets
    (job, instance) that published our watermark. `scope` is prometheus.clusterSelector; `legacy` the
    deprecated serve.watermarkSelector, which still narrows the search where it is set.
    """

    def __init__(self, ledger: str, scope: str = "", legacy: str | None = None, cluster_label: str = "cluster"
                 ) -> None:
        self.ledger, self.scope, self.cluster_label = ledger, scope, cluster_label
        self.sel = join_matchers(scope, one_of(LEDGER, [ledger, ""]), legacy or "")

    @classmethod
    def of(cls, serve: Serve, scope: str) -> OwnSeries:
        """For a config's serve section and prometheus.clusterSelector."""
        return cls(serve.ledger(), scope, serve.watermarkSelector, serve.clusterLabel)

    def marks(self, range_: str) -> str:
        """The last value of each of our watermark series within `range_` (one per target that published it)."""
        return f"last_over_time({WATERMARK}{selector(self.sel)}[{range_}])"

    def watermark(self, lookback: str) -> str:
        """The last watermark any replica published (max over replicas), per cluster: several are ambiguous;
        -1 when there is none (an empty answer then means a NaN was left out)."""
        return f"max by ({self.cluster_label}) ({self.marks(lookback)}) or on () vector(-1)"

    def other_watermarks(self, lookback: str) -> str:
        """Every watermark in scope by ledger and job: asked when none is ours, before accruing history."""
        return f"max by ({LEDGER}, job) (last_over_time({WATERMARK}{selector(self.scope)}[{lookback}]))"

    def watermark_samples(self, span: int) -> str:
        return f"{WATERMARK}{selector(self.sel)}[{duration(span)}]"

    def _ours(self, expr: str, range_: str) -> str:
        """`expr` restricted to the targets that published our watermark within `range_`."""
        return f"({expr}) and on (job, instance) {self.marks(range_)}"

    def period_cost(self, period: str, start: int, by: Iterable[str], lookback: str) -> str:
        """Under honorLabels: false a label the target also has (`namespace` under a PodMonitor) arrives as
        exported_<label>: both are asked for, and exported_ wins (`own_label`)."""
        names = [n for name in by for n in (name, f"exported_{name}")]
        sel = selector(self.scope, matcher("period", period), matcher("period_start", str(start)))
        inner = self._ours(f"last_over_time(chargeback_period_cost{sel}[{lookback}])", lookback)
        return f"max by ({', '.join(names)}) ({inner})"

    def cost_increase(self, by: Iterable[str], range_: str, *extra: str) -> str:
        sel = selector(self.scope, *extra)
        inner = self._ours(f"increase(chargeback_namespace_cost_total{sel}[{range_}])", range_)
        return f"sum by ({', '.join(by)}) ({inner})"

    def mean_efficiency(self, resource: str, span: int) -> str:
        sel = selector(self.scope, matcher("resource", resource))
        inner = self._ours(f"avg_over_time(chargeback_namespace_efficiency_ratio{sel}[{duration(span)}])",
                           duration(span))
        return f"avg by (namespace) ({inner})"

    # The budget series the rules mixin records (rules/alerts/budgets.libsonnet): per budget, per annotation.
    BUDGET_SERIES: ClassVar[dict[str, str]] = {
        "spend": "budget:chargeback_budget_spend:sum", "usage": "budget:chargeback_budget_usage:ratio",
        "forecast": "budget:chargeback_budget_forecast:sum"}
    NAMESPACE_BUDGET_USAGE = "namespace_period:chargeback_budget_usage:ratio"


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
