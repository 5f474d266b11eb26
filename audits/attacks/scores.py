"""Membership signals in logit/log space: scikit-learn models return many probabilities of exactly 0 or 1,
and ties in probability space wipe out low-FPR figures (DESIGN.md, "Audits")."""
from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_CLIP = 1e-6


def final_step(estimator: Any) -> tuple[str, Any]:
    """The estimator that predicts (a pipeline's last step decides the output's granularity), and the parameter
    prefix that reaches it through the pipeline ("" for a bare estimator)."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        name, last = steps[-1]
        inner_prefix, inner = final_step(last)
        return f"{name}__{inner_prefix}", inner
    return "", estimator


def default_clip(estimator: Any | None) -> float:
    """The probability floor/ceiling for logits: half a vote (0.5 / n_estimators) for a voting ensemble.

    A random forest's probability is a vote fraction in steps of 1 / n_trees. Clipping at 1e-6 puts a
    unanimous vote 9 logits away from a 99 % vote, and LiRA's Gaussian fit is then driven by the clip;
    half a vote keeps the scale of the real steps (LiRA on Adult-RF: ~4 % → ~10 % TPR@1%FPR, DESIGN.md).
    Boosting also has `n_estimators` but its output is a smooth sigmoid, not a vote, so it keeps 1e-6.
    """
    _, final = final_step(estimator)
    n_estimators = getattr(final, "n_estimators", None)
    if hasattr(final, "learning_rate"):
        return DEFAULT_CLIP
    if isinstance(n_estimators, int | np.integer) and not isinstance(n_estimators, bool) and n_estimators > 0:
        return 0.5 / float(n_estimators)
    return DEFAULT_CLIP


def _check(proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    if proba.ndim != 2 or y.ndim != 1 or len(proba) != len(y):
        raise ValueError(f"expected proba (n, k) and labels (n,), got {proba.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= proba.shape[1]):
        raise ValueError("labels must be column indices into the probability matrix")
    return proba, y.astype(np.int64)


def true_class_proba(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    proba, y = _check(proba, y)
    return proba[np.arange(len(y)), y]


def other_classes_proba(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Total probability of the wrong classes, summed directly: 1 - p_y cancels catastrophically near p_y = 1."""
    proba, y = _check(proba, y)
    others = proba.copy()
    others[np.arange(len(y)), y] = 0.0
    return others.sum(axis=1)


def logit_confidence(proba: np.ndarray, y: np.ndarray, *, clip: float = DEFAULT_CLIP) -> np.ndarray:
    """phi = log p_y - log(sum of the other classes) (Carlini et al. 2022, eq. 4), both clipped to [clip, 1 - clip].

    With a single column there is nothing to sum, and the other mass is 1 - p_y.
    """
    proba, y = _check(proba, y)
    p_true = proba[np.arange(len(y)), y]
    others = other_classes_proba(proba, y) if proba.shape[1] > 1 else 1.0 - p_true
    return np.log(np.clip(p_true, clip, 1.0 - clip)) - np.log(np.clip(others, clip, 1.0 - clip))


def log_true_proba(proba: np.ndarray, y: np.ndarray, *, clip: float = DEFAULT_CLIP) -> np.ndarray:
    """log p_y floored at log(clip): the negative cross-entropy loss."""
    return np.log(np.clip(true_class_proba(proba, y), clip, 1.0))


def logit_max_confidence(proba: np.ndarray, *, clip: float = DEFAULT_CLIP) -> np.ndarray:
    """Logit of the top class's probability: a label-free confidence."""
    proba = np.asarray(proba, dtype=np.float64)
    top = proba.argmax(axis=1)
    return logit_confidence(proba, top, clip=clip)


def lexicographic_scores(*keys: np.ndarray) -> np.ndarray:
    """One score that orders records by keys[0], then keys[1], ...; records equal on every key stay tied.

    The result is a dense rank (0, 1, 2, ...): only the order matters to the ROC, and breaking ties by a
    real secondary score rather than by position keeps every figure independent of array order.
    """
    if not keys:
        raise ValueError("need at least one key")
    stacked = np.column_stack([np.asarray(key, dtype=np.float64) for key in keys])
    if not np.all(np.isfinite(stacked)):
        raise ValueError("scores must be finite")
    _, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.float64)
