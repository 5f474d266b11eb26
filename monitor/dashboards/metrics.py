"""GET /metrics: the monitor in Prometheus' text format, for a token with a read role or a metrics token
(`manage.py issue_token --metrics`), never anonymous. Everything comes from small tables — the latest audit
per model, open alerts, the model-hour rollups, the scanner's watermark, the outbox — so a scrape costs the same at
10 million logged queries as at ten (bench/pages.py measures it)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from audits.models import AuditRun, RunStatus
from monitor.access import roles
from monitor.ingestion import counts
from monitor.models import (
    Alert,
    ApiToken,
    Delivery,
    DeliveryStatus,
    DetectorState,
    QueryLog,
    RegisteredModel,
)

FPRS = ("0.001", "0.01", "0.1")


class MonitorCollector:
    """Collected afresh on every scrape (no process-global registry: each web worker answers for the database)."""

    def collect(self) -> Iterator[Metric]:
        models = dict(RegisteredModel.objects.values_list("pk", "slug"))
        yield from self._audits(models)
        # Open = not resolved (open, acknowledged or muted): the open_alerts of GET /api/v1/models/{slug}.
        open_alerts = GaugeMetricFamily("mimonitor_open_alerts", "Alerts not yet resolved (open, acknowledged or "
                                        "muted), by model and severity", labels=["model", "severity"])
        for row in (Alert.objects.unresolved().values("model_id", "severity")
                    .annotate(n=Count("id")).order_by("model_id", "severity")):
            open_alerts.add_metric([models.get(row["model_id"], "?"), row["severity"]], row["n"])
        yield open_alerts
        # The count the API and the pages show: the folded rollups plus the unfolded tail (at most one fold
        # interval of traffic), so the cost stays flat as the log grows.
        logged = CounterMetricFamily("mimonitor_queries_logged", "Queries logged per model", labels=["model"])
        for model in sorted(RegisteredModel.objects.all(), key=lambda m: m.slug):
            logged.add_metric([model.slug], float(counts.queries_logged(model)))
        yield logged
        yield self._scanner_lag(models)
        failed = CounterMetricFamily("mimonitor_deliveries_failed", "Notifications that failed for good, by channel "
                                     "kind", labels=["kind"])
        for row in (Delivery.objects.filter(status=DeliveryStatus.FAILED).values("channel__kind").annotate(n=Count("id"))
                    .order_by("channel__kind")):
            failed.add_metric([row["channel__kind"]], row["n"])
        yield failed

    @staticmethod
    def _audits(models: dict[int, str]) -> Iterator[Metric]:
        tpr = GaugeMetricFamily("mimonitor_audit_tpr_at_fpr", "Latest finished audit: the strongest attack's TPR at "
                                "each false-positive rate", labels=["model", "fpr"])
        epsilon = GaugeMetricFamily("mimonitor_audit_epsilon_lower", "Latest finished audit: empirical ε lower bound",
                                    labels=["model"])
        age = GaugeMetricFamily("mimonitor_audit_age_seconds", "Seconds since the latest audit finished",
                                labels=["model"])
        now = timezone.now()
        for pk, slug in sorted(models.items(), key=lambda item: item[1]):
            latest = (AuditRun.objects.filter(model_id=pk, status=RunStatus.DONE).order_by("-finished_at")
                      .values("finished_at", "result__headline").first())
            if latest is None:
                continue
            headline: dict[str, Any] = latest["result__headline"] or {}
            for fpr in FPRS:
                value = ((headline.get("tpr_at_fpr") or {}).get(fpr) or {}).get("value")
                if value is not None:
                    tpr.add_metric([slug, fpr], float(value))
            if headline.get("epsilon_lower") is not None:
                epsilon.add_metric([slug], float(headline["epsilon_lower"]))
            if latest["finished_at"] is not None:
                age.add_metric([slug], max(0.0, (now - latest["finished_at"]).total_seconds()))
        yield from (tpr, epsilon, age)

    @staticmethod
    def _scanner_lag(models: dict[int, str]) -> Metric:
        """Age of the oldest logged query the scanner has not read yet (0 when it has read everything)."""
        lag = GaugeMetricFamily("mimonitor_scanner_lag_seconds", "Age of the oldest logged query not yet scanned",
                                labels=["model"])
        watermarks = dict(DetectorState.objects.values_list("model_id", "watermark_id"))
        now = timezone.now()
        for pk, slug in sorted(models.items(), key=lambda item: item[1]):
            oldest = (QueryLog.objects.filter(model_id=pk, id__gt=watermarks.get(pk, 0)).order_by("id")
                      .values_list("ts", flat=True).first())
            lag.add_metric([slug], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        return lag


def _allowed(request: HttpRequest) -> tuple[int, str]:
    """(0, "") when the request may scrape, else the status and the reason."""
    header = request.headers.get("Authorization", "")
    if header:
        token, problem = ApiToken.from_authorization(header)
        if token is None:
            return 401, problem
        if token.kind == ApiToken.METRICS or (token.kind == ApiToken.USER and roles.has_role(token.user, roles.READ)):
            return 0, ""
        return 403, "this token may not read metrics: use a metrics token (issue_token --metrics) or a user token"
    if roles.has_role(request.user, roles.READ):
        return 0, ""
    if request.user.is_authenticated:
        return 403, "this account has no role: ask an admin for one"
    return 401, "metrics need a token: Authorization: Bearer <a metrics token or a user token with a role>"


def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponse("GET only\n", status=405, content_type="text/plain", headers={"Allow": "GET, HEAD"})
    status, reason = _allowed(request)
    if status:
        response = HttpResponse(reason + "\n", status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector())
    # The scraper's Accept header picks the format (OpenMetrics when Prometheus asks for it, else text 0.0.4).
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry), content_type=content_type)
