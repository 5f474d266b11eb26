"""Gate candidates (issue 28): a candidate artifact is submitted against a registered model (the API, the model
page), checked at once (read by content in a limited child, features and classes matching the model, its own
members CSV coded against the model's schema), audited by a worker beside production (audits.gate.run_gate), and
perhaps promoted to the model's next artifact version. Every submission and promotion is in the trail; a candidate
that did not pass is promoted only with a written reason, which the trail and the evidence keep."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audits.gate import GateError, load_candidate, run_gate
from audits.models import CandidateStatus, GateCandidate
from audits.progress import RowProgress
from monitor.models import ModelArtifact, RegisteredModel
from monitor.models.reference_arrays import DatasetError, decrypt_arrays, encrypt_arrays
from monitor.platform.broker import publish, publish_on_commit
from monitor.registry.artifacts import sniff_format
from monitor.registry.reference_data import parse_reference_csv
from monitor.trail.models import TrailEntry
from monitor.trail.recording import recorded_by_caller

log = logging.getLogger(__name__)

TASK = "audits.tasks.gate_candidate"
WAITING_FOR_BROKER = "waiting for a worker (the broker could not be reached; the next check sends it again)"
# A promotion of a candidate that did not pass needs a reason at least this long (a word or two is not one).
MIN_REASON_CHARS = 20
MAX_IDEMPOTENCY_KEY = 255
# The artifact format a candidate is stored as -> the model's `source` once it is promoted.
SOURCE_OF_FORMAT = {"skops": RegisteredModel.SKOPS, "onnx": RegisteredModel.ONNX,
                    "xgboost_json": RegisteredModel.XGBOOST_JSON, "xgboost_ubj": RegisteredModel.XGBOOST_UBJ,
                    "lightgbm_text": RegisteredModel.LIGHTGBM_TEXT}


class CandidateError(ValueError):
    """A submission or promotion refused: `field` names what is wrong, `conflict` when the state forbids it."""

    def __init__(self, field: str, message: str, *, conflict: bool = False, too_large: bool = False) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.conflict, self.too_large = field, message, conflict, too_large


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str = ""


def idempotency_problem(key: str) -> str | None:
    """Why `key` cannot be an Idempotency-Key (None when it can): 1 to 255 visible ASCII characters."""
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not all(33 <= ord(c) <= 126 for c in key):
        return f"give 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters (a UUID per upload is usual)"
    return None


def _replay(model: RegisteredModel, key: str, artifact: Upload, members_sha256: str) -> GateCandidate | None:
    """The candidate an earlier upload with this key stored, when this one is the same; CandidateError when the key
    was used for another candidate."""
    earlier = GateCandidate.objects.filter(model=model, idempotency_key=key).first()
    if earlier is None:
        return None
    if earlier.artifact_sha256 != hashlib.sha256(artifact.data).hexdigest() or earlier.members_sha256 != members_sha256:
        raise CandidateError("Idempotency-Key", f"already used for candidate {earlier.pk}, with another artifact or "
                                                "members file: send a new key with a new candidate", conflict=True)
    return earlier


def submit(model: RegisteredModel, *, artifact: Upload, members: Upload | None = None, id_column: str | None = None,
           alpha: float | None = None, user: Any = None, ip: str | None = None,
           idempotency_key: str | None = None) -> GateCandidate:
    """Check the candidate now (nothing is stored when it is refused), store it queued and send it to a worker.

    With `idempotency_key` (the client's Idempotency-Key header), an upload sent again after a dropped connection
    returns the candidate the first one stored, queued once and gated once; the same key with another artifact or
    members file is refused (conflict)."""
    if idempotency_key is not None and (problem := idempotency_problem(idempotency_key)):
        raise CandidateError("Idempotency-Key", problem)
    if alpha is not None and not 0 < alpha < 0.5:
        raise CandidateError("alpha", f"{alpha}: give a significance level between 0 and 0.5")
    if len(artifact.data) > settings.ARTIFACT_MAX_BYTES:
        raise CandidateError("artifact", f"the file is {len(artifact.data):,} bytes; the limit is "
                                         f"{settings.ARTIFACT_MAX_BYTES:,}", too_large=True)
    if not artifact.data:
        raise CandidateError("artifact", "the file is empty")
    if not model.artifacts.filter(version=model.version).exists():
        raise CandidateError("model", f"{model.slug} has no artifact to compare with (an endpoint model is gated "
                                      "by registering the candidate's endpoint as a model)", conflict=True)
    try:
        load_candidate(model, artifact.data)
    except GateError as exc:
        raise CandidateError(exc.field, exc.message) from exc
    members_fields: dict[str, Any] = {}
    if members is not None:
        try:
            parsed = parse_reference_csv(members.data, label_column=model.label_column,
                                         feature_names=list(model.feature_names), class_labels=list(model.class_labels),
                                         id_column=id_column or None, schema=model.schema)
        except DatasetError as exc:
            details = "; ".join(f"{d.get('row', d.get('column', ''))}: {d.get('message', '')}"
                                for d in exc.details[:5])
            raise CandidateError("members", exc.message + (f" ({details})" if details else "")) from exc
        members_fields = {"members_ciphertext": encrypt_arrays(parsed.arrays), "members_sha256": parsed.sha256,
                          "members_rows": len(parsed.arrays.y)}
    if idempotency_key and (earlier := _replay(model, idempotency_key, artifact, members_fields.get("members_sha256", ""))):
        return earlier
    try:
        return _store(model, artifact=artifact, members_fields=members_fields, alpha=alpha, user=user, ip=ip,
                      own_members=members is not None, idempotency_key=idempotency_key or "")
    except IntegrityError:
        # The same key raced in from another connection and won: answer with its candidate.
        earlier = _replay(model, idempotency_key or "", artifact, members_fields.get("members_sha256", ""))
        if earlier is None:
            raise
        return earlier


def _store(model: RegisteredModel, *, artifact: Upload, members_fields: dict[str, Any], alpha: float | None,
           user: Any, ip: str | None, own_members: bool, idempotency_key: str) -> GateCandidate:
    with transaction.atomic(), recorded_by_caller():
        candidate = GateCandidate.objects.create(
            model=model, artifact_data=artifact.data, artifact_format=sniff_format(artifact.data),
            artifact_sha256=hashlib.sha256(artifact.data).hexdigest(), artifact_size=len(artifact.data),
            artifact_name=artifact.filename[:255], production_version=model.version, alpha=alpha,
            created_by=user if getattr(user, "pk", None) else None, idempotency_key=idempotency_key, **members_fields)
        TrailEntry.record(action="candidate.submitted", actor=user, ip=ip, obj=candidate,
                          after={"model": model.slug, "artifact_sha256": candidate.artifact_sha256,
                                 "artifact_name": candidate.artifact_name, "production_version": model.version,
                                 "own_members": own_members, "alpha": alpha})
        publish_on_commit(TASK, candidate.pk, on_failure=lambda: GateCandidate.objects.filter(
            id=candidate.pk, status=CandidateStatus.QUEUED).update(step=WAITING_FOR_BROKER))
    return candidate


def execute(candidate_id: int) -> GateCandidate | None:
    """Claim a queued candidate (a redelivered message finds it claimed and stops), gate it and store the result."""
    now = timezone.now()
    if not GateCandidate.objects.filter(id=candidate_id, status=CandidateStatus.QUEUED).update(
            status=CandidateStatus.RUNNING, started_at=now, heartbeat_at=now, progress=0, step="starting"):
        return GateCandidate.objects.filter(id=candidate_id).first()
    candidate = GateCandidate.objects.select_related("model").get(id=candidate_id)
    model = candidate.model
    try:
        if model.version != candidate.production_version:
            raise GateError("model", f"{model.slug} moved from version {candidate.production_version} to "
                                     f"{model.version} since the candidate was submitted; submit it again")
        members = decrypt_arrays(bytes(candidate.members_ciphertext)) if candidate.members_ciphertext else None
        outcome = run_gate(model, artifact=bytes(candidate.artifact_data), artifact_name=candidate.artifact_name,
                           alpha=candidate.alpha, members=members, progress=RowProgress(GateCandidate.objects.filter(
                               id=candidate_id, status=CandidateStatus.RUNNING)))
    except GateError as exc:
        GateCandidate.objects.filter(id=candidate_id).update(
            status=CandidateStatus.FAILED, error=str(exc), finished_at=timezone.now(), step="could not be gated")
        return GateCandidate.objects.get(id=candidate_id)
    except Exception as exc:  # an unexpected failure is recorded on the row (the worker logs the traceback)
        log.exception("gating candidate %s of %s failed", candidate_id, model.slug)
        GateCandidate.objects.filter(id=candidate_id).update(
            status=CandidateStatus.FAILED, error=f"internal error: {type(exc).__name__}", finished_at=timezone.now(),
            step="failed")
        return GateCandidate.objects.get(id=candidate_id)
    report = outcome.report()
    report["candidate_id"] = candidate_id
    GateCandidate.objects.filter(id=candidate_id).update(
        status=CandidateStatus.DONE, verdict=report["verdict"], exit_code=report["exit_code"], report=report,
        progress=100, step=f"verdict: {report['verdict']}", finished_at=timezone.now())
    TrailEntry.record(action="candidate.gated", actor_name="gate", obj=candidate,
                      after={"model": model.slug, "verdict": report["verdict"], "exit_code": report["exit_code"],
                             "artifact_sha256": candidate.artifact_sha256})
    return GateCandidate.objects.get(id=candidate_id)


def needs_reason(candidate: GateCandidate) -> bool:
    """A candidate that did not pass (fail, undecided) is promoted only with a written reason."""
    return candidate.verdict not in ("pass", "warn")


def promote(candidate: GateCandidate, *, user: Any, reason: str = "", ip: str | None = None) -> RegisteredModel:
    """The candidate becomes its model's next artifact version; the trail records who, what and the gate's result."""
    reason = (reason or "").strip()
    if candidate.status != CandidateStatus.DONE:
        raise CandidateError("candidate", f"candidate {candidate.pk} is {candidate.status}; only a gated candidate "
                                          "can be promoted", conflict=True)
    if candidate.promoted_version is not None:
        raise CandidateError("candidate", f"candidate {candidate.pk} was already promoted to version "
                                          f"{candidate.promoted_version}", conflict=True)
    if needs_reason(candidate) and len(reason) < MIN_REASON_CHARS:
        raise CandidateError("reason", f"the gate's verdict was {candidate.verdict}: promoting it needs a written "
                                       f"reason of at least {MIN_REASON_CHARS} characters, which the evidence shows")
    if len(reason) > 4000:
        raise CandidateError("reason", "at most 4,000 characters")
    with transaction.atomic(), recorded_by_caller():  # this entry, not the model signals', names who and why
        model = RegisteredModel.objects.select_for_update().get(pk=candidate.model_id)
        if model.version != candidate.production_version:
            raise CandidateError("candidate", f"{model.slug} is at version {model.version}, not the version "
                                              f"{candidate.production_version} this candidate was gated against; "
                                              "gate it again", conflict=True)
        version = model.version + 1
        ModelArtifact.objects.create(model=model, version=version, format=candidate.artifact_format,
                                     data=bytes(candidate.artifact_data), sha256=candidate.artifact_sha256,
                                     size=candidate.artifact_size, filename=candidate.artifact_name)
        before = {"version": model.version, "source": model.source}
        model.version = version
        model.source = SOURCE_OF_FORMAT.get(candidate.artifact_format, model.source)
        model.save(update_fields=["version", "source", "updated_at"])
        GateCandidate.objects.filter(pk=candidate.pk).update(
            promoted_version=version, promoted_by=user if getattr(user, "pk", None) else None,
            promoted_at=timezone.now(), promotion_reason=reason)
        report = candidate.report or {}
        TrailEntry.record(action="candidate.promoted", actor=user, ip=ip, obj=candidate, before=before,
                          after={"model": model.slug, "version": version, "source": model.source,
                                 "artifact_sha256": candidate.artifact_sha256, "verdict": candidate.verdict,
                                 "exit_code": candidate.exit_code, "reasons": report.get("reasons", []),
                                 "promotion_reason": reason})
    candidate.refresh_from_db()
    return model


def send(candidate_id: int) -> bool:
    return publish(TASK, candidate_id)


def reap(*, now: datetime | None = None) -> dict[str, int]:
    """Candidates whose worker went silent are failed with the reason (the CI polling them sees it); queued ones
    whose message was lost or never sent are sent again."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.AUDIT_STALE_SECONDS)
    failed = GateCandidate.objects.filter(status=CandidateStatus.RUNNING, heartbeat_at__lt=stale).update(
        status=CandidateStatus.FAILED, finished_at=now, step="failed",
        error="the worker stopped responding (likely killed or out of memory); submit the candidate again")
    lost = Q(created_at__lt=stale) | Q(step=WAITING_FOR_BROKER)
    resent = 0
    for candidate_id in GateCandidate.objects.filter(lost, status=CandidateStatus.QUEUED).values_list("id", flat=True):
        transaction.on_commit(lambda cid=candidate_id: send(cid))
        resent += 1
    return {"failed": failed, "resent": resent}


def summary(candidate: GateCandidate) -> dict[str, Any]:
    """One candidate as the API and the pages show it."""
    slug = candidate.model.slug
    return {
        "id": candidate.pk, "model": slug, "url": f"/api/v1/models/{slug}/candidates/{candidate.pk}",
        "page": f"/models/{slug}/candidates/{candidate.pk}/", "status": candidate.status, "progress": candidate.progress,
        "step": candidate.step, "error": candidate.error, "verdict": candidate.verdict, "exit_code": candidate.exit_code,
        "artifact_name": candidate.artifact_name, "artifact_sha256": candidate.artifact_sha256,
        "artifact_format": candidate.artifact_format, "artifact_size": candidate.artifact_size,
        "own_members_rows": candidate.members_rows, "production_version": candidate.production_version,
        "alpha": candidate.alpha, "created_by": candidate.created_by.get_username() if candidate.created_by else None,
        "created_at": candidate.created_at, "started_at": candidate.started_at, "finished_at": candidate.finished_at,
        "report": candidate.report, "promoted_version": candidate.promoted_version,
        "promoted_by": candidate.promoted_by.get_username() if candidate.promoted_by else None,
        "promoted_at": candidate.promoted_at, "promotion_reason": candidate.promotion_reason,
        "needs_reason_to_promote": needs_reason(candidate) if candidate.status == CandidateStatus.DONE else None,
    }
