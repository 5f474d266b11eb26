"""Registering a model: validate the artifact and every dataset first, then store all of it at once."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from monitor.ingestion.partitions import ensure_partitions
from monitor.models import SLUG_VALIDATOR, ModelArtifact, ReferenceDataset, RegisteredModel
from monitor.models.reference_arrays import encrypt_arrays
from monitor.platform.feature_schema import FeatureSchema
from monitor.platform.outbound import OutboundBlocked, check_url
from monitor.platform.output_policy import OutputPolicy
from monitor.registry.artifacts import ArtifactError, OnnxPredictor, Predictor, load_artifact, sniff_format
from monitor.registry.boosters import BoosterError, BoosterPredictor
from monitor.registry.reference_data import (
    DatasetError,
    ParsedCsv,
    RawCsv,
    encode_reference,
    read_reference_csv,
)
from monitor.registry.sandbox import check_in_sandbox
from monitor.registry.schema import SchemaError, encoder_categories, infer_schema, probe_acceptance
from monitor.trail.models import TrailEntry
from monitor.trail.recording import recorded_by_caller


@dataclass
class RegistrationError(ValueError):
    """What is wrong, where (`field`: the form field or option), and per-cell details for CSVs."""

    field: str
    message: str
    details: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}"
        for item in self.details:
            where = ", ".join(f"{k} {v}" for k, v in item.items() if k != "message")
            text += f"\n  {where}: {item['message']}"
        return text


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str = ""


def register_model(
    *,
    slug: str,
    name: str,
    label_column: str,
    members: Upload,
    nonmembers: Upload,
    population: Upload | None = None,
    artifact: Upload | None = None,
    endpoint_url: str | None = None,
    team: str = "",
    output_policy: str = "full",
    id_column: str | None = None,
    user=None,
) -> RegisteredModel:
    """Validate everything, then create the model, its artifact and its datasets in one transaction."""
    try:
        SLUG_VALIDATOR(slug)
    except ValidationError as exc:
        raise RegistrationError("slug", f"{slug!r}: {exc.messages[0]}") from exc
    if not name.strip():
        raise RegistrationError("name", "a name is required")
    if RegisteredModel.objects.filter(slug=slug).exists():
        raise RegistrationError("slug", f"a model with slug {slug!r} already exists")
    try:
        policy = OutputPolicy.parse(output_policy)
    except ValueError as exc:
        raise RegistrationError("output_policy", str(exc)) from exc
    if (artifact is None) == (not endpoint_url):
        raise RegistrationError("artifact", "give exactly one prediction source: an artifact file or an endpoint URL")
    if endpoint_url:
        try:
            check_url(endpoint_url)
        except (ValueError, OutboundBlocked) as exc:
            raise RegistrationError("endpoint", str(exc)) from exc

    predictor: Predictor | None = None
    fmt = ""
    if artifact is not None:
        if len(artifact.data) > settings.ARTIFACT_MAX_BYTES:
            raise RegistrationError("artifact", f"the file is {len(artifact.data):,} bytes; the limit is "
                                                f"{settings.ARTIFACT_MAX_BYTES:,} bytes (ARTIFACT_MAX_BYTES)")
        try:
            fmt = sniff_format(artifact.data)
            _check_extension(artifact.filename, fmt)
            # First in a limited child process: a file that gets past the checks and crashes kills the child only.
            check_in_sandbox(artifact.data, fmt, max_unpacked=settings.ARTIFACT_MAX_BYTES)
            predictor = load_artifact(artifact.data, fmt)
        except ArtifactError as exc:
            raise RegistrationError("artifact", str(exc)) from exc

    feature_names = getattr(predictor, "feature_names", None)
    known_classes = predictor.classes if predictor is not None and predictor.classes else None
    uploads = {"members": members, "nonmembers": nonmembers, "population": population}
    if known_classes is None:
        known_classes = _labels_across(uploads, label_column=label_column, id_column=id_column)
    if isinstance(predictor, BoosterPredictor):  # no class names in the file: its class i is the i-th sorted label
        try:
            predictor.check_labels(known_classes)
        except BoosterError as exc:
            raise RegistrationError("artifact", str(exc)) from exc
    reads: dict[str, RawCsv] = {}
    for kind, upload in uploads.items():
        if upload is None:
            continue
        try:
            reads[kind] = read_reference_csv(
                upload.data, label_column=label_column, feature_names=feature_names, id_column=id_column,
                expected_n_features=predictor.n_features if predictor is not None else None,
            )
        except DatasetError as exc:
            raise RegistrationError(kind, exc.message, exc.details) from exc
        feature_names = reads[kind].feature_names
    n_features = len(feature_names)
    if predictor is not None and predictor.n_features is not None and predictor.n_features != n_features:
        raise RegistrationError(
            "members", f"the model expects {predictor.n_features} features; the CSV has {n_features}: {feature_names}"
        )
    schema, parsed = _schema_and_data(reads, predictor=predictor, label_column=label_column,
                                      class_labels=known_classes)
    if predictor is not None:
        if hasattr(predictor, "for_schema"):
            predictor = predictor.for_schema(schema)
        _check_predictions(predictor, parsed["members"].arrays.X[:8], n_classes=len(known_classes))

    with transaction.atomic(), recorded_by_caller():  # one model.registered entry for the model and its files
        model = RegisteredModel.objects.create(
            slug=slug, name=name.strip(), team=team.strip(),
            source=fmt if artifact is not None else RegisteredModel.ENDPOINT,
            endpoint_url=endpoint_url or "", feature_names=feature_names, features=schema.as_list(),
            class_labels=known_classes,
            label_column=label_column, output_policy=str(policy), created_by=user,
        )
        if artifact is not None:
            ModelArtifact.objects.create(
                model=model, version=model.version, format=fmt, data=artifact.data,
                sha256=hashlib.sha256(artifact.data).hexdigest(), size=len(artifact.data),
                filename=artifact.filename[:255],
            )
        for kind, result in parsed.items():
            ReferenceDataset.objects.create(
                model=model, kind=kind, ciphertext=encrypt_arrays(result.arrays), sha256=result.sha256,
                n_rows=len(result.arrays.y), filename=(uploads[kind].filename or "")[:255],
            )
        TrailEntry.record(action="model.registered", actor=user, obj=model, after={
            "slug": slug, "source": model.source, "output_policy": model.output_policy,
            "artifact_sha256": hashlib.sha256(artifact.data).hexdigest() if artifact is not None else None,
            "endpoint": endpoint_url or None,
            "datasets": {kind: {"sha256": result.sha256, "rows": len(result.arrays.y)} for kind, result in parsed.items()},
        })
        # Today's and tomorrow's query-log partitions (PostgreSQL); the hourly task makes the days after.
        ensure_partitions([model.pk], back=0, ahead=1)
    return model


EXTENSIONS = {".skops": "skops", ".onnx": "onnx", ".json": "xgboost_json", ".ubj": "xgboost_ubj", ".txt": "lightgbm_text"}
FORMAT_NAMES = {"skops": ("a skops file", "skops"), "onnx": ("an ONNX file", "ONNX"),
                "xgboost_json": ("an XGBoost JSON model", "an XGBoost JSON model"),
                "xgboost_ubj": ("an XGBoost UBJSON model", "an XGBoost UBJSON model"),
                "lightgbm_text": ("a LightGBM text model", "a LightGBM text model")}


def _check_extension(filename: str, fmt: str) -> None:
    """The format comes from the content; a name that says another format is a mistake worth stopping at."""
    named = EXTENSIONS.get(PurePath(filename).suffix.lower())
    if named and named != fmt:
        raise ArtifactError(f"the file is named {filename!r} but it is {FORMAT_NAMES[fmt][0]}, not "
                            f"{FORMAT_NAMES[named][1]}; rename it or upload the right file")


def _schema_and_data(reads: dict[str, RawCsv], *, predictor: Predictor | None, label_column: str,
                     class_labels: list[str]) -> tuple[FeatureSchema, dict[str, ParsedCsv]]:
    """The model's feature schema (its artifact's encoders, the files' cells, then the model asked where it takes a
    missing value), and every file checked and coded against it."""
    estimator = getattr(predictor, "estimator", None)
    takes_text = predictor is not None and hasattr(predictor, "for_schema")
    try:
        schema = infer_schema(list(reads.values()), hints=encoder_categories(estimator) if estimator is not None else {},
                              takes_text=takes_text)
    except SchemaError as exc:
        raise RegistrationError("members", exc.message, exc.details) from exc

    def coded(schema: FeatureSchema) -> dict[str, ParsedCsv]:
        parsed = {}
        for kind, read in reads.items():
            try:
                parsed[kind] = encode_reference(read, schema=schema, label_column=label_column,
                                                class_labels=class_labels)
            except DatasetError as exc:
                raise RegistrationError(kind, exc.message, exc.details) from exc
        return parsed

    if predictor is None:
        return schema, coded(schema)
    # Ask the model on a complete member row; the files are checked against what it answered.
    X = coded(schema)["members"].arrays.X
    complete = X[~np.isnan(X).any(axis=1)]
    if len(complete):
        answering = predictor.for_schema(schema) if takes_text else predictor  # type: ignore[attr-defined]
        try:
            schema = probe_acceptance(schema, answering.predict_proba, complete[0])
        except SchemaError as exc:
            raise RegistrationError("members", exc.message, exc.details) from exc
    return schema, coded(schema)


def _labels_across(uploads: dict[str, Upload | None], *, label_column: str, id_column: str | None) -> list[str]:
    """Classes for a model that cannot tell us its own (ONNX, endpoint): every label seen in the data."""
    labels: set[str] = set()
    for upload in uploads.values():
        if upload is None:
            continue
        try:
            labels.update(read_reference_csv(upload.data, label_column=label_column, feature_names=None,
                                             id_column=id_column).labels_seen)
        except DatasetError:
            continue  # reported with its details by the full parse
    return sorted(labels)


def _check_predictions(predictor: Predictor, X: np.ndarray, *, n_classes: int) -> None:
    try:
        proba = predictor.predict_proba(X)
    except ArtifactError as exc:
        raise RegistrationError("artifact", str(exc)) from exc
    except Exception as exc:
        raise RegistrationError("artifact", f"the model failed on the first member rows: {type(exc).__name__}: {exc}") from exc
    if proba.shape != (len(X), n_classes):
        what = "ONNX model" if isinstance(predictor, OnnxPredictor) else "model"
        raise RegistrationError(
            "artifact", f"the {what} returned probabilities of shape {proba.shape}; expected {(len(X), n_classes)}"
        )
    if not np.all(np.isfinite(proba)) or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-3):
        raise RegistrationError("artifact", "the model's predict_proba does not return probabilities (rows must sum to 1)")
