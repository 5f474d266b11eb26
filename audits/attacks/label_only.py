"""Label-only attack (Choquette-Choo et al. 2021, "data augmentation" variant for tabular data): a member
keeps its correct label under small noise more often than a non-member does."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from audits.attacks.base import Attack, AttackInputs, AttackScores, Family
from audits.attacks.catalogue import register
from audits.attacks.records import record_keys, record_rng
from audits.attacks.scores import lexicographic_scores

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LabelOnlyConfig:
    """Noise radii are in units of each feature's standard deviation (the paper scales Gaussian noise per
    feature for tabular data, §5). Several radii give a real secondary score: the radius of the first flip."""

    n_neighbours: int = 8
    radii: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
    seed: int = 0
    batch_rows: int = 200_000

    def to_dict(self) -> dict[str, object]:
        return {"n_neighbours": self.n_neighbours, "radii": list(self.radii), "seed": self.seed}


@dataclass(frozen=True)
class LabelOnlyScores:
    score: np.ndarray
    correct: np.ndarray  # the record's own predicted label is right
    robustness: np.ndarray  # fraction of all noisy neighbours still predicted correctly
    first_flip: np.ndarray  # index of the first radius with a wrong neighbour (len(radii) if none)
    queries: int


@dataclass(frozen=True)
class FeatureKinds:
    """What a neighbour may change in each feature of a table of raw values coded as numbers: `categories[j]` is the
    number of training categories of feature j (0 for a number; codes 0..k-1), `missing_ok[j]` whether the model
    takes a missing value (NaN) there."""

    categories: tuple[int, ...]
    missing_ok: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.categories) != len(self.missing_ok):
            raise ValueError("categories and missing_ok must describe the same features")


def neighbourhood_queries(X: np.ndarray, *, feature_std: np.ndarray, config: LabelOnlyConfig,
                          kinds: FeatureKinds | None = None) -> np.ndarray:
    """The records followed by their noisy copies (record, radius, neighbour) — every query the attack makes.

    A record's noise comes from its content key, so it is the same wherever the record sits in X. Numbers move by
    Gaussian noise of `radius` standard deviations (a missing number stays missing). With `kinds`, a category flips
    to another training category with probability `radius` (at most 0.9), and a cell is blanked with probability
    `radius` / 4 only where the model takes a missing value.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    radii = np.asarray(config.radii, dtype=np.float64)
    shape = (len(radii), config.n_neighbours, d)
    noise = np.empty((n, *shape))
    flips = np.empty((n, *shape)) if kinds is not None else None
    picks = np.empty((n, *shape)) if kinds is not None else None
    for i, key in enumerate(record_keys(X)):
        rng = record_rng(key, seed=config.seed, purpose="label-only")
        noise[i] = rng.standard_normal(shape)
        if flips is not None and picks is not None:
            flips[i], picks[i] = rng.random(shape), rng.random(shape)
    std = np.nan_to_num(np.asarray(feature_std, dtype=np.float64), nan=0.0)
    if kinds is not None:
        std = np.where(np.asarray(kinds.categories) > 0, 0.0, std)  # categories never move by noise
    scale = radii[None, :, None, None] * std[None, None, None, :]
    neighbours = X[:, None, None, :] + noise * scale
    if kinds is not None and flips is not None and picks is not None:
        neighbours = _flip_and_blank(X, neighbours, flips=flips, picks=picks, radii=radii, kinds=kinds)
    return np.concatenate([X, neighbours.reshape(-1, d)])


def _flip_and_blank(X: np.ndarray, neighbours: np.ndarray, *, flips: np.ndarray, picks: np.ndarray,
                    radii: np.ndarray, kinds: FeatureKinds) -> np.ndarray:
    chance = np.minimum(radii, 0.9)[None, :, None]
    for j, k in enumerate(kinds.categories):
        if k >= 2:
            own = X[:, j][:, None, None]
            flip = (flips[..., j] < chance) & ~np.isnan(own)
            # Another training category, uniformly: shift by 1..k-1 (mod k), so the flip never lands on its own.
            shift = 1 + np.floor(picks[..., j] * (k - 1))
            other = np.mod(np.nan_to_num(own, nan=0.0) + shift, k)
            neighbours[..., j] = np.where(flip, other, np.broadcast_to(own, flip.shape))
        if kinds.missing_ok[j]:
            blank = (picks[..., j] < chance / 4) & (flips[..., j] >= chance)
            neighbours[..., j] = np.where(blank, np.nan, neighbours[..., j])
    return neighbours


def scores_from_labels(labels: np.ndarray, y: np.ndarray, *, config: LabelOnlyConfig) -> LabelOnlyScores:
    """Score from the predicted labels of `neighbourhood_queries`, lexicographically: correctly classified
    first (the paper's gap baseline), then robustness, then how late the first wrong label appears.

    Scores are dense ranks over the records passed together: score members and non-members in one call.
    """
    y = np.asarray(y, dtype=np.int64)
    n, n_radii = len(y), len(config.radii)
    labels = np.asarray(labels)
    if len(labels) != n * (1 + n_radii * config.n_neighbours):
        raise ValueError("labels do not match the neighbourhood of these records")
    correct = labels[:n] == y
    neighbour_ok = labels[n:].reshape(n, n_radii, config.n_neighbours) == y[:, None, None]
    robustness = neighbour_ok.reshape(n, -1).mean(axis=1)
    any_wrong = ~neighbour_ok.all(axis=2)
    first_flip = np.where(any_wrong.any(axis=1), any_wrong.argmax(axis=1), n_radii).astype(np.float64)
    return LabelOnlyScores(
        score=lexicographic_scores(correct.astype(np.float64), robustness, first_flip),
        correct=correct, robustness=robustness, first_flip=first_flip, queries=len(labels),
    )


def label_only_scores(*, predict: Predict, X: np.ndarray, y: np.ndarray, feature_std: np.ndarray,
                      config: LabelOnlyConfig = LabelOnlyConfig(), kinds: FeatureKinds | None = None) -> LabelOnlyScores:
    """Query `predict` (labels only) on each record and its noisy neighbours, in batches."""
    queries = neighbourhood_queries(X, feature_std=feature_std, config=config, kinds=kinds)
    labels = np.concatenate([np.asarray(predict(queries[start:start + config.batch_rows]))
                             for start in range(0, len(queries), config.batch_rows)])
    return scores_from_labels(labels, y, config=config)


@register
@dataclass(frozen=True)
class LabelOnlyAttack(Attack):
    name: ClassVar[str] = "label_only"
    label: ClassVar[str] = "Label-only (Choquette-Choo et al. 2021)"
    family: ClassVar[Family] = "label_only"
    note: ClassVar[str] = "Members keep their label under small noise; works on labels alone, at many queries a record."
    rank: ClassVar[int] = 70
    needs_neighbourhood: ClassVar[bool] = True

    label_only: LabelOnlyConfig = LabelOnlyConfig()  # the audit queries the neighbourhood this describes

    def score(self, inputs: AttackInputs) -> AttackScores:
        result = scores_from_labels(inputs.neighbourhood_labels, inputs.y, config=self.label_only)
        return AttackScores(result.score, {"queries": result.queries})
