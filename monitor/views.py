"""Pages: thin views over plain functions; every view names the roles it admits."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.contrib import messages
from django.db.models import Count, F, Max, Sum
from django.db.models.functions import TruncDate, TruncHour
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from audits import charts as audit_charts
from audits.models import AuditRun
from audits.scheduling import policy_for
from monitor import charts, roles
from monitor.forms import RegisterModelForm
from monitor.ingest import decode_vectors
from monitor.models import (
    SEVERITY_RANK,
    Alert,
    ClientDayRollup,
    DetectorFinding,
    DetectorState,
    ModelHourRollup,
    QueryLog,
    QueryRollup,
    RegisteredModel,
    WorkerHeartbeat,
)
from monitor.projection import project
from monitor.registry import RegistrationError, Upload, register_model
from monitor.summaries import model_summary, risk_grade

TOP_CLIENTS = 6
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def _volume_series(model: RegisteredModel, since, *, hourly: bool) -> dict:
    """Counts per hour (24 h) or per day (longer periods) for the busiest clients; the rest folded into
    'other clients'. Reads rollups only, and the fine ones for six clients at most: the cost grows with
    neither the number of clients nor the length of the log."""
    top = list(ClientDayRollup.objects.filter(model=model, day__gte=since.date()).values("client_id")
               .annotate(n=Sum("count")).order_by("-n", "client_id").values_list("client_id", flat=True)[:TOP_CLIENTS])
    buckets: dict[str, dict] = {client: {} for client in top}
    if hourly:
        per_client = (QueryRollup.objects.filter(model=model, client_id__in=top, minute__gte=since)
                      .annotate(bucket=TruncHour("minute")).values("client_id", "bucket").annotate(n=Sum("count")))
        totals = (ModelHourRollup.objects.filter(model=model, hour__gte=since.replace(minute=0, second=0, microsecond=0))
                  .annotate(bucket=F("hour")).values("bucket").annotate(n=Sum("count")))
    else:
        per_client = (ClientDayRollup.objects.filter(model=model, client_id__in=top, day__gte=since.date())
                      .annotate(bucket=F("day")).values("client_id", "bucket").annotate(n=Sum("count")))
        totals = (ModelHourRollup.objects.filter(model=model, hour__gte=since).annotate(bucket=TruncDate("hour"))
                  .values("bucket").annotate(n=Sum("count")))
    for client, bucket, count in per_client.values_list("client_id", "bucket", "n"):
        buckets[client][bucket] = count
    others = {bucket: total - sum(b.get(bucket, 0) for b in buckets.values())
              for bucket, total in totals.values_list("bucket", "n")}
    buckets["other clients"] = {bucket: n for bucket, n in others.items() if n > 0}
    series = {}
    for client, counts in buckets.items():
        if counts:
            keys = sorted(counts)
            series[client] = (keys, [counts[k] for k in keys])
    return series


@roles.role_required(*roles.READ)
def overview(request: HttpRequest) -> HttpResponse:
    period = request.GET.get("period", "7d")
    period = period if period in PERIODS else "7d"
    now = timezone.now()
    since_24h, since = now - timedelta(hours=24), now - PERIODS[period]
    queries_24h = dict(ModelHourRollup.objects.filter(hour__gte=since_24h).values("model_id").annotate(n=Sum("count"))
                       .values_list("model_id", "n"))
    open_counts: dict[int, dict[str, int]] = {}
    for model_id, severity, n in (Alert.objects.unresolved().values("model_id", "severity").annotate(n=Count("id"))
                                  .values_list("model_id", "severity", "n")):
        open_counts.setdefault(model_id, {})[severity] = n
    rows = []
    for model in RegisteredModel.objects.all():
        policy = policy_for(model)
        done = list(AuditRun.objects.filter(model=model, status="done").order_by("-finished_at")
                    .values("pk", "finished_at", "result__headline", "policy_result")[:30])[::-1]
        latest = AuditRun(pk=done[-1]["pk"], result={"headline": done[-1]["result__headline"]},
                          policy_result=done[-1]["policy_result"]) if done else None
        values = [((d["result__headline"] or {}).get("tpr_at_fpr") or {}).get("0.01", {}).get("value") for d in done]
        rows.append({
            "model": model,
            "grade": risk_grade(latest, policy.max_tpr_at_1pct_fpr),
            "latest_run": latest,
            "sparkline": charts.sparkline_figure(times=[d["finished_at"] for d in done], values=values,
                                                 limit=policy.max_tpr_at_1pct_fpr) if len(done) >= 1 else None,
            "open": open_counts.get(model.pk, {}),
            "queries_24h": queries_24h.get(model.pk, 0),
        })
    timeline_alerts = list(Alert.objects.filter(first_seen__gte=since).select_related("model")
                           .order_by("-first_seen")[:2000])
    heartbeat = WorkerHeartbeat.objects.filter(name="beat").first()
    return render(request, "monitor/overview.html", {
        "rows": rows, "period": period, "periods": list(PERIODS),
        "alert_timeline": charts.alert_timeline_figure(timeline_alerts, title=f"Alerts opened, last {period}",
                                                      start=since, end=now)
        if timeline_alerts else None,
        "heartbeat": heartbeat,
        "worker_stale": heartbeat is None or now - heartbeat.seen_at > timedelta(minutes=3),
    })


@roles.role_required(*roles.READ)
def model_list(request: HttpRequest) -> HttpResponse:
    return render(request, "monitor/model_list.html", {
        "models": [model_summary(model) for model in RegisteredModel.objects.all()],
    })


@roles.role_required(*roles.READ)
def model_detail(request: HttpRequest, slug: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, slug=slug)
    period = request.GET.get("period", "7d")
    period = period if period in PERIODS else "7d"
    since = timezone.now() - PERIODS[period]
    series = _volume_series(model, since, hourly=period == "24h")
    search = request.GET.get("q", "").strip()[:128]
    in_period = ClientDayRollup.objects.filter(model=model, day__gte=since.date())
    if search:
        in_period = in_period.filter(client_id__icontains=search)
    top_clients = (in_period.values("client_id")
                   .annotate(queries=Sum("count"), days=Count("id"), last=Max("day"),
                             confidence=Sum("confidence_sum"))
                   .order_by("-queries", "client_id")[:20])
    for row in top_clients:
        row["mean_confidence"] = row["confidence"] / row["queries"] if row["queries"] else None
    audit = _audit_panel(model)
    detection = _detection_panel(model, since)
    return render(request, "monitor/model_detail.html", {
        **audit,
        **detection,
        "model": model,
        "summary": model_summary(model),
        "period": period,
        "periods": list(PERIODS),
        "top_clients": top_clients,
        "search": search,
        "volume_figure": charts.query_volume_figure(
            series=series, title=f"Queries per {'hour' if period == '24h' else 'day'}, last {period}") if series else None,
    })


@roles.role_required(*roles.CONFIGURE)
def model_register(request: HttpRequest) -> HttpResponse:
    form = RegisterModelForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data

        def upload(name: str) -> Upload | None:
            file = data.get(name)
            return Upload(data=file.read(), filename=file.name) if file else None

        try:
            model = register_model(
                slug=data["slug"], name=data["name"], team=data["team"], label_column=data["label_column"],
                id_column=data["id_column"] or None, output_policy=data["output_policy"],
                artifact=upload("artifact"), endpoint_url=data["endpoint"] or None,
                members=upload("members"), nonmembers=upload("nonmembers"), population=upload("population"),
                user=request.user,
            )
        except RegistrationError as exc:
            field = exc.field if exc.field in form.fields else None
            form.add_error(field, exc.message)
            form.registration_details = exc.details
        else:
            messages.success(request, f"Model {model.slug} registered. Issue an ingestion token with "
                                      f"`python manage.py issue_token --model {model.slug}`.")
            return redirect("model-detail", slug=model.slug)
    return render(request, "monitor/model_register.html", {"form": form}, status=400 if form.errors else 200)


CLIENT_SAMPLE = 2000
PRODUCTION_SAMPLE = 4000


def _recent_vectors(queries, width: int, limit: int):
    blobs = list(queries.order_by("-id").values_list("features", flat=True)[:limit])
    return decode_vectors(blobs, width).astype(np.float64)


@roles.role_required(*roles.READ)
def client_detail(request: HttpRequest, slug: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, slug=slug)
    client_id = request.GET.get("id", "")
    period = request.GET.get("period", "7d")
    period = period if period in PERIODS else "7d"
    since = timezone.now() - PERIODS[period]
    rollups = list(QueryRollup.objects.filter(model=model, client_id=client_id, minute__gte=since)
                   .order_by("minute").values_list("minute", "count", "confidence_sum"))
    total = ClientDayRollup.objects.filter(model=model, client_id=client_id).aggregate(n=Sum("count"))["n"] or 0
    if not total:
        raise Http404(f"no queries from client {client_id!r} on {model.slug}")
    timeline = None
    if rollups:
        timeline = charts.client_timeline_figure(
            minutes=[r[0] for r in rollups], counts=[r[1] for r in rollups],
            confidence=[r[2] / r[1] for r in rollups], title=f"Queries from {client_id}, last {period}")
    width = model.n_features
    client_X = _recent_vectors(QueryLog.objects.filter(model=model, client_id=client_id), width, CLIENT_SAMPLE)
    production_X = _recent_vectors(QueryLog.objects.filter(model=model).exclude(client_id=client_id), width, PRODUCTION_SAMPLE)
    projection_figure, shows_members = None, roles.has_role(request.user, roles.OPERATE)
    if len(production_X) >= 10 and len(client_X):
        members = None
        if shows_members:
            dataset = model.datasets.filter(kind="members").first()
            members = dataset.load().X if dataset else None
        projected = project(production=production_X, client=client_X, members=members)
        projection_figure = charts.projection_figure(
            production=projected.production, client=projected.client, explained=projected.explained,
            client_id=client_id, member_density=projected.member_density)
    alerts = model.alerts.filter(client_id=client_id).order_by("-last_seen")[:50]
    return render(request, "monitor/client_detail.html", {
        "model": model, "client_id": client_id, "period": period, "periods": list(PERIODS), "total": total,
        "in_period": sum(r[1] for r in rollups), "timeline_figure": timeline, "projection_figure": projection_figure,
        "shows_members": shows_members, "alerts": alerts, "sampled": len(client_X),
    })


def _audit_panel(model: RegisteredModel) -> dict:
    """Audit metrics over time with intervals and limits, the latest ROC, and recent runs."""
    policy = policy_for(model)
    runs = list(model.audit_runs.order_by("-created_at")[:10])
    done = list(model.audit_runs.filter(status="done").order_by("finished_at")
                .values("pk", "finished_at", "result__headline")[:500])
    history = {}
    if done:
        times = [d["finished_at"] for d in done]
        rates = [((d["result__headline"] or {}).get("tpr_at_fpr") or {}).get("0.01") or {} for d in done]
        history["tpr"] = audit_charts.metric_history_figure(
            times=times, values=[r.get("value") for r in rates], lows=[r.get("low") for r in rates],
            highs=[r.get("high") for r in rates], limit=policy.max_tpr_at_1pct_fpr,
            title="Headline TPR at 1 % FPR over audits", axis="TPR@1%FPR")
        history["epsilon"] = audit_charts.metric_history_figure(
            times=times, values=[(d["result__headline"] or {}).get("epsilon_lower") for d in done], lows=[None] * len(done),
            highs=[None] * len(done), limit=policy.max_epsilon_lower, title="Empirical ε lower bound (δ = 1e-5)",
            axis="ε lower bound", percent=False)
        history["auc"] = audit_charts.metric_history_figure(
            times=times, values=[(d["result__headline"] or {}).get("auc") for d in done], lows=[None] * len(done),
            highs=[None] * len(done), limit=None, title="Best attack AUC", axis="AUC", percent=False)
    latest_done = model.audit_runs.filter(status="done").order_by("-finished_at").first()
    return {
        "policy": policy, "runs": runs, "history": history, "latest_done": latest_done,
        "roc_figure": audit_charts.roc_figure(latest_done.result.get("attacks", []),
                                              title="Latest audit: ROC per attack (log–log)") if latest_done else None,
    }


def _detection_panel(model: RegisteredModel, since) -> dict:
    """Top suspicious clients, detector scores over time (clients × time), and detector health."""
    findings = list(DetectorFinding.objects.filter(model=model, created_at__gte=since)
                    .values("client_id", "detector", "score", "severity", "created_at")[:20000])
    by_client: dict[str, dict] = {}
    for f in findings:
        entry = by_client.setdefault(f["client_id"], {"client_id": f["client_id"], "score": 0.0, "detectors": set(),
                                                      "severity": "info", "last": f["created_at"]})
        entry["score"] = max(entry["score"], f["score"])
        entry["detectors"].add(f["detector"])
        entry["last"] = max(entry["last"], f["created_at"])
        if SEVERITY_RANK[f["severity"]] > SEVERITY_RANK[entry["severity"]]:
            entry["severity"] = f["severity"]
    suspicious = sorted(by_client.values(), key=lambda e: (-SEVERITY_RANK[e["severity"]], -e["score"]))[:20]
    for entry in suspicious:
        entry["detectors"] = sorted(entry["detectors"])
    heatmap = None
    if findings:
        top = [e["client_id"] for e in suspicious]
        heatmap = charts.detector_heatmap_figure(
            [f for f in findings if f["client_id"] in set(top)], clients=top, title="Detector scores over time (−log₁₀ p)",
            start=since, end=timezone.now())
    # The scanners' carried state (megabytes at a few hundred active clients) and the key stay unread here.
    state = DetectorState.objects.filter(model=model).defer("state", "fingerprint_key").first()
    return {"suspicious": suspicious, "detector_heatmap": heatmap, "detector_state": state,
            "detector_health": _detector_health(model, state)}


def _detector_health(model: RegisteredModel, state) -> list[dict]:
    """Per detector: the calibrated false-alarm rate beside the one observed over the last 7 days."""
    if state is None or not state.calibration:
        return []
    week = timezone.now() - timedelta(days=7)
    active_client_days = ClientDayRollup.objects.filter(model=model, day__gte=week.date()).count()
    counts = dict(DetectorFinding.objects.filter(model=model, created_at__gte=week).values("detector")
                  .annotate(n=Count("id")).values_list("detector", "n"))
    flagged_clients = dict(DetectorFinding.objects.filter(model=model, created_at__gte=week).values("detector")
                           .annotate(n=Count("client_id", distinct=True)).values_list("detector", "n"))
    rows = []
    for name, calibration in sorted(state.calibration.items()):
        if name.startswith("_"):
            continue
        expected = calibration.get("false_alarm_rate")
        observed = flagged_clients.get(name, 0) / active_client_days if active_client_days else None
        rows.append({"detector": name, "findings_7d": counts.get(name, 0), "per_day": counts.get(name, 0) / 7,
                     "expected_rate": expected, "observed_rate": observed, "client_days": active_client_days})
    return rows
