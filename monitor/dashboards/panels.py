"""Read-side panels the API and the pages share: a model's summary (the shape DESIGN.md promises), its risk grade,
and the aggregations behind the overview, model and client pages (rollups only where a page must stay fast)."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from django.db.models import Count, F, Max, Sum
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from audits.models import AuditPolicy, AuditRun, headline_rate
from monitor.dashboards import audit_charts, charts
from monitor.ingestion import counts
from monitor.ingestion.vectors import decode_vectors
from monitor.models import (
    Alert,
    ClientDayRollup,
    DetectorFinding,
    DetectorState,
    ModelHourRollup,
    QueryLog,
    QueryRollup,
    RegisteredModel,
)
from monitor.platform.severity import SEVERITY_RANK

TOP_CLIENTS = 6


def risk_grade(run, limit: float | None) -> dict:
    """A one-word reading of the latest finished audit against the model's TPR@1%FPR limit."""
    if run is None or not run.result:
        return {"grade": "unaudited", "css": "", "why": "no finished audit yet"}
    value = run.tpr_at().get("value")
    verdict = run.policy_result or {}
    if value is None:
        return {"grade": "unknown", "css": "", "why": "the audit produced no headline"}
    why = f"TPR@1%FPR {value:.1%} (limit {limit:.1%})" if limit else f"TPR@1%FPR {value:.1%}"
    if not verdict.get("passed", True):
        grade = "critical" if limit and value >= 2 * limit else "high"
        return {"grade": grade, "css": "critical" if grade == "critical" else "warning", "why": why}
    if limit and value > limit / 2:
        return {"grade": "moderate", "css": "info", "why": why}
    return {"grade": "low", "css": "ok", "why": why}


def overview_rows() -> list[dict]:
    """Per model: risk grade, TPR@1%FPR sparkline over its last 30 audits, open alerts by severity, queries in 24 h."""
    since_24h = timezone.now() - timedelta(hours=24)
    queries_24h = dict(ModelHourRollup.objects.filter(hour__gte=since_24h).values("model_id").annotate(n=Sum("count"))
                       .values_list("model_id", "n"))
    open_counts: dict[int, dict[str, int]] = {}
    for model_id, severity, n in (Alert.objects.unresolved().values("model_id", "severity").annotate(n=Count("id"))
                                  .values_list("model_id", "severity", "n")):
        open_counts.setdefault(model_id, {})[severity] = n
    rows = []
    for model in RegisteredModel.objects.all():
        policy = AuditPolicy.objects.for_model(model)
        done = list(AuditRun.objects.filter(model=model).finished().order_by("-finished_at")
                    .values("pk", "finished_at", "result__headline", "policy_result")[:30])[::-1]
        latest = AuditRun(pk=done[-1]["pk"], result={"headline": done[-1]["result__headline"]},
                          policy_result=done[-1]["policy_result"]) if done else None
        values = [headline_rate(d["result__headline"]).get("value") for d in done]
        rows.append({
            "model": model,
            "grade": risk_grade(latest, policy.max_tpr_at_1pct_fpr),
            "latest_run": latest,
            "sparkline": charts.sparkline_figure(times=[d["finished_at"] for d in done], values=values,
                                                 limit=policy.max_tpr_at_1pct_fpr) if len(done) >= 1 else None,
            "open": open_counts.get(model.pk, {}),
            "queries_24h": queries_24h.get(model.pk, 0),
        })
    return rows


def top_clients_in(model: RegisteredModel, *, since: datetime, search: str = "") -> list[dict]:
    """The 20 busiest clients since `since` (client ids containing `search`), from the client-day rollup and the
    log's unfolded tail."""
    in_period = ClientDayRollup.objects.filter(model=model, day__gte=since.date())
    if search:
        in_period = in_period.filter(client_id__icontains=search)
    rows = {row["client_id"]: row for row in in_period.values("client_id").annotate(
        queries=Sum("count"), days=Count("id"), last=Max("day"), confidence=Sum("confidence_sum"))}
    new_days: dict[str, set] = {}
    for tail in counts.unfolded_minutes(model, since=since, search=search):
        row = rows.setdefault(tail.client_id, {"client_id": tail.client_id, "queries": 0, "days": 0, "last": None,
                                               "confidence": 0.0})
        row["queries"] += tail.count
        row["confidence"] += tail.confidence_sum
        day = tail.minute.date()
        if row["last"] is None or day > row["last"]:
            new_days.setdefault(tail.client_id, set()).add(day)
    for client, days in new_days.items():
        rows[client]["days"] += len(days)
        rows[client]["last"] = max(days)
    top_clients = sorted(rows.values(), key=lambda row: (-row["queries"], row["client_id"]))[:20]
    for row in top_clients:
        row["mean_confidence"] = row["confidence"] / row["queries"] if row["queries"] else None
    return top_clients


def volume_series(model: RegisteredModel, since, *, hourly: bool) -> dict:
    """Counts per hour (24 h) or per day (longer periods) for the busiest clients; the rest folded into
    'other clients'. Reads rollups (the fine ones for six clients at most) and the log's unfolded tail: the cost
    grows with neither the number of clients nor the length of the log."""
    tails = counts.unfolded_minutes(model, since=since)  # what the rollups do not hold yet
    per_client_total = dict(ClientDayRollup.objects.filter(model=model, day__gte=since.date()).values("client_id")
                            .annotate(n=Sum("count")).values_list("client_id", "n"))
    for tail in tails:
        per_client_total[tail.client_id] = per_client_total.get(tail.client_id, 0) + tail.count
    top = sorted(per_client_total, key=lambda client: (-per_client_total[client], client))[:TOP_CLIENTS]
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
    all_clients = dict(totals.values_list("bucket", "n"))
    for tail in tails:
        bucket = tail.minute.replace(minute=0) if hourly else tail.minute.date()
        all_clients[bucket] = all_clients.get(bucket, 0) + tail.count
        if tail.client_id in buckets:
            buckets[tail.client_id][bucket] = buckets[tail.client_id].get(bucket, 0) + tail.count
    others = {bucket: total - sum(b.get(bucket, 0) for b in buckets.values()) for bucket, total in all_clients.items()}
    buckets["other clients"] = {bucket: n for bucket, n in others.items() if n > 0}
    series = {}
    for client, per_bucket in buckets.items():
        if per_bucket:
            keys = sorted(per_bucket)
            series[client] = (keys, [per_bucket[k] for k in keys])
    return series


def recent_vectors(queries, width: int, limit: int):
    blobs = list(queries.order_by("-id").values_list("features", flat=True)[:limit])
    return decode_vectors(blobs, width).astype(np.float64)


def recent_queries(model: RegisteredModel, client_id: str, limit: int = 20) -> list[dict]:
    """A client's latest queries as it sent them: each feature by name with its raw value (a category as its text,
    one training never saw included; a missing value as None)."""
    rows = list(QueryLog.objects.filter(model=model, client_id=client_id).order_by("-id")
                .values_list("ts", "features", "label")[:limit])
    if not rows:
        return []
    schema = model.schema
    X = decode_vectors([row[1] for row in rows], len(schema)).astype(np.float64)
    unseen_codes = sorted({int(code) for code in X[:, schema.categorical].ravel().tolist()
                           if code == code and code < 0}) if schema.categorical else []
    values = schema.decode(X, model.unseen_categories(unseen_codes) if unseen_codes else {})
    labels = model.class_labels
    return [{"ts": ts, "label": labels[label] if 0 <= label < len(labels) else str(label),
             "features": list(zip(schema.names, row, strict=True))}
            for (ts, _, label), row in zip(rows, values, strict=True)]


def audit_panel(model: RegisteredModel) -> dict:
    """Audit metrics over time with intervals and limits, the latest ROC, and recent runs."""
    policy = AuditPolicy.objects.for_model(model)
    runs = list(model.audit_runs.order_by("-created_at")[:10])
    done = list(model.audit_runs.finished().order_by("finished_at")
                .values("pk", "finished_at", "result__headline")[:500])
    history = {}
    if done:
        times = [d["finished_at"] for d in done]
        rates = [headline_rate(d["result__headline"]) for d in done]
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
    latest_done = model.audit_runs.finished().order_by("-finished_at").first()
    return {
        "policy": policy, "runs": runs, "history": history, "latest_done": latest_done,
        "candidates": list(model.candidates.select_related("created_by", "promoted_by").defer("artifact_data",
                                                                                           "members_ciphertext")[:10]),
        "roc_figure": audit_charts.roc_figure(latest_done.result.get("attacks", []),
                                              title="Latest audit: ROC per attack (log–log)") if latest_done else None,
    }


def detection_panel(model: RegisteredModel, since) -> dict:
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
    # The key stays unread here (so do the scanners' per-client rows).
    state = DetectorState.objects.filter(model=model).defer("fingerprint_key").first()
    return {"suspicious": suspicious, "detector_heatmap": heatmap, "detector_state": state,
            "detector_health": detector_health(model, state)}


def detector_health(model: RegisteredModel, state) -> list[dict]:
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
