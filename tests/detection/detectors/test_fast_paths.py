"""The scan's faster paths give exactly what the plain ones give: `unique_first` is np.unique, and the member index's
KD-tree (its leaf size, its threads) finds the same matches as measuring every distance."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.detection.detectors.base import MemberIndex
from monitor.detection.detectors.fingerprints import unique_first


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [0, 1, 2, 7, 1_000, 50_000])
def test_unique_first_is_numpys_unique_with_every_output(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    for dtype, high in ((np.int64, max(n // 3, 1)), (np.uint64, 2**63)):
        values = rng.integers(0, high, size=n).astype(dtype)
        values = values[rng.integers(0, max(len(values), 1), size=n)] if n else values  # repeats, out of order
        got = unique_first(values)
        want = np.unique(values, return_index=True, return_inverse=True, return_counts=True)
        for mine, numpys in zip(got, want, strict=True):
            assert np.array_equal(mine, np.asarray(numpys).reshape(-1))
        assert got[0].dtype == values.dtype


def _brute_force(index: MemberIndex, members_z: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distance = np.sqrt(((z[:, None, :] - members_z[None, :, :]) ** 2).sum(axis=2))
    nearest = distance.argmin(axis=1)
    matched = distance[np.arange(len(z)), nearest] <= index.radius[nearest]
    return matched, np.where(matched, nearest, -1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("d", [3, 8, 20])
def test_member_index_finds_what_measuring_every_distance_finds(seed: int, d: int) -> None:
    rng = np.random.default_rng(100 + seed)
    members_z = rng.normal(size=(600, d)) * rng.uniform(0.3, 3.0, size=d)
    index = MemberIndex(members_z, np.arange(600), radius_fraction=0.5)
    copies = members_z[rng.integers(0, 600, size=150)]
    z = np.concatenate([
        copies + 1e-7,  # float32 logging of a member
        copies + rng.normal(scale=0.05, size=copies.shape),  # close to a member, inside or outside its radius
        rng.normal(size=(300, d)) * members_z.std(axis=0),  # anywhere
    ])
    matched, position = index.match(z)
    want_matched, want_position = _brute_force(index, members_z, z)
    assert matched[:150].all()
    assert np.array_equal(matched, want_matched)
    assert np.array_equal(position, want_position)
