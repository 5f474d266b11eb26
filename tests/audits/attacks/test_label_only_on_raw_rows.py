"""Label-only neighbours of a table of raw values: numbers move by noise, categories flip to other training
categories (never to a code that stands for none), cells are blanked only where the model takes a missing value."""
from __future__ import annotations

import numpy as np

from audits.attacks.label_only import FeatureKinds, LabelOnlyConfig, neighbourhood_queries


def test_categories_flip_among_training_codes_and_blanks_only_where_missing_is_taken():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(40, 10, 50), rng.integers(0, 3, 50), rng.integers(0, 5, 50)]).astype(float)
    X[::7, 2] = np.nan  # a missing category
    kinds = FeatureKinds(categories=(0, 3, 5), missing_ok=(False, False, True))
    config = LabelOnlyConfig(n_neighbours=8)
    queries = neighbourhood_queries(X, feature_std=np.array([10.0, 0.8, 1.4]), config=config, kinds=kinds)
    neighbours = queries[len(X):].reshape(len(X), len(config.radii), config.n_neighbours, 3)
    assert np.array_equal(queries[:len(X)], X, equal_nan=True)
    assert not np.isnan(neighbours[..., :2]).any()  # nothing blanked where the model takes no missing value
    categories = neighbours[..., 1]
    assert set(np.unique(categories)) <= {0.0, 1.0, 2.0}
    present = neighbours[..., 2][~np.isnan(neighbours[..., 2])]
    assert set(np.unique(present)) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert np.isnan(neighbours[..., 2]).mean() > np.isnan(X[:, 2]).mean()  # blanks where it may
    flipped = categories != X[:, 1][:, None, None]
    assert 0 < flipped[:, 0].mean() < flipped[:, -1].mean()  # more flips at larger radii
    assert not np.allclose(neighbours[..., 0], X[:, 0][:, None, None])  # numbers move


def test_without_kinds_every_feature_is_a_number_as_before():
    X = np.arange(12, dtype=float).reshape(4, 3)
    config = LabelOnlyConfig(n_neighbours=2)
    plain = neighbourhood_queries(X, feature_std=np.ones(3), config=config)
    numeric_kinds = neighbourhood_queries(X, feature_std=np.ones(3), config=config,
                                          kinds=FeatureKinds(categories=(0, 0, 0), missing_ok=(False,) * 3))
    assert np.array_equal(plain, numeric_kinds)
