"""Run one audit of one registered model: load and decrypt its data in memory, run the pure attack
core with progress reported to the run row, judge the result against the model's policy, and alert."""
from __future__ import annotations

import hashlib
import io
import logging
import time
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from audits import remediation
from audits.attacks import AuditConfig, AuditData, AuditResult, run_attacks
from audits.attacks.metrics import clopper_pearson
from audits.attacks.reference import ReferenceModels
from audits.exposure import store_rankings
from audits.models import AuditPolicy, AuditRun, ReferenceCache, RunStatus, headline_rate
from monitor.alerts.lifecycle import Signal, raise_signal
from monitor.gateway.predict import predictor_for
from monitor.models import RegisteredModel
from monitor.platform.crypto import data_fernet
from monitor.platform.versions import python_environment
from monitor.registry.artifacts import TRUSTED_SKOPS_TYPES, SklearnPredictor, validate_trees
from monitor.trail.models import TrailEntry

log = logging.getLogger(__name__)


class AuditError(RuntimeError):
    """A reason an audit cannot run, stated for the person reading the run page."""


def stand_in_estimator(name: str) -> Any:
    """The scikit-learn estimator reference models are trained as when the target is ONNX or remote."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "random_forest": lambda: RandomForestClassifier(n_estimators=100, random_state=0),
        "gradient_boosting": lambda: GradientBoostingClassifier(random_state=0),
        "logistic_regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "mlp": lambda: make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0)),
    }[name]()


def _report(run_id: int) -> Any:
    last = {"at": 0.0}

    def report(percent: int, step: str) -> None:
        now = time.monotonic()
        # Every step is a heartbeat; throttle the writes, not the liveness.
        if now - last["at"] >= 0.5 or percent in (0, 100):
            AuditRun.objects.filter(id=run_id, status=RunStatus.RUNNING).update(
                progress=max(0, min(100, int(percent))), step=step[:200], heartbeat_at=timezone.now())
            last["at"] = now

    return report


# --- reference-model cache -----------------------------------------------------------------------------

def _cache_key(model: RegisteredModel, run: AuditRun, kind: str) -> str:
    parts = [str(model.version), kind, repr(sorted(run.data_sha256.items())), run.config.get("stand_in", ""),
             str(run.config.get("seed")), str(run.config.get("n_reference")), str(run.config.get("max_eval_records"))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def load_cached_references(model: RegisteredModel, key: str) -> ReferenceModels | None:
    import skops.io as sio

    row = ReferenceCache.objects.filter(model=model, key=key).first()
    if row is None:
        return None
    try:
        clear = data_fernet().decrypt(bytes(row.ciphertext))
        with np.load(io.BytesIO(clear), allow_pickle=False) as npz:
            blob = npz["models"].tobytes()
            untrusted = set(sio.get_untrusted_types(data=blob))
            if untrusted - TRUSTED_SKOPS_TYPES:
                raise ValueError(f"untrusted types {sorted(untrusted - TRUSTED_SKOPS_TYPES)}")
            models = sio.loads(blob, trusted=sorted(untrusted))
            for fitted in models:
                validate_trees(fitted, n_features=getattr(fitted, "n_features_in_", None))
            refs = ReferenceModels(models=tuple(models), pool_in=npz["pool_in"], target_in=npz["target_in"],
                                   seed=int(npz["seed"]), pool_fingerprint=str(npz["pool_fingerprint"]),
                                   target_fingerprint=str(npz["target_fingerprint"]))
    except Exception as exc:  # a stale or damaged cache entry is retrained, never trusted
        log.warning("reference cache %s for %s unusable (%s); retraining", key[:12], model.slug, type(exc).__name__)
        return None
    ReferenceCache.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return refs


def store_cached_references(model: RegisteredModel, key: str, refs: ReferenceModels) -> None:
    import skops.io as sio

    buffer = io.BytesIO()
    np.savez(buffer, models=np.frombuffer(sio.dumps(list(refs.models), compression=8), dtype=np.uint8),
             pool_in=refs.pool_in, target_in=refs.target_in, seed=refs.seed,
             pool_fingerprint=refs.pool_fingerprint, target_fingerprint=refs.target_fingerprint)
    ciphertext = data_fernet().encrypt(buffer.getvalue())
    ReferenceCache.objects.update_or_create(model=model, key=key, defaults={"ciphertext": ciphertext,
                                                                             "last_used_at": timezone.now()})
    # Keep the cache to the current version's entries.
    ReferenceCache.objects.filter(model=model).exclude(key__in=_current_keys(model)).delete()


def _current_keys(model: RegisteredModel) -> list[str]:
    latest = model.audit_runs.exclude(data_sha256={}).order_by("-created_at").first()
    if latest is None:
        return []
    return [_cache_key(model, latest, kind) for kind in ("offline", "online")]


# --- the run ------------------------------------------------------------------------------------------

def execute(run_id: int) -> AuditRun | None:
    """Claim and run one audit; None if another worker holds it. Failures are recorded, not raised."""
    if not AuditRun.objects.claim(run_id):
        return None
    run = AuditRun.objects.select_related("model").get(id=run_id)
    report = _report(run.id)
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


def _run(run: AuditRun, report: Any) -> tuple[AuditResult, dict | None]:
    model = run.model
    report(1, "loading the model and its reference data")
    datasets = {d.kind: d for d in model.datasets.all()}
    if "members" not in datasets or "nonmembers" not in datasets:
        raise AuditError("the model needs members and non-members reference data to be audited")
    arrays = {kind: d.load() for kind, d in datasets.items()}  # decrypted in memory only
    artifact = model.artifacts.filter(version=model.version).values("sha256").first()
    predictor = predictor_for(model)
    config = run.config or AuditPolicy.objects.for_model(model).config()
    if isinstance(predictor, SklearnPredictor):
        estimator, stand_in = predictor.estimator, None
    else:
        estimator, stand_in = stand_in_estimator(config.get("stand_in", "random_forest")), config.get("stand_in")
    AuditRun.objects.filter(id=run.id).update(
        model_version=model.version, artifact_sha256=artifact["sha256"] if artifact else "",
        data_sha256={kind: d.sha256 for kind, d in datasets.items()},
        environment=_environment(), config={**config, "stand_in_used": stand_in, "output_policy": model.output_policy})
    run.refresh_from_db()

    cache_keys = {kind: _cache_key(model, run, kind) for kind in ("offline", "online")}
    cached = {kind: load_cached_references(model, key) for kind, key in cache_keys.items()}
    population = arrays.get("population")
    data = AuditData(
        members_X=arrays["members"].X, members_y=arrays["members"].y,
        nonmembers_X=arrays["nonmembers"].X, nonmembers_y=arrays["nonmembers"].y,
        population_X=population.X if population is not None else None,
        population_y=population.y if population is not None else None,
        member_ids=[str(i) for i in arrays["members"].record_ids],
    )
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
    hardening = run.remediation and stand_in is None
    result = run_attacks(
        data=data, target_predict_proba=predictor.predict_proba, estimator_for_reference=estimator,
        config=audit_config, references={kind: refs for kind, refs in cached.items() if refs is not None},
        progress=scaled(report, 0, 50) if hardening else report,
    )
    for kind, refs in result.references.items():
        if cached.get(kind) is not refs:
            store_cached_references(model, cache_keys[kind], refs)
    if not run.remediation:
        return result, None
    if not hardening:
        return result, remediation.unavailable(f"hardened candidates need the model's own scikit-learn estimator; "
                                               f"this model is {model.source}, audited through a {stand_in} stand-in")
    return result, remediation.run(run, data=data, predictor=predictor, config=audit_config,
                                   references=result.references, progress=scaled(report, 50, 100))


def scaled(report: Any, start: int, end: int) -> Any:
    """A progress callback reporting 0-100 % of one stage as start-end % of the run."""
    return lambda percent, step: report(start + (end - start) * max(0, min(100, int(percent))) // 100, step)


def _what_if(config: dict) -> tuple[str, ...]:
    from audits.attacks.whatif import STANDARD_POLICIES

    return tuple(str(p) for p in STANDARD_POLICIES) if config.get("what_if", True) else ()


def _environment() -> dict:
    return python_environment(("numpy", "scipy", "scikit-learn", "skops", "onnxruntime", "Django"))


def _fpr_upper_bound(fpr: float, n_nonmembers: int) -> float:
    """Clopper–Pearson upper bound of the false-positive rate measured at a threshold set to `fpr`."""
    if n_nonmembers <= 0:
        return 1.0
    return float(clopper_pearson(int(round(fpr * n_nonmembers)), n_nonmembers)[1])


# Reference models trained on less than this share of the target's training-set size make a weak audit.
MIN_REFERENCE_SHARE = 0.1


def weak_audit_reasons(result: dict) -> list[str]:
    """Why the attacks that ran are weaker than the data would allow, each with what to do about it ([] if not)."""
    config = result.get("config") or {}
    coverage = config.get("coverage") or {}
    reasons = []
    skipped = coverage.get("skipped") or {}
    from audits.attacks.catalogue import attack_class

    reference = [name for name in skipped if _needs_references(attack_class, name)]
    if reference:
        reasons.append(f"{', '.join(reference)} could not run ({skipped[reference[0]]}); the strongest attacks need "
                       "reference models: upload population data (records from the same source the model never "
                       "trained on) or more non-members")
    target = config.get("target_train_size") or 0
    for kind, size in (config.get("reference_train_size") or {}).items():
        if target and size < MIN_REFERENCE_SHARE * target:
            reasons.append(f"{kind} reference models trained on {size:,} records against the target's {target:,}: "
                           f"upload more population data (about {int(target):,} records)")
    return reasons


def _needs_references(attack_class: Any, name: str) -> bool:
    try:
        return bool(attack_class(name).reference_sets)
    except KeyError:
        return False


def judge(run: AuditRun, result: dict, previous: AuditRun | None) -> dict:
    """Policy verdict: limits on the headline, and regression against the previous run.

    A TPR breach needs the point estimate above the limit *and* its 95 % lower bound above the upper
    bound of the FPR at that threshold: the headline is a maximum over several attacks, the threshold is
    itself estimated from a few non-members, and on a few hundred records chance alone lifts the figure
    past a 2 % limit (a placebo model did, in our tests). ε_lower is already a lower bound.
    """
    limits = run.config.get("limits", {})
    headline = result.get("headline") or {}
    tpr = headline_rate(headline)
    epsilon = headline.get("epsilon_lower")
    breaches = []
    n_nonmembers = (result.get("config") or {}).get("n_nonmembers") or 0
    beyond_chance = tpr.get("low") is not None and tpr["low"] > _fpr_upper_bound(0.01, n_nonmembers)
    if tpr.get("value") is not None and tpr["value"] > limits.get("tpr_at_1pct_fpr", 1.0) and beyond_chance:
        breaches.append({"metric": "tpr_at_1pct_fpr", "value": tpr["value"], "limit": limits["tpr_at_1pct_fpr"],
                         "attack": tpr.get("attack"), "low": tpr.get("low"), "high": tpr.get("high")})
    if epsilon is not None and epsilon > limits.get("epsilon_lower", float("inf")):
        breaches.append({"metric": "epsilon_lower", "value": epsilon, "limit": limits["epsilon_lower"]})
    regression = None
    if previous is not None and previous.result:
        before = previous.tpr_at().get("value")
        factor = limits.get("regression_factor", 2.0)
        if before is not None and tpr.get("value") is not None and before > 0 and tpr["value"] >= factor * before:
            regression = {"metric": "tpr_at_1pct_fpr", "previous": before, "now": tpr["value"], "factor": factor,
                          "previous_run": previous.pk}
    weak = weak_audit_reasons(result)
    verdict = "breached" if breaches or regression is not None else "inconclusive" if weak else "passed"
    # A weak audit passes nothing: its figures may be low. A breach found by a weak audit is still a breach.
    return {"passed": verdict == "passed", "verdict": verdict, "weak_audit": weak, "breaches": breaches,
            "regression": regression}


def finish(run: AuditRun, result: AuditResult, *, remediation: dict | None = None) -> None:
    data = result.to_dict()
    if remediation is not None:
        data["remediation"] = remediation
    previous = AuditRun.objects.filter(model=run.model).exclude(pk=run.pk).latest_finished()
    verdict = judge(run, data, previous)
    with transaction.atomic():
        AuditRun.objects.filter(id=run.id).update(status=RunStatus.DONE, progress=100, step="done", result=data,
                                                   policy_result=verdict, finished_at=timezone.now())
        store_rankings(run, result)
        TrailEntry.record(action="audit.finished", obj=run, after={"model": run.model.slug, "passed": verdict["passed"],
                                                                      "verdict": verdict["verdict"],
                                                                      "breaches": [b["metric"] for b in verdict["breaches"]]})
        if verdict["breaches"]:
            worst = max(verdict["breaches"], key=lambda b: b["value"] / b["limit"] if b["limit"] else float("inf"))
            raise_signal(Signal(
                source="audit", kind="policy_breach", model=run.model, incident=True,
                severity="critical" if worst["value"] >= 2 * worst["limit"] else "warning",
                title=f"Audit: {worst['metric']} {worst['value']:.3g} exceeds the limit {worst['limit']:.3g}",
                evidence={"audit_run": run.pk, "breaches": verdict["breaches"]},
            ))
        if verdict["weak_audit"]:
            raise_signal(Signal(
                source="audit", kind="weak_audit", model=run.model, severity="warning",
                title="Audit inconclusive — weak audit: the strongest attacks could not run as the data would allow",
                evidence={"audit_run": run.pk, "reasons": verdict["weak_audit"]},
            ))
        if verdict["regression"]:
            reg = verdict["regression"]
            raise_signal(Signal(
                source="audit", kind="leakage_regression", model=run.model, severity="warning",
                title=f"Audit: TPR@1%FPR rose from {reg['previous']:.3g} to {reg['now']:.3g}",
                evidence={"audit_run": run.pk, **reg},
            ))
