"""Content-derived record keys: every random choice about a record (its noise, which reference models train
on it) is drawn from (seed, purpose, key), so shuffling the evaluation arrays changes no figure."""
from __future__ import annotations

import zlib

import numpy as np

_MASK64 = (1 << 64) - 1


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def record_keys(X: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of X, equal for equal rows (so exact duplicates share every random draw).

    The row's float bits are folded column by column through SplitMix64: vectorised, so keying the
    million noisy queries of a label-only attack takes milliseconds.
    """
    rows = np.ascontiguousarray(np.asarray(X, dtype=np.float64) + 0.0)  # + 0.0 turns -0.0 into 0.0
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-D feature array, got shape {rows.shape}")
    bits = rows.view(np.uint64)
    key = np.full(len(rows), np.uint64(rows.shape[1]))
    for column in range(rows.shape[1]):
        key = _splitmix64(key ^ _splitmix64(bits[:, column]))
    return key


def purpose_code(purpose: str) -> int:
    return zlib.crc32(purpose.encode())


def mixed_keys(keys: np.ndarray, *, seed: int, purpose: str, stream: int = 0) -> np.ndarray:
    """SplitMix64 of (key, seed, purpose, stream): independent-looking 64-bit draws, vectorised."""
    salt = (seed * 0x9E3779B97F4A7C15 + purpose_code(purpose) * 0xD1B54A32D192ED03 + stream * 0xABC98388FB8FAC03)
    return _splitmix64(np.asarray(keys, dtype=np.uint64) ^ np.uint64(salt & _MASK64))


def keyed_uniform(keys: np.ndarray, *, seed: int, purpose: str, stream: int = 0) -> np.ndarray:
    """A uniform [0, 1) draw per record, a function of its key only."""
    bits = mixed_keys(keys, seed=seed, purpose=purpose, stream=stream) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


def keyed_order(keys: np.ndarray, *, seed: int, purpose: str) -> np.ndarray:
    """A pseudo-random permutation that depends on the records' contents, not their positions.

    Exact duplicates (equal keys) are ordered by position among themselves; they are the same record,
    so which copy comes first changes nothing downstream.
    """
    return np.argsort(mixed_keys(keys, seed=seed, purpose=purpose), kind="stable")


def record_rng(key: int | np.integer, *, seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng([seed, purpose_code(purpose), int(key)])
