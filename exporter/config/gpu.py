"""The `gpu` section of the config: how shared and fractional GPUs are charged, and GPU prices by model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from exporter.config.model import StrictModel as _Model


class GpuNodeRule(_Model):
    """Facts about nodes that the GPU feature discovery labels do not give (HAMi, Intel sharedDevNum)."""

    match: dict[str, str] = Field(description="node labels (or `node`) that must all match, shell globs")
    replicas: float | None = Field(None, ge=1, description="units advertised per physical device (HAMi's "
                                                           "deviceSplitCount, time-slicing replicas)")
    model: str | None = Field(None, description="GPU model, e.g. a100-80gb, when neither the labels nor "
                                                "the instance type tell it")


class GpuConfig(_Model):
    """GPUs are priced per physical device; each request is charged the share of a device it holds."""

    migShare: Literal["compute", "memory"] = Field(
        "compute", description="a MIG slice's share of its GPU: compute slices out of 7 (4 on an A30), "
                               "or its memory out of the GPU's")
    fractionBy: Literal["max", "memory", "cores"] = Field(
        "max", description="a HAMi vGPU's share of its GPU: the larger of gpumem/GPU memory and gpucores/100, "
                           "or either alone")
    prices: dict[str, float] = Field(
        default_factory=dict, description="GPU model -> price per GPU-hour (e.g. a100-80gb: 2.9); before the "
                                          "shipped GPU prices, after price-book rules with `gpu` and OpenCost")
    instanceModels: dict[str, str] = Field(
        default_factory=dict, description="instance-type glob -> GPU model, before the shipped mapping")
    nodes: list[GpuNodeRule] = Field(default_factory=list, description="per-node replicas or model, first match")
    resources: list[str] = Field(
        default_factory=list, description="more accelerator resources, as kube-state-metrics names them "
                                          "(e.g. google_com_tpu): one unit is one device")

    @field_validator("prices")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, p in v.items() if p < 0]
        if bad:
            raise ValueError(f"negative price for GPU model {bad[0]!r}")
        return v

    @field_validator("resources")
    @classmethod
    def _ksm_names(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if not r.replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a kube-state-metrics resource name (e.g. google_com_tpu)")
        return v
