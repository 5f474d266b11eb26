"""One registered model as the API and the pages show it: what it is, what it has logged, its open alerts and its
latest audit."""
from __future__ import annotations

from monitor.ingestion import counts
from monitor.models import RegisteredModel


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
        "retention_days": model.retention_days,
        "auto_restrict": {"action": model.auto_restrict_action, "severity": model.auto_restrict_severity,
                          "hours": model.auto_restrict_hours} if model.auto_restrict_action else None,
        "false_alarm_budget": model.false_alarm_budget,
        "artifact_sha256": artifact["sha256"] if artifact else None,
        "datasets": {d["kind"]: {"rows": d["n_rows"], "sha256": d["sha256"]}
                     for d in model.datasets.values("kind", "n_rows", "sha256")},
        "queries_logged": counts.queries_logged(model),
        "clients": counts.client_count(model),
        "open_alerts": model.alerts.unresolved().count(),
        "latest_audit": latest.summary() if (latest := model.audit_runs.order_by("-created_at").first()) else None,
    }
