"""Reading a Prometheus answer as it arrives, series by series (docs/scale.md).

`json.loads` of a whole answer held its bytes, their text and every decoded series at once: at 300k
containers one answer of 297k series was about three copies of itself before a row was made. Here the
body is read in chunks, the envelope (`status`, `data`, `warnings`, `stats`, ...) is parsed by a small
reader of its own, and each element of `data.result` is decoded by the standard library's scanner and
converted at once into the row the caller wants (`Rows`); only the rows and one chunk are held.

The outcome is the one `json.loads(body)` would give, and so are its failures: a body that is not a
JSON object, bad UTF-8, a cut, garbage or extra data raise `NotJSON` with the line `json.loads` would
have raised (message, line, column and character) and the body's size, after the whole body is read.
Whether an answer is partial, an error or of the wrong type is still decided on the complete body by
the caller (`prometheus.py`): a partial answer's `warnings` come after its `data`.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from exporter.sources.promanswer import Rows, series_hook

CHUNK_BYTES = 1 << 18  # read at a time; the text held is about one chunk plus one series
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9eE.+\-]*")  # what may still belong to a number cut at the chunk's end
# Every object through `series_hook`, as the whole-body decode did: a series becomes a compact record at once.
_scan = json.scanner.make_scanner(json.JSONDecoder(object_hook=series_hook))  # type: ignore[attr-defined]


class NotJSON(ValueError):
    """The body is not a JSON document: `detail` words it as `json.loads` would (one line, or a cut
    said as such), `size` is the body's length in bytes."""

    def __init__(self, detail: str, size: int) -> None:
        super().__init__(detail)
        self.detail, self.size = detail, size


def detail(e: ValueError, doc: str) -> str:
    """The first line of a decoding error; a body cut mid-way (the parser ran off its end, or a string
    opened and never closed) is said so."""
    if isinstance(e, json.JSONDecodeError) and doc.strip() and (
            e.pos >= len(doc.rstrip()) or e.msg.startswith("Unterminated string")):
        return "the JSON stops mid-way, truncated"
    return (str(e).splitlines() or [type(e).__name__])[0]


def read_body(chunks: Iterable[bytes], kind: str) -> Any:
    """The body as `json.loads` would give it, but `data.result` as `Rows` of `kind` ("vector" or
    "matrix"). Raises NotJSON, and whatever `chunks` raises (a dropped connection, a read timeout)."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= 4:  # enough for json.detect_encoding
            break
    if json.detect_encoding(head) != "utf-8" or not head.lstrip(b" \t\n\r").startswith(b"{"):
        return _whole(head + b"".join(it), kind)  # not an object (an HTML page, an array...), or not UTF-8
    reader = _Reader(it)
    try:
        reader.feed(head)
        return _Parser(reader, kind).body()
    except _BadText as e:
        reader.skip()
        raise NotJSON(str(e), reader.size) from e


def _whole(content: bytes, kind: str) -> Any:
    """The old way, for the rare body the reader does not take: all of it at once."""
    try:
        body = json.loads(content, object_hook=series_hook)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        doc = e.doc if isinstance(e, json.JSONDecodeError) else ""
        raise NotJSON(detail(e, doc), len(content)) from e
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and isinstance(data.get("result"), list):
        rows = Rows(kind if data.get("resultType") in (None, kind) else "")
        for element in data["result"]:
            rows.take(element)
        data["result"] = rows
    return body


class _BadText(ValueError):
    """Bytes that are not UTF-8, worded as json.loads would word them."""


class _Reader:
    """The body's text from `pos` on, a chunk at a time, and where its first character stands in the
    whole body (characters, lines, last newline), so that an error is placed as in the whole body."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")  # as json.loads decodes bytes
        self.buf, self.pos, self.eof = "", 0, False
        self.base, self.lines, self.last_nl = 0, 0, -1
        self.size = 0  # bytes read

    def feed(self, chunk: bytes, final: bool = False) -> None:
        offset = self.size - len(self.decoder.buffer)  # where the bytes it decodes start in the body
        self.size += len(chunk)
        try:
            self.buf += self.decoder.decode(chunk, final)
        except UnicodeDecodeError as e:  # worded as a decode of the whole body words it
            start, end = offset + e.start, offset + e.end - 1
            raise _BadText(f"'{e.encoding}' codec can't decode byte 0x{e.object[e.start]:02x} in position {start}: "
                           f"{e.reason}" if start == end else
                           f"'{e.encoding}' codec can't decode bytes in position {start}-{end}: {e.reason}") from e

    def more(self) -> bool:
        """The next chunk's text appended (what is before `pos` let go); False at the end of the body."""
        if self.eof:
            return False
        if self.pos:
            buf, pos = self.buf, self.pos
            if n := buf.count("\n", 0, pos):
                self.lines += n
                self.last_nl = self.base + buf.rfind("\n", 0, pos)
            self.base += pos
            self.buf, self.pos = buf[pos:], 0
        for chunk in self.chunks:
            if chunk:
                self.feed(chunk)
                return True
        self.feed(b"", final=True)
        self.eof = True
        return False

    def drain(self) -> None:
        """Read (and check the UTF-8 of) the rest of the body, keeping none of it: json.loads decodes the
        whole body before it parses, so bad UTF-8 anywhere is what it reports."""
        try:
            while not self.eof:
                self.pos = len(self.buf)
                self.more()
        except _BadText as e:
            self.skip()
            raise NotJSON(str(e), self.size) from e

    def skip(self) -> None:
        """Count the rest of the body's bytes, decoding none."""
        for chunk in self.chunks:
            self.size += len(chunk)

    def error(self, msg: str, pos: int) -> NotJSON:
        """The JSONDecodeError json.loads would raise at `pos` of the buffer, as NotJSON, the body read."""
        buf = self.buf
        at = self.base + pos
        nl = buf.rfind("\n", 0, pos)
        col = at - (self.base + nl if nl >= 0 else self.last_nl)
        text = f"{msg}: line {self.lines + buf.count(chr(10), 0, pos) + 1} column {col} (char {at})"
        # Cut: the error is past the last non-space character (known once the body is read), or a string
        # never closed. Only errors at the end of what was read can be past it: others stand on a character.
        cut = self.eof and at >= self.base + len(buf.rstrip())
        self.drain()
        return NotJSON("the JSON stops mid-way, truncated" if cut or msg.startswith("Unterminated string") else text,
                       self.size)


class _Parser:
    """The envelope, mirroring json.decoder's object and array parsing (its messages and positions);
    each value but `data` and `data.result` decoded whole by the standard scanner."""

    def __init__(self, reader: _Reader, kind: str) -> None:
        self.r, self.kind = reader, kind

    def body(self) -> Any:
        self.ws()  # a '{', checked by read_body
        out = self.object({"data": self.data})
        if self.ws():
            raise self.r.error("Extra data", self.r.pos)
        return out

    def data(self, _outer: dict[str, Any]) -> Any:
        return self.object({"result": self.result})

    def result(self, data: dict[str, Any]) -> Rows:
        """`data.result`, each element converted as it is decoded (not when the answer says it is of
        another type: the caller's check then names the type)."""
        r = self.r
        rows = Rows(self.kind if data.get("resultType") in (None, self.kind) else "")
        r.pos += 1  # '['
        if self.ws() == "]":
            r.pos += 1
            return rows
        take, scan = rows.take, _scan
        while True:
            # Fast path: elements each followed by a comma in the text held are whole: taken as decoded.
            buf, pos = r.buf, r.pos
            try:
                while True:
                    element, end = scan(buf, pos)
                    if buf[end:end + 1] != ",":
                        break
                    take(element)
                    pos = end + 1
            except (StopIteration, json.JSONDecodeError):
                pass
            r.pos = pos  # the element the fast path did not take: read (again) the careful way
            self.ws()
            take(self.value())
            c = self.ws()
            if c == "]":
                r.pos += 1
                return rows
            if c != ",":
                raise r.error("Expecting ',' delimiter", r.pos)
            r.pos += 1
            self.ws()

    def object(self, fields: dict[str, Callable[[dict[str, Any]], Any]]) -> Any:
        """An object whose `fields` (key -> reader) are read by their own reader when their value is an
        object or array (the shape they should have), every other value decoded whole."""
        r, out = self.r, dict[str, Any]()
        r.pos += 1  # '{'
        c = self.ws()
        if c == "}":
            r.pos += 1
            return series_hook(out)
        while True:
            if c != '"':
                raise r.error("Expecting property name enclosed in double quotes", r.pos)
            key = self.value()
            if self.ws() != ":":
                raise r.error("Expecting ':' delimiter", r.pos)
            r.pos += 1
            c = self.ws()
            own = fields.get(key)
            out[key] = own(out) if own is not None and c == ("{" if key == "data" else "[") else self.value()
            c = self.ws()
            if c == "}":
                r.pos += 1
                return series_hook(out)  # as the whole-body decode hooked every object
            if c != ",":
                raise r.error("Expecting ',' delimiter", r.pos)
            r.pos += 1
            c = self.ws()

    def ws(self) -> str:
        """The next character that is not whitespace ('' at the end of the body), `pos` on it."""
        r = self.r
        while True:
            r.pos = _WS.match(r.buf, r.pos).end()  # type: ignore[union-attr]
            if r.pos < len(r.buf):
                return r.buf[r.pos]
            if not r.more():
                return ""

    def value(self) -> Any:
        """One whole JSON value at `pos`. Decoded again with more text while it fails or could go on
        (a number at the end of the text), the text held at least doubled each time: linear in its size."""
        r = self.r
        while True:
            try:
                obj, end = _scan(r.buf, r.pos)
            except StopIteration as e:
                failed: tuple[str, int] | None = ("Expecting value", e.value)
            except json.JSONDecodeError as e:
                failed = (e.msg, e.pos)
            else:
                if r.eof or _NUMBER_TAIL.match(r.buf, end).end() < len(r.buf):  # type: ignore[union-attr]
                    r.pos = end
                    return obj
                failed = None
            if r.eof:
                assert failed is not None
                raise r.error(*failed)
            held = len(r.buf) - r.pos
            while len(r.buf) - r.pos <= 2 * held and r.more():
                pass
