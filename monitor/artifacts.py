"""Model artifacts: recognise, load safely and predict.

Pickle and joblib files are refused outright (loading one runs arbitrary code). skops files are
loaded with an explicit trusted-type list; types skops cannot vouch for are named in the error.
Tree structures, which scikit-learn indexes without bounds checks, are validated before use.
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
import urllib.error
import urllib.request
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from monitor import outbound

# Types skops reports as untrusted that we reviewed. Tree and TreePredictor hold raw node
# indices, so every instance is bounds-checked by `_validate_trees` after loading.
TRUSTED_SKOPS_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
})


class ArtifactError(ValueError):
    """An artifact we refuse or cannot use; the message says why."""


class Predictor(Protocol):
    classes: list[str]
    n_features: int | None

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


def sniff_format(data: bytes) -> str:
    """'skops' or 'onnx'; raises ArtifactError for pickles, joblib files and anything else."""
    if not data:
        raise ArtifactError("the artifact is empty")
    if data[:1] == b"\x80" and data[1:2] in {bytes([p]) for p in range(2, 6)}:
        raise ArtifactError(
            "this is a pickle/joblib file; they are refused because loading one executes code. "
            "Save the model with skops.io.dump (or convert it to ONNX) and upload that"
        )
    zlib_header = len(data) > 1 and data[0] == 0x78 and (data[0] * 256 + data[1]) % 31 == 0
    if zlib_header or data[:2] == b"ZF" or data[:3] in (b"\x1f\x8b\x08", b"BZh") or data[:4] in (b"\xfd7zX", b"\x28\xb5\x2f\xfd"):
        raise ArtifactError(
            "this looks like a compressed joblib/pickle file; it is refused because loading one executes code. "
            "Save the model with skops.io.dump (or convert it to ONNX) and upload that"
        )
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile as exc:
            raise ArtifactError(f"the artifact is a damaged ZIP file: {exc}") from exc
        if "schema.json" in names:
            return "skops"
        raise ArtifactError("the artifact is a ZIP file but not a skops file (no schema.json)")
    try:
        import onnx

        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises several types; none of them executes anything
        raise ArtifactError(
            "unrecognised artifact: expected a skops file (.skops) or an ONNX model (.onnx)"
        ) from exc
    if not proto.graph.node:
        raise ArtifactError("unrecognised artifact: expected a skops file (.skops) or an ONNX model (.onnx)")
    return "onnx"


class SklearnPredictor:
    def __init__(self, estimator: Any) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise ArtifactError(f"{type(estimator).__name__} has no predict_proba; a classifier with probabilities is needed")
        if not hasattr(estimator, "classes_"):
            raise ArtifactError(f"{type(estimator).__name__} is not fitted (no classes_)")
        self.estimator = estimator
        self.classes = [str(c) for c in estimator.classes_]
        self.n_features = getattr(estimator, "n_features_in_", None)
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        # Fitted on named columns? Give it a frame so scikit-learn does not warn on every call.
        if self.feature_names is not None:
            import pandas as pd

            X = pd.DataFrame(X, columns=self.feature_names)
        return np.asarray(self.estimator.predict_proba(X), dtype=np.float64)


def load_skops(data: bytes) -> SklearnPredictor:
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ArtifactError(f"the skops file cannot be read: {exc}") from exc
    refused = sorted(set(untrusted) - TRUSTED_SKOPS_TYPES)
    if refused:
        raise ArtifactError(
            "the skops file contains types we do not trust, so it was not loaded: " + ", ".join(refused)
        )
    try:
        estimator = sio.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise ArtifactError(f"the skops file cannot be loaded: {exc}") from exc
    _validate_trees(estimator, n_features=getattr(estimator, "n_features_in_", None))
    return SklearnPredictor(estimator)


def _validate_trees(obj: Any, *, n_features: int | None, depth: int = 0) -> None:
    """Bounds-check every tree inside an estimator: a crafted file could point nodes out of range."""
    from sklearn.tree._tree import Tree

    if depth > 20:
        return
    if isinstance(obj, Tree):
        n = obj.node_count
        left, right, feature = obj.children_left, obj.children_right, obj.feature
        leaf = left == -1
        ids = np.arange(n)
        ok = (
            len(left) == n and len(right) == n and len(feature) == n
            and np.all((right == -1) == leaf)
            and np.all((left[~leaf] > ids[~leaf]) & (left[~leaf] < n))
            and np.all((right[~leaf] > ids[~leaf]) & (right[~leaf] < n))
            and np.all((feature[~leaf] >= 0) & (feature[~leaf] < (n_features or obj.n_features)))
            and obj.value.shape[0] == n
        )
        if not ok:
            raise ArtifactError("the skops file contains a malformed decision tree (node indices out of range)")
        return
    cls_name = type(obj).__name__
    if cls_name == "TreePredictor":
        nodes = obj.nodes
        n = len(nodes)
        inner = nodes["is_leaf"] == 0
        ok = (
            np.all((nodes["left"][inner] > 0) & (nodes["left"][inner] < n))
            and np.all((nodes["right"][inner] > 0) & (nodes["right"][inner] < n))
            and (n_features is None or np.all(nodes["feature_idx"][inner] < n_features))
        )
        if not ok:
            raise ArtifactError("the skops file contains a malformed gradient-boosting tree (node indices out of range)")
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _validate_trees(item, n_features=n_features, depth=depth + 1)
    elif isinstance(obj, np.ndarray) and obj.dtype == object:
        for item in obj.ravel():
            _validate_trees(item, n_features=n_features, depth=depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("sklearn"):
        for value in vars(obj).values():
            _validate_trees(value, n_features=n_features, depth=depth + 1)


class OnnxPredictor:
    def __init__(self, data: bytes) -> None:
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ArtifactError(f"onnxruntime cannot load the ONNX model: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ArtifactError(f"the ONNX model has {len(inputs)} inputs; one float tensor input is supported")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.n_features = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        outputs = self.session.get_outputs()
        probability = [o for o in outputs if "prob" in o.name.lower()]
        self.output_name = (probability or outputs[-1:])[0].name
        self.classes: list[str] = []

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        result = self.session.run([self.output_name], {self.input_name: np.asarray(X, dtype=np.float32)})[0]
        if isinstance(result, list):  # skl2onnx's ZipMap: one {class: probability} dict per row
            keys = sorted(result[0].keys()) if result else []
            if not self.classes:
                self.classes = [str(k) for k in keys]
            return np.array([[row[k] for k in keys] for row in result], dtype=np.float64)
        return np.asarray(result, dtype=np.float64)


@dataclass
class EndpointPredictor:
    """A black-box model behind HTTP: POST {"instances": [[...]]} -> {"probabilities": [[...]]}."""

    url: str
    classes: list[str]
    n_features: int | None
    timeout: float = 10.0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.url.startswith(("http://", "https://")):
            raise ArtifactError("the model endpoint must be an http:// or https:// URL")
        body = json.dumps({"instances": np.asarray(X, dtype=np.float64).tolist()}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
        try:
            with outbound.opener().open(request, timeout=self.timeout) as response:
                payload = json.loads(response.read(64 * 1024 * 1024))
        except outbound.OutboundBlocked as exc:
            raise ArtifactError(f"the model endpoint is not allowed: {exc}") from exc
        except (urllib.error.URLError, TimeoutError, OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"the model endpoint did not answer usefully: {exc}") from exc
        proba = np.asarray(payload.get("probabilities") if isinstance(payload, dict) else None, dtype=np.float64)
        if proba.ndim != 2 or proba.shape[0] != len(X) or (self.classes and proba.shape[1] != len(self.classes)):
            raise ArtifactError("the model endpoint's answer has the wrong shape (expected one probability row per instance)")
        return proba


def load_artifact(data: bytes, fmt: str | None = None) -> Predictor:
    fmt = fmt or sniff_format(data)
    if fmt == "skops":
        return load_skops(data)
    if fmt == "onnx":
        return OnnxPredictor(data)
    raise ArtifactError(f"unknown artifact format {fmt!r}")


_cache: OrderedDict[str, Predictor] = OrderedDict()
_cache_lock = threading.Lock()


def cached_predictor(*, sha256: str, fmt: str, load_bytes: Any, capacity: int = 8) -> Predictor:
    """Loaded predictors keyed by artifact hash: the gateway must not reload per request."""
    with _cache_lock:
        if sha256 in _cache:
            _cache.move_to_end(sha256)
            return _cache[sha256]
    data = load_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactError("the stored artifact does not match its recorded SHA-256")
    predictor = load_artifact(data, fmt)
    with _cache_lock:
        _cache[sha256] = predictor
        while len(_cache) > capacity:
            _cache.popitem(last=False)
    return predictor
