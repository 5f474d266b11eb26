"""What a scan of one model works with: its `DetectorState` row, and the worker-global cache of its
`ModelContext` (decrypted members, member index, calibration), replaced when the calibration, key or members change.

Member records are decrypted into memory for the training-proximity index and never written anywhere.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import numpy as np

from monitor.detection.detectors import ModelContext
from monitor.detection.space import detection_features
from monitor.models import DetectorState, RegisteredModel
from monitor.platform.crypto import data_fernet
from monitor.trail.chain import canonical_json


class ScanError(RuntimeError):
    """A model cannot be scanned or calibrated yet: no calibration, or too little traffic to calibrate on."""


def state_for(model: RegisteredModel, *, only_pk: bool = False) -> DetectorState:
    """The model's detector state, created (with a fresh fingerprint key) on first use. `only_pk` reads none of
    the JSON fields."""
    rows = DetectorState.objects.filter(model=model)
    state = (rows.only("pk") if only_pk else rows).first()
    if state is None:
        state, _ = DetectorState.objects.get_or_create(
            model=model, defaults={"fingerprint_key": data_fernet().encrypt(os.urandom(32))})
    return state


# A worker keeps the contexts of the models it scanned last (decrypted members, their index, the calibration), so
# a scan's fixed cost is paid once, not every minute; any change of calibration, key or member data replaces it.
CONTEXT_CACHE_SIZE = 8
_contexts: OrderedDict[int, tuple[tuple, ModelContext]] = OrderedDict()


def model_context(model: RegisteredModel, state: DetectorState) -> ModelContext:
    """The model's context for `state`'s calibration: the cached one while nothing it was built from changed."""
    stats = state.calibration.get("_context")
    if not stats:
        raise ScanError(f"detectors for {model.slug} are not calibrated yet")
    members = model.datasets.filter(kind="members").only("pk", "sha256").first()
    key = (state.calibrated_at, hashlib.sha256(canonical_json(state.calibration).encode()).hexdigest(),
           bytes(state.fingerprint_key), members.pk if members else None, members.sha256 if members else None)
    cached = _contexts.get(model.pk)
    if cached is not None and cached[0] == key:
        _contexts.move_to_end(model.pk)
        return cached[1]
    arrays = model.datasets.get(pk=members.pk).load() if members is not None else None  # in memory only
    context = ModelContext(
        feature_means=np.asarray(stats["feature_means"]), feature_stds=np.asarray(stats["feature_stds"]),
        n_classes=len(model.class_labels), fingerprint_key=data_fernet().decrypt(bytes(state.fingerprint_key)),
        members=detection_features(arrays.X, model.schema) if arrays is not None else None,
        member_ids=arrays.record_ids if arrays is not None else None,
        calibration={k: v for k, v in state.calibration.items() if k != "_context"},
    )
    _contexts[model.pk] = (key, context)
    while len(_contexts) > CONTEXT_CACHE_SIZE:
        _contexts.popitem(last=False)
    return context
