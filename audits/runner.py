"""Run one audit of one registered model: claim the run, load and decrypt its data in memory, run the pure
attack core (reference models from the cache when they fit), store the result, judge it against the model's
policy (audits.attacks.verdict), and raise the verdict's alerts through the alert lifecycle."""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from audits import remediation
from audits.attacks import AuditConfig, AuditData, AuditResult, run_attacks
from audits.attacks.audit import ProgressCallback
from audits.attacks.label_only import FeatureKinds
from audits.attacks.stand_ins import stand_in_estimator
from audits.attacks.verdict import AuditAlertKind, PolicyLimits, PreviousRun, Verdict, judge
from audits.attacks.whatif import STANDARD_POLICIES
from audits.exposure import store_rankings
from audits.models import AuditPolicy, AuditRun, RunStatus
from audits.progress import RunProgress, ScaledProgress
from audits.reference_cache import cache_keys, load_cached_references, store_cached_references
from monitor.alerts.lifecycle import Signal, raise_signal
from monitor.models import AlertSource, ReferenceDataset
from monitor.platform.feature_schema import CATEGORICAL, FeatureSchema
from monitor.platform.severity import Severity
from monitor.platform.versions import python_environment
from monitor.registry.artifacts import SklearnPredictor
from monitor.registry.boosters import BoosterPredictor, reference_estimator
from monitor.registry.predictors import predictor_for
from monitor.trail.models import TrailEntry

log = logging.getLogger(__name__)


class AuditError(RuntimeError):
    """A reason an audit cannot run, stated for the person reading the run page."""


def execute(run_id: int) -> AuditRun | None:
    """Claim and run one audit; None if another worker holds it. Failures are recorded, not raised."""
    if not AuditRun.objects.claim(run_id):
        return None
    run = AuditRun.objects.select_related("model").get(id=run_id)
    report = RunProgress(run.id)
    try:
        result, remediation = _run(run, report)
    except Exception as exc:
        log.exception("audit %s of %s failed", run.id, run.model.slug)
        reason = str(exc) if isinstance(exc, (AuditError, ValueError)) else f"{type(exc).__name__}: {exc}"
        AuditRun.objects.filter(id=run.id).update(status=RunStatus.FAILED, error=reason[:4000], finished_at=timezone.now(),
                                                   step="failed")
        TrailEntry.record(action="audit.failed", obj=run, after={"model": run.model.slug, "error": reason[:500]})
        run.refresh_from_db()
        return run
    finish(run, result, remediation=remediation)
    run.refresh_from_db()
    return run


def _run(run: AuditRun, report: ProgressCallback) -> tuple[AuditResult, dict | None]:
    model = run.model
    report(1, "loading the model and its reference data")
    datasets = {d.kind: d for d in model.datasets.all()}
    if "members" not in datasets or "nonmembers" not in datasets:
        raise AuditError("the model needs members and non-members reference data to be audited")
    data = audit_data(datasets, schema=model.schema)  # decrypted in memory only
    predictor = predictor_for(model)
    config = run.config or AuditPolicy.objects.for_model(model).config()
    inferred: dict[str, str] | None = None  # a booster's reference parameters its file did not state
    if isinstance(predictor, SklearnPredictor):
        estimator, stand_in = predictor.reference_estimator(), None
    elif isinstance(predictor, BoosterPredictor):  # the same booster class, retrained with the file's parameters
        (estimator, inferred), stand_in = reference_estimator(predictor), None
    else:
        estimator, stand_in = stand_in_estimator(config.get("stand_in", "random_forest")), config.get("stand_in")
    _record_provenance(run, datasets=datasets, config=config, stand_in=stand_in, inferred=inferred)

    keys = cache_keys(model, run)
    cached = {kind: load_cached_references(model, key) for kind, key in keys.items()}
    attacks = list(config["attacks"])
    if stand_in is not None and "quantile" not in attacks:
        # The reference attacks run on stand-in clones; the quantile attack needs only the real model's answers,
        # so it runs beside them on every ONNX or remote model.
        attacks.append("quantile")
    audit_config = AuditConfig(
        attacks=attacks, n_reference=config["n_reference"], seed=config["seed"],
        output_policy=model.output_policy, what_if_policies=_what_if(config),
        max_per_side=config["max_eval_records"],
    )
    hardening = run.remediation and isinstance(predictor, SklearnPredictor)
    result = run_attacks(
        data=data, target_predict_proba=predictor.predict_proba, estimator_for_reference=estimator,
        config=audit_config, references={kind: refs for kind, refs in cached.items() if refs is not None},
        progress=ScaledProgress(report, 0, 50) if hardening else report,
    )
    for kind, refs in result.references.items():
        if cached.get(kind) is not refs:
            store_cached_references(model, keys[kind], refs)
    if not run.remediation:
        return result, None
    if inferred is not None:
        return result, remediation.unavailable(
            f"hardened candidates are scikit-learn and diffprivlib estimators; this model is an XGBoost or LightGBM "
            f"booster ({model.source}): retrain it with fewer rounds, shallower trees or more regularisation and "
            "audit that version")
    if not hardening:
        return result, remediation.unavailable(f"hardened candidates need the model's own scikit-learn estimator; "
                                               f"this model is {model.source}, audited through a {stand_in} stand-in")
    return result, remediation.run(run, data=data, predictor=predictor, config=audit_config,
                                   references=result.references, progress=ScaledProgress(report, 50, 100))


def audit_data(datasets: dict[str, ReferenceDataset], *, schema: FeatureSchema) -> AuditData:
    arrays = {kind: d.load() for kind, d in datasets.items()}
    kinds = None if schema.is_plain else FeatureKinds(
        categories=tuple(len(f.categories) if f.kind == CATEGORICAL else 0 for f in schema.features),
        missing_ok=tuple(f.missing_accepted for f in schema.features))
    population = arrays.get("population")
    return AuditData(
        members_X=arrays["members"].X, members_y=arrays["members"].y,
        nonmembers_X=arrays["nonmembers"].X, nonmembers_y=arrays["nonmembers"].y,
        population_X=population.X if population is not None else None,
        population_y=population.y if population is not None else None,
        member_ids=[str(i) for i in arrays["members"].record_ids], kinds=kinds,
    )


def _record_provenance(run: AuditRun, *, datasets: dict[str, ReferenceDataset], config: dict,
                       stand_in: str | None, inferred: dict[str, str] | None = None) -> None:
    """What the run audits, written on the run before the attacks start: version, artifact and data hashes,
    library versions and the config it runs with (the reference cache's key is made of these)."""
    model = run.model
    artifact = model.artifacts.filter(version=model.version).values("sha256").first()
    AuditRun.objects.filter(id=run.id).update(
        model_version=model.version, artifact_sha256=artifact["sha256"] if artifact else "",
        data_sha256={kind: d.sha256 for kind, d in datasets.items()},
        environment=_environment(), config={**config, "stand_in_used": stand_in, "output_policy": model.output_policy,
                                            **({"reference_parameters_inferred": inferred} if inferred is not None else {})})
    run.refresh_from_db()


def _what_if(config: dict) -> tuple[str, ...]:
    return tuple(str(p) for p in STANDARD_POLICIES) if config.get("what_if", True) else ()


def _environment() -> dict:
    return python_environment(("numpy", "scipy", "scikit-learn", "skops", "onnxruntime", "xgboost", "lightgbm", "Django"))


def finish(run: AuditRun, result: AuditResult, *, remediation: dict | None = None) -> None:
    """Store a finished run's result and verdict, and raise the verdict's alerts, in one transaction."""
    data = result.to_dict()
    if remediation is not None:
        data["remediation"] = remediation
    previous = AuditRun.objects.filter(model=run.model).exclude(pk=run.pk).latest_finished()
    verdict = judge(result, limits=PolicyLimits.from_dict(run.config.get("limits", {})),
                    previous=PreviousRun(run_id=previous.pk, tpr_at_1pct_fpr=previous.tpr_at().get("value"))
                    if previous is not None and previous.result else None)
    with transaction.atomic():
        AuditRun.objects.filter(id=run.id).update(status=RunStatus.DONE, progress=100, step="done", result=data,
                                                   policy_result=verdict.to_dict(), finished_at=timezone.now())
        store_rankings(run, result)
        TrailEntry.record(action="audit.finished", obj=run, after={
            "model": run.model.slug, "passed": verdict.passed, "verdict": verdict.state.value,
            "breaches": [breach.metric.value for breach in verdict.breaches]})
        raise_alerts(run, verdict)


def raise_alerts(run: AuditRun, verdict: Verdict) -> None:
    """One alert per finding of the verdict: a breach (an incident), a weak audit, a regression."""
    worst = verdict.worst_breach()
    if worst is not None:
        raise_signal(Signal(
            source=AlertSource.AUDIT, kind=AuditAlertKind.POLICY_BREACH, model=run.model, incident=True,
            severity=worst.severity,
            title=f"Audit: {worst.metric.value} {worst.value:.3g} exceeds the limit {worst.limit:.3g}",
            evidence={"audit_run": run.pk, "breaches": [breach.to_dict() for breach in verdict.breaches]},
        ))
    if verdict.weak_audit:
        raise_signal(Signal(
            source=AlertSource.AUDIT, kind=AuditAlertKind.WEAK_AUDIT, model=run.model, severity=Severity.WARNING,
            title="Audit inconclusive — weak audit: the strongest attacks could not run as the data would allow",
            evidence={"audit_run": run.pk, "reasons": list(verdict.weak_audit)},
        ))
    if verdict.regression is not None:
        reg = verdict.regression
        raise_signal(Signal(
            source=AlertSource.AUDIT, kind=AuditAlertKind.LEAKAGE_REGRESSION, model=run.model, severity=Severity.WARNING,
            title=f"Audit: TPR@1%FPR rose from {reg.previous:.3g} to {reg.now:.3g}",
            evidence={"audit_run": run.pk, **reg.to_dict()},
        ))
