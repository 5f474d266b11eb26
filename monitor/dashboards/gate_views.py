"""Privacy-gate pages: a candidate uploaded on the model page, its own page (live progress, the paired comparison,
the reports for a CI), and its promotion to the model's next version (a form that POSTs; the trail records it)."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from audits import gate_reports
from audits.candidates import CandidateError, Upload, needs_reason, promote, submit
from audits.models import CandidateStatus, GateCandidate
from monitor.access import roles
from monitor.dashboards.forms import CandidateForm, PromoteForm
from monitor.models import RegisteredModel
from monitor.platform.downloads import attachment
from monitor.trail.hooks import client_ip


@roles.role_required(*roles.OPERATE)
@require_POST
def candidate_submit(request: HttpRequest, slug: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, slug=slug)
    form = CandidateForm(request.POST, request.FILES)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(errors)}")
        return redirect("model-detail", slug=slug)
    data = form.cleaned_data
    for name, limit in (("artifact", settings.ARTIFACT_MAX_BYTES), ("members", settings.DATASET_MAX_BYTES)):
        if data.get(name) is not None and data[name].size > limit:
            messages.error(request, f"{name}: the file is {data[name].size:,} bytes; the limit is {limit:,}")
            return redirect("model-detail", slug=slug)
    members = data.get("members")
    try:
        candidate = submit(model, artifact=Upload(data["artifact"].read(), data["artifact"].name),
                           members=Upload(members.read(), members.name) if members else None,
                           id_column=data.get("id_column") or None, user=request.user, ip=client_ip(request))
    except CandidateError as exc:
        messages.error(request, f"The candidate was refused, nothing was stored: {exc}")
        return redirect("model-detail", slug=slug)
    messages.success(request, f"Candidate {candidate.pk} is queued: it is audited beside version {model.version}.")
    return redirect("candidate-detail", slug=slug, candidate_id=candidate.pk)


def _candidate(slug: str, candidate_id: int) -> GateCandidate:
    return get_object_or_404(GateCandidate.objects.select_related("model", "created_by", "promoted_by"),
                             model__slug=slug, pk=candidate_id)


@roles.role_required(*roles.READ)
def candidate_detail(request: HttpRequest, slug: str, candidate_id: int) -> HttpResponse:
    candidate = _candidate(slug, candidate_id)
    report = candidate.report or {}
    return render(request, "audits/candidate_detail.html", {
        "candidate": candidate, "model": candidate.model, "report": report,
        "comparisons": report.get("comparisons") or [], "limits": report.get("limits") or [],
        "needs_reason": candidate.status == CandidateStatus.DONE and needs_reason(candidate),
        "promotable": (candidate.status == CandidateStatus.DONE and candidate.promoted_version is None
                       and candidate.production_version == candidate.model.version),
        "form": PromoteForm(), "reports": list(gate_reports.REPORTS),
    })


@roles.role_required(*roles.READ)
def candidate_report(request: HttpRequest, slug: str, candidate_id: int, kind: str) -> HttpResponse:
    candidate = _candidate(slug, candidate_id)
    if kind not in gate_reports.REPORTS:
        return render(request, "404.html", status=404)
    if not candidate.report:
        messages.info(request, f"Candidate {candidate.pk} is {candidate.status}: its reports exist once it is gated.")
        return redirect("candidate-detail", slug=slug, candidate_id=candidate_id)
    write, content_type, filename = gate_reports.REPORTS[kind]
    return attachment(write(candidate.report), filename=f"{slug}-candidate-{candidate.pk}-{filename}",
                      content_type=content_type)


@roles.role_required(*roles.OPERATE)
@require_POST
def candidate_promote(request: HttpRequest, slug: str, candidate_id: int) -> HttpResponse:
    candidate = _candidate(slug, candidate_id)
    form = PromoteForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        model = promote(candidate, user=request.user, reason=reason, ip=client_ip(request))
    except CandidateError as exc:
        messages.error(request, f"Not promoted: {exc.message}")
        return redirect("candidate-detail", slug=slug, candidate_id=candidate_id)
    messages.success(request, f"Candidate {candidate.pk} is now version {model.version} of {model.slug}.")
    return redirect("model-detail", slug=slug)
