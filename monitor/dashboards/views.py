"""Pages: thin views over plain functions; every view names the roles it admits."""
from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from audits.undetected import undetected_attacker
from monitor.access import roles
from monitor.dashboards import charts
from monitor.dashboards.forms import RegisterModelForm
from monitor.dashboards.panels import (
    audit_panel,
    detection_panel,
    overview_rows,
    recent_queries,
    recent_vectors,
    top_clients_in,
    volume_series,
)
from monitor.dashboards.projection import project
from monitor.detection.space import detection_features
from monitor.gateway import restrictions
from monitor.ingestion import counts
from monitor.models import (
    CLIENT_ID_MAX_LENGTH,
    Alert,
    QueryLog,
    QueryRollup,
    RegisteredModel,
    RollupWatermark,
    WorkerHeartbeat,
)
from monitor.registry.registration import RegistrationError, Upload, register_model
from monitor.registry.summary import model_summary

PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@roles.role_required(*roles.READ)
def overview(request: HttpRequest) -> HttpResponse:
    period = request.GET.get("period", "7d")
    period = period if period in PERIODS else "7d"
    now = timezone.now()
    since = now - PERIODS[period]
    rows = overview_rows()
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
    series = volume_series(model, since, hourly=period == "24h")
    search = request.GET.get("q", "").strip()[:CLIENT_ID_MAX_LENGTH]
    top_clients = top_clients_in(model, since=since, search=search)
    audit = audit_panel(model)
    detection = detection_panel(model, since)
    return render(request, "monitor/model_detail.html", {
        **audit,
        **detection,
        "model": model,
        "summary": model_summary(model),
        "undetected": undetected_attacker(model),
        "period": period,
        "periods": list(PERIODS),
        "top_clients": top_clients,
        "search": search,
        "rollups_as_of": RollupWatermark.objects.filter(model=model).values_list("folded_at", flat=True).first(),
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


@roles.role_required(*roles.READ)
def client_detail(request: HttpRequest, slug: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, slug=slug)
    client_id = request.GET.get("id", "")
    period = request.GET.get("period", "7d")
    period = period if period in PERIODS else "7d"
    since = timezone.now() - PERIODS[period]
    minutes = {minute: (count, confidence) for minute, count, confidence in QueryRollup.objects.filter(
        model=model, client_id=client_id, minute__gte=since).values_list("minute", "count", "confidence_sum")}
    for tail in counts.unfolded_minutes(model, since=since, client_id=client_id):  # not folded yet
        count, confidence = minutes.get(tail.minute, (0, 0.0))
        minutes[tail.minute] = (count + tail.count, confidence + tail.confidence_sum)
    rollups = [(minute, *minutes[minute]) for minute in sorted(minutes)]
    total = counts.client_queries(model, client_id)
    if not total:
        raise Http404(f"no queries from client {client_id!r} on {model.slug}")
    timeline = None
    if rollups:
        timeline = charts.client_timeline_figure(
            minutes=[r[0] for r in rollups], counts=[r[1] for r in rollups],
            confidence=[r[2] / r[1] for r in rollups], title=f"Queries from {client_id}, last {period}")
    width, schema = model.n_features, model.schema
    # In the detectors' space: categories one column each, missing values counted as such, every number finite.
    client_X = detection_features(recent_vectors(QueryLog.objects.filter(model=model, client_id=client_id), width,
                                                 CLIENT_SAMPLE), schema)
    production_X = detection_features(recent_vectors(QueryLog.objects.filter(model=model).exclude(
        client_id=client_id), width, PRODUCTION_SAMPLE), schema)
    projection_figure, shows_members = None, roles.has_role(request.user, roles.OPERATE)
    if len(production_X) >= 10 and len(client_X):
        members = None
        if shows_members:
            dataset = model.datasets.filter(kind="members").first()
            members = detection_features(dataset.load().X, schema) if dataset else None
        projected = project(production=production_X, client=client_X, members=members)
        projection_figure = charts.projection_figure(
            production=projected.production, client=projected.client, explained=projected.explained,
            client_id=client_id, member_density=projected.member_density)
    alerts = model.alerts.filter(client_id=client_id).order_by("-last_seen")[:50]
    return render(request, "monitor/client_detail.html", {
        "model": model, "client_id": client_id, "period": period, "periods": list(PERIODS), "total": total,
        "in_period": sum(r[1] for r in rollups), "timeline_figure": timeline, "projection_figure": projection_figure,
        "shows_members": shows_members, "alerts": alerts, "sampled": len(client_X),
        "recent": recent_queries(model, client_id),
        "restriction": restrictions.active(model, client_id), "restriction_client": client_id,
        "restrict_next": request.get_full_path(),
    })


