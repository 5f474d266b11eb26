"""XGBoost and LightGBM models in their own file formats: recognised by content, their trees bounds-checked, loaded by
the library's own parser (never pickle), and the unfitted estimator their audit's reference models are trained as.

Formats: XGBoost JSON (`model.json`), XGBoost UBJSON (`model.ubj`), LightGBM text (`model.txt`). A booster file has
no class labels: class i is the i-th label of the model's data in sorted order (`check_labels`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

XGBOOST_JSON, XGBOOST_UBJ, LIGHTGBM_TEXT = "xgboost_json", "xgboost_ubj", "lightgbm_text"
BOOSTER_FORMATS = (XGBOOST_JSON, XGBOOST_UBJ, LIGHTGBM_TEXT)

# Sanity bounds, far above real models: a file past them is refused before anything walks it.
MAX_TREES = 100_000
MAX_DEPTH = 1_000
MAX_LEAVES = 1 << 20

# Objectives whose output is a probability per class (XGBClassifier.predict_proba's own cases; softmax's
# margins go through a softmax as XGBClassifier does). Anything else is refused by name.
XGBOOST_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax")
LIGHTGBM_OBJECTIVES = ("binary", "multiclass")

# XGBoost keeps no training parameters in a model file (a loaded Booster's save_config() shows the library's
# defaults, not what it was trained with: checked with 3.2.0), so these take XGBoost's defaults unless the file's
# `training_parameters` attribute gives them (see `xgboost_given_parameters`).
XGBOOST_DEFAULTED = {"learning_rate": 0.3, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0,
                     "reg_lambda": 1.0, "reg_alpha": 0.0, "gamma": 0.0}
XGBOOST_GIVEN_TYPES: dict[str, type] = {
    "learning_rate": float, "min_child_weight": float, "subsample": float, "colsample_bytree": float,
    "colsample_bylevel": float, "colsample_bynode": float, "reg_lambda": float, "reg_alpha": float, "gamma": float,
    "max_delta_step": float, "scale_pos_weight": float, "max_leaves": int, "max_bin": int, "grow_policy": str,
    "tree_method": str, "max_depth": int,
}
_XGBOOST_ALIASES = {"eta": "learning_rate", "lambda": "reg_lambda", "alpha": "reg_alpha", "min_split_loss": "gamma"}

# LightGBM's `parameters:` section, by its own name: (LGBMClassifier keyword, type, binary objective only).
LIGHTGBM_PARAMETERS: dict[str, tuple[str, type, bool]] = {
    "boosting": ("boosting_type", str, False),
    "learning_rate": ("learning_rate", float, False),
    "num_leaves": ("num_leaves", int, False),
    "max_depth": ("max_depth", int, False),
    "min_data_in_leaf": ("min_child_samples", int, False),
    "min_sum_hessian_in_leaf": ("min_child_weight", float, False),
    "bagging_fraction": ("subsample", float, False),
    "bagging_freq": ("subsample_freq", int, False),
    "feature_fraction": ("colsample_bytree", float, False),
    "lambda_l1": ("reg_alpha", float, False),
    "lambda_l2": ("reg_lambda", float, False),
    "min_gain_to_split": ("min_split_gain", float, False),
    "max_bin": ("max_bin", int, False),
    "min_data_in_bin": ("min_data_in_bin", int, False),
    "feature_fraction_bynode": ("feature_fraction_bynode", float, False),
    "extra_trees": ("extra_trees", bool, False),
    "path_smooth": ("path_smooth", float, False),
    "max_delta_step": ("max_delta_step", float, False),
    "data_sample_strategy": ("data_sample_strategy", str, False),
    "top_rate": ("top_rate", float, False),
    "other_rate": ("other_rate", float, False),
    "drop_rate": ("drop_rate", float, False),
    "max_drop": ("max_drop", int, False),
    "skip_drop": ("skip_drop", float, False),
    "xgboost_dart_mode": ("xgboost_dart_mode", bool, False),
    "uniform_drop": ("uniform_drop", bool, False),
    "boost_from_average": ("boost_from_average", bool, False),
    "is_unbalance": ("is_unbalance", bool, True),
    "scale_pos_weight": ("scale_pos_weight", float, True),
    "pos_bagging_fraction": ("pos_bagging_fraction", float, True),
    "neg_bagging_fraction": ("neg_bagging_fraction", float, True),
    "sigmoid": ("sigmoid", float, True),
}
_UBJSON_LENGTH_BYTES = {b"i": 1, b"U": 1, b"I": 2, b"l": 4, b"L": 8}


class BoosterError(ValueError):
    """A booster file we refuse or cannot use; the message says why (artifacts.py reports it as an ArtifactError)."""


@dataclass
class TreeFacts:
    """What the trees of a file show: how many, in how many rounds, how deep, how many leaves at most."""

    n_trees: int
    rounds: int
    max_depth: int
    max_leaves: int


@dataclass
class BoosterPredictor:
    """A booster loaded from its own file format. `classes` is empty: registration takes the labels from the data."""

    library: str  # "xgboost" or "lightgbm"
    fmt: str
    booster: Any
    objective: str
    n_classes: int
    n_features: int
    feature_names: list[str] | None
    trees: TreeFacts
    parameters: dict[str, str] = field(default_factory=dict)  # as the file states them (LightGBM; XGBoost's given)
    base_score: str | None = None  # XGBoost: set only when the file fixes it (boost_from_average off)
    xgboost_booster_kind: str = "gbtree"
    num_parallel_tree: int = 1
    classes: list[str] = field(default_factory=list)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)  # NaN is a missing value to both libraries
        if self.library == "xgboost":
            if self.objective == "multi:softmax":
                from scipy.special import softmax

                margins = self.booster.inplace_predict(X, predict_type="margin", missing=np.nan)
                return np.asarray(softmax(margins, axis=1), dtype=np.float64)
            raw = np.asarray(self.booster.inplace_predict(X, missing=np.nan))
        else:
            raw = np.asarray(self.booster.predict(X, num_threads=1))
        if raw.ndim == 1:  # binary: P(class 1); 1 - p in the library's own dtype, as its predict_proba does
            return np.column_stack([1 - raw, raw]).astype(np.float64)
        return raw.astype(np.float64)

    def check_labels(self, labels: list[str]) -> None:
        """The booster's outputs are the data's labels in sorted order: refuse a count that cannot match."""
        if self.n_classes != len(labels):
            raise BoosterError(
                f"the {self.library} model predicts {self.n_classes} classes but the data has {len(labels)} labels "
                f"{labels}; a booster file has no class names, so class i is the i-th label in sorted order and the "
                "counts must agree")


def sniff_booster(data: bytes) -> str | None:
    """XGBOOST_JSON, XGBOOST_UBJ or LIGHTGBM_TEXT by content, or None. Parses text and JSON only; never unpickles."""
    if data.startswith((b"tree\nversion=v", b"tree\r\nversion=v")):
        return LIGHTGBM_TEXT
    head = data[:64].lstrip()
    if not head.startswith(b"{"):
        return None
    if head[1:2] in _UBJSON_LENGTH_BYTES and _ubjson_first_key(head) in (b"learner", b"version"):
        return XGBOOST_UBJ
    try:
        model = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return XGBOOST_JSON if isinstance(model, dict) and "learner" in model and "version" in model else None


def _ubjson_first_key(head: bytes) -> bytes | None:
    """The first key of a UBJSON object (XGBoost writes `{` then a length-prefixed key), or None."""
    size = _UBJSON_LENGTH_BYTES[head[1:2]]
    if len(head) < 2 + size:
        return None
    length = int.from_bytes(head[2:2 + size], "big", signed=head[1:2] != b"U")
    return head[2 + size:2 + size + length] if 0 < length <= 16 else None


def load_booster(data: bytes, fmt: str) -> BoosterPredictor:
    if fmt == LIGHTGBM_TEXT:
        return load_lightgbm(data)
    if fmt in (XGBOOST_JSON, XGBOOST_UBJ):
        return load_xgboost(data, fmt)
    raise BoosterError(f"unknown booster format {fmt!r}")


# --- XGBoost --------------------------------------------------------------------------------------------------

def load_xgboost(data: bytes, fmt: str) -> BoosterPredictor:
    """Check a JSON model's trees before XGBoost reads it; a UBJSON model is read by XGBoost (its parser builds
    arrays, it does not walk trees) and checked as the JSON it saves, before anything predicts with it."""
    import xgboost

    model = None
    if fmt == XGBOOST_JSON:
        try:
            model = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BoosterError(f"the XGBoost JSON model cannot be read: {exc}") from exc
        xgboost_facts(model)  # before XGBoost reads a byte of it
    elif not data.lstrip().startswith(b"{") or _ubjson_first_key(data.lstrip()[:64]) not in (b"learner", b"version"):
        raise BoosterError("the file is not an XGBoost UBJSON model (it does not start with a UBJSON object whose "
                           "first key is 'learner' or 'version')")
    try:
        booster = xgboost.Booster(model_file=bytearray(data))  # a bytearray is parsed from memory, never a path
    except xgboost.core.XGBoostError as exc:
        raise BoosterError(f"XGBoost cannot read the model: {str(exc).splitlines()[0]}") from exc
    booster.set_param({"nthread": 1})
    if model is None:
        model = json.loads(bytes(booster.save_raw(raw_format="json")))
    facts, learner = xgboost_facts(model)
    names = learner.get("feature_names") or None
    return BoosterPredictor(
        library="xgboost", fmt=fmt, booster=booster, objective=facts["objective"], n_classes=facts["n_classes"],
        n_features=facts["n_features"], feature_names=[str(n) for n in names] if names else None,
        trees=facts["trees"], parameters=xgboost_given_parameters(learner), base_score=facts["base_score"],
        xgboost_booster_kind=facts["booster"], num_parallel_tree=facts["num_parallel_tree"],
    )


def xgboost_facts(model: Any) -> tuple[dict[str, Any], dict]:
    """Objective, classes, features and tree facts of an XGBoost model as JSON; BoosterError if it is not one we
    can use. Every tree is walked from its root: children in range, each node reached once, features in range."""
    learner = model.get("learner") if isinstance(model, dict) else None
    if not isinstance(learner, dict) or "version" not in model:
        raise BoosterError("the file is not an XGBoost model (no 'learner' and 'version')")
    try:
        objective = str(learner["objective"]["name"])
        params = learner["learner_model_param"]
        n_features = int(params["num_feature"])
        num_class = int(params.get("num_class", "0"))
        num_target = int(params.get("num_target", "1"))
        booster_kind = str(learner["gradient_booster"]["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BoosterError(f"the XGBoost model is incomplete: {type(exc).__name__} {exc}") from exc
    if objective not in XGBOOST_OBJECTIVES:
        raise BoosterError(f"the XGBoost model's objective is {objective!r}, not a classifier with probabilities; "
                           f"accepted: {', '.join(XGBOOST_OBJECTIVES)}")
    if num_target != 1:
        raise BoosterError(f"the XGBoost model has {num_target} targets; one target is supported")
    if booster_kind not in ("gbtree", "dart"):
        raise BoosterError(f"the XGBoost model's booster is {booster_kind!r}; tree boosters (gbtree, dart) are supported")
    gradient_booster = learner["gradient_booster"]
    try:
        trees_model = (gradient_booster["gbtree"] if booster_kind == "dart" else gradient_booster)["model"]
        trees = trees_model["trees"]
        tree_info = [int(group) for group in trees_model["tree_info"]]
        num_parallel_tree = int(trees_model["gbtree_model_param"].get("num_parallel_tree", "1"))
    except (KeyError, TypeError, ValueError) as exc:
        raise BoosterError(f"the XGBoost model's trees are incomplete: {type(exc).__name__} {exc}") from exc
    n_groups = num_class if objective.startswith("multi:") else 1
    if objective.startswith("multi:") and num_class < 2:
        raise BoosterError(f"the XGBoost model's objective is {objective} but num_class is {num_class}")
    if not isinstance(trees, list) or not trees or len(trees) > MAX_TREES:
        raise BoosterError(f"the XGBoost model has {len(trees) if isinstance(trees, list) else 'no'} trees; "
                           f"1 to {MAX_TREES:,} are accepted")
    if len(tree_info) != len(trees) or any(not 0 <= group < n_groups for group in tree_info):
        raise BoosterError("the XGBoost model's tree_info does not match its trees and classes")
    if not 0 < n_features <= 10**6:
        raise BoosterError(f"the XGBoost model declares {n_features} features")
    depths = [_xgboost_tree_depth(tree, index=i, n_features=n_features) for i, tree in enumerate(trees)]
    per_round = n_groups * max(num_parallel_tree, 1)
    base_score = None if str(params.get("boost_from_average", "1")) == "1" else str(params.get("base_score"))
    return {
        "objective": objective, "n_classes": max(num_class, 2), "n_features": n_features, "booster": booster_kind,
        "num_parallel_tree": max(num_parallel_tree, 1), "base_score": base_score,
        "trees": TreeFacts(n_trees=len(trees), rounds=max(len(trees) // per_round, 1), max_depth=max(depths),
                           max_leaves=max(sum(1 for c in t["left_children"] if c == -1) for t in trees)),
    }, learner


def _xgboost_tree_depth(tree: Any, *, index: int, n_features: int) -> int:
    def bad(why: str) -> BoosterError:
        return BoosterError(f"the XGBoost model's tree {index} is malformed: {why}")

    try:
        n = int(tree["tree_param"]["num_nodes"])
        left, right = tree["left_children"], tree["right_children"]
        features, split_types = tree["split_indices"], tree.get("split_type", [])
        indexed = [tree[key] for key in ("parents", "split_conditions", "default_left", "base_weights")]
        leaf_vector = int(tree["tree_param"].get("size_leaf_vector", "1"))
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"{type(exc).__name__} {exc}") from exc
    if leaf_vector > 1:
        raise bad("it has vector leaves (a multi-target model)")
    if not 0 < n <= 2 * MAX_LEAVES or any(len(a) != n for a in (left, right, features, *indexed)):
        raise bad("its arrays do not match num_nodes")
    if any(t != 0 for t in split_types):
        raise BoosterError(f"the XGBoost model's tree {index} has categorical splits; only numeric features are "
                           "supported (encode categories as numbers before training)")
    depth, stack, seen = 0, [(0, 0)], set()
    while stack:
        node, level = stack.pop()
        if node in seen:
            raise bad(f"node {node} is reached twice")
        seen.add(node)
        depth = max(depth, level)
        if level > MAX_DEPTH:
            raise bad(f"it is deeper than {MAX_DEPTH:,}")
        low, high = left[node], right[node]
        if low == -1 and high == -1:
            continue
        if not (isinstance(low, int) and isinstance(high, int) and 0 < low < n and 0 < high < n):
            raise bad(f"node {node}'s children ({low}, {high}) are out of range")
        if not (isinstance(features[node], int) and 0 <= features[node] < n_features):
            raise bad(f"node {node} splits on feature {features[node]} of {n_features}")
        stack.extend(((low, level + 1), (high, level + 1)))
    return depth


def xgboost_given_parameters(learner: dict) -> dict[str, str]:
    """Training parameters a team put in the file: `booster.set_attr(training_parameters=json.dumps({...}))`
    before `save_model` (XGBoost keeps attributes in the file). Unknown names and unreadable values are ignored."""
    attributes = learner.get("attributes") or {}
    try:
        given = json.loads(attributes.get("training_parameters", "{}"))
    except (TypeError, ValueError):
        return {}
    if not isinstance(given, dict):
        return {}
    out: dict[str, str] = {}
    for name, value in given.items():
        key = _XGBOOST_ALIASES.get(str(name), str(name))
        if key in XGBOOST_GIVEN_TYPES and isinstance(value, str | int | float) and not isinstance(value, bool):
            out[key] = str(value)
    return out


# --- LightGBM -------------------------------------------------------------------------------------------------

@dataclass
class LightgbmText:
    header: dict[str, str]
    trees: list[dict[str, str]]
    parameters: dict[str, str]


def parse_lightgbm_text(text: str) -> LightgbmText:
    """The header, the tree blocks and the `parameters:` section of a LightGBM model file, as strings."""
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    parameters: dict[str, str] = {}
    section = "header"
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Tree="):
            section = "tree"
            trees.append({})
        elif line in ("end of trees", "feature_importances:"):
            section = "after"
        elif line == "parameters:":
            section = "parameters"
        elif line == "end of parameters":
            section = "after"
        elif section == "parameters" and line.startswith("[") and line.endswith("]") and ": " in line:
            key, _, value = line[1:-1].partition(": ")
            parameters[key] = value
        elif section in ("header", "tree") and "=" in line:
            key, _, value = line.partition("=")
            (header if section == "header" else trees[-1])[key] = value
    return LightgbmText(header=header, trees=trees, parameters=parameters)


def load_lightgbm(data: bytes) -> BoosterPredictor:
    """Check the text's trees, then let LightGBM parse it. The header's `tree_sizes` (byte offsets LightGBM would
    jump by) is dropped first, so LightGBM finds each tree by its `Tree=` line instead of trusting the file."""
    import lightgbm

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BoosterError(f"the LightGBM model is not UTF-8 text: {exc}") from exc
    parsed = parse_lightgbm_text(text)
    facts = lightgbm_facts(parsed)
    safe_text = "\n".join(line for line in text.splitlines() if not line.startswith("tree_sizes=")) + "\n"
    try:
        booster = lightgbm.Booster(model_str=safe_text)
    except lightgbm.basic.LightGBMError as exc:
        raise BoosterError(f"LightGBM cannot read the model: {str(exc).splitlines()[0]}") from exc
    names = parsed.header.get("feature_names", "").split()
    generated = [f"Column_{i}" for i in range(facts["n_features"])]  # LightGBM's names for unnamed columns
    return BoosterPredictor(
        library="lightgbm", fmt=LIGHTGBM_TEXT, booster=booster, objective=facts["objective"],
        n_classes=facts["n_classes"], n_features=facts["n_features"],
        feature_names=names if names and names != generated else None, trees=facts["trees"],
        parameters=parsed.parameters,
    )


def lightgbm_facts(parsed: LightgbmText) -> dict[str, Any]:
    header = parsed.header
    try:
        objective = header.get("objective", "").split()[0]
    except IndexError:
        objective = ""
    if objective not in LIGHTGBM_OBJECTIVES:
        raise BoosterError(f"the LightGBM model's objective is {objective or 'not stated (a custom objective?)'!r}, "
                           f"not a classifier with probabilities; accepted: {', '.join(LIGHTGBM_OBJECTIVES)}")
    try:
        num_class = int(header["num_class"])
        per_iteration = int(header["num_tree_per_iteration"])
        n_features = int(header["max_feature_idx"]) + 1
    except (KeyError, ValueError) as exc:
        raise BoosterError(f"the LightGBM model's header is incomplete: {type(exc).__name__} {exc}") from exc
    n_classes = 2 if objective == "binary" else num_class
    if n_classes < 2 or per_iteration != (1 if objective == "binary" else num_class):
        raise BoosterError(f"the LightGBM model's classes do not add up: objective {objective}, num_class {num_class}, "
                           f"{per_iteration} trees per iteration")
    if not 0 < n_features <= 10**6:
        raise BoosterError(f"the LightGBM model declares {n_features} features")
    if not parsed.trees or len(parsed.trees) > MAX_TREES or len(parsed.trees) % per_iteration:
        raise BoosterError(f"the LightGBM model has {len(parsed.trees)} trees; 1 to {MAX_TREES:,} are accepted, "
                           f"a multiple of {per_iteration}")
    depths, leaves = [], []
    for index, tree in enumerate(parsed.trees):
        depth, n_leaves = _lightgbm_tree_depth(tree, index=index, n_features=n_features)
        depths.append(depth)
        leaves.append(n_leaves)
    return {"objective": objective, "n_classes": n_classes, "n_features": n_features,
            "trees": TreeFacts(n_trees=len(parsed.trees), rounds=len(parsed.trees) // per_iteration,
                               max_depth=max(depths), max_leaves=max(leaves))}


def _lightgbm_tree_depth(tree: dict[str, str], *, index: int, n_features: int) -> tuple[int, int]:
    def bad(why: str) -> BoosterError:
        return BoosterError(f"the LightGBM model's tree {index} is malformed: {why}")

    try:
        n_leaves = int(tree["num_leaves"])
        n_cat = int(tree.get("num_cat", "0"))
        linear = tree.get("is_linear", "0") != "0"

        def ints(key: str, size: int) -> list[int]:
            values = [int(v) for v in tree.get(key, "").split()]
            if len(values) != size:
                raise bad(f"{key} has {len(values)} values, expected {size}")
            return values

        if not 1 <= n_leaves <= MAX_LEAVES:
            raise bad(f"num_leaves is {n_leaves}")
        n_inner = n_leaves - 1
        left, right = ints("left_child", n_inner), ints("right_child", n_inner)
        features, decisions = ints("split_feature", n_inner), ints("decision_type", n_inner)
        for key, size in (("threshold", n_inner), ("leaf_value", n_leaves)):
            if len(tree.get(key, "").split()) != size:
                raise bad(f"{key} does not have {size} values")
    except ValueError as exc:
        if isinstance(exc, BoosterError):
            raise
        raise bad(str(exc)) from exc
    if n_cat or any(d & 1 for d in decisions):
        raise BoosterError(f"the LightGBM model's tree {index} has categorical splits; only numeric features are "
                           "supported (encode categories as numbers before training)")
    if linear:
        raise BoosterError(f"the LightGBM model's tree {index} is a linear tree (linear_tree=true); not supported")
    if n_inner == 0:
        return 0, 1
    depth, stack, seen_nodes, seen_leaves = 0, [(0, 0)], set(), set()
    while stack:
        node, level = stack.pop()
        if node < 0:
            leaf = ~node
            if not 0 <= leaf < n_leaves or leaf in seen_leaves:
                raise bad(f"leaf {leaf} is out of range or reached twice")
            seen_leaves.add(leaf)
            continue
        if node >= n_inner or node in seen_nodes:
            raise bad(f"node {node} is out of range or reached twice")
        seen_nodes.add(node)
        depth = max(depth, level + 1)
        if level > MAX_DEPTH:
            raise bad(f"it is deeper than {MAX_DEPTH:,}")
        if not 0 <= features[node] < n_features:
            raise bad(f"node {node} splits on feature {features[node]} of {n_features}")
        stack.extend(((left[node], level + 1), (right[node], level + 1)))
    return depth, n_leaves


# --- reference models -------------------------------------------------------------------------------------------

def reference_estimator(predictor: BoosterPredictor) -> tuple[Any, dict[str, str]]:
    """An unfitted XGBClassifier / LGBMClassifier with the target's hyperparameters, and `inferred`: each
    parameter that the file did not state, with where its value came from (the trees, or the library's default).
    random_state seeds it, so the audit's clones (`with_random_state`) differ per reference model; n_jobs=1."""
    if predictor.library == "xgboost":
        return _xgboost_reference(predictor)
    return _lightgbm_reference(predictor)


def _xgboost_reference(predictor: BoosterPredictor) -> tuple[Any, dict[str, str]]:
    from xgboost import XGBClassifier

    trees = predictor.trees
    inferred: dict[str, str] = {
        "n_estimators": f"from the trees: {trees.rounds} boosting rounds",
        "max_depth": f"from the trees: the deepest has depth {trees.max_depth}",
    }
    params: dict[str, Any] = {"n_estimators": trees.rounds, "max_depth": max(trees.max_depth, 1),
                              "objective": predictor.objective}
    if predictor.xgboost_booster_kind != "gbtree":
        params["booster"] = predictor.xgboost_booster_kind
    if predictor.num_parallel_tree > 1:
        params["num_parallel_tree"] = predictor.num_parallel_tree
    if predictor.base_score is not None:
        params["base_score"] = float(predictor.base_score.strip("[]").split(",")[0])
    else:
        inferred["base_score"] = "estimated from each reference model's training data, as the target's was"
    for name, value in predictor.parameters.items():
        params[name] = XGBOOST_GIVEN_TYPES[name](value)
        inferred.pop(name, None)
    for name, default in XGBOOST_DEFAULTED.items():
        if name not in params:
            inferred[name] = f"XGBoost's default ({default:g}): the model file keeps no training parameters"
    return XGBClassifier(**params, n_jobs=1, random_state=0), inferred


def _lightgbm_reference(predictor: BoosterPredictor) -> tuple[Any, dict[str, str]]:
    from lightgbm import LGBMClassifier

    stated = predictor.parameters
    params: dict[str, Any] = {"n_estimators": predictor.trees.rounds, "objective": predictor.objective}
    inferred: dict[str, str] = {}
    asked = stated.get("num_iterations")
    if asked != str(predictor.trees.rounds):
        inferred["n_estimators"] = (f"from the trees: {predictor.trees.rounds} boosting rounds"
                                    + (f" (the file's parameters asked for {asked}: stopped early)" if asked else ""))
    for name, (keyword, kind, binary_only) in LIGHTGBM_PARAMETERS.items():
        if binary_only and predictor.objective != "binary":
            continue
        value = _lightgbm_value(stated.get(name), kind)
        if value is None:
            inferred[keyword] = "LightGBM's default: not in the file's parameters"
        else:
            params[keyword] = value
    return LGBMClassifier(**params, n_jobs=1, random_state=0, verbose=-1), inferred


def _lightgbm_value(text: str | None, kind: type) -> Any:
    if text is None or text == "":
        return None
    try:
        if kind is bool:
            return {"0": False, "1": True, "false": False, "true": True}[text.lower()]
        if kind is float:
            value = float(text)
            return value if math.isfinite(value) else None
        return kind(text)
    except (KeyError, ValueError):
        return None
