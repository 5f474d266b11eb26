"""The skops tree check cannot be skipped (issue 27, finding 6): every tree is found however it is nested (pipelines
in pipelines, dicts, lists), nesting past the limit is refused rather than left unchecked, and every index array is
checked — children, features and gradient boosting's category bitsets."""
from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

from monitor.registry.artifacts import ArtifactError, load_skops, validate_trees

X = np.random.default_rng(0).normal(size=(200, 3))
Y = (X[:, 0] > 0).astype(int)


def broken_tree() -> DecisionTreeClassifier:
    """A fitted tree whose root points at a node far outside the tree: compiled code would read past the array."""
    tree = DecisionTreeClassifier(random_state=0).fit(X, Y)
    tree.tree_.children_left[0] = 10**6
    return tree


def nested(estimator, levels: int) -> Pipeline:
    for level in range(levels):
        estimator = Pipeline([(f"identity{level}", FunctionTransformer()), (f"level{level}", estimator)])
    return estimator


def test_a_malformed_tree_inside_seven_nested_pipelines_is_found():
    with pytest.raises(ArtifactError, match="malformed decision tree"):
        load_skops(sio.dumps(nested(broken_tree(), 7)))


def test_a_malformed_tree_kept_in_a_dict_is_found():
    holder = FunctionTransformer(kw_args={"model": {"inner": broken_tree()}})
    with pytest.raises(ArtifactError, match="malformed decision tree"):
        validate_trees(holder, n_features=3)


def test_nesting_past_the_limit_is_refused_not_left_unchecked():
    deep: list = [broken_tree()]
    for _ in range(70):
        deep = [deep]
    with pytest.raises(ArtifactError, match="levels deep"):
        validate_trees(deep, n_features=3)


def test_a_sound_pipeline_of_seven_levels_still_loads():
    sound = nested(DecisionTreeClassifier(random_state=0).fit(X, Y), 7)
    assert load_skops(sio.dumps(sound)).predict_proba(X[:4]).shape == (4, 2)


def test_a_gradient_boosting_tree_with_a_category_bitset_index_out_of_range_is_refused():
    rng = np.random.default_rng(1)
    categories = rng.integers(0, 5, size=(300, 1)).astype(float)
    data = np.hstack([categories, rng.normal(size=(300, 2))])
    labels = (categories[:, 0] % 2 == 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0], random_state=0).fit(data, labels)
    nodes = next(p for predictors in model._predictors for p in predictors if p.nodes["is_categorical"].any()).nodes
    split = np.flatnonzero((nodes["is_categorical"] == 1) & (nodes["is_leaf"] == 0))[0]
    nodes["bitset_idx"][split] = 10**6
    with pytest.raises(ArtifactError, match="bitset"):
        validate_trees(model, n_features=3)
