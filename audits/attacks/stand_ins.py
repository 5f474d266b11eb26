"""The scikit-learn estimators reference models are trained as when the target is ONNX or a remote endpoint
(the audit policy's `stand_in`): one name each, fixed seeds so a cached reference set can be trusted."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _random_forest() -> Any:
    return RandomForestClassifier(n_estimators=100, random_state=0)


def _gradient_boosting() -> Any:
    return GradientBoostingClassifier(random_state=0)


def _logistic_regression() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def _mlp() -> Any:
    return make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0))


STAND_INS: dict[str, Callable[[], Any]] = {
    "random_forest": _random_forest,
    "gradient_boosting": _gradient_boosting,
    "logistic_regression": _logistic_regression,
    "mlp": _mlp,
}
STAND_IN_NAMES: tuple[str, ...] = tuple(STAND_INS)


def stand_in_estimator(name: str) -> Any:
    """A fresh, unfitted estimator of the stand-in `name` (KeyError for an unknown name)."""
    return STAND_INS[name]()
