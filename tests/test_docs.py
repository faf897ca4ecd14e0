"""The docs and the mixin's packaging: runbook anchors, the generated config reference, internal links,
jsonnetfile.json, and the single mixin root with one _config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import _jsonnet
import pytest
import yaml

from exporter.config.doc import anchor, render, sections
from exporter.config.schema import Config

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "docs" / "runbook.md"
RULE_FILES = [ROOT / "rules/generated/chargeback.rules.yaml", *sorted((ROOT / "rules/tests/generated").glob("*.yaml")),
              ROOT / "deploy/manifests/chargeback-prometheusrule.yaml"]


def heading_anchors(markdown: str) -> set[str]:
    """Every anchor GitHub makes for the file's headings (a repeated heading gets -1, -2, ...)."""
    seen: Counter[str] = Counter()
    out = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6} (.+?)\s*#*$", line)
        if m:
            a = anchor(m.group(1))
            out.add(a if not seen[a] else f"{a}-{seen[a]}")
            seen[a] += 1
    return out


def rendered_alerts() -> list[dict[str, Any]]:
    alerts = []
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        groups = doc["spec"]["groups"] if "spec" in doc else doc["groups"]
        alerts += [r for g in groups for r in g["rules"] if "alert" in r]
    return alerts


def test_github_anchor_rules() -> None:
    # lower case, spaces to hyphens, punctuation (backticks, colons, parentheses, quotes) dropped
    assert anchor("ChargebackCostSpike") == "chargebackcostspike"
    assert anchor('Coverage: gaps, short history and what "uncovered" means') == \
        "coverage-gaps-short-history-and-what-uncovered-means"
    assert anchor("`chargeback serve`") == "chargeback-serve"
    assert anchor("FOCUS export (`--format focus`)") == "focus-export---format-focus"


def test_every_rendered_alert_has_a_runbook_section() -> None:
    alerts = rendered_alerts()
    names = {a["alert"] for a in alerts}
    # 9 operational alerts (GPU waste too), 2 per budget from a file, 2 for annotation budgets (rules/alerts/),
    # 1 per carbon budget (the example budgets file's)
    assert len(names) == 14, sorted(names)
    anchors = heading_anchors(RUNBOOK.read_text())
    for a in alerts:
        url = a["annotations"]["runbook_url"]
        page, _, frag = url.partition("#")
        assert page.endswith("/docs/runbook.md"), url
        assert frag in anchors, f"{a['alert']}: {url} has no heading in docs/runbook.md"


def test_every_alert_in_the_mixin_source_is_in_the_runbook() -> None:
    source = "".join(p.read_text() for p in (ROOT / "rules/alerts").glob("*.libsonnet"))
    names = set(re.findall(r"alert: '(\w+)'", source))
    assert len(names) == 14
    anchors = heading_anchors(RUNBOOK.read_text())
    assert {anchor(n) for n in names} <= anchors
    # and no stale sections for alerts that no longer exist
    sections_ = set(re.findall(r"^## (Chargeback\w+)$", RUNBOOK.read_text(), flags=re.M))
    assert sections_ == names


def test_configuration_reference_has_not_drifted() -> None:
    committed = (ROOT / "docs/configuration.md").read_text()
    assert render() == committed, "docs/configuration.md is stale: run `make docs`"


def test_configuration_reference_lists_every_key_with_a_description() -> None:
    text = render()
    top = [f"`{name}`" for name in Config.model_fields]
    for name in top:
        assert f"## {name}" in text
    for s in sections():
        for name, info in s.model.model_fields.items():
            assert info.description, f"{s.path}.{name} has no description in the schema"
    for key in ("clusterSelector", "leaderElection", "clusterName", "maxGapBridge", "bills", "maxWindow"):
        assert f"| `{key}` |" in text


def test_configdoc_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    subprocess.run([sys.executable, "-m", "exporter.config.doc", "--out", str(out)], check=True, cwd=ROOT)
    assert out.read_text() == (ROOT / "docs/configuration.md").read_text()


DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, frag = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{doc.name}: link to missing {target}"
        if frag and file.suffix == ".md":
            assert frag in heading_anchors(file.read_text()), f"{doc.name}: no heading for {target}"


def test_readme_is_short_and_keeps_the_two_commands_first() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert lines[2].strip().startswith("make demo") and lines[3].strip().startswith("make test")


def test_jsonnetfile_is_a_valid_jsonnet_bundler_file() -> None:
    # jsonnet-bundler's v1 format: {"version": 1, "dependencies": [{"source": {"git": {"remote", "subdir"}}
    # | {"local": {"directory"}}, "version"}], "legacyImports": bool}
    doc = json.loads((ROOT / "jsonnetfile.json").read_text())
    assert doc["version"] == 1
    assert isinstance(doc["legacyImports"], bool)
    assert isinstance(doc["dependencies"], list)
    for dep in doc["dependencies"]:
        assert set(dep["source"]) <= {"git", "local"} and dep["source"]
        assert isinstance(dep.get("version", ""), str)


def _mixin(extra: str = "") -> Any:
    snippet = ("local m = (import 'mixin.libsonnet') + { _config+:: { " + extra + " } };"
               " { rules: m.prometheusRules.groups + m.prometheusAlerts.groups, dashboards: m.grafanaDashboards }")
    return json.loads(_jsonnet.evaluate_snippet(str(ROOT / "snippet.jsonnet"), snippet))


def test_one_mixin_root_renders_what_the_two_entry_points_render() -> None:
    mixin = _mixin()
    rules = json.loads(_jsonnet.evaluate_file(str(ROOT / "rules/lib/rules.jsonnet")))
    dashboards = json.loads(_jsonnet.evaluate_file(str(ROOT / "dashboards/lib/dashboards.jsonnet")))
    assert mixin["rules"] == rules["groups"]
    assert mixin["dashboards"] == dashboards
    assert len(dashboards) == 5


def test_one_config_defines_the_selectors() -> None:
    sources = [p for p in ROOT.glob("*/**/*.libsonnet") if "vendor" not in p.parts]
    defining = [p.relative_to(ROOT).as_posix() for p in sources
                if re.search(r"^\s*(chargebackSelector|clusterLabel):", p.read_text(), flags=re.M)]
    assert defining == ["rules/config.libsonnet"]


def test_ecosystem_selector_names_and_the_old_alias() -> None:
    def info_expr(extra: str) -> str:
        exprs = [r["expr"] for g in _mixin(extra)["rules"] for r in g["rules"] if "kube_pod_info" in r["expr"]]
        assert exprs
        return str(exprs[0])
    assert 'kube_pod_info{node!="",job="ksm"}' in info_expr("kubeStateMetricsSelector: 'job=\"ksm\"'")
    assert 'kube_pod_info{node!="",job="ksm"}' in info_expr("ksmSelector: 'job=\"ksm\"'")
    assert 'kube_pod_info{node!=""}' in info_expr("")
