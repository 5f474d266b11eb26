"""Small keyword-only factories for the attack tests: synthetic tabular data and fitted targets, no Django."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from audits.attacks import AuditResult, run_attacks


@dataclass(frozen=True)
class Split:
    members_X: np.ndarray
    members_y: np.ndarray
    nonmembers_X: np.ndarray
    nonmembers_y: np.ndarray
    population_X: np.ndarray
    population_y: np.ndarray


def make_records(*, n: int, n_features: int = 6, seed: int = 0, random_labels: bool = False,
                 label_noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features; labels from a noisy linear rule, or coin flips (nothing to learn, only to memorise)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    if random_labels:
        return X, rng.integers(0, 2, size=n)
    weights = np.random.default_rng(1234).normal(size=n_features)  # one rule shared by every seed
    return X, (X @ weights + rng.normal(scale=label_noise, size=n) > 0).astype(np.int64)


def make_split(*, n_members: int, n_nonmembers: int, n_population: int, seed: int = 0,
               random_labels: bool = False, n_features: int = 6) -> Split:
    X, y = make_records(n=n_members + n_nonmembers + n_population, n_features=n_features, seed=seed,
                        random_labels=random_labels)
    a, b = n_members, n_members + n_nonmembers
    return Split(X[:a], y[:a], X[a:b], y[a:b], X[b:], y[b:])


def overfit_forest(*, n_estimators: int = 50, seed: int = 0) -> RandomForestClassifier:
    """Fully grown trees: train accuracy ~1, the usual leak."""
    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed)


def audit(*, split: Split, target: Any, estimator: Any | None = None, **options: Any) -> AuditResult:
    """run_attacks with the split's arrays; `target` must already be fitted."""
    options.setdefault("what_if_policies", [])
    return run_attacks(
        target_predict_proba=target.predict_proba,
        estimator_for_reference=estimator if estimator is not None else target,
        members_X=split.members_X, members_y=split.members_y,
        nonmembers_X=split.nonmembers_X, nonmembers_y=split.nonmembers_y,
        population_X=split.population_X, population_y=split.population_y,
        **options,
    )
