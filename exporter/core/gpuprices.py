"""GPU models and their prices: the model from the GFD product label or the instance type, and the
price of one physical GPU-hour from the config's `gpu.prices` or the shipped GPU price list. Pure but
for reading the shipped list (exporter/data/gpu-prices.yaml, dated)."""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

# Memory per device (GiB) and MIG compute slices of each canonical model.
MEMORY_GIB = {"t4": 16, "v100": 16, "p100": 16, "a10g": 24, "a10": 24, "l4": 24, "a30": 24, "l40": 48,
              "l40s": 48, "a100-40gb": 40, "a100-80gb": 80, "h100": 80, "h200": 141, "gh200": 96, "b200": 180,
              "mi300x": 192, "inferentia2": 32, "trainium": 32}
MIG_SLICES = {"a100-40gb": 7, "a100-80gb": 7, "h100": 7, "h200": 7, "gh200": 7, "b200": 7, "a30": 4}

# Ordered: the first pattern found among the product's dash-separated words wins (A100 before A10).
_PRODUCT = (
    (r"gh200", "gh200"), (r"h200", "h200"), (r"h100", "h100"), (r"b200", "b200"),
    (r"a100.*80gb", "a100-80gb"), (r"a100", "a100-40gb"), (r"a30", "a30"),
    (r"l40s", "l40s"), (r"l40", "l40"), (r"l4", "l4"), (r"a10g", "a10g"), (r"a10", "a10"),
    (r"t4", "t4"), (r"v100", "v100"), (r"p100", "p100"), (r"mi300x", "mi300x"),
)
_SUFFIX = re.compile(r"(-MIG-.*|-SHARED)$", re.IGNORECASE)


def model_from_product(product: str) -> str:
    """The canonical model in a GFD `nvidia.com/gpu.product` value (NVIDIA-A100-SXM4-80GB, Tesla-T4,
    NVIDIA-L4-SHARED, A100-SXM4-40GB-MIG-1g.5gb, ...); "" if none is recognised."""
    words = _SUFFIX.sub("", product).lower()
    for pattern, model in _PRODUCT:
        if re.search(rf"(^|[-_ ]){pattern}($|[-_ ])", words):
            return model
    return ""


@dataclass(frozen=True)
class ShippedGpuPrices:
    compiled: str
    prices: Mapping[str, float]  # model -> per GPU-hour
    instances: Mapping[str, str]  # instance-type glob -> model


@functools.cache
def load_shipped_gpu_prices() -> ShippedGpuPrices:
    """The GPU price list and instance mapping shipped in exporter/data (dated; see its header)."""
    raw: dict[str, Any] = yaml.safe_load(resources.files("exporter").joinpath("data/gpu-prices.yaml").read_text())
    return ShippedGpuPrices(str(raw["compiled"]), {str(k): float(v) for k, v in raw["prices"].items()},
                            {str(k): str(v) for k, v in raw["instances"].items()})


def model_of(product: str, instance_type: str, instance_models: Mapping[str, str] | None = None) -> str:
    """GPU model from the product label, else the instance type (config globs first, then the shipped ones)."""
    if model := model_from_product(product):
        return model
    if not instance_type:
        return ""
    for table in (instance_models or {}, load_shipped_gpu_prices().instances):
        for glob, model in table.items():
            if fnmatch.fnmatchcase(instance_type, glob):
                return model
    return ""


def model_memory_gib(model: str) -> float:
    return float(MEMORY_GIB.get(model, 0))


@dataclass(frozen=True)
class GpuPrice:
    """A physical GPU-hour's price and where it came from (gpu.prices or shipped)."""

    hourly: float
    source: str


def gpu_price(model: str, prices: Mapping[str, float], shipped: ShippedGpuPrices | None) -> GpuPrice | None:
    """The config's price for the model, else the shipped one; None for an unknown or unlisted model."""
    if not model:
        return None
    if model in prices:
        return GpuPrice(prices[model], "gpu.prices")
    if shipped is not None and model in shipped.prices:
        return GpuPrice(shipped.prices[model], "shipped-gpu")
    return None
