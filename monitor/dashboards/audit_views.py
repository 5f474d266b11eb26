"""Audit pages: one run (live progress, metrics, ROC, what-if, exposed records), starting an audit, the exposure
lookup and the downloads.

The lookup and every download write the security trail (who took what), so each is a form that POSTs with the CSRF
token and a GET writes nothing: a link from another site cannot record one in a signed-in person's name."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from audits import exposure, remediation
from audits.attacks.catalogue import ATTACK_LABELS
from audits.evidence.build import build_run_bundle
from audits.evidence.format import EvidenceError
from audits.evidence.keys import public_key_pem
from audits.models import AuditRun
from audits.scheduling import request_audit
from monitor.access import roles
from monitor.alerts.evidence_text import without_member_ids
from monitor.dashboards import audit_charts as charts
from monitor.models import RegisteredModel
from monitor.platform.downloads import attachment
from monitor.trail.hooks import client_ip


@roles.role_required(*roles.READ)
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(AuditRun.objects.select_related("model", "requested_by"), pk=run_id)
    # Member ids only for the roles that may look a record up, each view in the trail; the others see how many.
    exposed = _exposed(run)
    member_ids = roles.may_see_member_ids(request.user)
    result = (run.result or {}) if member_ids else without_member_ids(run.result or {})
    attacks = result.get("attacks", [])
    for attack in attacks:
        attack["label"] = ATTACK_LABELS.get(attack["name"], attack["name"])
    if exposed and member_ids:
        roles.record_member_id_read(user=request.user, ip=client_ip(request), via="page:audit-run",
                                    shown=[(run, exposed["count"])])
    elif exposed:
        del exposed["ids"]
    return render(request, "audits/run_detail.html", {
        "run": run, "model": run.model, "result": result, "attacks": attacks,
        "headline": result.get("headline"), "verdict": run.policy_result or {},
        "roc_figure": charts.roc_figure(attacks) if attacks else None,
        "fprs": ["0.001", "0.01", "0.1"],
        "exposed": exposed, "member_id_roles": ", ".join(roles.MEMBER_IDS),
        "remediation": _remediation(result),
        "remediation_figure": charts.privacy_utility_figure(result["remediation"], result.get("what_if") or [])
        if (result.get("remediation") or {}).get("candidates") else None,
    })


def _remediation(result: dict) -> dict | None:
    """The remediation table with each candidate's setting as text and the recommended one marked."""
    table = result.get("remediation")
    if not table:
        return None
    rows = []
    for index, candidate in enumerate(table.get("candidates") or []):
        rows.append({**candidate, "index": index, "label": charts.setting_label(candidate["setting"]),
                     "recommended": index == table.get("recommended")})
    budget = table.get("max_accuracy_cost")
    return {**table, "rows": rows, "budget_points": None if budget is None else round(100 * budget, 2)}


def _exposed(run: AuditRun) -> dict | None:
    """The most exposed member records (ids only) under the leading attack, and how many."""
    leader = run.leading_attack()
    if leader is None:
        return None
    ids = run.most_exposed_ids()
    return {"attack": leader["name"], "ids": ids, "count": len(ids)}


@roles.role_required(*roles.OPERATE)
@require_POST
def start_run(request: HttpRequest, slug: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, slug=slug)
    hardening = request.POST.get("remediation") == "1"
    run = request_audit(model, user=request.user, remediation=True if hardening else None)
    messages.success(request, f"Audit {run.pk} of {model.slug} queued" + (" with hardened candidates." if hardening else "."))
    return redirect("audit-run", run_id=run.pk)


@roles.role_required(*roles.EXPORT)
@require_POST
def evidence_download(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(AuditRun.objects.select_related("model"), pk=run_id)
    try:
        data = build_run_bundle(run, exported_by=request.user)
    except EvidenceError as exc:
        messages.error(request, f"No evidence bundle: {exc}")
        return redirect("audit-run", run_id=run.pk)
    return attachment(data, filename=f"evidence-{run.model.slug}-audit-{run.pk}.zip", content_type="application/zip")


@roles.role_required(*roles.READ)
def public_key(request: HttpRequest) -> HttpResponse:
    """The Ed25519 public key that verifies evidence bundles (`manage.py verify_evidence --public-key`)."""
    return HttpResponse(public_key_pem(), content_type="application/x-pem-file")


@roles.role_required(*roles.MEMBER_IDS)
@require_http_methods(["GET", "POST"])
def record_exposure(request: HttpRequest, slug: str) -> HttpResponse:
    """Compliance: was this person's record exposed? A search box over member record ids; each lookup is in the
    security trail. A GET shows the form and looks nothing up; the form POSTs the id in its body (with the CSRF
    token), so the id stays out of URLs and access logs and no link can plant a lookup."""
    model = get_object_or_404(RegisteredModel, slug=slug)
    record_id = (request.POST.get("record") or "").strip()[:256] if request.method == "POST" else ""
    found, missing = None, None
    if record_id:
        try:
            found = exposure.record_exposure(model, record_id, user=request.user, ip=client_ip(request))
            for entry in found["audits"]:
                flagged = entry.get("flagged_at_fpr") or {}
                entry["at_1pct"], entry["at_01pct"] = flagged.get("0.01"), flagged.get("0.001")
        except exposure.UnknownRecord as exc:
            missing = str(exc)
    latest = model.audit_runs.filter(status="done", exposure_rankings__isnull=False).order_by("-finished_at").first()
    return render(request, "audits/record_exposure.html", {"model": model, "record_id": record_id, "found": found,
                                                           "missing": missing, "latest": latest})


@roles.role_required(*roles.MEMBER_IDS)
@require_POST
def exposure_download(request: HttpRequest, slug: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, slug=slug)
    run, body = exposure.exposure_csv(model, user=request.user, ip=client_ip(request))
    return attachment(body, filename=exposure.csv_filename(model, run), content_type="text/csv; charset=utf-8")


@roles.role_required(*roles.OPERATE)
@require_POST
def hardened_download(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(AuditRun.objects.select_related("model"), pk=run_id)
    found = remediation.download(run, user=request.user, ip=client_ip(request))
    if found is None:
        messages.error(request, "This audit has no hardened candidate to download.")
        return redirect("audit-run", run_id=run.pk)
    stored, blob = found
    return attachment(blob, filename=remediation.filename(run), content_type="application/octet-stream",
                      headers={"X-Artifact-SHA256": stored.sha256})
