"""The privacy gate before deployment (issue 28): a candidate artifact is audited beside the production model with
the production model's policy, attacks, seed and the same evaluation records, and the two are compared record by
record (audits.attacks.gate). Reference models are shared when the candidate's estimator is the production
estimator's family and hyperparameters (they depend on the data, not on the model under test)."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from django.conf import settings

from audits.attacks import AuditConfig, AuditResult, run_attacks
from audits.attacks.audit import ProgressCallback, ignore_progress
from audits.attacks.gate import GateResult, compare, decide, model_scores
from audits.attacks.verdict import PolicyLimits, judge
from audits.models import AuditPolicy
from audits.progress import ScaledProgress
from audits.reference_cache import cache_keys, load_cached_references
from audits.runner import audit_data
from monitor.models import RegisteredModel
from monitor.models.reference_arrays import ReferenceArrays
from monitor.registry.artifacts import ArtifactError, load_artifact, sniff_format
from monitor.registry.boosters import BoosterPredictor, reference_estimator
from monitor.registry.predictors import predictor_for
from monitor.registry.sandbox import check_in_sandbox


class GateError(ValueError):
    """A candidate the gate cannot judge (`field` names what is wrong: artifact, model)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class GateOutcome:
    model: RegisteredModel
    candidate_sha256: str
    artifact_name: str
    production: AuditResult
    candidate: AuditResult
    result: GateResult
    limits: list[dict[str, Any]]
    seconds: float
    shared_references: bool

    def report(self) -> dict[str, Any]:
        """What every report format is written from (audits.gate_reports), JSON-ready."""
        records = self.production.record_keys
        return {
            "model": self.model.slug, "production_version": self.model.version,
            "candidate_sha256": self.candidate_sha256, "artifact_name": self.artifact_name,
            "verdict": str(self.result.verdict), "exit_code": self.result.verdict.exit_code,
            "alpha": self.result.alpha, "n_bootstrap": self.result.n_bootstrap, "reasons": list(self.result.reasons),
            "comparisons": [c.to_dict() for c in self.result.comparisons], "limits": self.limits,
            "n_members": len(records[0]) if records else 0, "n_nonmembers": len(records[1]) if records else 0,
            "seconds": round(self.seconds, 1), "shared_reference_models": self.shared_references,
        }


def load_candidate(model: RegisteredModel, data: bytes) -> Any:
    """The candidate's predictor, read like a registration's artifact (by content, tried in a limited child
    first) and checked to answer for the production model's features and classes."""
    if len(data) > settings.ARTIFACT_MAX_BYTES:
        raise GateError("artifact", f"the file is {len(data):,} bytes; the limit is {settings.ARTIFACT_MAX_BYTES:,}")
    try:
        fmt = sniff_format(data)
        check_in_sandbox(data, fmt, max_unpacked=settings.ARTIFACT_MAX_BYTES)
        predictor = load_artifact(data, fmt)
    except ArtifactError as exc:
        raise GateError("artifact", str(exc)) from exc
    if hasattr(predictor, "for_schema"):
        predictor = predictor.for_schema(model.schema)
    if predictor.n_features is not None and predictor.n_features != model.n_features:
        raise GateError("artifact", f"the candidate takes {predictor.n_features} features; {model.slug} has "
                                    f"{model.n_features}: {model.feature_names}")
    if predictor.classes and predictor.classes != model.class_labels:
        raise GateError("artifact", f"the candidate's classes {predictor.classes} are not {model.slug}'s "
                                    f"{model.class_labels}")
    return predictor


def _reference_estimator(predictor: Any) -> Any:
    if isinstance(predictor, BoosterPredictor):
        return reference_estimator(predictor)[0]
    if hasattr(predictor, "reference_estimator"):
        return predictor.reference_estimator()
    raise GateError("model", "the gate needs the model's own estimator (a skops, XGBoost or LightGBM artifact); "
                             "ONNX and endpoint models are audited through stand-ins")


def _same_estimator(one: Any, other: Any) -> bool:
    """Same class and hyperparameters, seeds aside: then reference models trained for one serve the other."""
    def composite(value: Any) -> bool:
        return hasattr(value, "get_params") or (isinstance(value, list | tuple) and any(map(composite, value)))

    def signature(estimator: Any) -> str:
        # Nested estimators are compared through their own flattened parameters (a pipeline's steps list would
        # carry each step's seed in its repr), so only leaf values are kept, seeds left out.
        params = sorted((k, type(v).__name__ if composite(v) else repr(v))
                        for k, v in estimator.get_params(deep=True).items() if not k.endswith("random_state"))
        return f"{type(estimator).__module__}.{type(estimator).__name__}:{params}"

    return signature(one) == signature(other)


def _prefixed(report: ProgressCallback, which: str) -> ProgressCallback:
    """Each audit's steps named after the model they audit ("production: training reference model 2/4")."""
    return lambda percent, step: report(percent, f"{which}: {'audited' if step == 'done' else step}")


def _cached_references(model: RegisteredModel, datasets: dict[str, Any], policy: dict) -> dict[str, Any]:
    """The production model's reference models its scheduled audits cached for this version, data and policy (the
    attack core uses them only if their fingerprints match the records), so a gate does not train them again."""
    key_source = SimpleNamespace(data_sha256={kind: d.sha256 for kind, d in datasets.items()}, config=policy)
    cached = {kind: load_cached_references(model, key) for kind, key in cache_keys(model, key_source).items()}
    return {kind: refs for kind, refs in cached.items() if refs is not None}


def run_gate(model: RegisteredModel, *, artifact: bytes, artifact_name: str = "", alpha: float | None = None,
             n_bootstrap: int = 1000, members: ReferenceArrays | None = None,
             progress: ProgressCallback | None = None) -> GateOutcome:
    """Audit the candidate beside production (in this process) and decide. `members`: the candidate's own training
    records when it trained on new data (then it is attacked on those members and production's non-members, and
    the members are compared unpaired)."""
    started = time.perf_counter()
    report: ProgressCallback = progress or ignore_progress
    report(0, "checking the candidate")
    candidate = load_candidate(model, artifact)
    production = predictor_for(model)
    datasets = {d.kind: d for d in model.datasets.all()}
    if "members" not in datasets or "nonmembers" not in datasets:
        raise GateError("model", "the model needs members and non-members reference data to be gated")
    data = audit_data(datasets, schema=model.schema)
    candidate_data = data if members is None else replace(
        data, members_X=members.X, members_y=members.y, member_ids=[str(i) for i in members.record_ids])
    policy = AuditPolicy.objects.for_model(model).config()
    audit_config = AuditConfig(attacks=list(policy["attacks"]), n_reference=policy["n_reference"], seed=policy["seed"],
                               output_policy=model.output_policy, what_if_policies=(),
                               max_per_side=policy["max_eval_records"])
    production_estimator, candidate_estimator = _reference_estimator(production), _reference_estimator(candidate)
    try:  # run_attacks refuses data it cannot audit with a ValueError saying why
        production_result = run_attacks(data=data, target_predict_proba=production.predict_proba,
                                        estimator_for_reference=production_estimator, config=audit_config,
                                        references=_cached_references(model, datasets, policy),
                                        progress=ScaledProgress(_prefixed(report, "production"), 2, 50))
        shared = _same_estimator(production_estimator, candidate_estimator)
        candidate_result = run_attacks(data=candidate_data, target_predict_proba=candidate.predict_proba,
                                       estimator_for_reference=candidate_estimator, config=audit_config,
                                       references=production_result.references if shared else None,
                                       progress=ScaledProgress(_prefixed(report, "candidate"), 50, 95))
    except ValueError as exc:
        raise GateError("model", str(exc)) from exc
    report(96, "comparing the two models record by record")
    alpha = float(policy.get("gate_alpha", 0.05) if alpha is None else alpha)
    comparisons = compare(model_scores(production_result), model_scores(candidate_result), alpha=alpha,
                          n_bootstrap=n_bootstrap, seed=policy["seed"])
    limits = PolicyLimits.from_dict(policy["limits"])
    verdict = judge(candidate_result, limits=limits)
    breached = {breach.metric.value for breach in verdict.breaches}
    rate = candidate_result.rate_at(0.01)
    epsilon = candidate_result.headline.epsilon_lower if candidate_result.headline else None
    limit_rows = [{"metric": "tpr_at_1pct_fpr", "value": round(rate.value, 4) if rate else None,
                   "limit": limits.tpr_at_1pct_fpr, "breached": "tpr_at_1pct_fpr" in breached},
                  {"metric": "epsilon_lower", "value": round(epsilon, 3) if epsilon is not None else None,
                   "limit": limits.epsilon_lower if limits.epsilon_lower != float("inf") else None,
                   "breached": "epsilon_lower" in breached}]
    weak = [*verdict.weak_audit, *judge(production_result, limits=limits).weak_audit]
    result = decide(comparisons, alpha=alpha, n_bootstrap=n_bootstrap,
                    limit_breaches=[f"{row['metric']} {row['value']} > limit {row['limit']}"
                                    for row in limit_rows if row["breached"]],
                    weak=sorted(set(weak)))
    report(100, f"verdict: {result.verdict}")
    return GateOutcome(model=model, candidate_sha256=hashlib.sha256(artifact).hexdigest(), artifact_name=artifact_name,
                       production=production_result, candidate=candidate_result, result=result, limits=limit_rows,
                       seconds=time.perf_counter() - started, shared_references=shared)
