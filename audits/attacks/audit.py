"""One audit, start to finish, on plain arrays: pick the evaluation records, collect what the catalogue's
attacks need (target outputs, reference models, noisy neighbours), run the attacks under the model's output
policy and every what-if policy, and summarise. No Django, no I/O."""
from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from audits.attacks.base import (
    REFERENCE_KINDS,
    Attack,
    AttackInputs,
    CollectedOutputs,
    EvaluationRecords,
    ReferenceKind,
)
from audits.attacks.bayes_optimal import BaseSettings
from audits.attacks.catalogue import TIER_1, attack_class, attack_names, build_attack, expand_attacks
from audits.attacks.exposure import member_exposure
from audits.attacks.label_only import FeatureKinds, LabelOnlyConfig, neighbourhood_queries
from audits.attacks.lira import LiraSettings
from audits.attacks.metrics import FPR_TARGETS, class_slices, evaluate, headline, top_exposed
from audits.attacks.quantile import MIN_POOL_RECORDS as MIN_REGRESSION_POOL
from audits.attacks.recommendations import recommend
from audits.attacks.records import keyed_order, record_keys
from audits.attacks.reference import ReferenceModels, fingerprint, reference_proba, train_reference_models
from audits.attacks.results import AttackResult, AuditResult
from audits.attacks.rmia import RmiaSettings
from audits.attacks.scores import default_clip
from audits.attacks.whatif import STANDARD_POLICIES, PolicyOutcome, apply_policy, policy_clip, what_if
from monitor.platform.output_policy import OutputPolicy

# With one shared set of z, RMIA's score is a monotone function of the record's own ratio, so z set only
# the score's scale, not any ROC figure; a few hundred give a readable fraction (Zarifzadeh et al. 2024
# use a few thousand at most), and every population record left over trains the reference models instead.
MAX_POPULATION_Z = 1000
POPULATION_Z_SHARE = 8  # at most 1/8 of the population
MIN_POOL = 20
# Evaluation records per side an audit policy asks for by default: every member and non-member the data has up to
# here, so TPR at 0.1 % FPR rests on 10 or more expected false positives whenever 10,000 non-members are available.
DEFAULT_EVAL_RECORDS = 20_000

ProgressCallback = Callable[[int, str], None]
PredictProba = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class AuditData:
    """The records an audit is given. Population records (optional) are held out from the target and feed the
    reference models and RMIA's z; without them the reference attacks are skipped."""

    members_X: np.ndarray
    members_y: np.ndarray  # class indices: the columns of the target's predict_proba
    nonmembers_X: np.ndarray
    nonmembers_y: np.ndarray
    population_X: np.ndarray | None = None
    population_y: np.ndarray | None = None
    member_ids: Sequence[int | str] | None = None  # one per member row; top_exposed reports these
    # A table of raw values coded as numbers (categories as codes, missing as NaN): what a neighbour may change.
    kinds: FeatureKinds | None = None


@dataclass(frozen=True)
class AuditConfig:
    """What an audit runs and how; recorded (as JSON) in the result's config."""

    attacks: Sequence[str] = TIER_1  # catalogue names, or "threshold" for the threshold family
    n_reference: int = 4
    seed: int = 0
    output_policy: str | OutputPolicy = "full"  # what callers get back; the attacks see the same
    what_if_policies: Sequence[str | OutputPolicy] = STANDARD_POLICIES
    clip: float | None = None  # probability floor before logs; None: half a vote for forests (default_clip)
    lira: LiraSettings = LiraSettings()
    rmia: RmiaSettings = RmiaSettings()
    base: BaseSettings = BaseSettings()
    label_only: LabelOnlyConfig | None = None  # None: the default neighbourhood, seeded with `seed`
    reference_fraction: float = 0.5  # of the pool each reference model trains on
    max_per_side: int | None = None  # evaluation records per side, at most
    top_k: int = 20  # most exposed members reported per attack

    @property
    def label_only_config(self) -> LabelOnlyConfig:
        return self.label_only or LabelOnlyConfig(seed=self.seed)

    def attack_settings(self) -> dict[str, Any]:
        """Settings by the name of the attack field that takes them (catalogue.build_attack)."""
        return {"lira": self.lira, "rmia": self.rmia, "base": self.base, "label_only": self.label_only_config}


def select_records(data: AuditData, *, max_per_side: int | None, seed: int) -> EvaluationRecords:
    """Balanced members and non-members sampled by content key, and the population split into the reference
    pool and RMIA's z, without any row equal to an evaluation record; the members left unevaluated join the pool."""
    members_X, nonmembers_X = np.asarray(data.members_X, np.float64), np.asarray(data.nonmembers_X, np.float64)
    members_y, nonmembers_y = np.asarray(data.members_y, np.int64), np.asarray(data.nonmembers_y, np.int64)
    if len(members_X) != len(members_y) or len(nonmembers_X) != len(nonmembers_y):
        raise ValueError("features and labels differ in length")
    held_out: tuple[np.ndarray, np.ndarray] | None = None
    source = "uploaded"
    if not _has_population(data) and len(nonmembers_X) >= 2 * MIN_POOL:
        # No population: half the non-members (by content key) become it, so the reference attacks still run;
        # the other half is evaluated. Non-members are records the target never trained on: a valid population.
        halves = keyed_order(record_keys(nonmembers_X), seed=seed, purpose="population-from-nonmembers")
        to_population, to_evaluate = np.sort(halves[: len(halves) // 2]), np.sort(halves[len(halves) // 2:])
        held_out = (nonmembers_X[to_population], nonmembers_y[to_population])
        nonmembers_X, nonmembers_y = nonmembers_X[to_evaluate], nonmembers_y[to_evaluate]
        source = "nonmember_split"
    elif not _has_population(data):
        source = "none"
    n = min(len(members_X), len(nonmembers_X), max_per_side or len(members_X))
    if n < 1:
        raise ValueError("need at least one member and one non-member")
    member_keys, nonmember_keys = record_keys(members_X), record_keys(nonmembers_X)
    chosen_m = np.sort(keyed_order(member_keys, seed=seed, purpose="eval-members")[:n])
    chosen_n = np.sort(keyed_order(nonmember_keys, seed=seed, purpose="eval-nonmembers")[:n])
    member_ids = data.member_ids
    ids = [member_ids[i] for i in chosen_m] if member_ids is not None else [int(i) for i in chosen_m]
    X = np.concatenate([members_X[chosen_m], nonmembers_X[chosen_n]])
    y = np.concatenate([members_y[chosen_m], nonmembers_y[chosen_n]])
    keys = np.concatenate([member_keys[chosen_m], nonmember_keys[chosen_n]])

    pool_X = np.empty((0, X.shape[1]))
    pool_y = np.empty(0, np.int64)
    z_X, z_y, dropped = pool_X, pool_y, 0
    population_X, population_y = data.population_X, data.population_y
    if held_out is not None:
        population_X, population_y = held_out
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
    # Members the audit does not evaluate train the reference models too (as shadow models train on the target's
    # data in Carlini et al.'s and Zarifzadeh et al.'s setups): reference sets then come near the target's size,
    # which is what makes RMIA and LiRA strong. Never one equal to an evaluation record, never as a non-member.
    spare = np.ones(len(members_X), dtype=bool)
    spare[chosen_m] = False
    spare &= ~np.isin(member_keys, keys)
    pool_members = int(spare.sum()) if len(pool_X) else 0
    if pool_members:
        spare_rows = np.flatnonzero(spare)[np.argsort(member_keys[spare], kind="stable")]  # content order
        pool_X, pool_y = np.concatenate([pool_X, members_X[spare_rows]]), np.concatenate([pool_y, members_y[spare_rows]])
    return EvaluationRecords(X=X, y=y, is_member=np.arange(len(X)) < n, keys=keys, member_ids=tuple(ids),
                             pool_X=pool_X, pool_y=pool_y, z_X=z_X, z_y=z_y, feature_std=_spread(spread_from),
                             dropped_duplicates=dropped, population_source=source, pool_members=pool_members,
                             kinds=data.kinds)


def _spread(X: np.ndarray) -> np.ndarray:
    """Each feature's standard deviation over its present values (0 where none is)."""
    X = np.asarray(X, dtype=np.float64)
    present = ~np.isnan(X)
    counts = present.sum(axis=0)
    filled = np.where(present, X, 0.0)
    means = filled.sum(axis=0) / np.maximum(counts, 1)
    variance = np.where(present, (X - means) ** 2, 0.0).sum(axis=0) / np.maximum(counts, 1)
    return np.sqrt(variance)


def _has_population(data: AuditData) -> bool:
    return data.population_X is not None and data.population_y is not None and len(data.population_X) >= MIN_POOL


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
    data: AuditData,
    target_predict_proba: PredictProba,
    estimator_for_reference: Any | None,
    config: AuditConfig = AuditConfig(),
    references: Mapping[str, ReferenceModels] | None = None,
    progress: ProgressCallback | None = None,
) -> AuditResult:
    """Attack the target the way a strong adversary would and measure how much membership it leaks.

    Evaluation design (what keeps the figures honest):
    - members and non-members are balanced, sampled by content key (not position);
    - population rows equal to any declared member or non-member are dropped: a reference model trained on
      such a copy would have seen a record the mask calls OUT;
    - offline reference models train on the population pool and on the members the audit does not evaluate,
      never on an evaluation record; RMIA's z records are a further slice of the population that neither the
      reference models nor (by declaration) the target trained on;
    - online reference models add the evaluation records, each IN for half of them; membership labels are
      used only by the metrics, and RMIA's `a` is calibrated on reference models, never on the target.

    `target_predict_proba` returns the model's raw class probabilities (columns = class indices, the labels
    in `data`); the audit applies `config.output_policy` itself, as the gateway does. `references` are
    fitted reference models by kind ("offline", "online"), e.g. an earlier result's `references`: they skip
    retraining, and are used only if their fingerprints match these records.
    """
    started = time.perf_counter()
    report: ProgressCallback = progress or ignore_progress
    given = dict(references or {})
    if set(given) - set(REFERENCE_KINDS):
        raise ValueError(f"references are keyed by kind: {', '.join(REFERENCE_KINDS)}")
    names = expand_attacks(config.attacks)
    policy = _as_policy(config.output_policy)
    policies = [_as_policy(p) for p in config.what_if_policies]
    clip = default_clip(estimator_for_reference) if config.clip is None else config.clip
    notes: list[str] = []
    timings: dict[str, float] = {}

    report(0, "preparing evaluation records")
    records = select_records(data, max_per_side=config.max_per_side, seed=config.seed)
    if records.dropped_duplicates:
        notes.append(f"{records.dropped_duplicates} population rows equal to an evaluation record were left out")
    collected = _query_target(target_predict_proba, records=records, timings=timings)
    names, skipped = _collect_attack_inputs(
        names, records=records, collected=collected, given=given, estimator=estimator_for_reference, config=config,
        target_predict_proba=target_predict_proba, report=report, notes=notes, timings=timings)
    # Noisy neighbours: the label-only attacks' queries, also what any labels-only policy leaves to attack.
    if any(attack_class(name).needs_neighbourhood for name in names) or any(
            p.returns_labels_only for p in [policy, *policies]):
        _query_neighbourhood(target_predict_proba, records=records, collected=collected,
                             label_config=config.label_only_config, report=report, timings=timings)
    recorded = _recorded_config(names, skipped=skipped, data=data, records=records, collected=collected,
                                config=config, policy=policy, policies=policies, clip=clip)
    plan = AttackPlan.build(names, config=config, records=records, collected=collected, clip=clip)

    report(60, f"attacking under the {policy} output policy")
    t = time.perf_counter()
    main_results, main_outcome = attack_under_policy(plan, policy, recorded=recorded, notes=notes)
    timings["attacks"] = time.perf_counter() - t

    t = time.perf_counter()
    outcomes = WhatIfOutcomes(plan, report=report, n_policies=len(policies), audited=policy, outcome=main_outcome)
    rows = what_if(policies=policies, run_under_policy=outcomes) if policies else []
    timings["what_if"] = time.perf_counter() - t

    summary = headline([(r.name, r.metrics) for r in main_results]) if main_results else None
    full_outcome = outcomes.done.get("full") or attack_under_policy(plan, OutputPolicy("full"))[1]
    recommendations = recommend(summary=summary, rows=rows, audited=str(policy), full=full_outcome,
                                n_nonmembers=int((~records.is_member).sum()), estimator=estimator_for_reference)
    timings["total"] = time.perf_counter() - started
    report(100, "done")
    return AuditResult(
        attacks=tuple(main_results), headline=summary, what_if=tuple(rows), recommendations=tuple(recommendations),
        accuracy={"train": main_outcome.train_accuracy, "test": main_outcome.accuracy}, config=recorded,
        notes=tuple(notes), timings=timings, references=collected.references,
        record_keys=(records.keys[records.is_member], records.keys[~records.is_member]),
    )


def ignore_progress(percent: int, step: str) -> None:
    """The progress callback of a caller that asked for none."""


def _query_target(target_predict_proba: PredictProba, *, records: EvaluationRecords,
                  timings: dict[str, float]) -> CollectedOutputs:
    """The target's raw outputs on the evaluation records and on RMIA's z."""
    t = time.perf_counter()
    target = np.asarray(target_predict_proba(records.X), dtype=np.float64)
    n_classes = target.shape[1]
    collected = CollectedOutputs(target=target, target_z=np.asarray(target_predict_proba(records.z_X), np.float64)
                                 if len(records.z_X) else np.zeros((0, n_classes)))
    timings["target_queries"] = time.perf_counter() - t
    return collected


def _collect_attack_inputs(names: tuple[str, ...], *, records: EvaluationRecords, collected: CollectedOutputs,
                           given: Mapping[str, ReferenceModels], estimator: Any, config: AuditConfig,
                           target_predict_proba: PredictProba, report: ProgressCallback, notes: list[str],
                           timings: dict[str, float]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Collect what the attacks need beyond the target's outputs (reference models, the target's answers on the
    population pool); returns the attacks that can run and, for the others, why not (noted too)."""
    skipped: dict[str, str] = {}
    if records.population_source == "nonmember_split":
        held = records.n_population_pool + len(records.z_X)
        notes.append(f"no population data was uploaded: half the non-members ({held} records) were held out of the "
                     "evaluation as the reference attacks' population")
    if records.pool_members:
        notes.append(f"the {records.pool_members} members the audit did not evaluate joined the reference models' "
                     "training pool (never as non-members)")
    wanted_reference = [name for name in names if attack_class(name).reference_sets]
    shortfall = _reference_shortfall(records, estimator=estimator)
    if wanted_reference and shortfall is not None:
        names = _skip(names, wanted_reference, why=shortfall, skipped=skipped)
    kinds = [kind for kind in REFERENCE_KINDS if any(kind in attack_class(name).reference_sets for name in names)]
    failed = _collect_references(kinds, collected=collected, records=records, given=given, estimator=estimator,
                                 config=config, report=report, notes=notes, timings=timings)
    for kind, why in failed.items():
        names = _skip(names, [name for name in names if kind in attack_class(name).reference_sets], why=why,
                      skipped=skipped)
    # Regression attacks (quantile) need the target's own answers on the population pool, and nothing else.
    wanted_pool = [name for name in names if attack_class(name).needs_target_pool]
    population_pool_X = records.population_pool[0]
    if wanted_pool and len(population_pool_X) < MIN_REGRESSION_POOL:
        names = _skip(names, wanted_pool, why=f"needs at least {MIN_REGRESSION_POOL} population records, the pool "
                                              f"has {len(population_pool_X)}", skipped=skipped)
    elif wanted_pool:
        t = time.perf_counter()
        collected.target_pool = np.asarray(target_predict_proba(population_pool_X), np.float64)
        timings["target_pool_queries"] = time.perf_counter() - t
    for name, why in skipped.items():
        notes.append(f"skipped {name}: {why}")
    return names, skipped


def _reference_shortfall(records: EvaluationRecords, *, estimator: Any) -> str | None:
    """Why no reference model can be trained for these records (None: they can)."""
    if estimator is None:
        return "no estimator to train reference models as"
    if len(records.pool_X) >= MIN_POOL and len(records.z_X):
        return None
    if records.population_source == "none":
        return (f"too few records for reference models: upload population data (records from the same "
                f"source the model never trained on), or at least {2 * MIN_POOL} non-members")
    return (f"the population leaves {len(records.pool_X)} records for reference models and "
            f"{len(records.z_X)} for RMIA's z after removing copies of evaluation records; upload more")


def _skip(names: tuple[str, ...], dropped: Sequence[str], *, why: str, skipped: dict[str, str]) -> tuple[str, ...]:
    """`names` without `dropped`, each recorded in `skipped` with the reason."""
    skipped.update({name: why for name in dropped})
    return tuple(name for name in names if name not in dropped)


def _query_neighbourhood(target_predict_proba: PredictProba, *, records: EvaluationRecords,
                         collected: CollectedOutputs, label_config: LabelOnlyConfig, report: ProgressCallback,
                         timings: dict[str, float]) -> None:
    """The target's outputs on noisy neighbours of every evaluation record, queried in batches."""
    report(58, "querying noisy neighbours for the label-only attack")
    t = time.perf_counter()
    neighbourhood_X = neighbourhood_queries(records.X, feature_std=records.feature_std, config=label_config,
                                            kinds=records.kinds)
    collected.neighbourhood = np.concatenate([
        np.asarray(target_predict_proba(neighbourhood_X[s:s + label_config.batch_rows]), np.float64)
        for s in range(0, len(neighbourhood_X), label_config.batch_rows)])
    timings["label_only_queries"] = time.perf_counter() - t
    collected.neighbourhood_keys = record_keys(neighbourhood_X)


def _recorded_config(names: tuple[str, ...], *, skipped: dict[str, str], data: AuditData,
                     records: EvaluationRecords, collected: CollectedOutputs, config: AuditConfig,
                     policy: OutputPolicy, policies: Sequence[OutputPolicy], clip: float) -> dict[str, Any]:
    """How the audit ran, as the result records it (JSON-ready); the attacks add what they settled on."""
    return {
        "attacks": list(names), "n_reference": config.n_reference, "seed": config.seed, "output_policy": str(policy),
        "what_if_policies": [str(p) for p in policies], "clip": clip, "lira_variance": config.lira.variance,
        "rmia": {"gamma": config.rmia.gamma}, "label_only": config.label_only_config.to_dict(),
        "reference_fraction": config.reference_fraction, "n_members": int(records.is_member.sum()),
        "n_nonmembers": int((~records.is_member).sum()), "n_reference_pool": records.n_population_pool,
        "n_reference_pool_members": records.pool_members,
        "n_population_z": len(records.z_X), "fpr_targets": list(FPR_TARGETS), "top_k": config.top_k,
        "population_source": records.population_source, "target_train_size": len(data.members_X),
        "reference_train_size": _reference_sizes(collected.references),
        "coverage": {"ran": list(names), "skipped": skipped,
                     "families": sorted({attack_class(name).family for name in names})},
        "fingerprints": {"evaluation": fingerprint(records.keys), "reference_pool": fingerprint(records.pool_keys)},
        "versions": _library_versions(),
    }


@dataclass(frozen=True, eq=False)
class AttackPlan:
    """What the audit attacks with under every output policy: the attacks, the label-only ones that run when a
    policy returns labels only, and the records and outputs they score."""

    attacks: tuple[Attack, ...]
    label_attacks: tuple[Attack, ...]
    records: EvaluationRecords
    collected: CollectedOutputs
    clip: float
    seed: int
    top_k: int

    @classmethod
    def build(cls, names: Sequence[str], *, config: AuditConfig, records: EvaluationRecords,
              collected: CollectedOutputs, clip: float) -> AttackPlan:
        settings = config.attack_settings()
        attacks = tuple(build_attack(name, settings) for name in names)
        # A labels-only policy leaves nothing to the other attacks: run the label-only ones asked for, or all.
        label_attacks = tuple(attack for attack in attacks if attack.family == "label_only") or tuple(
            build_attack(name, settings) for name in attack_names() if attack_class(name).family == "label_only")
        return cls(attacks=attacks, label_attacks=label_attacks, records=records, collected=collected, clip=clip,
                   seed=config.seed, top_k=config.top_k)


def attack_under_policy(plan: AttackPlan, current: OutputPolicy, *, recorded: dict[str, Any] | None = None,
                        notes: list[str] | None = None) -> tuple[list[AttackResult], PolicyOutcome]:
    """Every attack of `plan` against what `current` lets a caller see, and the accuracy it leaves. The audited
    policy's run passes `recorded` (the attacks' settings and the members' exposure are kept) and `notes`."""
    records, collected = plan.records, plan.collected
    inputs = AttackInputs(policy=current, records=records, collected=collected, clip=policy_clip(current, plan.clip),
                          seed=plan.seed)
    running = plan.attacks
    if current.returns_labels_only:
        skipped = [attack.name for attack in plan.attacks if attack.family != "label_only"]
        running = plan.label_attacks
        if skipped and notes is not None:
            notes.append(f"the model returns labels only: skipped {', '.join(skipped)}; "
                         f"ran {', '.join(attack.name for attack in running)}")
    results = _attack_results(running, inputs=inputs, top_k=plan.top_k, config=recorded)
    seen = apply_policy(current, collected.target, keys=records.keys, seed=plan.seed).argmax(axis=1)
    correct = seen == records.y
    outcome = PolicyOutcome(accuracy=float(correct[~records.is_member].mean()),
                            train_accuracy=float(correct[records.is_member].mean()),
                            results=[(r.name, r.metrics) for r in results])
    return results, outcome


class WhatIfOutcomes:
    """The what-if table's `run_under_policy`: each output policy attacked once, the audited one already done."""

    def __init__(self, plan: AttackPlan, *, report: ProgressCallback, n_policies: int, audited: OutputPolicy,
                 outcome: PolicyOutcome) -> None:
        self.plan, self.report, self.n_policies = plan, report, n_policies
        self.done: dict[str, PolicyOutcome] = {str(audited): outcome}

    def __call__(self, current: OutputPolicy) -> PolicyOutcome:
        if str(current) not in self.done:
            self.report(80 + 19 * len(self.done) // max(self.n_policies, 1), f"what-if: {current}")
            self.done[str(current)] = attack_under_policy(self.plan, current)[1]
        return self.done[str(current)]


def _reference_sizes(references: Mapping[str, ReferenceModels]) -> dict[str, int]:
    """Per kind: how many records each reference model trained on (mean over the models).

    Before the members the audit does not evaluate joined the pool, references were smaller than the target's
    training set whenever the population was (what follows was measured then): drawing the pool with replacement up
    to the target's size was measured and rejected (Adult, random forest, 4 references: RMIA 14.8 % → 11.9 %,
    offline LiRA 13.7 % → 7.0 % TPR@1%FPR; duplicated rows make the references more confident on their IN
    records than the target is on its own), as was a larger share of the pool per model (0.75: 12.3 % / 6.3 %).
    Nor does a larger population alone help offline RMIA (5,000 evaluation records a side, 5,136 per model:
    14.7 %). What does is the online references' pool half + evaluation half (12,746 per model: online RMIA
    18.7 %, or 18.0 % scoring each record with only the models that left it OUT), so that is how the default
    tier gets references of about the target's size (rmia.RmiaOnlineAttack). Unevaluated members in the pool
    (distinct records, not copies) then lifted both: offline RMIA 21.4 %, online 24.6 % (5,886 and 15,886 per model).
    """
    return {kind: int(round(float(refs.pool_in.sum(axis=1).mean() + refs.target_in.sum(axis=1).mean())))
            for kind, refs in references.items()}


def _collect_references(kinds: Sequence[ReferenceKind], *, collected: CollectedOutputs, records: EvaluationRecords,
                        given: Mapping[str, ReferenceModels], estimator: Any, config: AuditConfig,
                        report: ProgressCallback, notes: list[str], timings: dict[str, float]) -> dict[str, str]:
    """Reuse or train each kind of reference models, and query them on every record the attacks score. Returns
    the kinds that could not be trained, with the reason (their attacks are skipped, the audit goes on)."""
    failed: dict[str, str] = {}
    pool_print = fingerprint(records.pool_keys)
    n_classes = collected.target.shape[1]
    for i, kind in enumerate(kinds):
        refs = given.get(kind)
        if refs is not None and refs.pool_fingerprint == pool_print and (
                kind == "offline" or refs.target_fingerprint == fingerprint(records.keys)):
            notes.append(f"reused {refs.n_models} {kind} reference models")
        else:
            if refs is not None:
                notes.append(f"the given {kind} reference models were trained on other records; retrained")
            tick = partial(_report_training, report=report, base=5 + 50 * i // len(kinds), kind=kind,
                           n_kinds=len(kinds))
            try:
                refs = train_reference_models(
                    estimator=estimator, pool_X=records.pool_X, pool_y=records.pool_y, n_models=config.n_reference,
                    seed=config.seed, target_X=records.X, target_y=records.y, online=kind == "online",
                    fraction=config.reference_fraction, progress=tick)
            except ValueError as exc:
                failed[kind] = f"{kind} reference models could not be trained: {exc}"
                continue
            timings[f"reference_{kind}"] = refs.fit_seconds
        collected.references[kind] = refs
        t = time.perf_counter()
        if kind == "offline":
            collected.offline = reference_proba(refs.models, records.X, n_classes)
            collected.offline_z = reference_proba(refs.models, records.z_X, n_classes)
            collected.offline_pool = reference_proba(refs.models, records.pool_X, n_classes)
        else:
            collected.online = reference_proba(refs.models, records.X, n_classes)
            collected.online_z = reference_proba(refs.models, records.z_X, n_classes)
        timings[f"reference_{kind}_queries"] = time.perf_counter() - t
    return failed


def _report_training(done: int, total: int, *, report: ProgressCallback, base: int, kind: str, n_kinds: int) -> None:
    report(base + 50 * done // (total * n_kinds), f"training {kind} reference model {done}/{total}")


def _as_policy(policy: str | OutputPolicy) -> OutputPolicy:
    return policy if isinstance(policy, OutputPolicy) else OutputPolicy.parse(policy)


def _attack_results(attacks: Sequence[Attack], *, inputs: AttackInputs, top_k: int,
                    config: dict[str, Any] | None) -> list[AttackResult]:
    """Score every record with each attack, then measure how well the scores separate members; what an
    attack settled on goes into `config` under its name (None: not recorded)."""
    scored = []
    for attack in attacks:
        t = time.perf_counter()
        outcome = attack.score(inputs)
        scored.append((attack.name, outcome.scores, time.perf_counter() - t, outcome.details))
        if config is not None and outcome.recorded:
            config.setdefault(attack.name, {}).update(outcome.recorded)

    records = inputs.records
    is_member, y = records.is_member, records.y
    member_keys = records.keys[is_member]
    results = []
    for name, scores, seconds, details in scored:
        member_scores, nonmember_scores = scores[is_member], scores[~is_member]
        exposed = top_exposed(member_scores, k=top_k, tie_keys=member_keys)
        results.append(AttackResult(
            name=name, metrics=evaluate(member_scores, nonmember_scores),
            per_class=tuple(class_slices(member_scores, y[is_member], nonmember_scores, y[~is_member])),
            top_exposed=tuple(records.member_ids[i] for i in exposed), seconds=seconds, details=details,
            exposure=member_exposure(name, ids=records.member_ids, member_scores=member_scores,
                                     nonmember_scores=nonmember_scores, tie_keys=member_keys)
            if config is not None else None,
            scores=(member_scores, nonmember_scores),
        ))
    return results
