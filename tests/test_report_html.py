"""The HTML report as a mail client and a browser show it: the demo cluster's report rendered by headless
Chromium (Debian's `chromium`), checked for a real picture and for the amounts, with nothing an email
client drops (no <style>, no script, no external asset)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer
from exporter.cli import main

from .test_allocate_core import window_arg

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BLUE = (0x25, 0x63, 0xEB)  # the first group's colour (reporttext.PALETTE[0]): its swatch and its bars


def report(demo_prom: tuple[PrometheusServer, int], tmp_path: Path, fmt: str) -> str:
    from demo.run import DEMO_CONFIG

    prom, t0 = demo_prom
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**DEMO_CONFIG, "prometheus": {"url": prom.url}}))
    # 90 minutes from the first sample: the previous 90 minutes lie before the data.
    res = CliRunner().invoke(main, ["report", "--config", str(cfg), "--window", window_arg(t0 - 1800, 1.5),
                                    "--by", "team", "--format", fmt])
    assert res.exit_code == 0, res.output
    return str(res.stdout)


@pytest.fixture(scope="module")
def rendered(demo_prom: tuple[PrometheusServer, int], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("html")
    page = tmp / "report.html"
    page.write_text(report(demo_prom, tmp, "html"))
    return {"html": page.read_text(), "json": json.loads(report(demo_prom, tmp, "json")), "page": page, "tmp": tmp}


def test_html_survives_an_email_client(rendered: dict[str, Any]) -> None:
    html = rendered["html"]
    assert not re.search(r"<(style|script|link)\b", html, re.I) and "javascript:" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html, re.I)  # no external asset
    assert re.findall(r'src="([a-z]+):', html) == ["data"]  # the chart, inline (cid: in an email)
    assert "<table" in html and 'style="' in html
    # The previous period lies before the data: no change, and the reason, instead of "+3,800%".
    assert "No change is shown" in html and "%)" not in html
    assert rendered["json"]["previous"]["comparable"] is False


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is needed (make system-deps installs it)")
def test_chromium_renders_the_report(rendered: dict[str, Any]) -> None:
    import numpy
    from PIL import Image

    shot, page = rendered["tmp"] / "shot.png", rendered["page"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={rendered['tmp']}"]
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2000)
    pixels = numpy.asarray(img).reshape(-1, 3)
    colours, counts = numpy.unique(pixels, axis=0, return_counts=True)
    drawn = 1 - counts.max() / len(pixels)  # what is not the page's background
    assert drawn > 0.15, f"only {drawn:.0%} of the page differs from its background"
    assert BLUE in {tuple(int(v) for v in c) for c in colours}, "the first group's swatch is not drawn"
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", page.as_uri()], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom.replace("&nbsp;", " ").replace("\xa0", " ")))
    data = rendered["json"]
    # The same amounts as the JSON report, as the page shows them.
    assert f"{data['clusterTotal']:,.2f} USD" in text
    first = data["groups"][0]
    assert first["team"] in text and f"{first['total']:,.2f}" in text
    top = first["workloads"][0]
    assert f"{top['name']} {top['totalCost']:,.2f}" in text
    assert "partial" in text  # 90 minutes of a day: a partial day, said so under the chart
