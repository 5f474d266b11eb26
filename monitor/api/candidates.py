"""The privacy gate's candidates: upload one against a model (audited by a worker), follow it, fetch its reports
for a CI, promote it (tools/gate_client.py is the standard-library client of these)."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile

from audits import gate_reports
from audits.candidates import CandidateError, Upload, promote, submit, summary
from audits.models import CandidateStatus, GateCandidate
from monitor.access import roles
from monitor.api.auth import get_model, needs, request_user
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import CandidateOut
from monitor.trail.hooks import client_ip

router = Router(tags=["gate"])

class PromoteIn(Schema):
    reason: str = ""


def _error(exc: CandidateError) -> ApiError:
    status = 413 if exc.too_large else 409 if exc.conflict else 400
    return ApiError(status, exc.message if status != 400 else "the candidate was refused; nothing was stored",
                    [problem(exc.field, exc.message)])


def _read(upload: UploadedFile, field: str, limit: int) -> Upload:
    if upload.size is not None and upload.size > limit:
        raise ApiError(413, f"{field}: the file is {upload.size:,} bytes; the limit is {limit:,}",
                       [problem(field, f"at most {limit:,} bytes")])
    return Upload(data=upload.read(), filename=upload.name or "")


def _candidate(slug: str, candidate_id: int) -> GateCandidate:
    model = get_model(slug)
    candidate = GateCandidate.objects.select_related("model", "created_by", "promoted_by").filter(
        model=model, id=candidate_id).first()
    if candidate is None:
        raise ApiError(404, f"model {slug!r:.80} has no candidate {candidate_id}")
    return candidate


@router.post("/models/{slug}/candidates", auth=needs(roles.OPERATE), response={202: CandidateOut, 400: dict, 403: dict,
                                                                                404: dict, 409: dict, 413: dict},
             summary="Gate a candidate artifact against the model's production artifact (audited by a worker)")
def submit_candidate(request: HttpRequest, slug: str, artifact: File[UploadedFile],
                     members: UploadedFile | None = File(None), id_column: str = Form(""),  # noqa: B008 (ninja's style)
                     alpha: float | None = Form(None)) -> Status:  # noqa: B008
    """`artifact`: skops, XGBoost .json/.ubj or LightGBM .txt, answering for the model's features and classes.
    `members`: the candidate's own members CSV, when it trained on new data (the model's feature and label
    columns; `id_column` names its id column). `alpha`: the significance level (default: the model's policy's
    `gate_alpha`). The candidate is checked at once (400 naming the field, nothing stored), then audited beside
    production; poll `GET .../candidates/{id}` for progress and the verdict. Send an `Idempotency-Key` header (a UUID
    per upload) to make retries safe: an upload sent again with the same key answers with the candidate the first
    one stored (202, gated once); the same key with another artifact or members file answers 409."""
    model = get_model(slug)
    key = request.headers.get("Idempotency-Key")
    artifact_upload = _read(artifact, "artifact", settings.ARTIFACT_MAX_BYTES)
    members_upload = _read(members, "members", settings.DATASET_MAX_BYTES) if members is not None else None
    try:
        candidate = submit(model, artifact=artifact_upload, members=members_upload, id_column=id_column.strip() or None,
                           alpha=alpha, user=request_user(request), ip=client_ip(request), idempotency_key=key)
    except CandidateError as exc:
        raise _error(exc) from None
    return Status(202, summary(candidate))


@router.get("/models/{slug}/candidates", auth=needs(roles.READ), response={200: list[CandidateOut], 403: dict, 404: dict},
            summary="The model's gate candidates, newest first")
def list_candidates(request: HttpRequest, slug: str, limit: int = 50) -> list[dict]:
    model = get_model(slug)
    rows = GateCandidate.objects.select_related("model", "created_by", "promoted_by").filter(model=model)
    return [summary(c) for c in rows[:max(1, min(limit, 500))]]


@router.get("/models/{slug}/candidates/{candidate_id}", auth=needs(roles.READ),
            response={200: CandidateOut, 403: dict, 404: dict}, summary="One candidate: progress, verdict, report")
def candidate_detail(request: HttpRequest, slug: str, candidate_id: int) -> dict:
    return summary(_candidate(slug, candidate_id))


@router.get("/models/{slug}/candidates/{candidate_id}/reports/{kind}", auth=needs(roles.READ),
            response={200: None, 400: dict, 403: dict, 404: dict, 409: dict},
            summary="A gated candidate's report for a CI: junit, sarif, summary (Markdown) or json")
def candidate_report(request: HttpRequest, slug: str, candidate_id: int, kind: str) -> HttpResponse:
    if kind not in gate_reports.REPORTS:
        raise ApiError(400, f"unknown report {kind!r:.40}", [problem("kind", f"one of {', '.join(gate_reports.REPORTS)}")])
    candidate = _candidate(slug, candidate_id)
    if candidate.status != CandidateStatus.DONE or not candidate.report:
        raise ApiError(409, f"candidate {candidate_id} is {candidate.status}; its reports exist once it is gated",
                       [problem("candidate", candidate.error or candidate.step or candidate.status)])
    write, content_type, _ = gate_reports.REPORTS[kind]
    return HttpResponse(write(candidate.report), content_type=content_type)


@router.post("/models/{slug}/candidates/{candidate_id}/promote", auth=needs(roles.OPERATE),
             response={200: CandidateOut, 400: dict, 403: dict, 404: dict, 409: dict},
             summary="Make a gated candidate the model's next artifact version")
def promote_candidate(request: HttpRequest, slug: str, candidate_id: int, body: PromoteIn) -> dict:
    """A passed (or warned) candidate is promoted as it is; one that failed or was undecided needs a written
    `reason`, which the trail and the evidence keep."""
    candidate = _candidate(slug, candidate_id)
    try:
        promote(candidate, user=request_user(request), reason=body.reason, ip=client_ip(request))
    except CandidateError as exc:
        raise _error(exc) from None
    return summary(candidate)
