"""Budgets as code: a typed budgets file, rendered into alert rules through the Jsonnet mixin.

Python evaluates the mixin with the jsonnet library (no shelling out) and writes a plain
Prometheus rule file and a monitoring.coreos.com/v1 PrometheusRule.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from exporter.config.model import read_yaml, validated
from exporter.config.schema import Config
from exporter.mixin.jsonnet import evaluate, source_dir

SCOPES = ("namespace", "team", "cost_center")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Scoped(BaseModel):
    """A named budget of one scope (a namespace, team or cost centre), with routing labels for its alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    scope: dict[str, str] = Field(description="exactly one of namespace, team, cost_center -> value")
    labels: dict[str, str] = Field(default_factory=dict, description="routing labels added to the alerts")

    @field_validator("scope")
    @classmethod
    def _one_scope(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) != 1:
            raise ValueError(f"give exactly one scope ({', '.join(SCOPES)}), got {len(v)}")
        kind = next(iter(v))
        if kind not in SCOPES:
            raise ValueError(f"unknown scope {kind!r}: use {', '.join(SCOPES)}")
        return v

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not _LABEL.match(k) or k in ("budget", "carbon_budget", "period", "severity", "threshold"):
                raise ValueError(f"{k!r} cannot be a routing label")
        return v

    @model_validator(mode="after")
    def _default_team_label(self) -> _Scoped:
        if "team" in self.scope and "team" not in self.labels:
            object.__setattr__(self, "labels", {**self.labels, "team": self.scope["team"]})
        return self


class Budget(_Scoped):
    """A money budget over a calendar period (the exporter's chargeback_period_cost)."""

    period: Literal["daily", "weekly", "monthly"] = "monthly"
    amount: float = Field(gt=0)
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    forecast: bool = True

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("at least one threshold is needed")
        for t in v:
            if not 0 < t <= 10:
                raise ValueError(f"threshold {t:g} is out of range: thresholds are fractions of the budget, "
                                 "0 < t <= 10 (0.8 means 80%)")
        if sorted(set(v)) != v:
            raise ValueError("thresholds must be increasing and distinct")
        return v

    def for_mixin(self) -> dict[str, Any]:
        kind, value = next(iter(self.scope.items()))
        return {"name": self.name, "scope": {"kind": kind, "value": value}, "period": self.period,
                "amount": self.amount, "thresholds": self.thresholds, "forecast": self.forecast,
                "labels": self.labels}


class CarbonBudget(_Scoped):
    """Kilograms of CO2e a day (the exporter's chargeback_namespace_carbon_grams_total over the last day)."""

    kgPerDay: float = Field(gt=0, description="kg CO2e over any day (a rolling 24 h) before the alert fires")

    def for_mixin(self) -> dict[str, Any]:
        kind, value = next(iter(self.scope.items()))
        return {"name": self.name, "scope": {"kind": kind, "value": value}, "kgPerDay": self.kgPerDay,
                "labels": self.labels}


class BudgetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: list[Budget] = Field(default_factory=list)
    carbon: list[CarbonBudget] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> BudgetsFile:
        names = [b.name for b in [*self.budgets, *self.carbon]]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"budget names must be unique: {', '.join(sorted(dup))}")
        return self


def load_budgets(path: str | Path) -> list[Budget]:
    return list(load_budgets_file(path).budgets)


def load_budgets_file(path: str | Path) -> BudgetsFile:
    return validated(BudgetsFile, read_yaml(path, "budgets"), f"budgets {path}")


def carbon_config(carbon: list[CarbonBudget]) -> dict[str, Any]:
    """The mixin's _config key for carbon budgets (rules/alerts/carbon.libsonnet)."""
    return {"carbonBudgets": [c.for_mixin() for c in carbon]} if carbon else {}


def allocation_config(cfg: Config) -> dict[str, Any]:
    """The mixin's _config keys that must match the exporter's config for its recorded series to be read."""
    a, p = cfg.allocation, cfg.prometheus
    return {"allocationPolicy": a.policy, "requestWeight": a.requestWeight, "usageRateWindow": a.usageRateWindow,
            "allocationRuleInterval": a.resolution, "ksmSelector": p.ksmSelector,
            "cadvisorSelector": p.cadvisorSelector}


ALLOCATION_GROUP = "chargeback-allocation.rules"


def allocation_group_only(rule_file: dict[str, Any]) -> dict[str, Any]:
    """A rule file cut down to the recorded-allocation group (for `promtool create-blocks-from rules`)."""
    return {"groups": [g for g in rule_file["groups"] if g["name"] == ALLOCATION_GROUP]}


def allocation_rules(cfg: Config) -> dict[str, Any]:
    """Just the recorded-allocation group for this exporter config, as a rule file."""
    groups, _ = render([], config=allocation_config(cfg))
    return allocation_group_only(groups)


def render(budgets: list[Budget], namespace: str = "monitoring", config: dict[str, Any] | None = None
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain rule file, PrometheusRule) for these budgets; `config` overrides keys of the mixin's _config."""
    lib = source_dir("CHARGEBACK_MIXIN_DIR", "rules") / "lib"
    tla = {"budgets": [b.for_mixin() for b in budgets], "config": config or {}}
    groups = evaluate(lib / "rules.jsonnet", "the rules mixin", **tla)
    crd = evaluate(lib / "prometheusrule.jsonnet", "the rules mixin", **tla, namespace=namespace)
    return groups, crd


def write_rules(budgets: list[Budget], out: Path, namespace: str = "monitoring",
                config: dict[str, Any] | None = None) -> list[Path]:
    groups, crd = render(budgets, namespace, config)
    out.mkdir(parents=True, exist_ok=True)
    header = "# Generated by `chargeback rules` from the rules/ mixin. Do not edit.\n"
    files = {out / "chargeback.rules.yaml": groups, out / "prometheusrule.yaml": crd}
    for path, doc in files.items():
        path.write_text(header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000))
    return list(files)


class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as YAML block scalars, as people write rule files."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
