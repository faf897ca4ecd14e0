"""Prometheus answers read as they arrive (exporter/sources/promstream.py): the same outcome as `json.loads` of
the whole body, whatever the chunking, and never the whole body held.

The oracle is the standard library: for every body (real shapes, then cut, garbled, padded or random ones)
and every way of cutting it into chunks, `read_body` gives the rows `json.loads` + the parsers give, or the
same one-line failure (message, line, column, character, body size)."""

from __future__ import annotations

import json
import random
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from exporter.config.schema import Prometheus
from exporter.sources.promanswer import PartialAnswer, Shape, matrix, partial_reason, series_hook, vector
from exporter.sources.prometheus import PrometheusClient
from exporter.sources.promstream import NotJSON, detail, read_body

SHAPES: list[Any] = [
    {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"namespace": "a", "node": "é"}, "value": [1.5, "2"]}, {"metric": {}, "value": [1, "NaN"]}]},
     "warnings": ["store down"]},
    {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"a": "x"}, "values": [[1, "2"], [2, "3e5"]]}]}, "stats": {"timings": {"execTotalTime": 0.1}}},
    {"status": "success", "isPartial": True, "data": {"result": [{"metric": {"a": "x"}, "value": [1, "2"]}],
                                                      "resultType": "vector"}},
    {"status": "success", "data": {"resultType": "scalar", "result": [1, "5"]}},
    {"status": "success", "data": {"resultType": "string", "result": [1, "5"]}},
    {"status": "error", "errorType": "bad_data", "error": "parse error"},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"a": 1}, "value": [1, "2"]}]}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"a": "1"}, "values": [[1, "2"]]}]}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1, "x"]}, 5]}},
    {"status": "success", "data": {"resultType": "vector", "result": {}}},
    {"status": "success", "data": [1, 2]},
    [{"status": "success"}], "text", 5,
]
# A repeated key: the last wins, as in json.loads.
RAW = [b'{"data":{"result":[{"metric":{"a":"1"},"value":[1,"2"]}]},"status":"success",'
       b'"data":{"resultType":"vector","result":[]}}']


def outcome(body: Any, kind: str) -> str:
    """What the client makes of a parsed body: its type, status, partial reason and rows or shape error."""
    if not isinstance(body, dict):
        return f"not an object: {type(body).__name__}"
    data = body.get("data")
    head = f"{body.get('status')!r} {partial_reason(body)!r}"
    if not isinstance(data, dict):
        return f"{head} data {data!r}"
    try:
        rows = (vector if kind == "vector" else matrix)(data)
    except Shape as e:
        return f"{head} {e}"
    return f"{head} {[(sorted(lb.items()), v) for lb, v in rows]!r}"


def whole(body: bytes, kind: str) -> str:
    """The oracle: json.loads of the whole body, as the client did before."""
    try:
        parsed = json.loads(body, object_hook=series_hook)
    except ValueError as e:
        return f"not JSON ({len(body)} bytes: {detail(e, e.doc if isinstance(e, json.JSONDecodeError) else '')})"
    return outcome(parsed, kind)


def streamed(body: bytes, kind: str, cuts: list[int]) -> str:
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    try:
        parsed = read_body(iter(chunks), kind)
    except NotJSON as e:
        return f"not JSON ({e.size} bytes: {e.detail})"
    return outcome(parsed, kind)


def bodies(rng: random.Random) -> Iterator[bytes]:
    yield from RAW
    for shape in SHAPES:
        for indent in (None, 1):
            yield json.dumps(shape, indent=indent, ensure_ascii=False).encode()
    for _ in range(1500):
        raw = bytearray(json.dumps(rng.choice(SHAPES), indent=rng.choice([None, 2]), ensure_ascii=False).encode())
        op, at = rng.randrange(5), rng.randrange(len(raw) + 1)
        if op == 0:
            raw = raw[:at]  # cut
        elif op == 1 and at < len(raw):
            raw[at] = rng.randrange(256)  # garbled
        elif op == 2:
            raw[at:at] = rng.choice([b" ", b"\n", b",", b"}", b"]", b"\xff", b"\xc3", b"x", b"1", b'"', b"\x00"])
        elif op == 3:
            raw = bytearray(rng.randbytes(rng.randrange(0, 40)))
        else:
            raw = bytearray(b" \n ") + raw + rng.choice([b"", b"\n\n", b"x", b"{}"])
        yield bytes(raw)


def test_every_body_and_chunking_gives_what_json_loads_gives() -> None:
    rng = random.Random(25)
    n = 0
    for body in bodies(rng):
        for kind in ("vector", "matrix"):
            cuts = sorted(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.randrange(0, 6))))
            assert streamed(body, kind, cuts) == whole(body, kind), (body, kind, cuts)
            n += 1
    assert n == 2 * (len(RAW) + 2 * len(SHAPES) + 1500)


def test_what_a_cut_in_each_place_reads() -> None:
    """Hand-picked cuts: a number, a multi-byte character and a key split between chunks read whole."""
    body = '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"node":"né"},"value":[1,"1234"]}]}}'
    raw = body.encode()
    split_e = raw.index("é".encode()) + 1  # between the two bytes of é
    for cuts in ([raw.index(b'1234') + 2], [split_e], [raw.index(b'"result"') + 3], [1, 2, 3]):
        parsed = read_body(iter([raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]), "vector")
        assert vector(parsed["data"]) == [({"node": "né"}, 1234.0)]
    with pytest.raises(NotJSON) as cut:
        read_body(iter([raw[:60], raw[60:80]]), "vector")
    assert (cut.value.detail, cut.value.size) == ("the JSON stops mid-way, truncated", 80)
    with pytest.raises(NotJSON) as bad:  # byte 70 is not UTF-8: worded as a decode of the whole body words it
        read_body(iter([raw[:50], raw[50:70] + b"\xff" + raw[70:]]), "vector")
    assert bad.value.detail == "'utf-8' codec can't decode byte 0xff in position 70: invalid start byte"
    assert bad.value.size == len(raw) + 1
    with pytest.raises(NotJSON) as extra:  # 21 characters in, on line 2
        read_body(iter([b'{"status":"success"}\n x']), "vector")
    assert extra.value.detail == "Extra data: line 2 column 2 (char 22)"


class Big(BaseHTTPRequestHandler):
    """A vector of SERIES series, four labels each, sent in small writes; `warnings` after the data."""

    SERIES = 40_000
    partial = False
    size = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        rows = ",".join(f'{{"metric":{{"namespace":"ns-{i % 97}","node":"node-{i % 500}","pod":"pod-{i}",'
                        f'"resource":"cpu"}},"value":[1800000000,"{i}.5"]}}' for i in range(self.SERIES))
        warn = ',"warnings":["store eu-1 down"]' if Big.partial else ""
        body = f'{{"status":"success","data":{{"resultType":"vector","result":[{rows}]}}{warn}}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(0, len(body), 65536):
            self.wfile.write(body[i:i + 65536])
        Big.size = len(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture()
def big() -> Iterator[str]:
    Big.partial = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_big_answer_is_never_held_whole(big: str) -> None:
    """40,000 series (about 4 MB of JSON): what the client holds beyond the rows it returns stays under a
    quarter of the body. json.loads held the bytes, their text and the decoded series at once (over 2x)."""
    client = PrometheusClient(Prometheus(url=big, retries=0))
    client.query("warm up", 0.0)  # imports, the connection pool
    tracemalloc.start()
    try:
        rows = client.query("big", 0.0)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rows) == Big.SERIES and rows[7] == ({"namespace": "ns-7", "node": "node-7", "pod": "pod-7",
                                                    "resource": "cpu"}, 7.5)
    assert peak - kept < Big.size / 4, (peak - kept, Big.size)


def test_warnings_after_a_big_result_still_make_it_partial(big: str) -> None:
    """Prometheus writes `warnings` after `data`: the answer is judged on the whole body, as before."""
    Big.partial = True
    client = PrometheusClient(Prometheus(url=big, retries=0))
    with pytest.raises(PartialAnswer, match=r"answered only in part \(store eu-1 down\)"):
        client.query("big", 0.0)
