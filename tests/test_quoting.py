"""Values quoted into PromQL: namespaces and label values with `-`, `.`, `+`, quotes and backslashes.

Scenario, one hour, one node of 8 cores and 32 GiB priced by OpenCost at cpu 0.10/core-h and
ram 0.01/GiB-h; every container uses half its request, so allocation = requests:
  team-web   frontend (team web-a) 1 core 2 GiB = 0.10 + 0.02 = 0.12
             admin    (team web-b) 0.5 core 1 GiB = 0.05 + 0.01 = 0.06
  x.y+z      p1 (team alpha) 1 core 2 GiB = 0.12;  p2 (team beta) 2 cores 4 GiB = 0.20 + 0.04 = 0.24
  q"x\\y      w1 (team alpha) 0.5 core 1 GiB = 0.06; w2 (team o"neil\\x) 0.5 core 1 GiB = 0.06
  node       8 x 0.10 + 32 x 0.01 = 1.12; allocated 0.66, so idle = 0.46
All three namespaces are split between teams, so each is fetched per pod with a namespace regex.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from demo.localprom import PrometheusServer
from demo.synthetic import GIB, Cluster, Container, Node, Pod
from exporter.cli import main
from exporter.config.schema import Prometheus
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promql import matcher, one_of, quote, re2_escape

from .conftest import aligned_past, scenario_prom
from .test_allocate_core import REL, window_arg

ODD_TEAM = 'o"neil\\x'
ODD_NS = 'q"x\\y'


def test_quote_escapes_like_a_go_string() -> None:
    assert quote("team-web") == '"team-web"'
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert quote("line\nbreak") == '"line\\nbreak"'
    assert matcher("namespace", "a.b", "!=") == 'namespace!="a.b"'


def test_regex_alternatives_are_literal() -> None:
    assert re2_escape("team-web") == "team-web"  # `-` needs no escape outside a class
    assert re2_escape("x.y+z") == "x\\.y\\+z"
    assert re2_escape("(a|b)[c]{d}^$*?\\") == "\\(a\\|b\\)\\[c\\]\\{d\\}\\^\\$\\*\\?\\\\"
    # RE2-escaped, then PromQL-string-escaped: each regex backslash doubles.
    assert one_of("namespace", ["x.y+z", "team-web"]) == 'namespace=~"team-web|x\\\\.y\\\\+z"'


def odd_cluster() -> Cluster:
    def pod(ns: str, name: str, cpu: float, gib: float, team: str) -> Pod:
        app = Container("app", cpu, gib * GIB, 0, cpu / 2, gib * GIB / 2)
        return Pod(ns, name, "n1", (app,), labels={"team": team})

    node = Node("n1", 8, 32 * GIB, opencost={"cpu": 0.10, "ram": 0.01})
    pods = (pod("team-web", "frontend", 1, 2, "web-a"), pod("team-web", "admin", 0.5, 1, "web-b"),
            pod("x.y+z", "p1", 1, 2, "alpha"), pod("x.y+z", "p2", 2, 4, "beta"),
            pod(ODD_NS, "w1", 0.5, 1, "alpha"), pod(ODD_NS, "w2", 0.5, 1, ODD_TEAM))
    return Cluster((node,), pods, {"team-web": {"team": "web"}})


@pytest.fixture(scope="module")
def odd_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    t0 = aligned_past()
    for prom in scenario_prom(tmp_path_factory, "odd", odd_cluster(), t0):
        yield prom, t0


def allocate(odd_prom: tuple[PrometheusServer, int], tmp_path: Path, aggregate: str) -> dict[str, float]:
    prom, t0 = odd_prom
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": prom.url}, "attribution": {"source": "prometheus"}}))
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", window_arg(t0),
                                    "--format", "json", "--aggregate", aggregate])
    assert res.exit_code == 0, res.output
    return {k: v["totalCost"] for k, v in json.loads(res.stdout)["data"][0].items()}


def test_split_namespaces_with_odd_names_allocate_by_team(odd_prom: tuple[PrometheusServer, int],
                                                          tmp_path: Path) -> None:
    got = allocate(odd_prom, tmp_path, "team")
    expected = {"web-a": 0.12, "web-b": 0.06, "alpha": 0.12 + 0.06, "beta": 0.24, ODD_TEAM: 0.06,
                "__idle__": 0.46}
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=REL), k
    assert sum(got.values()) == pytest.approx(1.12, rel=REL)  # conservation
    by_ns = allocate(odd_prom, tmp_path, "namespace")
    assert by_ns["team-web"] == pytest.approx(0.18, rel=REL)
    assert by_ns["x.y+z"] == pytest.approx(0.36, rel=REL)
    assert by_ns[ODD_NS] == pytest.approx(0.12, rel=REL)
    assert sum(by_ns.values()) == pytest.approx(1.12, rel=REL)


def test_matchers_select_exactly_the_odd_values(odd_prom: tuple[PrometheusServer, int]) -> None:
    prom, t0 = odd_prom
    client = PrometheusClient(Prometheus(url=prom.url))
    at = float(t0 + 1800)
    pods = client.query(f"kube_pod_labels{{{matcher('label_team', ODD_TEAM)}}}", at)
    assert [(lb["namespace"], lb["pod"]) for lb, _ in pods] == [(ODD_NS, "w2")]
    rows = client.query(f"count by (namespace) (kube_pod_info{{{one_of('namespace', [ODD_NS, 'x.y+z'])}}})", at)
    assert sorted((lb["namespace"], v) for lb, v in rows) == [(ODD_NS, 2.0), ("x.y+z", 2.0)]
    # `.` and `+` are literal: a namespace "xzy+z" or "x.yyz" would not match.
    assert client.query(f"kube_pod_info{{{one_of('namespace', ['x.y.z'])}}}", at) == []
