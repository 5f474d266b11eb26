"""The query log's vector format: little-endian float32, one row per bytea cell. Encoded and decoded here only,
so the writer (ingestion) and the readers (scanning, pages) cannot drift apart. Pure numpy."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DTYPE = "<f4"


def encode_vectors(array: np.ndarray) -> np.ndarray:
    """An (n, width) array in the stored dtype; row i's cell is `result[i].tobytes()`."""
    return np.asarray(array).astype(DTYPE, copy=False)


def decode_vectors(blobs: Sequence[bytes | memoryview], width: int) -> np.ndarray:
    """Stored cells back into an (n, width) float32 array."""
    if not blobs:
        return np.empty((0, width), dtype=np.float32)
    return np.frombuffer(b"".join(bytes(b) for b in blobs), dtype=DTYPE).reshape(len(blobs), width)
