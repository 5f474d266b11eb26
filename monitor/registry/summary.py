"""One registered model as the API and the pages show it: what it is, what it has logged, its open alerts and its
latest audit."""
from __future__ import annotations

from django.db.models import Count, Sum

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
        "features": feature_table(model),
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


def feature_table(model: RegisteredModel) -> list[dict]:
    """The model's schema, each categorical feature with the categories its queries carried that training never
    saw (how many distinct values, in how many logged queries)."""
    unseen = {row["feature"]: row for row in model.unseen.values("feature").annotate(values=Count("id"),
                                                                                     queries=Sum("queries"))}
    table = []
    for entry in model.schema.as_list():
        entry = {"categories": None, "unseen_accepted": None, "unseen": None, **entry}
        if entry["kind"] == "categorical":
            found = unseen.get(entry["name"])
            entry["unseen"] = {"values": found["values"] if found else 0,
                               "queries": int(found["queries"] or 0) if found else 0}
        table.append(entry)
    return table
