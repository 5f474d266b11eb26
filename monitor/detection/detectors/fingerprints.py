"""Keyed, salted fingerprints of standardised queries: near-duplicates share a fingerprint, others rarely do.

Blacklight (Li et al., USENIX Security 2022) hashes quantised image segments; for tabular data we
quantise every standardised feature on a grid and hash the cell. Each of `n_grids` grids has its
own random offset per feature, so two queries split by a cell boundary on one grid usually share
a cell on another (shifted-grid LSH). Offsets and hash multipliers come from HMAC-SHA256 of the
model's secret key: without it an attacker can neither place queries just across a boundary nor
link a fingerprint to a region of feature space.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

# Fingerprints keep 52 bits: exact as JSON numbers in every consumer (JavaScript included), and
# with ~1e7 distinct cells per model a chance collision stays below 1e-4.
FINGERPRINT_BITS = 52
_MASK = np.uint64((1 << FINGERPRINT_BITS) - 1)
_FMIX_1 = np.uint64(0xFF51AFD7ED558CCD)  # MurmurHash3 fmix64 constants (Appleby)
_FMIX_2 = np.uint64(0xC4CEB9FE1A85EC53)


def _keyed_bytes(key: bytes, label: str, n_bytes: int) -> bytes:
    """HMAC-SHA256 in counter mode: as many pseudo-random bytes as needed, bound to key and label."""
    blocks = (n_bytes + 31) // 32
    stream = b"".join(
        hmac.new(key, f"mia-monitor/fingerprint/v1/{label}/{i}".encode(), hashlib.sha256).digest()
        for i in range(blocks)
    )
    return stream[:n_bytes]


def _grid_parameters(key: bytes, purpose: str, grid: int, d: int) -> tuple[np.ndarray, np.ndarray, np.uint64]:
    raw = np.frombuffer(_keyed_bytes(key, f"{purpose}/grid{grid}", 16 * d + 8), dtype="<u8")
    offsets = (raw[:d] >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # uniform in [0, 1)
    multipliers = raw[d : 2 * d] | np.uint64(1)  # odd: a bijection mod 2**64, no cell coordinate is lost
    salt = raw[2 * d]
    return offsets, multipliers, salt


def mix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser: every input bit flips about half the output bits."""
    h = values.astype(np.uint64, copy=True)
    h ^= h >> np.uint64(33)
    h *= _FMIX_1
    h ^= h >> np.uint64(33)
    h *= _FMIX_2
    h ^= h >> np.uint64(33)
    return h


def unique_first(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`np.unique(values, return_index=True, return_inverse=True, return_counts=True)` of 1-d keys, the same arrays
    about 3 times faster (1.4 M keys: 49 ms against 163 ms): np.unique needs a stable sort for the first index,
    which numpy runs without SIMD; here an unstable sort, then each key's first position by `np.minimum.at`."""
    values = np.asarray(values).reshape(-1)
    n = len(values)
    order = np.argsort(values, kind="quicksort")
    ordered = values[order]
    new = np.empty(n, bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    first = np.full(len(starts), n, np.int64)
    np.minimum.at(first, group, order)
    inverse = np.empty(n, np.int64)
    inverse[order] = group
    return ordered[starts], first, inverse, np.diff(np.append(starts, n))


def quantised_fingerprints(
    z: np.ndarray, *, key: bytes, cell_size: float, n_grids: int, purpose: str = "cells", first_grid: int = 0
) -> np.ndarray:
    """(n, n_grids) int64 fingerprints in [0, 2**52) of standardised rows z, one per shifted grid.

    `cell_size` is in standard deviations; queries closer than about a tenth of it on every
    feature share the cell on most grids. Each `purpose` gets its own grids and hashes; grid g is
    the same whichever `first_grid` and `n_grids` are asked for.
    """
    z = np.asarray(z, dtype=np.float32)
    n, d = z.shape
    out = np.empty((n, n_grids), dtype=np.int64)
    # Clip so that the integer cell index cannot overflow; values this far out share an edge cell.
    scaled = np.clip(z * np.float32(1.0 / cell_size), -1e9, 1e9)
    for column, grid in enumerate(range(first_grid, first_grid + n_grids)):
        offsets, multipliers, salt = _grid_parameters(key, purpose, grid, d)
        cells = np.floor(scaled + offsets.astype(np.float32)).astype(np.int64).view(np.uint64)
        # Multiply-add over the coordinates wraps mod 2**64 (a universal hash of the cell vector);
        # the salted finaliser then spreads it over all bits.
        cells *= multipliers
        h = cells.sum(axis=1, dtype=np.uint64) ^ salt
        out[:, column] = (mix64(h) & _MASK).view(np.int64)
    return out
