"""Remediation inside an audit run: train and attack the hardened candidates of the model's own estimator
(`audits.attacks.remediation`), keep the recommended one as a skops file with its provenance, and hand it out
to the roles that may deploy it (every download goes to the security trail)."""
from __future__ import annotations

import hashlib
from typing import Any

from audits.attacks import AuditConfig, AuditData
from audits.attacks.hardening import exportable
from audits.attacks.reference import ReferenceModels
from audits.attacks.remediation import DEFAULT_MAX_ACCURACY_COST, run_remediation
from audits.models import AuditRun, HardenedArtifact
from monitor.platform.crypto import data_fernet
from monitor.trail.models import TrailEntry


def unavailable(reason: str) -> dict:
    return {"current": None, "candidates": [], "recommended": None, "notes": [reason], "attacks": [],
            "artifact": {"available": False, "reason": reason}}


def run(audit: AuditRun, *, data: AuditData, predictor: Any, config: AuditConfig,
        references: dict[str, ReferenceModels], progress: Any) -> dict:
    """The remediation table of one run (JSON-ready), with the recommended candidate stored for download."""
    budget = audit.config.get("max_accuracy_cost")
    result = run_remediation(
        data=data, target_predict_proba=predictor.predict_proba, estimator=predictor.reference_estimator(), config=config,
        references=references, labels=predictor.estimator.classes_,
        max_accuracy_cost=DEFAULT_MAX_ACCURACY_COST if budget is None else float(budget), progress=progress)
    table = result.to_dict()
    plain = (exportable(without_raw_rows(result.recommended_model), index_labels=result.recommended_index_labels)
             if result.recommended_model is not None else None)
    table["artifact"] = _store(audit, result.recommended, plain, table)
    return table


def without_raw_rows(model: Any) -> Any:
    """A candidate of a pipeline over raw values, as the team's own shape: without the first step that turned the
    audit's coded rows into the raw table (SklearnPredictor.reference_estimator), so it takes the raw table."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline) and model.steps[0][0] == "raw_rows":
        rest = model.steps[1:]
        return rest[0][1] if len(rest) == 1 and rest[0][0] == "model" else Pipeline(rest)
    return model


def _store(audit: AuditRun, index: int | None, plain: Any, table: dict) -> dict:
    import skops.io as sio

    if index is None:
        return {"available": False, "reason": "no candidate was recommended"}
    candidate = table["candidates"][index]
    if plain is None:
        return {"available": False, "reason": f"{candidate['setting'].get('training', 'this candidate')} has no "
                                              "scikit-learn equivalent to save as a registrable skops file"}
    blob = sio.dumps(plain, compression=8)
    sha256 = hashlib.sha256(blob).hexdigest()
    provenance = {
        "audit_run": audit.pk, "model": audit.model.slug, "model_version": audit.model_version,
        "base_artifact_sha256": audit.artifact_sha256, "candidate": index, "setting": candidate["setting"],
        "kind": candidate["kind"], "trained_on": {"members_sha256": (audit.data_sha256 or {}).get("members")},
        "accuracy": candidate["accuracy"], "accuracy_cost": candidate["accuracy_cost"],
        "tpr_at_1pct_fpr": candidate["tpr_at_1pct_fpr"], "environment": audit.environment,
        "sha256": sha256, "size": len(blob), "format": "skops",
    }
    HardenedArtifact.objects.update_or_create(run=audit, defaults={
        "candidate": index, "sha256": sha256, "size": len(blob), "provenance": provenance,
        "ciphertext": data_fernet().encrypt(blob)})
    return {"available": True, "candidate": index, "sha256": sha256, "size": len(blob),
            "download": f"/api/v1/audits/{audit.pk}/remediation/artifact", "provenance": provenance}


def download(audit: AuditRun, *, user: Any = None, ip: str | None = None) -> tuple[HardenedArtifact, bytes] | None:
    stored = HardenedArtifact.objects.filter(run=audit).first()
    if stored is None:
        return None
    blob = data_fernet().decrypt(bytes(stored.ciphertext))
    TrailEntry.record(action="remediation.artifact_downloaded", actor=user, ip=ip, obj=audit,
                      after={"model": audit.model.slug, "candidate": stored.candidate, "sha256": stored.sha256})
    return stored, blob


def filename(audit: AuditRun) -> str:
    return f"{audit.model.slug}-v{audit.model_version}-hardened-audit-{audit.pk}.skops"
