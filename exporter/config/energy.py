"""The `energy` section of the config: where joules come from (Kepler, else an estimate) and grid intensity."""

from __future__ import annotations

import re
from typing import Literal

import promql_parser
from pydantic import Field, field_validator

from exporter.config.model import StrictModel as _Model


class Watts(_Model):
    minWatts: float = Field(ge=0, description="per-vCPU watts at 0% utilisation")
    maxWatts: float = Field(ge=0, description="per-vCPU watts at 100% utilisation")


class EnergyNodeRule(_Model):
    """Facts the node labels do not give: its CPU family, or its watts outright."""

    match: dict[str, str] = Field(description="node labels (or `node`) that must all match, shell globs")
    family: str | None = Field(None, description="CPU micro-architecture in the shipped table, e.g. cascade-lake")
    minWatts: float | None = Field(None, ge=0, description="per-vCPU watts at idle (overrides the family's)")
    maxWatts: float | None = Field(None, ge=0, description="per-vCPU watts at full load (overrides the family's)")
    provider: Literal["aws", "gcp", "azure"] | None = Field(None, description="the node's cloud, for its PUE")


class EnergyConfig(_Model):
    """Energy per namespace, measured by Kepler where it runs, else estimated as Cloud Carbon Footprint does."""

    enabled: bool = Field(True, description="compute energy and carbon alongside cost (never changes a cost)")
    kepler: Literal["auto", "off"] = Field("auto", description="read Kepler's joule counters where present")
    keplerSelector: str = Field("", description="extra matchers for Kepler's series, e.g. job=\"kepler\"")
    keplerZones: list[str] = Field(
        default_factory=lambda: ["package", "dram"],
        description="RAPL zones summed (Kepler 0.10+ `zone` label; Kepler 0.7-0.9 per-component metric names)")
    keplerLegacyNodeLabel: str = Field("instance", description="the label naming the node on Kepler 0.7-0.9 series")
    provider: Literal["aws", "gcp", "azure"] = Field(
        "aws", description="cloud of nodes whose labels do not tell it (for the average watts and PUE)")
    pue: float | None = Field(None, ge=1, description="power usage effectiveness for every node (default: the "
                                                     "provider's, from the shipped coefficients)")
    memoryWattsPerGB: float | None = Field(None, ge=0, description="memory watts per GiB (default: shipped 0.392)")
    nodes: list[EnergyNodeRule] = Field(default_factory=list, description="CPU family or watts by node labels")
    intensityQuery: str | None = Field(
        None, description="PromQL giving live grid intensity in gCO2e/kWh (e.g. an Electricity Maps exporter's "
                          "series), by the region label below; used step by step (each step's energy x that step's "
                          "intensity), the table for steps without a sample")
    intensityRegionLabel: str = Field("region", description="the label of intensityQuery's answer naming the "
                                                           "region; a series without it applies to every node")
    gridIntensity: dict[str, float] = Field(
        default_factory=dict, description="gCO2e per kWh by region (node label topology.kubernetes.io/region); "
                                          "over the shipped table; key `default` for nodes with no known region")

    @field_validator("intensityQuery")
    @classmethod
    def _promql(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                promql_parser.parse(v)
            except ValueError as e:
                raise ValueError(f"not valid PromQL: {e}") from e
        return v

    @field_validator("keplerZones")
    @classmethod
    def _zones(cls, v: list[str]) -> list[str]:
        bad = [z for z in v if not re.fullmatch(r"[a-zA-Z0-9_]+", z)]
        if bad or not v:
            raise ValueError(f"RAPL zone names are letters, digits and _ (got {bad or 'none'})")
        return v
