"""Audits: start one, follow it, list a model's, and download signed evidence bundles.

The GETs that write the security trail (evidence bundles, the exposure lookup and CSV, the hardened model) take a
bearer token only (`needs_token`): a browser session gets 403, since a link from another site could make its GET;
signed-in people use the pages' forms, which POST with the CSRF token."""
from __future__ import annotations

import json
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Router, Status

from audits import remediation as hardening
from audits.evidence.build import build_period_bundle, build_run_bundle
from audits.evidence.format import EvidenceError, EvidencePeriodError
from audits.exposure import UnknownRecord, csv_filename, exposure_csv, record_exposure
from audits.models import AuditPolicy, AuditRun
from audits.scheduling import request_audit
from monitor.access import roles
from monitor.alerts.evidence_text import member_id_count
from monitor.api.auth import get_model, needs, needs_token, request_user
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import (
    AuditPolicyOut,
    AuditPolicyPatchIn,
    AuditRunFullOut,
    AuditRunMemberIdsOut,
    AuditRunOut,
    AuditStartedOut,
    RecordExposureOut,
)
from monitor.platform.downloads import attachment
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry

router = Router(tags=["audits"])


def _run(run_id: int) -> AuditRun:
    run = AuditRun.objects.select_related("model").filter(pk=run_id).first()
    if run is None:
        raise ApiError(404, f"no audit run with id {run_id}")
    return run


@router.post("/models/{slug}/audits", auth=needs(roles.OPERATE), summary="Start an audit now", response={202: AuditStartedOut, 403: dict, 404: dict})
def start_audit(request: HttpRequest, slug: str, remediation: bool | None = None) -> Status:
    """`?remediation=true` also trains and attacks hardened candidates of the model's estimator (scikit-learn models),
    `false` skips them; left out, the model's audit policy decides."""
    model = get_model(slug)
    run = request_audit(model, user=request_user(request), remediation=remediation)
    return Status(202, {"id": run.pk, "status": run.status})


@router.get("/audits/{run_id}", auth=needs(roles.READ), summary="An audit run: status, progress, per-attack metrics with intervals",
            response={200: AuditRunOut | AuditRunFullOut | AuditRunMemberIdsOut, 403: dict, 404: dict})
def get_audit(request: HttpRequest, run_id: int, full: bool = False) -> dict:
    """`full=true` adds ROC points, per-class slices, what-if, recommendations and provenance, and how many member
    records each attack names as most exposed (`n_top_exposed`). Their ids (`top_exposed`) go only to the roles that
    may look a record up (admin, security, compliance), and each such answer is recorded in the security trail."""
    run = _run(run_id)
    member_ids = full and roles.may_see_member_ids(request.auth)
    answer = run.summary(full=full, member_ids=member_ids)
    if member_ids:
        roles.record_member_id_read(user=request_user(request), ip=client_ip(request), via="api:audit",
                                    shown=[(run, member_id_count(answer["attacks"]))])
    return answer


@router.get("/models/{slug}/audits", auth=needs(roles.READ), summary="A model's audit runs, newest first",
            response={200: list[AuditRunOut], 403: dict, 404: dict})
def list_audits(request: HttpRequest, slug: str, limit: int = 50) -> list[dict]:
    model = get_model(slug)
    return [run.summary() for run in model.audit_runs.select_related("model").order_by("-created_at")[:max(1, min(limit, 500))]]


# --- policy --------------------------------------------------------------------------------------

POLICY_FIELDS = ("enabled", "cadence_hours", "attacks", "n_reference", "stand_in", "max_eval_records", "what_if",
                 "seed", "max_tpr_at_1pct_fpr", "max_epsilon_lower", "regression_factor",
                 "remediation", "max_accuracy_cost", "gate_alpha")


def _policy_out(policy: AuditPolicy) -> dict:
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


@router.get("/models/{slug}/audit-policy", auth=needs(roles.READ), summary="A model's audit policy",
            response={200: AuditPolicyOut, 403: dict, 404: dict})
def get_audit_policy(request: HttpRequest, slug: str) -> dict:
    return _policy_out(AuditPolicy.objects.for_model(get_model(slug)))


@router.patch("/models/{slug}/audit-policy", auth=needs(roles.CONFIGURE), summary="Change a model's audit policy",
              response={200: AuditPolicyOut, 400: dict, 403: dict, 404: dict})
def update_audit_policy(request: HttpRequest, slug: str, body: AuditPolicyPatchIn) -> dict:
    """Checked as the admin checks it (a policy that could not run is refused, naming each field); each change
    is recorded in the security trail."""
    model = get_model(slug)
    changes = body.dict(exclude_unset=True, exclude_none=True)
    if not changes:
        raise ApiError(400, "nothing to change", [problem(None, f"send one or more of {', '.join(POLICY_FIELDS)}")])
    policy = AuditPolicy.objects.for_model(model)
    before = policy.config() if policy.pk else None
    for name, value in changes.items():
        setattr(policy, name, value)
    try:
        policy.full_clean()
    except ValidationError as exc:
        raise ApiError(400, "the audit policy could not run; nothing was changed",
                       [problem(field, message) for field, messages in exc.message_dict.items()
                        for message in messages]) from None
    with transaction.atomic():
        policy.save()
        TrailEntry.record(action="audit_policy.changed", actor=request_user(request), ip=client_ip(request),
                          obj=policy, before=before, after=policy.config())
    return _policy_out(policy)


# --- evidence ------------------------------------------------------------------------------------

def _zip_response(data: bytes, filename: str) -> HttpResponse:
    return attachment(data, filename=filename, content_type="application/zip")


@router.get("/audits/{run_id}/evidence.zip", auth=needs_token(roles.EXPORT), summary="The signed evidence bundle of one audit run",
            response={200: None, 403: dict, 404: dict, 409: dict}, openapi_extra={
                "responses": {200: {"description": "a ZIP (report.pdf, audit.json, CSVs, audit_log.jsonl, MANIFEST.json + .sig)",
                                    "content": {"application/zip": {}}}}})
def audit_evidence(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run(run_id)
    try:
        data = build_run_bundle(run, exported_by=request_user(request))
    except EvidenceError as exc:
        raise ApiError(409, str(exc)) from exc
    return _zip_response(data, f"evidence-{run.model.slug}-audit-{run.pk}.zip")


@router.get("/models/{slug}/evidence.zip", auth=needs_token(roles.EXPORT), summary="The signed evidence bundle of a model over a date range",
            response={200: None, 400: dict, 403: dict, 404: dict, 409: dict})
def model_evidence(request: HttpRequest, slug: str, start: datetime, end: datetime) -> HttpResponse:
    """The bundle of [start, end): at most EVIDENCE_MAX_PERIOD_DAYS (366) days, starting no earlier than the day
    the model was registered; otherwise a 400 naming `start` or `end`, and nothing is built or logged."""
    model = get_model(slug)
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ApiError(400, "invalid period", [problem("start", "start < end, both with a timezone")])
    try:  # the bundle states the period in TIME_ZONE: year 1 at +14:00 or year 9999 at -14:00 fall off the calendar there
        timezone.localtime(start), timezone.localtime(end)
    except OverflowError as exc:
        raise ApiError(400, "invalid period", [problem(
            "start", f"start and end must lie within years 1-9999 in {settings.TIME_ZONE}")]) from exc
    try:
        data = build_period_bundle(model=model, start=start, end=end, exported_by=request_user(request))
    except EvidencePeriodError as exc:  # before the model's registration day, or longer than EVIDENCE_MAX_PERIOD_DAYS
        raise ApiError(400, "invalid period", [problem(exc.field, exc.message)]) from exc
    except EvidenceError as exc:
        raise ApiError(409, str(exc)) from exc
    return _zip_response(data, f"evidence-{model.slug}-{start:%Y%m%d}-{end:%Y%m%d}.zip")


@router.get("/models/{slug}/records/{record_id}/exposure", auth=needs_token(roles.MEMBER_IDS),
            summary="Was this member's record exposed? Its rank in each audit",
            response={200: RecordExposureOut, 403: dict, 404: dict})
def get_record_exposure(request: HttpRequest, slug: str, record_id: str) -> dict:
    """For a member record id (the registration's id column): per finished audit, its rank among the evaluated
    members under the leading attack and under each attack, its percentile, whether it was among the most exposed,
    and whether an attacker thresholding at 0.1/1/10 % FPR would call it a member. Ids and ranks only. Every
    lookup is recorded in the security trail."""
    model = get_model(slug)
    try:
        return record_exposure(model, record_id, user=request_user(request), ip=client_ip(request))
    except UnknownRecord as exc:
        raise ApiError(404, str(exc), [problem("record_id", "not a registered member id of this model")]) from None


@router.get("/models/{slug}/exposure.csv", auth=needs_token(roles.MEMBER_IDS),
            summary="Every evaluated member's exposure in the latest audit, as CSV (ids and ranks only)",
            response={200: None, 403: dict, 404: dict})
def export_exposure(request: HttpRequest, slug: str) -> HttpResponse:
    model = get_model(slug)
    run, body = exposure_csv(model, user=request_user(request), ip=client_ip(request))
    return attachment(body, filename=csv_filename(model, run), content_type="text/csv; charset=utf-8")


@router.get("/audits/{run_id}/remediation/artifact", auth=needs_token(roles.OPERATE),
            summary="The recommended hardened candidate as a skops file",
            response={200: None, 403: dict, 404: dict})
def remediation_artifact(request: HttpRequest, run_id: int) -> HttpResponse:
    """The estimator the run's remediation recommends, fitted on the model's members, as a skops file loadable with
    scikit-learn's own types (register it as a new version). Its provenance is in the run's `remediation.artifact`
    and in the X-Provenance header. The download is recorded in the security trail."""
    run = _run(run_id)
    found = hardening.download(run, user=request_user(request), ip=client_ip(request))
    if found is None:
        reason = (((run.result or {}).get("remediation") or {}).get("artifact") or {}).get("reason")
        raise ApiError(404, f"audit {run_id} has no hardened candidate to download"
                            + (f": {reason}" if reason else " (start an audit with ?remediation=true)"))
    stored, blob = found
    return attachment(blob, filename=hardening.filename(run), content_type="application/octet-stream", headers={
        "X-Artifact-SHA256": stored.sha256,
        "X-Provenance": json.dumps(stored.provenance, separators=(",", ":"), default=str)})
