"""Hardened candidates of a scikit-learn estimator: a small regularisation grid suited to its family, and
differentially private training where diffprivlib covers the estimator (logistic regression, Gaussian naive
Bayes, random forests). Candidates are unfitted estimators; `remediation.py` trains and attacks them.

The grids move each family's capacity knob a few steps towards "memorises less" (Carlini et al. 2022 and
Shokri et al. 2017 both show leakage tracks the train/test gap those knobs control); the DP candidates use
two budgets, ε = 1 (strong) and ε = 8 (weak, usually near the original's accuracy)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from audits.attacks.reference import with_random_state
from audits.attacks.scores import final_step

DP_EPSILONS = (1.0, 8.0)


@dataclass(frozen=True)
class Candidate:
    setting: dict[str, Any]  # what changed, by parameter name (JSON-ready)
    kind: str  # "regularised" or "dp"
    build: Callable[[], Any] = field(repr=False, compare=False)  # a fresh unfitted estimator
    index_labels: bool = False  # trains on class indices, not the target's labels (diffprivlib's forest needs ints)

    @property
    def label(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self.setting.items())


def _grid(final: Any) -> list[dict[str, Any]]:
    name = type(final).__name__
    if name in ("RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier"):
        return [{"min_samples_leaf": 5}, {"min_samples_leaf": 20}, {"min_samples_leaf": 50}, {"max_depth": 10},
                {"max_depth": 8, "min_samples_leaf": 10}]
    if name == "GradientBoostingClassifier":
        return [{"min_samples_leaf": 50}, {"max_depth": 2}, {"learning_rate": round(final.learning_rate / 2, 6)},
                {"subsample": 0.5, "min_samples_leaf": 20}]
    if name == "HistGradientBoostingClassifier":
        return [{"min_samples_leaf": 100}, {"l2_regularization": 10.0}, {"max_depth": 3},
                {"learning_rate": round(final.learning_rate / 2, 6)}]
    if name == "LogisticRegression":
        return [{"C": float(f"{final.C * factor:.3g}")} for factor in (0.1, 0.01, 0.001)]
    if name in ("SGDClassifier", "RidgeClassifier", "Perceptron"):
        return [{"alpha": float(f"{max(final.alpha, 1e-4) * factor:.3g}")} for factor in (10, 100, 1000)]
    if name == "MLPClassifier":
        return [{"alpha": 1e-3}, {"alpha": 1e-2}, {"alpha": 1e-1}, {"early_stopping": True},
                {"alpha": 1e-2, "early_stopping": True}]
    if name == "KNeighborsClassifier":
        return [{"n_neighbors": max(final.n_neighbors, 1) * factor} for factor in (3, 10)]
    return []


def regularised_candidates(estimator: Any, *, seed: int) -> list[Candidate]:
    prefix, final = final_step(estimator)
    candidates = []
    for setting in _grid(final):
        params = {prefix + name: value for name, value in setting.items()}

        def build(params: dict[str, Any] = params) -> Any:
            return with_random_state(clone(estimator).set_params(**params), seed)

        candidates.append(Candidate(setting=setting, kind="regularised", build=build))
    return candidates


# --- differential privacy (diffprivlib) --------------------------------------------------------------------

def diffprivlib_models() -> Any:
    """diffprivlib.models, importable under this scikit-learn.

    diffprivlib 0.6.6 (and the diffprivlib-fix 0.6.7 release used here) imports DOUBLE and DTYPE from
    sklearn.tree._tree, which scikit-learn 1.8 stopped exporting; they were numpy's float64 and float32 (the
    tree module's cimported types). Setting them back is the whole shim: the logistic regression and naive
    Bayes never touch them, and the forest uses them as the dtypes they always were.
    """
    import sklearn.tree._tree as tree_module

    for name, dtype in (("DOUBLE", np.float64), ("DTYPE", np.float32)):
        if not hasattr(tree_module, name):
            setattr(tree_module, name, dtype)
    import diffprivlib.models as models

    return models


def dp_candidates(estimator: Any, *, bounds_X: np.ndarray, n_classes: int, seed: int) -> list[Candidate]:
    """DP versions of the estimator where diffprivlib covers it. The privacy bounds (feature ranges, row norm)
    come from `bounds_X`: records the model never trained on (population or non-members), transformed by the
    pipeline's preprocessing as the classifier will see them; training rows outside them are clipped. ε covers
    the classifier's training only: preprocessing steps (a scaler, say) are fitted as in the original."""
    prefix, final = final_step(estimator)
    kind = type(final).__name__
    if kind not in ("LogisticRegression", "GaussianNB", "RandomForestClassifier"):
        return []
    try:
        dp = diffprivlib_models()
    except ImportError:
        return []
    seen = _transformed(estimator, bounds_X)
    low, high = seen.min(axis=0), seen.max(axis=0)
    high = np.where(high > low, high, low + 1.0)
    norm = float(np.linalg.norm(seen, axis=1).max())
    candidates = []
    for epsilon in DP_EPSILONS:
        def make(epsilon: float = epsilon) -> Any:
            from diffprivlib.accountant import BudgetAccountant

            accountant = BudgetAccountant()  # a fresh ledger per model, not diffprivlib's global one
            if kind == "LogisticRegression":
                return dp.LogisticRegression(epsilon=epsilon, data_norm=norm, C=final.C, max_iter=max(final.max_iter, 100),
                                             random_state=seed, accountant=accountant)
            if kind == "GaussianNB":
                return dp.GaussianNB(epsilon=epsilon, bounds=(low, high), random_state=seed, accountant=accountant)
            return dp.RandomForestClassifier(n_estimators=final.n_estimators, epsilon=epsilon, bounds=(low, high),
                                             classes=list(range(n_classes)), max_depth=8, random_state=seed,
                                             accountant=accountant)

        def build(make: Callable[[], Any] = make) -> Any:
            return _replace_final(estimator, make())

        candidates.append(Candidate(setting={"training": f"diffprivlib.{kind}", "epsilon": epsilon}, kind="dp",
                                    build=build, index_labels=kind == "RandomForestClassifier"))
    return candidates


def _transformed(estimator: Any, X: np.ndarray) -> np.ndarray:
    """X as the final step sees it: through the preprocessing steps, fitted on X itself (bounds only)."""
    if not isinstance(estimator, Pipeline) or len(estimator.steps) == 1:
        return np.asarray(X, dtype=np.float64)
    return np.asarray(clone(Pipeline(estimator.steps[:-1])).fit_transform(X), dtype=np.float64)


def _replace_final(estimator: Any, final: Any) -> Any:
    if not isinstance(estimator, Pipeline):
        return final
    steps = [(name, clone(step)) for name, step in estimator.steps[:-1]]
    return Pipeline([*steps, (estimator.steps[-1][0], _replace_final(estimator.steps[-1][1], final))])


def candidates_for(estimator: Any, *, bounds_X: np.ndarray, n_classes: int, seed: int) -> list[Candidate]:
    return [*regularised_candidates(estimator, seed=seed),
            *dp_candidates(estimator, bounds_X=bounds_X, n_classes=n_classes, seed=seed)]


def exportable(model: Any, *, index_labels: bool = False) -> Any | None:
    """The fitted candidate as plain scikit-learn, so it loads with the registry's trusted skops types: a
    diffprivlib logistic regression or naive Bayes becomes its scikit-learn parent with the same fitted
    parameters (the same predictions); a diffprivlib forest has no such twin (None)."""
    if isinstance(model, Pipeline):
        last = exportable(model.steps[-1][1], index_labels=index_labels)
        return None if last is None else Pipeline([*model.steps[:-1], (model.steps[-1][0], last)])
    module = type(model).__module__
    if not module.startswith("diffprivlib"):
        return model
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    for parent, fitted in ((LogisticRegression, ("coef_", "intercept_", "classes_", "n_iter_", "n_features_in_")),
                           (GaussianNB, ("theta_", "var_", "class_prior_", "classes_", "class_count_", "epsilon_",
                                         "n_features_in_"))):
        if isinstance(model, parent):
            plain = parent()
            for name in fitted:
                if hasattr(model, name):
                    setattr(plain, name, getattr(model, name))
            return plain
    return None
