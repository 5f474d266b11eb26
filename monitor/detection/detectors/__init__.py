"""Membership-inference probing detectors over the query log: pure numpy/scipy/scikit-learn, no Django.

`calibrate(reference, context)` once on benign traffic, then `scan(batch, context, state)` per batch.
"""

# Importing the modules registers the detectors.
from monitor.detection.detectors.account_linking import AccountLinkingDetector  # noqa: E402,I001
from monitor.platform.severity import SEVERITIES
from monitor.detection.detectors.base import (
    Detector,
    Finding,
    MemberIndex,
    ModelContext,
    NotCalibrated,
    QueryBatch,
    raise_severity_for_exposed,
)
from monitor.detection.detectors.boundary_probing import BoundaryProbingDetector
from monitor.detection.detectors.distribution_shift import DistributionShiftDetector
from monitor.detection.detectors.near_duplicate_sweep import NearDuplicateSweepDetector
from monitor.detection.detectors.registry import (
    build_detectors,
    calibrate,
    detector_names,
    detector_title,
    get_detector,
    register,
    scan,
)
from monitor.detection.detectors.training_proximity import TrainingProximityDetector
from monitor.detection.detectors.volume import VolumeDetector

__all__ = [
    "SEVERITIES",
    "AccountLinkingDetector",
    "BoundaryProbingDetector",
    "Detector",
    "DistributionShiftDetector",
    "Finding",
    "MemberIndex",
    "ModelContext",
    "NearDuplicateSweepDetector",
    "NotCalibrated",
    "QueryBatch",
    "TrainingProximityDetector",
    "VolumeDetector",
    "build_detectors",
    "calibrate",
    "detector_names",
    "detector_title",
    "get_detector",
    "raise_severity_for_exposed",
    "register",
    "scan",
]
