"""The demo configures the FOCUS bill it writes (demo/run.py), so OpenCost's Cloud Costs and External Costs
pages show it: here the demo's cluster and config (demo.run.DEMO_CONFIG) with its sample bill for one hour.

The bill (demo.run.write_sample_bill) has a line per node, a -5.00 credit on the GPU node ip-10-0-3-1, a
line per volume, a NAT gateway 1.08 and a tax line (not a cost line). Every line but the NAT gateway's
matches a cluster resource, so the NAT is the account's only cost outside the cluster.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from demo.run import DEMO_CONFIG, write_sample_bill
from exporter.config.schema import parse_config
from exporter.core.window import Window
from exporter.engine.pipeline import Pipeline
from exporter.serve.server import Exporter
from exporter.sources.prometheus import PrometheusClient

from .test_allocate_core import REL, window_arg

NAT = 1.08


def test_demo_bill_shows_on_the_cloud_and_external_cost_pages(demo_prom: Any, tmp_path: Path) -> None:
    prom, t0 = demo_prom
    cfg = parse_config({**DEMO_CONFIG, "prometheus": {"url": prom.url}})
    result = Pipeline(cfg, PrometheusClient(cfg.prometheus)).compute(Window(t0, t0 + 3600, 60))
    bill = write_sample_bill(result, tmp_path / "bill-focus.csv")
    with bill.open(newline="") as fh:  # the bill's own numbers: every line but the tax
        lines = [r for r in csv.DictReader(fh) if r["ChargeCategory"] != "Tax"]
    total = sum(float(r["EffectiveCost"]) for r in lines)
    assert any(r["ResourceId"] == "nat-0demo" for r in lines) and len(lines) > 10

    ex = Exporter(parse_config({**DEMO_CONFIG, "prometheus": {"url": prom.url},
                                "reconciliation": {"bills": [str(bill)]}}))
    try:
        w = {"window": [window_arg(t0)]}
        totals = ex.cloud_view("totals", w)["data"]["combined"]
        assert totals["cost"] == pytest.approx(total, rel=REL)
        assert totals["kubernetesPercent"] == pytest.approx((total - NAT) / total, rel=REL)
        [status] = ex.cloud_view("status", {})["data"]
        assert (status["valid"], status["connectionStatus"]) == (True, "Successful Connection")
        custom = ex.custom_costs("total", w)["data"]
        # the NAT gateway's line, and the price book's monthly amounts for an hour: NAT 32.85 and the
        # control plane 73 over 730 h
        assert {c["resource_name"] or c["description"]: c["cost"] for c in custom["customCosts"]} == {
            "nat-0demo": pytest.approx(NAT), "nat-gateway": pytest.approx(32.85 / 730),
            "eks-control-plane": pytest.approx(73 / 730)}
        assert custom["totalCost"] == pytest.approx(NAT + 32.85 / 730 + 73 / 730, rel=REL)
    finally:
        ex.close()
