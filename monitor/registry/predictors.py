"""What answers for a registered model: its current artifact (cached per worker by content hash) or its remote
endpoint. The gateway predicts with it, the audit engine attacks it, the demo sends traffic through it."""
from __future__ import annotations

from django.conf import settings

from monitor.models import ModelArtifact, RegisteredModel
from monitor.registry.artifacts import EndpointPredictor, Predictor, cached_predictor


class NoArtifact(LookupError):
    """The model has no artifact for its current version, so nothing can predict for it."""


def predictor_for(model: RegisteredModel) -> Predictor:
    if model.source == RegisteredModel.ENDPOINT:
        return EndpointPredictor(url=model.endpoint_url, classes=model.class_labels, n_features=model.n_features,
                                 timeout=settings.REMOTE_MODEL_TIMEOUT)
    artifact = model.artifacts.filter(version=model.version).values("sha256", "format").first()
    if artifact is None:
        raise NoArtifact(f"model {model.slug!r} has no artifact for version {model.version}")

    def load_bytes() -> bytes:
        return bytes(ModelArtifact.objects.values_list("data", flat=True).get(model=model, version=model.version))

    predictor = cached_predictor(sha256=artifact["sha256"], fmt=artifact["format"], load_bytes=load_bytes)
    # A pipeline over raw values reads the log's coded rows through the model's schema.
    return predictor.for_schema(model.schema) if hasattr(predictor, "for_schema") else predictor
