"""Reading request bodies: bounded in size, JSON bounded in nesting before any parser sees it, NDJSON stopped at
the row cap. The hand-read bodies (queries, predict) and ninja's Schema bodies (`JsonBodyParser`) share it."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from django.http import HttpRequest
from ninja.parser import Parser

from monitor.api.errors import ApiError, problem
from monitor.ingestion.validate import IngestError, IngestRefusal

# Every body the API takes nests at most four levels ({"queries": [{"features": [...]}]}). The bound sits far
# below the standard library's recursion limit (1,000 frames, shared with the request's own stack), which the
# NaN fallback below would otherwise hit as a RecursionError, and orjson's own limit (1,024).
MAX_JSON_DEPTH = 64

# A body's structure is its quotes and brackets once escaped backslashes and escaped quotes are gone.
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_QUOTE = ord('"')
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1
_CHUNK = 1 << 16  # numpy's running sums are several times faster on chunks that stay in cache


def nesting_depth(raw: bytes) -> int:
    """How deep the brackets outside strings of a UTF-8 JSON text nest, without parsing it: linear time, no
    recursion. Exact for valid JSON, and for any text up to where it stops being valid (all a parser reads)."""
    # Escapes pair up from the left: with every escaped backslash (two backslashes) dropped first, what is left
    # of an escaped quote is one backslash and the quote, dropped next, so each remaining quote opens or closes.
    if b"\\" in raw:  # most bodies have no escape at all, and the two replacements cost as much as the rest
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = raw.translate(None, _NOT_STRUCTURE)
    marks = np.frombuffer(structure, dtype=np.uint8)
    depth = deepest = in_string = 0
    for start in range(0, len(marks), _CHUNK):
        chunk = marks[start:start + _CHUNK]
        quotes = (chunk == _QUOTE).view(np.uint8)
        inside = np.bitwise_xor.accumulate(quotes) ^ in_string  # 1 from an opening quote to its closing one
        depths = np.cumsum(np.where(inside == 1, 0, _STEP[chunk]), dtype=np.int32) + depth
        deepest, depth, in_string = max(deepest, int(depths.max())), int(depths[-1]), int(inside[-1])
    return deepest


def load_json(raw: bytes, *, where: str) -> Any:
    """One JSON document, refused with a 400 naming `where` if it nests deeper than MAX_JSON_DEPTH or is not JSON."""
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and nesting_depth(raw) > MAX_JSON_DEPTH:
        raise ApiError(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels ({where})")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # parse again with the standard library: it accepts NaN, which validation then names by field
    try:
        # UTF-8 only, as orjson and RFC 8259 read JSON: the standard library would also guess UTF-16 and UTF-32,
        # whose escapes the depth scan does not see.
        return json.loads(raw.decode("utf-8-sig"))
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of more than 4,300 digits (Python's limit)
        message = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ApiError(400, f"the body is not valid JSON ({where})", [problem(None, message)]) from exc


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The raw body, refused with a 413 if its declared or actual size is over `limit` bytes."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        raise ApiError(400, "the Content-Length header is not a number")
    if int(declared) > limit:
        raise ApiError(413, f"the body is {int(declared):,} bytes; the limit is {limit:,} bytes")
    body = request.body
    if len(body) > limit:
        raise ApiError(413, f"the body is {len(body):,} bytes; the limit is {limit:,} bytes")
    return body


def ndjson_rows(body: bytes, *, max_rows: int) -> list[Any]:
    """The documents of an NDJSON body, one per non-blank line; a line past `max_rows` documents is refused as
    too large (IngestRefusal.TOO_LARGE) before it or any line after it is parsed."""
    rows: list[Any] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        if len(rows) == max_rows:
            raise IngestError(f"the batch has more than {max_rows:,} queries; at most {max_rows:,} per request",
                              [{"field": "queries", "message": f"at most {max_rows} queries"}],
                              refusal=IngestRefusal.TOO_LARGE)
        rows.append(load_json(line, where=f"NDJSON line {number}"))
    return rows


class JsonBodyParser(Parser):
    """ninja's Schema bodies read as the hand-read ones are. ninja answers any parse error with its own 400
    ("Cannot parse request body"), keeping ours as the cause; the API's HttpError handler answers with ours."""

    def parse_body(self, request: HttpRequest) -> Any:
        return load_json(request.body, where="JSON body")
