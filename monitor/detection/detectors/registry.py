"""The detector registry, and calibrating or scanning with every registered detector at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from monitor.detection.detectors.base import (
    Detector,
    Finding,
    ModelContext,
    QueryBatch,
    raise_severity_for_exposed,
)

_REGISTRY: dict[str, type[Detector]] = {}

D = TypeVar("D", bound=type[Detector])


def register(cls: D) -> D:
    """Class decorator: make a detector available by its `name` (it must carry its `title` too)."""
    missing = [attr for attr in ("name", "title") if not getattr(cls, attr, "")]
    if missing:
        raise TypeError(f"{cls.__name__} must set {', '.join(missing)} to be registered")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a detector named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def detector_names() -> list[str]:
    return sorted(_REGISTRY)


def detector_title(name: str) -> str:
    """The detector's title, or the name itself for one no longer registered (the kind of an old alert)."""
    cls = _REGISTRY.get(name)
    return cls.title if cls is not None else name


def get_detector(name: str, **settings: Any) -> Detector:
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; known: {', '.join(detector_names())}") from None
    return cls(**settings)


def build_detectors(settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Detector]:
    """Every registered detector, with per-detector settings where given (e.g. {"volume": {...}})."""
    settings = settings or {}
    unknown = set(settings) - set(_REGISTRY)
    if unknown:
        raise KeyError(f"settings for unknown detectors: {', '.join(sorted(unknown))}")
    return [get_detector(name, **settings.get(name, {})) for name in detector_names()]


def calibrate(
    reference: QueryBatch, context: ModelContext, *, detectors: Iterable[Detector] | None = None
) -> dict[str, dict[str, Any]]:
    """Calibration of each detector on benign reference traffic: {detector name: JSON-ready dict}."""
    return {
        detector.name: detector.calibrate(reference, context) for detector in detectors or build_detectors()
    }


def scan(
    batch: QueryBatch,
    context: ModelContext,
    state: Mapping[str, Any] | None = None,
    *,
    detectors: Iterable[Detector] | None = None,
    most_exposed_ids: Iterable[Any] | None = None,
) -> tuple[list[Finding], dict[str, Any]]:
    """Run every detector over a batch of new queries; return findings and the state for the next scan.

    `state` is what the previous scan returned ({detector name: state}); `context.calibration`
    must hold each detector's calibration. Findings are ordered by detector, then client.
    """
    state = state or {}
    findings: list[Finding] = []
    new_state: dict[str, Any] = {}
    for detector in detectors or build_detectors():
        found, new_state[detector.name] = detector.scan(batch, context, state.get(detector.name))
        findings.extend(found)
    if most_exposed_ids is not None:
        findings = raise_severity_for_exposed(findings, most_exposed_ids)
    return sorted(findings, key=lambda finding: (finding.detector, finding.client_id)), new_state
