"""Every API parameter of a real `chargeback serve`, fuzzed: bad input is a 4xx naming the cause, never a 5xx.

A seeded generator (deterministic, no shrinking needed: each failure prints its request) sends hostile
strings, huge numbers, deep nesting, unicode, empty and repeated parameters to /allocation,
/allocation/compute, /assets, /cloudCost and the MCP tools, against the sharing scenario on a real
Prometheus. No answer may be a 5xx or carry a traceback, and serve's log must hold no traceback.
"""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import yaml

from demo.localprom import PrometheusServer, free_port

from .test_allocate_core import window_arg

SEED = 25
PARAMS = {
    "/allocation": ("window", "step", "accumulate", "aggregate", "filter", "includeIdle", "idle", "shareIdle",
                    "idleByNode", "shareNamespaces", "shareSplit", "shareLabels", "shareCost", "shareTenancyCosts",
                    "includeProportionalAssetResourceCosts"),
    "/allocation/compute": ("window", "step", "accumulate", "aggregate", "filter", "shareIdle"),
    "/assets": ("window", "step", "aggregate", "accumulate", "reconciled"),
    "/cloudCost": ("window", "step", "aggregate", "accumulate", "filter"),
}
TOOLS = {"allocation": ("window", "aggregate", "step", "accumulate", "filter", "share_namespaces", "share_labels",
                        "share_split"),
         "assets": ("window", "aggregate", "step"), "cloud_costs": ("window", "aggregate", "accumulate", "filter"),
         "efficiency": ("window", "by"), "label_coverage": ("window",)}


def nested(n: int) -> str:
    return "(" * n + 'namespace:"web"' + ")" * n


HOSTILE = [
    "", " ", "\t", "\x00", "%", "%00", "\\", '"', "'", "[", "]", "(", ")", ",", ",,,", ":", "=", "&", "+", "|",
    "\u202e", "\ufeff", "😀" * 40, "名前空間", "a" * 4000, "9" * 400, "-1", "0", "-0", "1e999", "-1e999", "nan",
    "inf", "-inf", "1.5", "0x10", "true", "TRUE", "null", "None", "9999-12-31,9999-12-31", "0000-01-01,9999-12-31",
    "0,0", "-5,5", "1,0", "253402300800,253402300801", "1" * 5000 + "h", "99999999999999d", "0h", "1ms",
    "99999999999999999h", "1e308h", "1y", "9" * 60 + "s", "week", "month", "quarter", "lastmonth", "today",
    "hour", "day", "all", "none", "label:", "annotation:", "label:" + "x" * 300, "label:a,label:a",
    ",".join(f"label:k{i}" for i in range(2000)), ",".join(["namespace"] * 33), "namespace," * 500,
    nested(31), nested(32), nested(33), nested(500), nested(5000), "(" * 500, ")" * 500,
    'namespace:"a"' + '+namespace:"b"' * 2000, 'label[' + "]" * 3, 'namespace:"' + "\\" * 100,
    'label[team]:"=HYPERLINK(\\"x\\")"', "<!channel>", "a|b\nc", "\r\n\r\nHTTP/1.1 200 OK",
]


def hostile_value(rng: random.Random) -> str:
    """One pool entry, a mix of two, or random unicode (no lone surrogates: they are no UTF-8)."""
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(HOSTILE)
    if roll < 0.8:
        return rng.choice(HOSTILE)[:200] + rng.choice(HOSTILE)[:200]
    if roll < 0.9:
        return str(rng.choice([10**rng.randint(1, 40), -(10**rng.randint(1, 40))])) + rng.choice(
            ["", "h", "m", "d", "w", "s"])
    return "".join(chr(rng.choice([rng.randint(1, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
                   for _ in range(rng.randint(1, 30)))


def requests_plan(rng: random.Random, window: str, n: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """(path, params): each parameter hostile alone (the rest sane), several at once, and repeated."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for i in range(n):
        path = rng.choice(list(PARAMS))
        names = PARAMS[path]
        params = [("window", window)]
        if i % 3 == 0:  # several hostile parameters together
            params += [(name, hostile_value(rng)) for name in rng.sample(names, rng.randint(2, len(names)))]
        else:
            params.append((rng.choice(names), hostile_value(rng)))
        if i % 7 == 0:  # repeated parameters: the first one wins, as OpenCost reads them
            params.append((rng.choice(names), hostile_value(rng)))
        if params[-1][0] == "window" or rng.random() < 0.3:  # the hostile window first
            params = params[1:] + params[:1]
        out.append((path, params))
    return out


class Serve:
    """`chargeback serve` on a free port, its output in a log file."""

    def __init__(self, root: Path, prom_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "serve.log"
        cfg = root / "serve.yaml"
        cfg.write_text(yaml.safe_dump({"prometheus": {"url": prom_url}, "attribution": {"source": "prometheus"},
                                       "serve": {"listen": f"127.0.0.1:{self.port}", "interval": "1h"}}))
        self.proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config", str(cfg)],
                                     stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(self.url + "/healthz", timeout=2)
                return
            except requests.RequestException:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.log_path.read_text()
                time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, share_prom: tuple[PrometheusServer, int]) -> Iterator[Serve]:
    s = Serve(tmp_path_factory.mktemp("fuzz"), share_prom[0].url)
    yield s
    s.close()


def no_constant(name: str) -> None:
    raise AssertionError(f"{name} in a JSON answer")


def assert_clean(what: str, status: int, body: str) -> None:
    assert status < 500, f"{what}: {status} {body[:300]}"
    assert "Traceback" not in body and 'File "' not in body, f"{what}: {body[:300]}"
    if status == 200:  # strict JSON: NaN or Infinity from a hostile number is no answer a client can read
        json.loads(body, parse_constant=no_constant)


def test_http_parameters_never_5xx(serve: Serve, share_prom: tuple[PrometheusServer, int]) -> None:
    rng = random.Random(SEED)
    plan = requests_plan(rng, window_arg(share_prom[1]), 240)
    statuses: dict[int, int] = {}
    for path, params in plan:
        r = requests.get(serve.url + path, params=params, timeout=60)
        assert_clean(f"GET {path}?{urlencode(params)[:300]}", r.status_code, r.text)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    # Raw query strings a client library would not send: bad escapes, keys without values, bare separators.
    for raw in ("window=%ff%fe", "%", "&&&&", "=x", "window", "window=%00", "filter=%28" * 1000,
                "aggregate=" + "%2C" * 3000, "window=24h&window=" + "%" * 100):
        conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=60)
        conn.request("GET", "/allocation?" + raw)
        resp = conn.getresponse()
        assert_clean(f"GET /allocation?{raw[:100]}", resp.status, resp.read().decode("utf-8", "replace"))
        conn.close()
    assert statuses.get(400, 0) > len(plan) // 3, statuses  # the fuzz reaches the parsers, not only a 200
    assert statuses.get(200, 0) > 0, statuses  # and some hostile values are valid (a filter matching nothing)
    assert serve.proc.poll() is None
    assert "Traceback" not in serve.log_path.read_text()


def mcp_call(serve: Serve, tool: str, args: Any, ident: int) -> tuple[int, str]:
    body = {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": {"name": tool, "arguments": args}}
    r = requests.post(serve.url + "/mcp", json=body, timeout=60,
                      headers={"Accept": "application/json, text/event-stream"})
    return r.status_code, r.text


def test_mcp_tool_arguments_never_5xx(serve: Serve, share_prom: tuple[PrometheusServer, int]) -> None:
    rng = random.Random(SEED + 1)
    window = window_arg(share_prom[1])
    odd: list[Any] = [None, 10**400, -1, 1.5, [], ["24h"], {"a": {"b": [1]}}, True]
    answered = 0
    for i in range(60):
        tool = rng.choice(list(TOOLS))
        args: dict[str, Any] = {"window": window} if tool != "label_coverage" else {}
        name = rng.choice(TOOLS[tool])
        args[name] = rng.choice(odd) if i % 5 == 0 else hostile_value(rng)
        status, text = mcp_call(serve, tool, args, i)
        assert_clean(f"MCP {tool} {json.dumps(args)[:300]}", status, text)
        answered += status == 200 and '"isError":true' in text.replace(" ", "")
    assert answered > 20  # the tools ran and refused the input by name
    assert serve.proc.poll() is None
    assert "Traceback" not in serve.log_path.read_text()
