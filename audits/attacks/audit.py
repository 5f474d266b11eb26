"""One audit, start to finish, on plain arrays: pick the evaluation records, train reference models, run the
attacks under the model's output policy and every what-if policy, and summarise. No Django, no I/O."""
from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audits.attacks import lira, rmia, threshold
from audits.attacks.label_only import LabelOnlyConfig, neighbourhood_queries, scores_from_labels
from audits.attacks.metrics import (
    FPR_TARGETS,
    MIN_EXPECTED_FALSE_POSITIVES,
    AttackMetrics,
    ClassSlice,
    Headline,
    class_slices,
    evaluate,
    headline,
    top_exposed,
)
from audits.attacks.records import keyed_order, record_keys
from audits.attacks.reference import ReferenceModels, fingerprint, reference_proba, train_reference_models
from audits.attacks.scores import default_clip, logit_confidence, true_class_proba
from audits.attacks.whatif import (
    STANDARD_POLICIES,
    PolicyOutcome,
    WhatIfRow,
    apply_policy,
    policy_clip,
    what_if,
)
from monitor.output_policy import OutputPolicy

THRESHOLD_ATTACKS: tuple[str, ...] = ("loss", "confidence", "modified_entropy")
REFERENCE_ATTACKS: tuple[str, ...] = ("lira_offline", "lira_online", "rmia")
ALL_ATTACKS: tuple[str, ...] = THRESHOLD_ATTACKS + REFERENCE_ATTACKS + ("label_only",)
TIER_1: tuple[str, ...] = ("threshold", "rmia", "lira_offline")

# With one shared set of z, RMIA's score is a monotone function of the record's own ratio, so z set only
# the score's scale, not any ROC figure; a few hundred give a readable fraction (Zarifzadeh et al. 2024
# use a few thousand at most), and every population record left over trains the reference models instead.
MAX_POPULATION_Z = 1000
POPULATION_Z_SHARE = 8  # at most 1/8 of the population
MIN_POOL = 20
# Recommendation triggers. A train/test accuracy gap this large is the overfitting that drives loss-style
# leakage (Yeom et al. 2018); ε_lower ≥ 1 already rules out the ε ≤ 1 budgets common in DP deployments.
GAP_FOR_REGULARISATION = 0.05
EPSILON_FOR_DP = 1.0
OBFUSCATION_MIN_REDUCTION = 0.5  # a policy must at least halve the best TPR@1%FPR ...
OBFUSCATION_MAX_ACCURACY_DROP = 0.01  # ... for at most one point of accuracy

ProgressCallback = Callable[[int, str], None]
PredictProba = Callable[[np.ndarray], np.ndarray]


def expand_attacks(attacks: Sequence[str]) -> tuple[str, ...]:
    """Attack names in order, "threshold" standing for loss, confidence and modified entropy."""
    names: list[str] = []
    for name in attacks:
        for expanded in THRESHOLD_ATTACKS if name == "threshold" else (name,):
            if expanded not in ALL_ATTACKS:
                raise ValueError(f"unknown attack {expanded!r}; known: threshold, {', '.join(ALL_ATTACKS)}")
            if expanded not in names:
                names.append(expanded)
    return tuple(names)


@dataclass(frozen=True)
class AttackResult:
    name: str
    metrics: AttackMetrics
    per_class: tuple[ClassSlice, ...]
    top_exposed: tuple[int | str, ...]  # member ids (or indices into the members array), most exposed first
    seconds: float  # scoring time under this policy (reference training is timed separately)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.metrics.to_dict(), "per_class": [s.to_dict() for s in self.per_class],
                "top_exposed": list(self.top_exposed), "seconds": self.seconds, "details": self.details}


@dataclass(frozen=True)
class Recommendation:
    kind: str  # regularisation | output_obfuscation | differential_privacy | more_data
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "evidence": self.evidence}


@dataclass(frozen=True)
class AuditResult:
    attacks: tuple[AttackResult, ...]
    headline: Headline | None
    what_if: tuple[WhatIfRow, ...]
    recommendations: tuple[Recommendation, ...]
    accuracy: dict[str, float]  # train (members) and test (non-members) accuracy under the audited policy
    config: dict[str, Any]
    notes: tuple[str, ...]
    timings: dict[str, float]
    # Fitted reference models, for reuse by a later audit of the same data; not serialised.
    references: dict[str, ReferenceModels] = field(default_factory=dict, repr=False, compare=False)

    def attack(self, name: str) -> AttackResult:
        return next(result for result in self.attacks if result.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attacks": [result.to_dict() for result in self.attacks],
            "headline": self.headline.to_dict() if self.headline else None,
            "what_if": [row.to_dict() for row in self.what_if],
            "recommendations": [r.to_dict() for r in self.recommendations],
            "accuracy": self.accuracy,
            "config": self.config,
            "notes": list(self.notes),
            "timings": self.timings,
        }


@dataclass(frozen=True)
class _Data:
    X: np.ndarray  # evaluation records, members first
    y: np.ndarray
    is_member: np.ndarray
    keys: np.ndarray
    member_ids: tuple[int | str, ...]  # for each selected member, its id (or index in the members array)
    pool_X: np.ndarray
    pool_y: np.ndarray
    z_X: np.ndarray
    z_y: np.ndarray
    feature_std: np.ndarray
    dropped_duplicates: int


def _prepare(*, members_X: np.ndarray, members_y: np.ndarray, nonmembers_X: np.ndarray,
             nonmembers_y: np.ndarray, population_X: np.ndarray | None, population_y: np.ndarray | None,
             member_ids: Sequence[int | str] | None, max_per_side: int | None, seed: int) -> _Data:
    members_X, nonmembers_X = np.asarray(members_X, np.float64), np.asarray(nonmembers_X, np.float64)
    members_y, nonmembers_y = np.asarray(members_y, np.int64), np.asarray(nonmembers_y, np.int64)
    if len(members_X) != len(members_y) or len(nonmembers_X) != len(nonmembers_y):
        raise ValueError("features and labels differ in length")
    n = min(len(members_X), len(nonmembers_X), max_per_side or len(members_X))
    if n < 1:
        raise ValueError("need at least one member and one non-member")
    member_keys, nonmember_keys = record_keys(members_X), record_keys(nonmembers_X)
    chosen_m = np.sort(keyed_order(member_keys, seed=seed, purpose="eval-members")[:n])
    chosen_n = np.sort(keyed_order(nonmember_keys, seed=seed, purpose="eval-nonmembers")[:n])
    ids = [member_ids[i] for i in chosen_m] if member_ids is not None else [int(i) for i in chosen_m]
    X = np.concatenate([members_X[chosen_m], nonmembers_X[chosen_n]])
    y = np.concatenate([members_y[chosen_m], nonmembers_y[chosen_n]])
    keys = np.concatenate([member_keys[chosen_m], nonmember_keys[chosen_n]])

    pool_X = np.empty((0, X.shape[1]))
    pool_y = np.empty(0, np.int64)
    z_X, z_y, dropped = pool_X, pool_y, 0
    if population_X is not None and population_y is not None and len(population_X):
        population_X, population_y = np.asarray(population_X, np.float64), np.asarray(population_y, np.int64)
        population_keys = record_keys(population_X)
        fresh = ~np.isin(population_keys, np.concatenate([member_keys, nonmember_keys]))
        dropped = int(np.sum(~fresh))
        population_X, population_y, population_keys = population_X[fresh], population_y[fresh], population_keys[fresh]
        order = keyed_order(population_keys, seed=seed, purpose="population-z")
        n_z = min(MAX_POPULATION_Z, len(order) // POPULATION_Z_SHARE)
        z_X, z_y = population_X[np.sort(order[:n_z])], population_y[np.sort(order[:n_z])]
        pool_X, pool_y = population_X[np.sort(order[n_z:])], population_y[np.sort(order[n_z:])]
    # Noise scales for label-only come from data the attacker may hold without knowing membership.
    spread_from = np.concatenate([pool_X, z_X]) if len(pool_X) + len(z_X) > 1 else X
    return _Data(X=X, y=y, is_member=np.arange(len(X)) < n, keys=keys, member_ids=tuple(ids),
                 pool_X=pool_X, pool_y=pool_y, z_X=z_X, z_y=z_y, feature_std=spread_from.std(axis=0),
                 dropped_duplicates=dropped)


@dataclass
class _Outputs:
    """Raw probabilities of the target and the reference models, before any output policy."""

    target: np.ndarray  # (n_eval, C)
    target_z: np.ndarray  # (n_z, C)
    offline: np.ndarray | None = None  # (K, n_eval, C)
    offline_z: np.ndarray | None = None
    offline_pool: np.ndarray | None = None
    online: np.ndarray | None = None
    neighbourhood: np.ndarray | None = None  # target on the label-only queries


def _library_versions() -> dict[str, str]:
    versions = {}
    for package in ("numpy", "scipy", "scikit-learn"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def run_attacks(
    *,
    target_predict_proba: PredictProba,
    estimator_for_reference: Any | None,
    members_X: np.ndarray,
    members_y: np.ndarray,
    nonmembers_X: np.ndarray,
    nonmembers_y: np.ndarray,
    population_X: np.ndarray | None = None,
    population_y: np.ndarray | None = None,
    attacks: Sequence[str] = TIER_1,
    n_reference: int = 4,
    seed: int = 0,
    output_policy: str | OutputPolicy = "full",
    what_if_policies: Sequence[str | OutputPolicy] = STANDARD_POLICIES,
    clip: float | None = None,
    lira_variance: lira.Variance = "global",
    lira_clip: float | None = None,
    rmia_a: float | None = None,
    rmia_gamma: float = 1.0,
    label_only: LabelOnlyConfig | None = None,
    reference_fraction: float = 0.5,
    max_per_side: int | None = None,
    top_k: int = 20,
    member_ids: Sequence[int | str] | None = None,
    offline_references: ReferenceModels | None = None,
    online_references: ReferenceModels | None = None,
    progress: ProgressCallback | None = None,
) -> AuditResult:
    """Attack the target the way a strong adversary would and measure how much membership it leaks.

    Evaluation design (what keeps the figures honest):
    - members and non-members are balanced, sampled by content key (not position);
    - population rows equal to any declared member or non-member are dropped: a reference model trained on
      such a copy would have seen a record the mask calls OUT;
    - offline reference models train on the population pool only; RMIA's z records are a further slice of the
      population that neither the reference models nor (by declaration) the target trained on;
    - online reference models add the evaluation records, each IN for half of them; membership labels are
      used only by the metrics, and RMIA's `a` is calibrated on reference models, never on the target.

    `clip` floors probabilities before logs (default: half a vote for forests, see scores.default_clip);
    LiRA's clip and RMIA's `a` are calibrated on the reference models unless `lira_clip` / `rmia_a` are given.
    `target_predict_proba` returns the model's raw class probabilities (columns = class indices, the
    labels in `*_y`); the audit applies `output_policy` itself, as the gateway does. Pass fitted
    `offline_references` / `online_references` from an earlier result to skip retraining (they are used
    only if their fingerprints match these records).
    """
    started = time.perf_counter()
    report: ProgressCallback = progress or (lambda percent, step: None)
    names = expand_attacks(attacks)
    policy = output_policy if isinstance(output_policy, OutputPolicy) else OutputPolicy.parse(output_policy)
    policies = [p if isinstance(p, OutputPolicy) else OutputPolicy.parse(p) for p in what_if_policies]
    label_config = label_only or LabelOnlyConfig(seed=seed)
    clip = default_clip(estimator_for_reference) if clip is None else clip
    notes: list[str] = []
    timings: dict[str, float] = {}

    report(0, "preparing evaluation records")
    data = _prepare(members_X=members_X, members_y=members_y, nonmembers_X=nonmembers_X,
                    nonmembers_y=nonmembers_y, population_X=population_X, population_y=population_y,
                    member_ids=member_ids, max_per_side=max_per_side, seed=seed)
    if data.dropped_duplicates:
        notes.append(f"{data.dropped_duplicates} population rows equal to an evaluation record were left out")

    t = time.perf_counter()
    target = np.asarray(target_predict_proba(data.X), dtype=np.float64)
    n_classes = target.shape[1]
    outputs = _Outputs(target=target, target_z=np.asarray(target_predict_proba(data.z_X), np.float64)
                       if len(data.z_X) else np.zeros((0, n_classes)))
    timings["target_queries"] = time.perf_counter() - t

    # Reference models -------------------------------------------------------------------------------
    wanted_reference = [n for n in names if n in REFERENCE_ATTACKS]
    references: dict[str, ReferenceModels] = {}
    if wanted_reference and (estimator_for_reference is None or len(data.pool_X) < MIN_POOL or not len(data.z_X)):
        why = "no estimator for reference models" if estimator_for_reference is None else "too little population data"
        notes.append(f"skipped {', '.join(wanted_reference)}: {why}")
        names = tuple(n for n in names if n not in REFERENCE_ATTACKS)
    pool_print = fingerprint(record_keys(data.pool_X))
    sets = [kind for kind, needed in (("offline", {"lira_offline", "rmia"}), ("online", {"lira_online"}))
            if needed & set(names)]
    for i, kind in enumerate(sets):
        given = offline_references if kind == "offline" else online_references
        target_print = fingerprint(data.keys)
        if given is not None and given.pool_fingerprint == pool_print and (
                kind == "offline" or given.target_fingerprint == target_print):
            refs = given
            notes.append(f"reused {given.n_models} {kind} reference models")
        else:
            if given is not None:
                notes.append(f"the given {kind} reference models were trained on other records; retrained")
            base = 5 + 50 * i // len(sets)

            def tick(done: int, total: int, base: int = base, kind: str = kind) -> None:
                report(base + 50 * done // (total * len(sets)), f"training {kind} reference model {done}/{total}")

            refs = train_reference_models(
                estimator=estimator_for_reference, pool_X=data.pool_X, pool_y=data.pool_y, n_models=n_reference,
                seed=seed, target_X=data.X, target_y=data.y, online=kind == "online",
                fraction=reference_fraction, progress=tick)
            timings[f"reference_{kind}"] = refs.fit_seconds
        references[kind] = refs
        t = time.perf_counter()
        if kind == "offline":
            outputs.offline = reference_proba(refs.models, data.X, n_classes)
            outputs.offline_z = reference_proba(refs.models, data.z_X, n_classes)
            outputs.offline_pool = reference_proba(refs.models, data.pool_X, n_classes)
        else:
            outputs.online = reference_proba(refs.models, data.X, n_classes)
        timings[f"reference_{kind}_queries"] = time.perf_counter() - t

    needs_neighbourhood = "label_only" in names or any(p.returns_labels_only for p in [policy, *policies])
    neighbourhood_X: np.ndarray | None = None
    if needs_neighbourhood:
        report(58, "querying noisy neighbours for the label-only attack")
        t = time.perf_counter()
        neighbourhood_X = neighbourhood_queries(data.X, feature_std=data.feature_std, config=label_config)
        outputs.neighbourhood = np.concatenate([
            np.asarray(target_predict_proba(neighbourhood_X[s:s + label_config.batch_rows]), np.float64)
            for s in range(0, len(neighbourhood_X), label_config.batch_rows)])
        timings["label_only_queries"] = time.perf_counter() - t
    neighbourhood_keys = record_keys(neighbourhood_X) if neighbourhood_X is not None else None

    config: dict[str, Any] = {
        "attacks": list(names), "n_reference": n_reference, "seed": seed, "output_policy": str(policy),
        "what_if_policies": [str(p) for p in policies], "clip": clip, "lira_variance": lira_variance,
        "rmia": {"gamma": rmia_gamma}, "label_only": label_config.to_dict(),
        "reference_fraction": reference_fraction, "n_members": int(data.is_member.sum()),
        "n_nonmembers": int((~data.is_member).sum()), "n_reference_pool": len(data.pool_X),
        "n_population_z": len(data.z_X), "fpr_targets": list(FPR_TARGETS),
        "fingerprints": {"evaluation": fingerprint(data.keys), "reference_pool": pool_print},
        "versions": _library_versions(),
    }

    def run_under(current: OutputPolicy, *, main: bool) -> tuple[list[AttackResult], PolicyOutcome]:
        results = _attacks_under_policy(current, names=names, data=data, outputs=outputs, clip=clip,
                                        references=references, lira_variance=lira_variance, lira_clip=lira_clip, rmia_a=rmia_a,
                                        rmia_gamma=rmia_gamma, label_config=label_config, top_k=top_k,
                                        neighbourhood_keys=neighbourhood_keys, seed=seed, notes=notes if main else None,
                                        config=config if main else None)
        seen = apply_policy(current, outputs.target, keys=data.keys, seed=seed).argmax(axis=1)
        correct = seen == data.y
        outcome = PolicyOutcome(accuracy=float(correct[~data.is_member].mean()),
                                train_accuracy=float(correct[data.is_member].mean()),
                                results=[(r.name, r.metrics) for r in results])
        return results, outcome

    report(60, f"attacking under the {policy} output policy")
    t = time.perf_counter()
    main_results, main_outcome = run_under(policy, main=True)
    timings["attacks"] = time.perf_counter() - t

    t = time.perf_counter()
    cache = {str(policy): main_outcome}

    def run_what_if(current: OutputPolicy) -> PolicyOutcome:
        if str(current) not in cache:
            report(80 + 19 * len(cache) // max(len(policies), 1), f"what-if: {current}")
            cache[str(current)] = run_under(current, main=False)[1]
        return cache[str(current)]

    rows = what_if(policies=policies, run_under_policy=run_what_if) if policies else []
    timings["what_if"] = time.perf_counter() - t

    summary = headline([(r.name, r.metrics) for r in main_results]) if main_results else None
    full_outcome = cache.get("full") or run_under(OutputPolicy("full"), main=False)[1]
    recommendations = _recommend(summary=summary, rows=rows, audited=str(policy), full=full_outcome,
                                 n_nonmembers=int((~data.is_member).sum()), estimator=estimator_for_reference)
    timings["total"] = time.perf_counter() - started
    report(100, "done")
    return AuditResult(
        attacks=tuple(main_results), headline=summary, what_if=tuple(rows), recommendations=tuple(recommendations),
        accuracy={"train": main_outcome.train_accuracy, "test": main_outcome.accuracy}, config=config,
        notes=tuple(notes), timings=timings, references=references,
    )


def _attacks_under_policy(policy: OutputPolicy, *, names: Sequence[str], data: _Data, outputs: _Outputs,
                          clip: float, references: dict[str, ReferenceModels], lira_variance: lira.Variance,
                          lira_clip: float | None, rmia_a: float | None, rmia_gamma: float, label_config: LabelOnlyConfig, top_k: int,
                          neighbourhood_keys: np.ndarray | None, seed: int, notes: list[str] | None,
                          config: dict[str, Any] | None) -> list[AttackResult]:
    """Score every record with each attack on what callers see under `policy`; the reference models'
    outputs go through the same policy, as an attacker would do to match the target's."""
    y, is_member = data.y, data.is_member
    clip = policy_clip(policy, clip)
    scored: list[tuple[str, np.ndarray, float, dict[str, Any]]] = []

    if policy.returns_labels_only:
        skipped = [n for n in names if n != "label_only"]
        if skipped and notes is not None:
            notes.append(f"the model returns labels only: skipped {', '.join(skipped)}; ran label_only")
        names = ["label_only"]
    else:
        z_keys = record_keys(data.z_X)
        target = apply_policy(policy, outputs.target, keys=data.keys, seed=seed)
        target_z = apply_policy(policy, outputs.target_z, keys=z_keys, seed=seed)

        def seen(proba: np.ndarray | None, keys: np.ndarray) -> np.ndarray:
            assert proba is not None
            return np.stack([apply_policy(policy, p, keys=keys, seed=seed, stream=k + 1)
                             for k, p in enumerate(proba)])

    for name in names:
        t = time.perf_counter()
        details: dict[str, Any] = {}
        if name == "loss":
            scores = threshold.loss_scores(target, y, clip=clip)
        elif name == "confidence":
            scores = threshold.confidence_scores(target, clip=clip)
        elif name == "modified_entropy":
            scores = threshold.modified_entropy_scores(target, y, clip=clip)
        elif name == "lira_offline":
            refs = references["offline"]
            if lira_clip is None:
                phi_clip, tprs = lira.calibrate_clip(
                    reference_proba=seen(outputs.offline_pool, record_keys(data.pool_X)), y=data.pool_y,
                    in_mask=refs.pool_in, base_clip=clip, variance=lira_variance)
                details["clip_calibration_tpr"] = {f"{k:g}": v for k, v in tprs.items()}
            else:
                phi_clip = max(lira_clip, clip)
            reference_phi = np.stack([logit_confidence(p, y, clip=phi_clip)
                                      for p in seen(outputs.offline, data.keys)])
            scores = lira.lira_offline(target_phi=logit_confidence(target, y, clip=phi_clip),
                                       reference_phi=reference_phi, variance=lira_variance)
            details.update({"variance": lira_variance, "n_out_models": len(reference_phi), "clip": phi_clip})
        elif name == "lira_online":
            refs = references["online"]
            online = seen(outputs.online, data.keys)
            if lira_clip is None:
                # The online models' IN/OUT over the evaluation records is theirs, not the target's: no leak.
                phi_clip, tprs = lira.calibrate_clip(reference_proba=online, y=y, in_mask=refs.target_in,
                                                     base_clip=clip, variance=lira_variance)
                details["clip_calibration_tpr"] = {f"{k:g}": v for k, v in tprs.items()}
            else:
                phi_clip = max(lira_clip, clip)
            reference_phi = np.stack([logit_confidence(p, y, clip=phi_clip) for p in online])
            scores = lira.lira_online(target_phi=logit_confidence(target, y, clip=phi_clip),
                                      reference_phi=reference_phi, in_mask=refs.target_in, variance=lira_variance)
            details.update({"variance": lira_variance, "n_models": len(reference_phi), "clip": phi_clip})
        elif name == "rmia":
            refs = references["offline"]
            pz = np.stack([true_class_proba(p, data.z_y) for p in seen(outputs.offline_z, record_keys(data.z_X))])
            if rmia_a is None:
                pool = np.stack([true_class_proba(p, data.pool_y)
                                 for p in seen(outputs.offline_pool, record_keys(data.pool_X))])
                a, aucs = rmia.calibrate_a(pool_p=pool, pool_in=refs.pool_in, reference_pz=pz, gamma=rmia_gamma,
                                           clip=clip)
                details["a_calibration_auc"] = {f"{k:g}": v for k, v in aucs.items()}
            else:
                a = rmia_a
            px = np.stack([true_class_proba(p, y) for p in seen(outputs.offline, data.keys)])
            scores = rmia.rmia_scores(target_px=true_class_proba(target, y), reference_px=px,
                                      target_pz=true_class_proba(target_z, data.z_y), reference_pz=pz, a=a,
                                      gamma=rmia_gamma, clip=clip).score
            details.update({"a": a, "gamma": rmia_gamma, "n_population_z": len(data.z_X)})
            if config is not None:
                config["rmia"]["a"] = a
        elif name == "label_only":
            assert outputs.neighbourhood is not None and neighbourhood_keys is not None
            labels = apply_policy(policy, outputs.neighbourhood, keys=neighbourhood_keys, seed=seed).argmax(axis=1)
            result = scores_from_labels(labels, y, config=label_config)
            scores = result.score
            details = {"queries": result.queries}
        else:  # pragma: no cover - expand_attacks rejects unknown names
            raise ValueError(name)
        scored.append((name, scores, time.perf_counter() - t, details))

    results = []
    member_keys = data.keys[is_member]
    for name, scores, seconds, details in scored:
        member_scores, nonmember_scores = scores[is_member], scores[~is_member]
        exposed = top_exposed(member_scores, k=top_k, tie_keys=member_keys)
        results.append(AttackResult(
            name=name, metrics=evaluate(member_scores, nonmember_scores),
            per_class=tuple(class_slices(member_scores, y[is_member], nonmember_scores, y[~is_member])),
            top_exposed=tuple(data.member_ids[i] for i in exposed), seconds=seconds, details=details,
        ))
    return results


def _recommend(*, summary: Headline | None, rows: Sequence[WhatIfRow], audited: str, full: PolicyOutcome,
               n_nonmembers: int, estimator: Any | None) -> list[Recommendation]:
    recommendations = []
    gap = full.train_accuracy - full.accuracy
    if gap >= GAP_FOR_REGULARISATION:
        hint = ("limit tree depth or raise min_samples_leaf" if hasattr(estimator, "min_samples_leaf")
                else "add regularisation (weight decay, early stopping, smaller capacity)")
        recommendations.append(Recommendation(
            kind="regularisation",
            message=f"The model is {gap:.1%} more accurate on its training records than on held-out ones; "
                    f"{hint} to close the gap that membership attacks exploit.",
            evidence={"train_accuracy": full.train_accuracy, "test_accuracy": full.accuracy}))
    current = next((row for row in rows if row.policy == audited), None)
    if current is not None and current.tpr_at_1pct_fpr:
        better = [row for row in rows if row.policy != audited and row.tpr_at_1pct_fpr is not None
                  and row.tpr_at_1pct_fpr <= OBFUSCATION_MIN_REDUCTION * current.tpr_at_1pct_fpr
                  and row.accuracy >= current.accuracy - OBFUSCATION_MAX_ACCURACY_DROP]
        if better:
            best = min(better, key=lambda row: (row.tpr_at_1pct_fpr or 0.0, -row.accuracy))
            recommendations.append(Recommendation(
                kind="output_obfuscation",
                message=f"Serving `{best.policy}` instead of `{audited}` cuts the best attack's TPR at 1 % FPR "
                        f"from {current.tpr_at_1pct_fpr:.1%} to {best.tpr_at_1pct_fpr:.1%} at an accuracy cost "
                        f"of {current.accuracy - best.accuracy:+.1%}. Obfuscation hides the signal from callers; "
                        "it does not remove what the model memorised.",
                evidence={"from": current.to_dict(), "to": best.to_dict()}))
    if summary is not None and summary.epsilon_lower >= EPSILON_FOR_DP:
        recommendations.append(Recommendation(
            kind="differential_privacy",
            message=f"The {summary.epsilon_attack} attack proves ε ≥ {summary.epsilon_lower:.2f} (δ = 1e-5): no "
                    "differential-privacy guarantee below that can hold for this model. Train with DP "
                    "(e.g. diffprivlib's models, or DP-SGD) to bound the leakage by construction.",
            evidence={"epsilon_lower": summary.epsilon_lower, "attack": summary.epsilon_attack}))
    if summary is not None and not all(rate.reliable for rate in summary.tpr_at_fpr.values()):
        needed = int(np.ceil(MIN_EXPECTED_FALSE_POSITIVES / min(summary.tpr_at_fpr)))
        recommendations.append(Recommendation(
            kind="more_data",
            message=f"With {n_nonmembers} non-members the lowest-FPR figures rest on fewer than "
                    f"{MIN_EXPECTED_FALSE_POSITIVES:g} possible false positives; upload at least {needed} "
                    "held-out records (and as many members) to measure them.",
            evidence={"n_nonmembers": n_nonmembers, "needed": needed}))
    return recommendations
