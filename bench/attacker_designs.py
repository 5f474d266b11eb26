"""The three attackers' designs of bench/adversary.py: what each sends for a candidate and how it scores the answers,
with the product's own attack cores (offline RMIA, the label-only attack) as the attacker's."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # the repository, as bench/common.py puts it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audits.attacks.label_only import LabelOnlyConfig, neighbourhood_queries, scores_from_labels  # noqa: E402
from audits.attacks.reference import ReferenceModels, reference_proba  # noqa: E402
from audits.attacks.rmia import calibrate_a, rmia_scores  # noqa: E402
from audits.attacks.scores import default_clip, lexicographic_scores, true_class_proba  # noqa: E402

# 8 copies, moving only the continuous columns (rounded to their grid): 9 queries over 9 hours, on the support of
# production traffic (copies moved in every column left it: distribution_shift's cell rank caught 10 a day, --quick).
AUGMENT = LabelOnlyConfig(n_neighbours=2, radii=(0.05, 0.1, 0.2, 0.4))
FULL_COPIES = LabelOnlyConfig().n_neighbours * len(LabelOnlyConfig().radii)  # the audit's label-only design
BOUNDARY_STEPS, BOUNDARY_TRIES, FULL_DIRECTIONS = 12, 3, 3


def labels_of(target: Any) -> Any:
    """What a label-only attacker reads: the target's label for each query."""
    return lambda X: np.asarray(target.predict_proba(X)).argmax(axis=1)


def rmia_design(target: Any, references: ReferenceModels, *, pool: tuple[np.ndarray, np.ndarray],
                candidates: tuple[np.ndarray, np.ndarray], z: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Offline RMIA as the audit runs it, with the attacker's reference models and its cover records as z."""
    clip = default_clip(target)

    def true(models_proba: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([true_class_proba(p, y) for p in models_proba])

    reference_z = true(reference_proba(references.models, z[0], 2), z[1])
    a, _ = calibrate_a(pool_p=true(reference_proba(references.models, pool[0], 2), pool[1]),
                       pool_in=references.pool_in, reference_pz=reference_z, clip=clip)
    return rmia_scores(target_px=true_class_proba(target.predict_proba(candidates[0]), candidates[1]),
                       reference_px=true(reference_proba(references.models, candidates[0], 2), candidates[1]),
                       target_pz=true_class_proba(target.predict_proba(z[0]), z[1]), reference_pz=reference_z,
                       a=a, clip=clip).score


@dataclass(frozen=True)
class Support:
    """What the attacker knows of the table from its population records: the continuous columns (more than 50
    values, as an honest client's edits in `benign_traffic`) and the columns that hold whole numbers."""

    continuous: np.ndarray
    integral: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray) -> Support:
        return cls(continuous=np.asarray([len(np.unique(column)) > 50 for column in X.T]),
                   integral=np.all(X == np.round(X), axis=0))

    def snap(self, moved: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """`moved` back on the support: whole numbers rounded, a zero measurement left at zero."""
        snapped = np.where(self.integral, np.round(moved), moved)
        return np.where(self.continuous & (origin != 0), snapped, origin)


def augmentation_design(target: Any, X: np.ndarray, y: np.ndarray, *, stds: np.ndarray, config: LabelOnlyConfig,
                        support: Support | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The label-only attack's scores and each record's queries: the record, then its copies. With `support`, only
    continuous columns move and copies are snapped back on the support."""
    queries = neighbourhood_queries(X, feature_std=stds if support is None else np.where(support.continuous, stds, 0),
                                    config=config)
    n_copies = len(config.radii) * config.n_neighbours
    if support is not None:
        queries = np.concatenate([X, support.snap(queries[len(X):], np.repeat(X, n_copies, axis=0))])
    scores = scores_from_labels(labels_of(target)(queries), y, config=config).score
    copies = queries[len(X):].reshape(len(X), n_copies, X.shape[1])
    return scores, [np.vstack([X[i:i + 1], copies[i]]) for i in range(len(X))]


def boundary_design(target: Any, X: np.ndarray, y: np.ndarray, *, pool: tuple[np.ndarray, np.ndarray],
                    stds: np.ndarray, support: Support, directions: int,
                    seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Label-only boundary distance: towards population records of the other label (by the attacker's own labels,
    confirmed by the target in at most BOUNDARY_TRIES queries), bisect BOUNDARY_STEPS times; the score is
    correctness, then the distance to the nearest boundary found (in standard deviations). Every point stays on the
    support: continuous columns move (rounded), the others jump at half way, so each point holds one real record's
    categories (straight interpolation left it: distribution_shift caught 24 a day in --quick)."""
    rng = np.random.default_rng(seed)
    ask = labels_of(target)
    sent: list[list[np.ndarray]] = [[row] for row in X]
    own = ask(X)
    others = {label: np.flatnonzero(pool[1] != label) for label in np.unique(own)}
    scale = np.where(stds > 0, stds, 1.0)
    distance = np.full(len(X), np.inf)
    for _ in range(directions):
        far, found = np.zeros_like(X), np.zeros(len(X), bool)
        for _ in range(BOUNDARY_TRIES):
            todo = np.flatnonzero(~found)
            picks = np.asarray([others[own[i]][rng.integers(len(others[own[i]]))] for i in todo], dtype=np.int64)
            tries = pool[0][picks]
            for i, row in zip(todo, tries, strict=True):
                sent[i].append(row)
            hit = ask(tries) != own[todo] if len(todo) else np.zeros(0, bool)
            far[todo[hit]], found[todo[hit]] = tries[hit], True
        live = np.flatnonzero(found)
        start, end = X[live], far[live]
        lo, hi = np.zeros(len(live)), np.ones(len(live))
        for _ in range(BOUNDARY_STEPS):
            mid = (lo + hi) / 2
            points = support.snap(start + mid[:, None] * (end - start), np.where(mid[:, None] < 0.5, start, end))
            for i, row in zip(live, points, strict=True):
                sent[i].append(row)
            crossed = ask(points) != own[live]
            hi, lo = np.where(crossed, mid, hi), np.where(crossed, lo, mid)
        distance[live] = np.minimum(distance[live], hi * np.linalg.norm((end - start) / scale, axis=1))
    reached = np.isfinite(distance)
    distance[~reached] = distance[reached].max() + 1.0 if reached.any() else 1.0  # no boundary found: far from it
    return lexicographic_scores((own == y).astype(np.float64), distance), [np.asarray(s) for s in sent]
