"""The mixin's allocation rules: the raw path's one-pass rows, recorded once per rule interval.

The recorded path is only right if the rules record exactly what the raw path computes, so the
expressions are the raw path's own (`allocsteps.step_expr`): per resource group, request, usage and
(for the `max` policy) allocation, summed per pod, tagged with a `part` label and joined once to the pod
placement, as one labelled series `namespace_node:chargeback_allocation:sum` per (namespace, node,
resource, part). The per-pair sums recorded before (seven rules, each rebuilding the placement join over
every container) are derived from it for one release, cheaply, under their deprecated names
(`deprecated_rules`); the exporter reads the labelled record and, where history holds only them, those.
`exporter/mixin/rulegen.py` renders both into the mixin.
"""

from __future__ import annotations

from exporter.sources.allocsteps import step_expr
from exporter.sources.promql import selector
from exporter.sources.queries import Queries
from exporter.sources.recordedqueries import RECORDED, RECORDED_PARTS, recorded_part

# One rule for CPU and memory: the raw path's one-pass query over both, so the running placement (a third of
# a rule's cost at 300k containers: kube_pod_info, the phase read three times for the freshest-replica dedupe,
# docs/scale.md) is worked out once per evaluation, not once per resource. Its series are those of one rule
# per resource, to the bit: each carries its `resource` from the expression (the requests' own label, the
# usage and allocation tags). No GPUs (read per container on every path).
RULE_GROUPS = (("cpu", "memory"),)


def allocation_rules(q: Queries) -> dict[str, str]:
    """Resource group (its resources joined by "+") -> the expression recording its rows."""
    return {"+".join(group): step_expr(q, group, capacity=False) for group in RULE_GROUPS}


def deprecated_rules(q: Queries) -> dict[str, str]:
    """Deprecated record name -> its expression over the labelled record (recorded just before it in the
    same group, at the same evaluation time): a selection, no join."""
    def labelled(m: str) -> str:
        return f"sum by (namespace, node) ({RECORDED_PARTS}{selector(q.r, m)})"

    return {name: recorded_part(q, kind, res, labelled) for (kind, res), name in RECORDED.items()}
