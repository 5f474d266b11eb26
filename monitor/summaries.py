"""Read-outs shared by the API and the pages (the shapes DESIGN.md promises)."""
from __future__ import annotations

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
        "artifact_sha256": artifact["sha256"] if artifact else None,
        "datasets": {d["kind"]: {"rows": d["n_rows"], "sha256": d["sha256"]}
                     for d in model.datasets.values("kind", "n_rows", "sha256")},
        "queries_logged": model.queries_logged(),
        "clients": model.client_count(),
        "open_alerts": model.alerts.exclude(status="resolved").count(),
        # Audits land with the audit engine; until a run exists this is honestly null.
        "latest_audit": None,
    }
