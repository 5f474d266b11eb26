"""What hardening buys, measured: each hardened candidate (`hardening.py`) is trained on the member records the
target trained on, then attacked exactly as the target was — the same evaluation records, the same attacks,
its own reference models trained with its own settings — and set against today's model on accuracy and leakage.

The candidates run the audit's attacks that need at most offline reference models (the tier-1 set: threshold,
RMIA, offline LiRA); online LiRA and the label-only attack would multiply the cost by the grid's size. Today's
model is scored by the same attacks on the same records, reusing the audit's own offline reference models."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from audits.attacks.audit import AuditConfig, AuditData, run_attacks
from audits.attacks.catalogue import attack_class, expand_attacks
from audits.attacks.hardening import Candidate, candidates_for, exportable
from audits.attacks.metrics import clopper_pearson
from audits.attacks.reference import ReferenceModels
from audits.attacks.results import AuditResult

DEFAULT_MAX_ACCURACY_COST = 0.01  # one point of accuracy
FALLBACK_ATTACKS = ("threshold", "rmia", "lira_offline")

Progress = Callable[[int, str], None]


@dataclass(frozen=True)
class CandidateOutcome:
    setting: dict[str, Any]
    kind: str  # "current", "regularised" or "dp"
    accuracy: float | None  # on the evaluation non-members (records neither model trained on); None: it failed
    accuracy_low: float | None
    accuracy_high: float | None
    train_accuracy: float | None
    tpr_at_1pct_fpr: dict[str, Any]  # value, low, high, attack
    tpr_at_01pct_fpr: dict[str, Any]
    auc: float | None
    epsilon_lower: float | None
    seconds: float
    accuracy_cost: float | None = 0.0  # today's accuracy minus this one's (negative: it is more accurate)
    error: str | None = None
    deployable: bool = True  # saves as a plain scikit-learn skops file (a diffprivlib forest does not)

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "kind": self.kind, "accuracy": self.accuracy,
                "accuracy_interval": [self.accuracy_low, self.accuracy_high], "train_accuracy": self.train_accuracy,
                "accuracy_cost": self.accuracy_cost, "tpr_at_1pct_fpr": self.tpr_at_1pct_fpr,
                "tpr_at_01pct_fpr": self.tpr_at_01pct_fpr, "auc": self.auc, "epsilon_lower": self.epsilon_lower,
                "seconds": self.seconds, "error": self.error, "deployable": self.deployable}


@dataclass(frozen=True)
class RemediationResult:
    current: CandidateOutcome
    candidates: tuple[CandidateOutcome, ...]
    recommended: int | None
    max_accuracy_cost: float
    attacks: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float
    # The recommended candidate, fitted on the members (for the skops download), and whether it was fitted on class
    # indices rather than the target's labels; not serialised.
    recommended_model: Any = field(default=None, repr=False, compare=False)
    recommended_index_labels: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current.to_dict(), "candidates": [c.to_dict() for c in self.candidates],
                "recommended": self.recommended, "max_accuracy_cost": self.max_accuracy_cost,
                "attacks": list(self.attacks), "notes": list(self.notes), "seconds": self.seconds}


def candidate_attacks(names: Sequence[str]) -> tuple[str, ...]:
    """The audit's attacks that a candidate can afford: no online reference models, no neighbourhood queries."""
    kept = tuple(name for name in expand_attacks(names)
                 if set(attack_class(name).reference_sets) <= {"offline"} and not attack_class(name).needs_neighbourhood)
    return kept or FALLBACK_ATTACKS


def _outcome(result: AuditResult, *, setting: dict[str, Any], kind: str, seconds: float) -> CandidateOutcome:
    headline = result.headline
    rates = {fpr: rate.to_dict() for fpr, rate in headline.tpr_at_fpr.items()} if headline else {}
    n = int(result.config.get("n_nonmembers") or 0)
    low, high = (float(b) for b in clopper_pearson(round(result.accuracy["test"] * n), n)) if n else (0.0, 1.0)
    return CandidateOutcome(setting=setting, kind=kind, accuracy=result.accuracy["test"], accuracy_low=low,
                            accuracy_high=high, train_accuracy=result.accuracy["train"],
                            tpr_at_1pct_fpr=rates.get(0.01, {}), tpr_at_01pct_fpr=rates.get(0.001, {}),
                            auc=headline.auc if headline else None,
                            epsilon_lower=headline.epsilon_lower if headline else None, seconds=seconds)


def recommend(current: CandidateOutcome, candidates: Sequence[CandidateOutcome], *,
              max_accuracy_cost: float) -> int | None:
    """The deployable candidate with the least leakage (TPR at 1 % FPR) among those that cost at most
    `max_accuracy_cost` accuracy and leak less than today's model; ties go to the more accurate. None if no
    candidate qualifies."""
    now = current.tpr_at_1pct_fpr.get("value")
    eligible = [i for i, c in enumerate(candidates)
                if c.error is None and c.deployable and c.accuracy_cost is not None and c.accuracy_cost <= max_accuracy_cost + 1e-12
                and c.tpr_at_1pct_fpr.get("value") is not None and (now is None or c.tpr_at_1pct_fpr["value"] < now)]
    if not eligible:
        return None
    return min(eligible, key=lambda i: (candidates[i].tpr_at_1pct_fpr["value"], -(candidates[i].accuracy or 0.0)))


def run_remediation(
    *,
    data: AuditData,
    target_predict_proba: Callable[[np.ndarray], np.ndarray],
    estimator: Any,
    config: AuditConfig,
    references: Mapping[str, ReferenceModels] | None = None,
    max_accuracy_cost: float = DEFAULT_MAX_ACCURACY_COST,
    candidates: Sequence[Candidate] | None = None,
    labels: Sequence[Any] | None = None,
    progress: Progress | None = None,
) -> RemediationResult:
    """Train every candidate on the members, attack it, and compare it with today's model.

    `estimator` is the target's own (unfitted or fitted: it is cloned) scikit-learn estimator; `config` the
    audit's. Records, seeds and evaluation sizes are the audit's, so every row of the table is measured on the
    same members and non-members. A candidate that fails to train is reported with its error, not raised.
    `labels` (the target's classes_, indexed by the class indices in `data`) makes the fitted candidates predict
    the target's own labels, so the recommended one can replace it as is.
    """
    started = time.perf_counter()
    report: Progress = progress or (lambda percent, step: None)
    attacks = candidate_attacks(config.attacks)
    quick = replace(config, attacks=attacks, what_if_policies=(), output_policy="full")
    members_y = np.asarray(data.members_y)
    fit_y = np.asarray(labels)[members_y] if labels is not None else members_y
    bounds_X = data.population_X if data.population_X is not None and len(data.population_X) else data.nonmembers_X
    grid = list(candidates) if candidates is not None else candidates_for(
        estimator, bounds_X=np.asarray(bounds_X, np.float64), n_classes=int(members_y.max()) + 1 if len(members_y) else 0,
        seed=config.seed)
    notes = [f"candidates and today's model attacked with {', '.join(attacks)} on raw outputs (output policy "
             "'full'), each with its own offline reference models"]
    if not grid:
        notes.append(f"no hardening grid for {type(estimator).__name__}")

    t = time.perf_counter()
    report(0, "remediation: today's model under the candidates' attacks")
    reused = {kind: refs for kind, refs in (references or {}).items() if kind == "offline"}
    current_result = run_attacks(data=data, target_predict_proba=target_predict_proba, estimator_for_reference=estimator,
                                 config=quick, references=reused)
    current = _outcome(current_result, setting={}, kind="current", seconds=time.perf_counter() - t)

    outcomes: list[CandidateOutcome] = []
    fitted: list[Any] = []
    for i, candidate in enumerate(grid):
        report(100 * (i + 1) // (len(grid) + 1), f"remediation: candidate {i + 1}/{len(grid)} ({candidate.label})")
        t = time.perf_counter()
        try:
            model = candidate.build().fit(np.asarray(data.members_X, np.float64),
                                          members_y if candidate.index_labels else fit_y)
            result = run_attacks(data=data, target_predict_proba=model.predict_proba, estimator_for_reference=candidate.build(),
                                 config=quick)
            if "offline" not in result.references and any(attack_class(a).reference_sets for a in attacks):
                raise ValueError("its reference models could not be trained: " + "; ".join(result.notes))
            outcome = _outcome(result, setting=candidate.setting, kind=candidate.kind, seconds=time.perf_counter() - t)
            outcomes.append(replace(outcome, accuracy_cost=(current.accuracy or 0.0) - (outcome.accuracy or 0.0),
                                    deployable=exportable(model, index_labels=candidate.index_labels) is not None))
            fitted.append(model)
        except Exception as exc:  # one candidate's failure is a row of the table, not the end of the run
            outcomes.append(CandidateOutcome(
                setting=candidate.setting, kind=candidate.kind, accuracy=None, accuracy_low=None, accuracy_high=None,
                train_accuracy=None, tpr_at_1pct_fpr={}, tpr_at_01pct_fpr={}, auc=None, epsilon_lower=None,
                seconds=time.perf_counter() - t, accuracy_cost=None, deployable=False,
                error=f"{type(exc).__name__}: {exc}"[:500]))
            fitted.append(None)
    best = recommend(current, outcomes, max_accuracy_cost=max_accuracy_cost)
    if best is None and grid:
        notes.append(f"no candidate leaks less than today's model for at most {max_accuracy_cost:.1%} accuracy")
    report(100, "remediation: done")
    return RemediationResult(current=current, candidates=tuple(outcomes), recommended=best,
                             max_accuracy_cost=max_accuracy_cost, attacks=attacks, notes=tuple(notes),
                             seconds=time.perf_counter() - started,
                             recommended_model=fitted[best] if best is not None else None,
                             recommended_index_labels=best is not None and grid[best].index_labels)
