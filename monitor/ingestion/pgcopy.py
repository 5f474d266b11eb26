"""PostgreSQL's binary COPY format for the query log, built for a whole batch at once with numpy.

Writing row by row through the driver cost more than the server's own COPY work. Here the fixed-width columns
are one big-endian structured array and the two text columns (client_id, request_id) are padded matrices; a
mask drops the padding, so the payload is assembled without a Python step per field. Pure numpy.

Format: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format): a signature, flags and header
extension, then per row a 16-bit field count and each field as a 32-bit length (-1 for NULL) and its bytes,
then a 16-bit -1.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
# Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
PG_EPOCH_MICROS = 946_684_800 * 1_000_000
# The order the payload's columns are in; the COPY statement must name them in this order.
COLUMNS = ("model_id", "ts", "features", "outputs", "label", "confidence", "client_id", "request_id")


def _fixed_dtype(feature_bytes: int, output_bytes: int) -> np.dtype:
    return np.dtype([
        ("n_fields", ">i2"),
        ("model_len", ">i4"), ("model_id", ">i8"),
        ("ts_len", ">i4"), ("ts", ">i8"),
        ("features_len", ">i4"), ("features", f"V{feature_bytes}"),
        ("outputs_len", ">i4"), ("outputs", f"V{output_bytes}"),
        ("label_len", ">i4"), ("label", ">i2"),
        ("confidence_len", ">i4"), ("confidence", ">f8"),
    ])


def _text_fields(values: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4 + widest) uint8 matrix of length-prefixed UTF-8 fields (length -1 for None), and the mask of real bytes."""
    encoded = [b"" if value is None else value.encode() for value in values]
    lengths = np.fromiter((len(item) for item in encoded), dtype=np.int64, count=len(encoded))
    widest = int(lengths.max(initial=0))
    body = np.frombuffer(np.array(encoded, dtype=f"S{max(widest, 1)}").tobytes(), dtype=np.uint8)
    body = body.reshape(len(encoded), max(widest, 1))[:, :widest]
    nulls = np.fromiter((value is None for value in values), dtype=bool, count=len(values))
    prefix = np.where(nulls, -1, lengths).astype(">i4").view(np.uint8).reshape(len(values), 4)
    matrix = np.hstack([prefix, body])
    mask = np.arange(4 + widest) < (4 + lengths)[:, None]
    return matrix, mask


def copy_payload(*, model_id: int, micros: np.ndarray, features: np.ndarray, outputs: np.ndarray,
                 labels: np.ndarray, confidences: np.ndarray, client_ids: Sequence[str],
                 request_ids: Sequence[str | None]) -> bytes:
    """The rows as one binary COPY stream (signature to trailer), columns in `COLUMNS` order.

    `micros` are microseconds since the Unix epoch; `features` and `outputs` are (n, width) arrays whose rows
    are stored byte for byte (the log's own vector encoding).
    """
    n = len(micros)
    if n == 0:
        return SIGNATURE + TRAILER
    features = np.ascontiguousarray(features)
    outputs = np.ascontiguousarray(outputs)
    feature_bytes = features.dtype.itemsize * features.shape[1]
    output_bytes = outputs.dtype.itemsize * outputs.shape[1]
    fixed = np.empty(n, dtype=_fixed_dtype(feature_bytes, output_bytes))
    fixed["n_fields"] = len(COLUMNS)
    fixed["model_len"], fixed["model_id"] = 8, model_id
    fixed["ts_len"], fixed["ts"] = 8, np.asarray(micros, dtype=np.int64) - PG_EPOCH_MICROS
    fixed["features_len"], fixed["outputs_len"] = feature_bytes, output_bytes
    fixed["features"] = features.view(f"V{feature_bytes}").reshape(n)
    fixed["outputs"] = outputs.view(f"V{output_bytes}").reshape(n)
    fixed["label_len"], fixed["label"] = 2, labels
    fixed["confidence_len"], fixed["confidence"] = 8, confidences
    clients, client_mask = _text_fields(client_ids)
    requests, request_mask = _text_fields(request_ids)
    rows = np.hstack([fixed.view(np.uint8).reshape(n, fixed.dtype.itemsize), clients, requests])
    mask = np.hstack([np.ones((n, fixed.dtype.itemsize), dtype=bool), client_mask, request_mask])
    return SIGNATURE + rows[mask].tobytes() + TRAILER
