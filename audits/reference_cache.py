"""The reference-model cache: an audit's fitted reference models, encrypted, reused by the next audit of the same
model version and data (training them is most of an audit's time), and only the current version's kept."""
from __future__ import annotations

import hashlib
import io
import logging
from typing import Protocol

import numpy as np
from django.utils import timezone

from audits.attacks.base import REFERENCE_KINDS
from audits.attacks.reference import ReferenceModels
from audits.models import ReferenceCache
from monitor.models import RegisteredModel
from monitor.platform.crypto import data_fernet
from monitor.registry.artifacts import TRUSTED_SKOPS_TYPES, validate_trees

# Our own reference pipelines over raw values start with our function turning coded rows into the raw table
# (SklearnPredictor.reference_estimator): trusted in the cache we write, never in an uploaded artifact.
CACHE_TRUSTED_TYPES = TRUSTED_SKOPS_TYPES | {"monitor.platform.feature_schema.to_frame"}
# The reference models of an XGBoost or LightGBM target are the library's own classifiers, rebuilt by skops through
# their pickling state: trusted likewise only in the cache we write (an uploaded skops file with them is refused).
CACHE_TRUSTED_TYPES |= {"xgboost.core.Booster", "xgboost.sklearn.XGBClassifier", "lightgbm.basic.Booster",
                        "lightgbm.sklearn.LGBMClassifier", "collections.OrderedDict"}

log = logging.getLogger(__name__)


class CacheKeySource(Protocol):
    """What a cache key is made of besides the model: a run, or what a run would record (the privacy gate)."""

    data_sha256: dict
    config: dict


def cache_key(model: RegisteredModel, run: CacheKeySource, kind: str) -> str:
    """Everything that determines a run's reference models of `kind`: version, data hashes, stand-in, seed, counts."""
    parts = [str(model.version), kind, repr(sorted(run.data_sha256.items())), run.config.get("stand_in", ""),
             str(run.config.get("seed")), str(run.config.get("n_reference")), str(run.config.get("max_eval_records"))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def cache_keys(model: RegisteredModel, run: CacheKeySource) -> dict[str, str]:
    """The run's cache key of each reference kind."""
    return {kind: cache_key(model, run, kind) for kind in REFERENCE_KINDS}


def load_cached_references(model: RegisteredModel, key: str) -> ReferenceModels | None:
    """The cached reference models under `key`, or None (absent, or unusable and then retrained)."""
    import skops.io as sio

    row = ReferenceCache.objects.filter(model=model, key=key).first()
    if row is None:
        return None
    try:
        clear = data_fernet().decrypt(bytes(row.ciphertext))
        with np.load(io.BytesIO(clear), allow_pickle=False) as npz:
            blob = npz["models"].tobytes()
            untrusted = set(sio.get_untrusted_types(data=blob))
            if untrusted - CACHE_TRUSTED_TYPES:
                raise ValueError(f"untrusted types {sorted(untrusted - CACHE_TRUSTED_TYPES)}")
            models = sio.loads(blob, trusted=sorted(untrusted))
            for fitted in models:
                validate_trees(fitted, n_features=getattr(fitted, "n_features_in_", None))
            refs = ReferenceModels(models=tuple(models), pool_in=npz["pool_in"], target_in=npz["target_in"],
                                   seed=int(npz["seed"]), pool_fingerprint=str(npz["pool_fingerprint"]),
                                   target_fingerprint=str(npz["target_fingerprint"]))
    except Exception as exc:  # a stale or damaged cache entry is retrained, never trusted
        log.warning("reference cache %s for %s unusable (%s); retraining", key[:12], model.slug, type(exc).__name__)
        return None
    ReferenceCache.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return refs


def store_cached_references(model: RegisteredModel, key: str, refs: ReferenceModels) -> None:
    """Keep `refs` under `key`, encrypted (they derive from member data), and drop other versions' entries."""
    import skops.io as sio

    buffer = io.BytesIO()
    np.savez(buffer, models=np.frombuffer(sio.dumps(list(refs.models), compression=8), dtype=np.uint8),
             pool_in=refs.pool_in, target_in=refs.target_in, seed=refs.seed,
             pool_fingerprint=refs.pool_fingerprint, target_fingerprint=refs.target_fingerprint)
    ciphertext = data_fernet().encrypt(buffer.getvalue())
    ReferenceCache.objects.update_or_create(model=model, key=key, defaults={"ciphertext": ciphertext,
                                                                             "last_used_at": timezone.now()})
    # Keep the cache to the current version's entries.
    ReferenceCache.objects.filter(model=model).exclude(key__in=current_keys(model)).delete()


def current_keys(model: RegisteredModel) -> list[str]:
    """The cache keys of the model's latest run that recorded its data (what the next audit will look up)."""
    latest = model.audit_runs.exclude(data_sha256={}).order_by("-created_at").first()
    if latest is None:
        return []
    return list(cache_keys(model, latest).values())
