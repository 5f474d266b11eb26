"""Reference models: clones of the target's estimator trained on random halves of a reference pool,
with the exact IN/OUT mask of every record they are asked about (Carlini et al. 2022, §IV-B)."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone

from audits.attacks.metrics import auc_from_roc, roc_curve, tpr_at_fpr
from audits.attacks.records import keyed_uniform, mixed_keys, record_keys

Progress = Callable[[int, int], None]
# Where settings chosen on the reference models are judged: the audit's headline operating point.
CALIBRATION_FPR = 0.01
# scorer(j, others, usable): model j's scores on its `usable` records, from the models in `others`.
Scorer = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ReferenceModels:
    """K fitted models and which records each one trained on.

    `pool_in` (K × n_pool) covers the reference pool; `target_in` (K × n_targets) the evaluation records,
    all False for offline models. Build one from already-trained models to reuse them across audits; the
    fingerprints say which records the masks refer to.
    """

    models: tuple[Any, ...]
    pool_in: np.ndarray
    target_in: np.ndarray
    seed: int
    pool_fingerprint: str = ""
    target_fingerprint: str = ""
    fit_seconds: float = field(default=0.0, compare=False)

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def online(self) -> bool:
        return bool(self.target_in.any())


def fingerprint(keys: np.ndarray) -> str:
    """Order-free digest of a set of records (their content keys)."""
    return hashlib.sha256(np.sort(np.asarray(keys, dtype=np.uint64)).tobytes()).hexdigest()[:16]


def balanced_membership(keys: np.ndarray, *, n_models: int, seed: int, purpose: str,
                        fraction: float = 0.5) -> np.ndarray:
    """IN mask (n_models × n): with two or more models every record is IN for round(fraction · K) of them
    (as in LiRA's code, so each has both IN and OUT statistics); with one model, IN with probability `fraction`.

    Each record's draw depends on its content key only: equal rows share a fate, so a duplicate of an OUT
    record is never secretly IN.
    """
    if n_models == 1:
        return (keyed_uniform(keys, seed=seed, purpose=purpose) < fraction)[None, :]
    draws = np.stack([mixed_keys(keys, seed=seed, purpose=purpose, stream=k) for k in range(n_models)])
    n_in = min(max(int(round(fraction * n_models)), 1), n_models - 1)
    ranks = np.argsort(np.argsort(draws, axis=0, kind="stable"), axis=0, kind="stable")
    return ranks < n_in


def with_random_state(model: Any, state: int) -> Any:
    """`model` with every random_state it has (a pipeline's steps' too) set to `state`."""
    params = {name: state for name in model.get_params(deep=True)
              if name == "random_state" or name.endswith("__random_state")}
    return model.set_params(**params) if params else model


def _seeded_clone(estimator: Any, seed: int, index: int) -> Any:
    return with_random_state(clone(estimator), int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))


def train_reference_models(
    *,
    estimator: Any,
    pool_X: np.ndarray,
    pool_y: np.ndarray,
    n_models: int,
    seed: int,
    target_X: np.ndarray | None = None,
    target_y: np.ndarray | None = None,
    online: bool = False,
    fraction: float = 0.5,
    progress: Progress | None = None,
) -> ReferenceModels:
    """Fit `n_models` clones of `estimator`, each on about `fraction` of the pool.

    Offline (`online=False`) the targets are never trained on; their mask is all False. Online, the targets
    join the pool and each is IN for half of the models. Deterministic from `seed` and the records'
    contents; each clone's `random_state` is derived from (seed, model index) so forests differ in
    randomness as well as in data.
    """

    if n_models < 1:
        raise ValueError("need at least one reference model")
    pool_X = np.asarray(pool_X, dtype=np.float64)
    pool_y = np.asarray(pool_y)
    target_X = np.empty((0, pool_X.shape[1])) if target_X is None else np.asarray(target_X, dtype=np.float64)
    target_y = np.empty(0, dtype=pool_y.dtype) if target_y is None else np.asarray(target_y)
    pool_keys, target_keys = record_keys(pool_X), record_keys(target_X)
    pool_in = balanced_membership(pool_keys, n_models=n_models, seed=seed, purpose="reference-pool",
                                  fraction=fraction)
    if online:
        if n_models < 2:
            raise ValueError("online reference models need at least two models (IN and OUT for each record)")
        target_in = balanced_membership(target_keys, n_models=n_models, seed=seed, purpose="reference-target",
                                        fraction=0.5)
    else:
        target_in = np.zeros((n_models, len(target_X)), dtype=bool)
    started = time.perf_counter()
    models = []
    for k in range(n_models):
        X = np.concatenate([pool_X[pool_in[k]], target_X[target_in[k]]])
        y = np.concatenate([pool_y[pool_in[k]], target_y[target_in[k]]])
        # Bootstraps and tie-breaking splits depend on row order: fit in content order, so the same
        # records give the same model however the caller ordered them.
        canonical = np.lexsort((y, np.concatenate([pool_keys[pool_in[k]], target_keys[target_in[k]]])))
        models.append(_seeded_clone(estimator, seed, k).fit(X[canonical], y[canonical]))
        if progress is not None:
            progress(k + 1, n_models)
    return ReferenceModels(
        models=tuple(models), pool_in=pool_in, target_in=target_in, seed=seed,
        pool_fingerprint=fingerprint(pool_keys), target_fingerprint=fingerprint(target_keys),
        fit_seconds=time.perf_counter() - started,
    )


def aligned_proba(model: Any, X: np.ndarray, n_classes: int) -> np.ndarray:
    """predict_proba with one column per class index 0..n_classes−1, even if the model's half of the pool
    lacked a class (that class then gets probability 0)."""
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    classes = np.asarray(getattr(model, "classes_", np.arange(proba.shape[1]))).astype(np.int64)
    out = np.zeros((len(proba), n_classes))
    out[:, classes] = proba
    return out


def reference_proba(models: Sequence[Any], X: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, n, n_classes) probabilities of every reference model on X."""
    if not len(X):
        return np.zeros((len(models), 0, n_classes))
    return np.stack([aligned_proba(model, X, n_classes) for model in models])


def tpr_at_calibration_fpr(members: np.ndarray, nonmembers: np.ndarray) -> float:
    roc = roc_curve(members, nonmembers)
    return tpr_at_fpr(roc, CALIBRATION_FPR, n_members=len(members), n_nonmembers=len(nonmembers)).value


def auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    return auc_from_roc(roc_curve(members, nonmembers))


def attack_each_reference(in_mask: np.ndarray, scorer: Scorer,
                          metric: Callable[[np.ndarray, np.ndarray], float]) -> float | None:
    """Attack each reference model with the others, as an audit attacks the target: on the records whose
    membership in it is known and that at least one other model left OUT (so OUT statistics exist). The mean
    of `metric(member scores, non-member scores)` over the models; None when no model could be attacked."""
    in_mask = np.asarray(in_mask, bool)
    per_model = []
    for j in range(len(in_mask)):
        others = np.arange(len(in_mask)) != j
        usable = (~in_mask[others]).any(axis=0)
        labels = in_mask[j, usable]
        if labels.all() or not labels.any():
            continue
        scores = scorer(j, others, usable)
        per_model.append(metric(scores[labels], scores[~labels]))
    return float(np.mean(per_model)) if per_model else None


def choose_on_references(candidates: Sequence[float], in_mask: np.ndarray, scorer_for: Callable[[float], Scorer],
                         metric: Callable[[np.ndarray, np.ndarray], float], *, default: float,
                         prefer: Callable[[float], float] = float) -> tuple[float, dict[float, float]]:
    """The candidate setting whose attack on the reference models (`attack_each_reference`) scores best, ties
    going to the smallest `prefer(candidate)`; with its score per candidate. The target is never involved:
    `default` and {} when fewer than two models or none could be attacked."""
    if len(in_mask) < 2:
        return default, {}
    results = {}
    for candidate in candidates:
        value = attack_each_reference(in_mask, scorer_for(candidate), metric)
        if value is not None:
            results[candidate] = value
    if not results:
        return default, {}
    best = max(results.values())
    return min((c for c, value in results.items() if value == best), key=prefer), results
