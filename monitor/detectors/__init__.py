"""Membership-inference probing detectors over the query log: pure numpy/scipy/scikit-learn, no Django.

`calibrate(reference, context)` once on benign traffic, then `scan(batch, context, state)` per batch.
"""

# Importing the modules registers the detectors.
from monitor.detectors.account_linking import AccountLinkingDetector  # noqa: E402,I001
from monitor.detectors.base import (
    SEVERITIES,
    Detector,
    Finding,
    MemberIndex,
    ModelContext,
    NotCalibrated,
    QueryBatch,
    raise_severity_for_exposed,
)
from monitor.detectors.boundary_probing import BoundaryProbingDetector
from monitor.detectors.distribution_shift import DistributionShiftDetector
from monitor.detectors.near_duplicate_sweep import NearDuplicateSweepDetector
from monitor.detectors.registry import (
    build_detectors,
    calibrate,
    detector_names,
    get_detector,
    register,
    scan,
)
from monitor.detectors.training_proximity import TrainingProximityDetector
from monitor.detectors.volume import VolumeDetector

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
    "get_detector",
    "raise_severity_for_exposed",
    "register",
    "scan",
]
