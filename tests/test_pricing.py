"""Pricing precedence and OpenCost's total split, by hand."""

from __future__ import annotations

import pytest

from exporter.config.schema import parse_config
from exporter.core.pricing import GIB, NodeFacts, load_shipped_prices, price_node
from exporter.vocab.errors import PricingError
from exporter.vocab.labels import ksm_label

IT = ksm_label("node.kubernetes.io/instance-type")
RATIO = 0.031611 / 0.004237


def pricing(**raw: object):  # type: ignore[no-untyped-def]
    return parse_config({"pricing": raw}).pricing


def test_opencost_metrics_win_over_shipped_prices_and_defaults() -> None:
    facts = NodeFacts("n", 4, 16 * GIB, labels={IT: "m5.xlarge"}, opencost={"cpu": 0.04, "ram": 0.005})
    r = price_node(facts, pricing(), load_shipped_prices())
    assert (r.cpu, r.ram, r.source) == (0.04, 0.005, "opencost")
    assert r.hourly(facts) == pytest.approx(4 * 0.04 + 16 * 0.005)


def test_explicit_rule_wins_over_opencost_metrics() -> None:
    facts = NodeFacts("n", 4, 16 * GIB, labels={IT: "m5.xlarge"}, opencost={"cpu": 0.04, "ram": 0.005})
    r = price_node(facts, pricing(rules=[{"match": {"node.kubernetes.io/instance-type": "m5.*"}, "cpu": 0.03,
                                          "ram": 0.002}]))
    assert (r.cpu, r.ram, r.source) == (0.03, 0.002, "pricebook[0]")


def test_opencost_total_only_is_split_like_opencost() -> None:
    facts = NodeFacts("n", 2, 8 * GIB, opencost={"total": 0.0832})
    r = price_node(facts, pricing())
    ram = 0.0832 / (2 * RATIO + 8)
    assert r.ram == pytest.approx(ram) and r.cpu == pytest.approx(ram * RATIO)
    assert r.source == "opencost-total"
    assert r.hourly(facts) == pytest.approx(0.0832)


def test_total_split_subtracts_known_gpu_price_first() -> None:
    # p3.2xlarge-like: 8 cores, 61 GiB, 1 GPU; total 3.06/h with the GPU at 2.5/h leaves 0.56 for CPU+RAM.
    facts = NodeFacts("g", 8, 61 * GIB, gpus=1, labels={IT: "p3.2xlarge"})
    r = price_node(facts, pricing(rules=[{"match": {"node.kubernetes.io/instance-type": "p3.2xlarge"},
                                          "hourly": 3.06, "gpu": 2.5}]))
    ram = (3.06 - 2.5) / (8 * RATIO + 61)
    assert r.gpu == 2.5 and r.ram == pytest.approx(ram) and r.cpu == pytest.approx(ram * RATIO)
    assert r.source == "pricebook-total[0]"
    assert r.hourly(facts) == pytest.approx(3.06)


def test_first_matching_rule_wins_and_globs_match() -> None:
    facts = NodeFacts("n", 4, 16 * GIB, labels={IT: "c6i.xlarge"})
    rules = [{"match": {"node.kubernetes.io/instance-type": "m5.*"}, "cpu": 1, "ram": 1},
             {"match": {"node.kubernetes.io/instance-type": "c6i.*"}, "cpu": 0.02, "ram": 0.003},
             {"match": {}, "cpu": 9, "ram": 9}]
    r = price_node(facts, pricing(rules=rules))
    assert (r.cpu, r.ram, r.source) == (0.02, 0.003, "pricebook[1]")


@pytest.mark.parametrize("label,value", [
    ("karpenter.sh/capacity-type", "spot"),
    ("eks.amazonaws.com/capacityType", "SPOT"),
    ("cloud.google.com/gke-spot", "true"),
    ("cloud.google.com/gke-preemptible", "true"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
])
def test_spot_nodes_get_default_spot_rates(label: str, value: str) -> None:
    r = price_node(NodeFacts("s", 8, 32 * GIB, labels={ksm_label(label): value}), pricing())
    assert (r.cpu, r.ram, r.source, r.spot) == (0.006655, 0.000892, "default-spot", True)


def test_unmatched_node_gets_default_rates_or_a_named_error() -> None:
    facts = NodeFacts("lonely", 2, 4 * GIB, labels={IT: "x1.weird"})
    r = price_node(facts, pricing())
    assert (r.cpu, r.ram, r.gpu, r.source) == (0.031611, 0.004237, 0.95, "default")
    with pytest.raises(PricingError, match="node lonely has no price"):
        price_node(facts, pricing(allowDefaultRates=False))


def test_enterprise_discount_applies_to_shipped_and_default_not_to_effective_rates() -> None:
    shipped = load_shipped_prices()
    od = NodeFacts("a", 4, 16 * GIB, labels={IT: "m5.xlarge"})
    r = price_node(od, pricing(discount=10), shipped)
    assert r.source == "shipped" and r.hourly(od) == pytest.approx(0.192 * 0.9)
    other = NodeFacts("b", 2, 4 * GIB, labels={IT: "x9.odd"})
    assert price_node(other, pricing(discount=10), shipped).cpu == pytest.approx(0.031611 * 0.9)
    rule = {"match": {"node.kubernetes.io/instance-type": "m5.xlarge"}, "hourly": 0.192, "effectiveHourly": 0.12}
    sp = price_node(od, pricing(discount=10, rules=[rule]), shipped)
    assert sp.source == "pricebook-effective[0]" and sp.hourly(od) == pytest.approx(0.12)


def test_capacity_type_rules_and_shipped_prices_skip_spot() -> None:
    spot = NodeFacts("s", 4, 16 * GIB, labels={IT: "m5.xlarge", ksm_label("cloud.google.com/gke-spot"): "true"})
    shipped = load_shipped_prices()
    assert price_node(spot, pricing(), shipped).source == "default-spot"  # list prices are on-demand only
    rules = [{"match": {"node.kubernetes.io/instance-type": "m5.*"}, "capacityType": "on-demand", "hourly": 1.0},
             {"match": {"node.kubernetes.io/instance-type": "m5.*"}, "capacityType": "spot", "hourly": 0.06}]
    r = price_node(spot, pricing(rules=rules), shipped)
    assert r.source == "pricebook-total[1]" and r.hourly(spot) == pytest.approx(0.06)


def test_shipped_price_list_is_dated_and_covers_three_clouds() -> None:
    shipped = load_shipped_prices()
    assert shipped.compiled == "2026-11-26"
    for it in ("m5.xlarge", "e2-standard-4", "Standard_D4s_v5", "p3.8xlarge"):
        assert shipped.prices[it] > 0


def test_unclassified_egress_and_monthly_network_amounts() -> None:
    from exporter.config.pricebook import Network
    from exporter.core.assets import price_network
    from exporter.core.names import UNALLOCATED

    net = Network(unclassified="zone", zonePerGiB=0.01, monthly=[{"name": "nat", "monthly": 730}])
    costs = price_network({}, {"a": 3 * GIB, "b": 1 * GIB}, net, 3600, 730)
    by = {(c.namespace, c.asset): c.cost for c in costs}
    assert by[("a", "egress-zone")] == pytest.approx(0.03) and by[("b", "egress-zone")] == pytest.approx(0.01)
    assert by[("a", "nat")] == pytest.approx(0.75) and by[("b", "nat")] == pytest.approx(0.25)
    idle = price_network({}, {}, net, 3600, 730)
    assert [(c.namespace, c.cost) for c in idle] == [(UNALLOCATED, pytest.approx(1.0))]
