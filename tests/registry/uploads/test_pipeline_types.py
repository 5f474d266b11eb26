"""The types real pipelines hold are trusted where they are safe (issue 26): an encoder's numpy.dtype, a partial
around a trusted function, named numpy functions in a FunctionTransformer. Each is tried abused, and refused."""
from __future__ import annotations

import functools
import io
import json
import os
import zipfile

import numpy as np
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, TargetEncoder

from monitor.registry.artifacts import ArtifactError, load_skops
from tests.factories import adult_sample

COLUMNS = ["age", "hours_per_week", "workclass", "sex"]


def fitted(prepare) -> bytes:
    frame = adult_sample(n=200, seed=5)
    pipeline = Pipeline([("prepare", prepare), ("model", LogisticRegression(max_iter=300))])
    return sio.dumps(pipeline.fit(frame[COLUMNS], frame["income"]))


def encoders() -> ColumnTransformer:
    return ColumnTransformer([
        ("numbers", Pipeline([("impute", SimpleImputer()), ("log", FunctionTransformer(np.log1p)),
                              ("clip", FunctionTransformer(np.clip, kw_args={"a_min": 0, "a_max": 20}))]),
         ["age", "hours_per_week"]),
        ("onehot", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                             ("encode", OneHotEncoder(handle_unknown="ignore"))]), ["workclass"]),
        ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["sex"]),
        ("target", TargetEncoder(), ["sex"]),
    ])


def rewritten(data: bytes, change) -> bytes:
    """The same skops file with its schema.json changed by `change` (a function of the parsed schema)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "schema.json":
                schema = json.loads(content)
                change(schema)
                content = json.dumps(schema).encode()
            target.writestr(info.filename, content)
    return out.getvalue()


def nodes(tree, loader: str):
    if isinstance(tree, dict):
        if tree.get("__loader__") == loader:
            yield tree
        for value in tree.values():
            yield from nodes(value, loader)
    elif isinstance(tree, list):
        for value in tree:
            yield from nodes(value, loader)


def test_a_pipeline_of_imputers_encoders_and_named_numpy_functions_loads():
    predictor = load_skops(fitted(encoders()))
    frame = adult_sample(n=5, seed=6)[COLUMNS]
    assert predictor.predict_proba(frame).shape == (5, 2)


def test_a_dtype_whose_inner_array_is_swapped_for_a_function_is_refused():
    def swap(schema):
        dtype = next(nodes(schema, "DTypeNode"))
        dtype["content"].update({"__module__": "builtins", "__class__": "eval"})

    with pytest.raises(ArtifactError, match="builtins.eval"):
        load_skops(rewritten(fitted(encoders()), swap))


def test_a_partial_around_a_function_we_do_not_trust_is_refused():
    prepare = ColumnTransformer([("run", FunctionTransformer(functools.partial(os.system, "true")), ["age"])])
    data = sio.dumps(Pipeline([("prepare", prepare)]))
    with pytest.raises(ArtifactError, match=r"(posix|os)\.system"):
        load_skops(data)


@pytest.mark.parametrize("function", [np.load, eval, os.getenv])
def test_a_function_transformer_calling_anything_but_a_named_numpy_function_is_refused(function):
    data = sio.dumps(FunctionTransformer(function))
    with pytest.raises(ArtifactError, match="types we do not trust"):
        load_skops(data)
