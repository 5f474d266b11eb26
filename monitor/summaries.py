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
        # Audits land with the audit engine; until a run exists this is honestly null.
        "latest_audit": None,
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
