"""The mixin's allocation rule expressions, rendered from the exporter's own query builders.

The recorded path is only right if the rules record exactly what the raw path computes, so the
expressions have one definition, the raw path's (`sources/recordrules.py`). This module renders them, once
per policy, with placeholders where the mixin's `_config` decides (selectors, rate window, weights, policy),
into `rules/rules/allocation_exprs.json`, which `rules/rules/allocation.libsonnet` imports and fills
in. `make rules` regenerates it; tests/test_rulegen.py fails if the committed file drifts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from exporter.config.schema import parse_config
from exporter.sources.queries import Queries
from exporter.sources.recordrules import allocation_rules, deprecated_rules

POLICIES = ("max", "request", "usage", "weighted")
# Placeholder -> the mixin's _config key that replaces it. A selector placeholder stands for a list of
# extra matchers that may be empty; the mixin then drops it with its leading comma.
PLACEHOLDERS = {
    "__KSM_SELECTOR__": "kubeStateMetricsSelector",
    "__CADVISOR_SELECTOR__": "cadvisorSelector",
    "__USAGE_RATE_WINDOW__": "usageRateWindow",
    "__REQUEST_WEIGHT__": "requestWeight",
    "__USAGE_WEIGHT__": "1 - requestWeight",
    "__POLICY__": "the policy label (policy, or weighted:requestWeight)",
}
OUT = Path(__file__).resolve().parents[2] / "rules" / "rules" / "allocation_exprs.json"


def templates() -> dict[str, Any]:
    """{policy: {"allocation": {resource group: expression}, "deprecated": {record: expression}}} with
    placeholders, plus the placeholder legend."""
    out: dict[str, Any] = {
        "_generated": "by python -m exporter.mixin.rulegen from exporter/sources/recordrules.py; do not edit",
        "placeholders": PLACEHOLDERS}
    for policy in POLICIES:
        cfg = parse_config({"allocation": {"policy": policy}})
        q = Queries(cfg.prometheus, cfg.allocation)
        q.k, q.c = "__KSM_SELECTOR__", "__CADVISOR_SELECTOR__"
        q.rate_window = "__USAGE_RATE_WINDOW__"
        q.weights = ("__REQUEST_WEIGHT__", "__USAGE_WEIGHT__")
        q.r = 'policy="__POLICY__",usage_rate_window="__USAGE_RATE_WINDOW__"'
        out[policy] = {"allocation": allocation_rules(q), "deprecated": deprecated_rules(q)}
    return out


def render() -> str:
    return json.dumps(templates(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.write_text(render())


if __name__ == "__main__":
    main()
