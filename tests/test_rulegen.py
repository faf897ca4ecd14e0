"""The mixin's allocation rules come from the exporter's query builders (exporter/mixin/rulegen.py)."""

from __future__ import annotations

from exporter.mixin.rulegen import OUT, render


def test_generated_rule_expressions_match_the_query_builders() -> None:
    """rules/rules/allocation_exprs.json is what `python -m exporter.mixin.rulegen` writes (`make rules`)."""
    assert OUT.read_text() == render(), "run `make rules`: the rule expressions drifted from sources/queries.py"


def test_every_placeholder_is_filled_by_the_mixin() -> None:
    text = render()
    for placeholder in ("__KSM_SELECTOR__", "__CADVISOR_SELECTOR__", "__USAGE_RATE_WINDOW__", "__REQUEST_WEIGHT__",
                        "__USAGE_WEIGHT__"):
        assert placeholder in text
    mixin = (OUT.parent / "allocation.libsonnet").read_text()
    assert all(p in mixin for p in ("__KSM_SELECTOR__", "__CADVISOR_SELECTOR__", "__USAGE_RATE_WINDOW__",
                                    "__REQUEST_WEIGHT__", "__USAGE_WEIGHT__"))
