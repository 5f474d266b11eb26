"""Small keyword-only factories for the attack tests: synthetic tabular data and fitted targets, no Django."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from audits.attacks import AuditConfig, AuditData, AuditResult, ReferenceModels, run_attacks
from audits.attacks.audit import ProgressCallback


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
               random_labels: bool = False, n_features: int = 6) -> AuditData:
    X, y = make_records(n=n_members + n_nonmembers + n_population, n_features=n_features, seed=seed,
                        random_labels=random_labels)
    a, b = n_members, n_members + n_nonmembers
    return AuditData(members_X=X[:a], members_y=y[:a], nonmembers_X=X[a:b], nonmembers_y=y[a:b],
                     population_X=X[b:], population_y=y[b:])


def overfit_forest(*, n_estimators: int = 50, seed: int = 0) -> RandomForestClassifier:
    """Fully grown trees: train accuracy ~1, the usual leak."""
    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed)


def audit(*, split: AuditData, target: Any, estimator: Any | None = None,
          references: Mapping[str, ReferenceModels] | None = None, progress: ProgressCallback | None = None,
          **config: Any) -> AuditResult:
    """run_attacks on the split, `config` being AuditConfig fields (no what-if table unless asked);
    `target` must already be fitted."""
    config.setdefault("what_if_policies", [])
    return run_attacks(
        data=split, target_predict_proba=target.predict_proba,
        estimator_for_reference=estimator if estimator is not None else target,
        config=AuditConfig(**config), references=references, progress=progress,
    )
