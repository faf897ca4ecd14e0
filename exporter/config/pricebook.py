"""The price book part of the config: rates, rules, the split of instance prices, storage, LBs, network."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from exporter.config.model import StrictModel as _Model

# OpenCost's configs/default.json rates (currency per unit-hour).
DEFAULT_CPU = 0.031611
DEFAULT_RAM = 0.004237
DEFAULT_GPU = 0.95
DEFAULT_SPOT_CPU = 0.006655
DEFAULT_SPOT_RAM = 0.000892


class DefaultRates(_Model):
    """Last-resort rates, used only for nodes that no other source prices."""

    cpu: float = Field(DEFAULT_CPU, ge=0, description="per core-hour")
    ram: float = Field(DEFAULT_RAM, ge=0, description="per GiB-hour")
    gpu: float = Field(DEFAULT_GPU, ge=0, description="per GPU-hour")
    spotCpu: float = Field(DEFAULT_SPOT_CPU, ge=0, description="per core-hour on spot nodes")
    spotRam: float = Field(DEFAULT_SPOT_RAM, ge=0, description="per GiB-hour on spot nodes")


class FixedCost(_Model):
    """A monthly amount outside the nodes (control-plane fee, support, licences), prorated per window."""

    name: str = Field(description="name of the cost (shared_from label)")
    monthly: float = Field(ge=0, description="amount per month, prorated per window")


class PriceRule(_Model):
    """One price-book rule: node labels to match, and either unit rates or an instance's total price."""

    match: dict[str, str] = Field(default_factory=dict, description="node labels that must all match")
    capacityType: Literal["spot", "on-demand"] | None = Field(
        None, description="matches the capacity type read from any of the standard capacity-type labels")
    hourly: float | None = Field(None, ge=0, description="on-demand instance price per hour, split into CPU/RAM/GPU")
    spotHourly: float | None = Field(None, ge=0, description="instance price per hour on spot nodes")
    effectiveHourly: float | None = Field(None, ge=0, description="Savings Plan / RI effective rate per hour")
    discount: float | None = Field(None, ge=0, lt=100, description="percent off this rule's prices")
    cpu: float | None = Field(None, ge=0, description="per core-hour")
    ram: float | None = Field(None, ge=0, description="per GiB-hour")
    gpu: float | None = Field(None, ge=0, description="per GPU-hour")

    @model_validator(mode="after")
    def _one_kind(self) -> PriceRule:
        totals = (self.hourly, self.spotHourly, self.effectiveHourly)
        has_total = any(t is not None for t in totals)
        if not has_total and (self.cpu is None or self.ram is None):
            raise ValueError("a price rule needs 'hourly' (or 'spotHourly'/'effectiveHourly') or both 'cpu' and 'ram'")
        if has_total and (self.cpu is not None or self.ram is not None):
            raise ValueError("a price rule takes an instance price or 'cpu'/'ram' rates, not both")
        return self


class Split(_Model):
    """How a whole-instance price is split into CPU, RAM and GPU rates."""

    method: Literal["opencost", "aws"] = Field(
        "opencost", description="opencost: CPU:RAM by the ratio of the default rates, known GPU price first; "
                                "aws: 9:1 per vCPU vs GiB, GPUs weigh 9x CPU and memory together")
    cpuToRam: float | None = Field(None, gt=0, description="override: price of a core over price of a GiB")
    gpuWeight: float | None = Field(None, ge=0, description="override: GPUs' weight against CPU+RAM together")


class Storage(_Model):
    defaultGiBMonth: float = Field(0.04, ge=0, description="OpenCost's default; for PVs with no class or no rule")
    classes: dict[str, float] = Field(default_factory=dict, description="storage class -> price per GiB-month")

    @field_validator("classes")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, p in v.items() if p < 0]
        if bad:
            raise ValueError(f"negative price for storage class {bad[0]!r}")
        return v


class LoadBalancer(_Model):
    hourly: float = Field(0.025, ge=0, description="per Service of type LoadBalancer, when OpenCost has no price")


class NetworkAmount(FixedCost):
    """A monthly network amount (a NAT gateway, a data-transfer line), spread over the namespaces by bytes."""

    spreadBy: Literal["transmitted", "internet"] = Field(
        "transmitted", description="transmitted: every byte a namespace sent (cAdvisor); internet: its "
                                   "internet-bound bytes from the classified source (a NAT gateway's bill)")


class Network(_Model):
    """Egress prices per GiB, and monthly amounts from the bill spread by transmitted or internet bytes."""

    internetPerGiB: float = Field(0.12, ge=0, description="egress to the internet, per GiB")
    zonePerGiB: float = Field(0.01, ge=0, description="cross-zone traffic, per GiB")
    regionPerGiB: float = Field(0.01, ge=0, description="cross-region traffic, per GiB")
    unclassified: Literal["internet", "zone", "region", "free"] = Field(
        "free", description="price class for cAdvisor transmit bytes when no classified egress metric exists")
    monthly: list[NetworkAmount] = Field(default_factory=list, description="e.g. NAT gateway, data transfer")
    istio: bool = Field(True, description="classify egress from Istio's standard metrics when Kubecost's "
                                          "network-costs daemonset is absent (docs/network.md)")


class Pricing(_Model):
    currency: str = Field("USD", description="currency of every amount (chargeback_info{currency})")
    defaults: DefaultRates = Field(default_factory=DefaultRates, description="last-resort rates")
    allowDefaultRates: bool = Field(
        True, description="price unmatched nodes at default rates (with a warning); false makes it an error"
    )
    discount: float = Field(0.0, ge=0, lt=100, description="enterprise discount, percent off list prices")
    shippedPrices: bool = Field(True, description="use the shipped on-demand instance price list")
    split: Split = Field(
        default_factory=Split, description="how an instance's total price is split into CPU, RAM and GPU")
    rules: list[PriceRule] = Field(default_factory=list, description="price-book rules, first match wins")
    storage: Storage = Field(default_factory=Storage, description="persistent volume prices")
    loadBalancer: LoadBalancer = Field(default_factory=LoadBalancer, description="load balancer prices")
    network: Network = Field(default_factory=Network, description="egress prices")
