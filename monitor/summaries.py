"""Read-outs shared by the API and the pages (the shapes DESIGN.md promises)."""
from __future__ import annotations

from monitor.models import Alert, NotificationChannel, RegisteredModel


def model_summary(model: RegisteredModel) -> dict:
    artifact = model.artifacts.filter(version=model.version).values("sha256", "format", "size").first()
    return {
        "slug": model.slug,
        "name": model.name,
        "team": model.team,
        "source": model.source,
        "n_features": model.n_features,
        "feature_names": model.feature_names,
        "classes": model.class_labels,
        "output_policy": model.output_policy,
        "version": model.version,
        "artifact_sha256": artifact["sha256"] if artifact else None,
        "datasets": {d["kind"]: {"rows": d["n_rows"], "sha256": d["sha256"]}
                     for d in model.datasets.values("kind", "n_rows", "sha256")},
        "queries_logged": model.queries_logged(),
        "clients": model.client_count(),
        "open_alerts": model.alerts.unresolved().count(),
        "latest_audit": audit_summary(latest) if (latest := model.audit_runs.order_by("-created_at").first()) else None,
    }


def _user_name(user) -> str | None:
    return user.get_username() if user is not None else None


def alert_summary(alert: Alert) -> dict:
    return {
        "id": alert.pk,
        "fingerprint": alert.fingerprint,
        "source": alert.source,
        "kind": alert.kind,
        "title": alert.title,
        "model": alert.model.slug,
        "client": alert.client_id or None,
        "incident": alert.incident,
        "severity": alert.severity,
        "status": alert.status,
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "occurrences": alert.occurrences,
        "evidence": alert.evidence,
        "acknowledged_by": _user_name(alert.acknowledged_by),
        "acknowledged_at": alert.acknowledged_at,
        "ack_note": alert.ack_note,
        "resolved_by": _user_name(alert.resolved_by),
        "resolved_at": alert.resolved_at,
        "muted_until": alert.muted_until,
        "mute_reason": alert.mute_reason,
    }


def channel_summary(channel: NotificationChannel) -> dict:
    return {
        "id": channel.pk,
        "name": channel.name,
        "kind": channel.kind,
        "target": channel.masked_target(),
        "min_severity": channel.min_severity,
        "models": None if channel.all_models else sorted(channel.selected_models.values_list("slug", flat=True)),
        "enabled": channel.enabled,
        "rate_limit_per_hour": channel.rate_limit_per_hour,
        "digest": channel.digest,
        "last_error": channel.last_error or None,
        "last_error_at": channel.last_error_at,
        "disabled_reason": channel.disabled_reason or None,
    }


def audit_summary(run, *, full: bool = False) -> dict:
    """The audit run shape of DESIGN.md; `full` adds ROC points, per-class slices, what-if and provenance."""
    result = run.result or {}
    attacks = []
    for attack in result.get("attacks", []):
        item = {key: attack.get(key) for key in ("name", "auc", "advantage", "balanced_accuracy", "epsilon_lower",
                                                  "tpr_at_fpr", "n_members", "n_nonmembers")}
        if full:
            item.update({key: attack.get(key) for key in ("roc", "per_class", "top_exposed", "seconds", "details")})
        attacks.append(item)
    summary = {
        "id": run.pk,
        "model": run.model.slug,
        "status": run.status,
        "trigger": run.trigger,
        "progress": run.progress,
        "step": run.step,
        "error": run.error or None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "headline": result.get("headline"),
        "attacks": attacks,
        "policy": run.policy_result,
    }
    if full:
        summary.update({
            "what_if": result.get("what_if"), "recommendations": result.get("recommendations"),
            "accuracy": result.get("accuracy"), "notes": result.get("notes"), "timings": result.get("timings"),
            "model_version": run.model_version, "artifact_sha256": run.artifact_sha256, "data_sha256": run.data_sha256,
            "config": run.config, "environment": run.environment, "attack_config": result.get("config"),
        })
    return summary


def risk_grade(run, limit: float | None) -> dict:
    """A one-word reading of the latest finished audit against the model's TPR@1%FPR limit."""
    if run is None or not run.result:
        return {"grade": "unaudited", "css": "", "why": "no finished audit yet"}
    rate = ((run.result.get("headline") or {}).get("tpr_at_fpr") or {}).get("0.01") or {}
    value = rate.get("value")
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
