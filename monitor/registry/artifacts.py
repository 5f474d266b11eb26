"""Model artifacts: recognise, load safely and predict.

Pickle and joblib files are refused outright (loading one runs arbitrary code). skops files are
loaded with an explicit trusted-type list; types skops cannot vouch for are named in the error.
Tree structures, which scikit-learn indexes without bounds checks, are validated before use.
A skops file is a ZIP: its directory, names, sizes and compression are checked (`check_zip`) before
anything inflates a byte of it. ONNX models may not point at external weight files. XGBoost and LightGBM models
in their own formats are recognised, checked and loaded by `boosters.py`.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import struct
import threading
import urllib.error
import urllib.request
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from monitor.platform import outbound
from monitor.platform.feature_schema import FeatureSchema
from monitor.registry.boosters import BOOSTER_FORMATS, BoosterError, load_booster, sniff_booster

# Types skops reports as untrusted that we reviewed. Tree and TreePredictor hold raw node
# indices, so every instance is bounds-checked by `validate_trees` after loading.
TRUSTED_SKOPS_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    # What pipelines over raw tables hold. An encoder's or imputer's dtype is rebuilt by skops from an empty array
    # it loads without pickle, and that array's own type is checked as a node of its own; a partial's function,
    # arguments and keywords are nodes of their own too, so trusting the wrapper trusts nothing inside it.
    "numpy.dtype",
    "functools.partial",
    # Named numpy functions a FunctionTransformer may call (numpy's ufuncs, such as log1p, skops trusts itself);
    # check_array is what HistGradientBoosting keeps for categories read from the frame's dtypes.
    "numpy.clip",
    "numpy.nan_to_num",
    "numpy.round",
    "sklearn.utils.validation.check_array",
})


class ArtifactError(ValueError):
    """An artifact we refuse or cannot use; the message says why."""


# ZIP (skops) limits, see `check_zip`. The unpacked total is capped by ARTIFACT_MAX_BYTES, like the upload.
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_DIRECTORY_BYTES = 4 * 2**20  # zipfile builds one ZipInfo per directory entry, before any check of ours
MAX_COMPRESSION_RATIO = 200  # deflate tops out near 1032:1; model arrays and skops' JSON stay far below 200:1
RATIO_CHECKED_FROM = 2**20  # members smaller than this may compress as well as they like
_INFLATE_STEP = 2**20
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_END_OF_DIRECTORY = struct.Struct("<4s4H2LH")
_UNSAFE_NAME = re.compile(r"^/|^[A-Za-z]:|\\|\x00|(^|/)\.\.(/|$)")
_COMPRESSION_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "deflate64", 93: "zstandard"}


def check_zip(data: bytes, *, max_unpacked: int | None = None) -> list[str]:
    """The member names of a ZIP that is safe to read in memory; ArtifactError naming the problem otherwise.

    `zipfile` trusts a member's declared size only after the fact: `ZipFile.read` inflates a deflated member
    in one call (bzip2 and LZMA members with no bound at all) and then cuts the result to the declared size,
    so a 1 MB member can take gigabytes whatever it declares. So before skops (or anything) reads a member:
    the directory must be small; every member stored or deflated, unencrypted, with a plain relative name;
    the declared sizes must add up to at most `max_unpacked` (ARTIFACT_MAX_BYTES), no big member compressed
    more than MAX_COMPRESSION_RATIO:1; and each deflated member is inflated here in 1 MiB steps, counting and
    discarding, to prove it is no bigger than it declares.
    """
    if max_unpacked is None:
        from django.conf import settings

        max_unpacked = settings.ARTIFACT_MAX_BYTES
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - _END_OF_DIRECTORY.size - 0xFFFF))
    if end < 0 or end + _END_OF_DIRECTORY.size > len(data):
        raise ArtifactError("the artifact is a damaged ZIP file: it has no end-of-directory record")
    _, _, _, _, listed, directory_size, _, _ = _END_OF_DIRECTORY.unpack_from(data, end)
    if listed == 0xFFFF or directory_size == 0xFFFFFFFF:
        raise ArtifactError("the artifact is a ZIP64 file; a skops file is a plain ZIP file of at most 65,535 members")
    if listed > MAX_ZIP_MEMBERS or directory_size > MAX_ZIP_DIRECTORY_BYTES:
        raise ArtifactError(f"the ZIP file has {listed:,} members in a {directory_size:,}-byte directory; at most "
                            f"{MAX_ZIP_MEMBERS:,} members and {MAX_ZIP_DIRECTORY_BYTES:,} bytes are accepted")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError, struct.error) as exc:
        raise ArtifactError(f"the artifact is a damaged ZIP file: {exc}") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ArtifactError(f"the ZIP file has {len(infos):,} members; at most {MAX_ZIP_MEMBERS:,} are accepted")
    names: set[str] = set()
    unpacked = 0
    for info in infos:
        name = info.orig_filename
        if _UNSAFE_NAME.search(name):
            raise ArtifactError(f"the ZIP member {name!r} has an unsafe name (an absolute path, a drive, a backslash "
                                "or '..'); the file was not read")
        if name in names:
            raise ArtifactError(f"the ZIP member {name!r} appears more than once")
        names.add(name)
        if info.flag_bits & 0x1:
            raise ArtifactError(f"the ZIP member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = _COMPRESSION_NAMES.get(info.compress_type, "unknown")
            raise ArtifactError(f"the ZIP member {name!r} uses compression method {info.compress_type} ({method}); "
                                "only stored and deflated members are accepted")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise ArtifactError(f"the artifact is a damaged ZIP file: stored member {name!r} declares "
                                f"{info.file_size:,} bytes but holds {info.compress_size:,}")
        unpacked += info.file_size
        if unpacked > max_unpacked:
            raise ArtifactError(f"the ZIP file unpacks to more than {max_unpacked:,} bytes (ARTIFACT_MAX_BYTES): its members "
                                f"declare {unpacked:,} bytes up to {name!r} ({info.file_size:,}); a ZIP bomb is refused unread")
        if info.file_size > RATIO_CHECKED_FROM and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ArtifactError(f"the ZIP member {name!r} is compressed {ratio:,.0f}:1 ({info.compress_size:,} bytes to "
                                f"{info.file_size:,}); more than {MAX_COMPRESSION_RATIO}:1 is refused as a ZIP bomb")
    for info in infos:
        if info.compress_type == zipfile.ZIP_DEFLATED:
            _check_inflated_size(data, info)
    return sorted(names)


def _check_inflated_size(data: bytes, info: zipfile.ZipInfo) -> None:
    """Inflate one member step by step, keeping nothing: refuse it once it passes its declared size."""
    offset = info.header_offset
    if offset < 0 or offset + _LOCAL_HEADER.size > len(data):
        raise ArtifactError(f"the artifact is a damaged ZIP file: member {info.orig_filename!r} is outside the file")
    header = _LOCAL_HEADER.unpack_from(data, offset)
    if header[0] != b"PK\x03\x04":
        raise ArtifactError(f"the artifact is a damaged ZIP file: member {info.orig_filename!r} has no local header")
    start = offset + _LOCAL_HEADER.size + header[9] + header[10]
    compressed = memoryview(data)[start:start + info.compress_size]
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    produced = 0
    try:
        for position in range(0, len(compressed), _INFLATE_STEP):
            pending = compressed[position:position + _INFLATE_STEP]
            while pending:
                produced += len(inflater.decompress(pending, _INFLATE_STEP))
                if produced > info.file_size:
                    break
                pending = inflater.unconsumed_tail
            if produced > info.file_size:
                break
        else:
            produced += len(inflater.flush())
    except zlib.error as exc:
        raise ArtifactError(f"the artifact is a damaged ZIP file: member {info.orig_filename!r}: {exc}") from exc
    if produced > info.file_size:
        raise ArtifactError(f"the ZIP member {info.orig_filename!r} inflates to more than the {info.file_size:,} bytes "
                            "it declares; a ZIP bomb is refused")


class Predictor(Protocol):
    classes: list[str]
    n_features: int | None

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


PICKLE_REFUSED = ("this is a pickle/joblib file; they are refused because loading one executes code. "
                  "Save the model with skops.io.dump (or convert it to ONNX; an XGBoost or LightGBM booster with its "
                  "own save_model, as .json, .ubj or .txt) and upload that")
UNRECOGNISED = ("unrecognised artifact: expected a skops file (.skops), an ONNX model (.onnx), an XGBoost model "
                "(.json, .ubj) or a LightGBM model (.txt)")
# skops rebuilds a booster inside a pipeline through the library's own unpickling state (Booster.__setstate__ parses
# bytes before any check of ours could read them), so that shape stays refused; this says what to upload instead.
BOOSTER_IN_SKOPS = (". An XGBoost or LightGBM booster inside a skops file is not accepted: register the booster alone, "
                    "saved with its own save_model (.json, .ubj or .txt), with reference CSVs in the columns the "
                    "booster takes (after your preprocessing), or convert the whole pipeline to ONNX")


def _is_text_pickle(data: bytes) -> bool:
    """A protocol 0 or 1 pickle (no PROTO header): its opcodes parse, without running, up to a final STOP."""
    import pickletools

    if not data.endswith(b"."):
        return False
    try:
        for count, (opcode, _, position) in enumerate(pickletools.genops(data)):
            if opcode.name == "STOP":
                return position == len(data) - 1
            if count >= 100_000:
                return True  # 100,000 well-formed opcodes and a final STOP byte: a pickle (refused either way)
    except Exception:  # not a pickle; genops only parses
        return False
    return False


def sniff_format(data: bytes) -> str:
    """'skops', 'onnx' or a booster format (boosters.BOOSTER_FORMATS); ArtifactError for pickles, joblib files and
    anything else."""
    if not data:
        raise ArtifactError("the artifact is empty")
    if data[:1] == b"\x80" and data[1:2] in {bytes([p]) for p in range(2, 6)} or _is_text_pickle(data):
        raise ArtifactError(PICKLE_REFUSED)
    zlib_header = len(data) > 1 and data[0] == 0x78 and (data[0] * 256 + data[1]) % 31 == 0
    if zlib_header or data[:2] == b"ZF" or data[:3] in (b"\x1f\x8b\x08", b"BZh") or data[:4] in (b"\xfd7zX", b"\x28\xb5\x2f\xfd"):
        raise ArtifactError(
            "this looks like a compressed joblib/pickle file; it is refused because loading one executes code. "
            "Save the model with skops.io.dump (or convert it to ONNX) and upload that"
        )
    if data[:4] == b"PK\x03\x04":
        names = check_zip(data)
        if "schema.json" in names:
            return "skops"
        raise ArtifactError("the artifact is a ZIP file but not a skops file (no schema.json)")
    booster_format = sniff_booster(data)  # XGBoost JSON / UBJSON, LightGBM text: by content, nothing unpickled
    if booster_format is not None:
        return booster_format
    try:
        import onnx

        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises several types; none of them executes anything
        raise ArtifactError(UNRECOGNISED) from exc
    if not proto.graph.node:
        raise ArtifactError(UNRECOGNISED)
    for tensor in _onnx_tensors(proto):
        if tensor.data_location == tensor.EXTERNAL:
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
            raise ArtifactError(f"the ONNX model keeps tensor {tensor.name!r} in an external file ({location!r}); external "
                                "data is refused: save the model with its weights inside the .onnx file")
    return "onnx"


def _onnx_tensors(proto: Any):
    """Every tensor of an ONNX model: initializers and node attributes, in subgraphs and functions too."""

    def of_nodes(nodes):
        for node in nodes:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("sparse_tensor"):
                    yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
                for sparse in attribute.sparse_tensors:
                    yield from (sparse.values, sparse.indices)
                if attribute.HasField("g"):
                    yield from of_graph(attribute.g)
                for graph in attribute.graphs:
                    yield from of_graph(graph)

    def of_graph(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        yield from of_nodes(graph.node)

    yield from of_graph(proto.graph)
    for function in proto.functions:
        yield from of_nodes(function.node)


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
        self.schema: FeatureSchema | None = None

    def for_schema(self, schema: FeatureSchema) -> SklearnPredictor:
        """This predictor, reading coded rows as `schema`'s raw values (categories as their text, missing as NaN),
        as the pipeline was trained. The fitted estimator is shared, not copied."""
        view = copy.copy(self)
        view.schema = schema if schema.categorical else None  # numbers alone (NaN for missing) go in as an array
        return view

    def reference_estimator(self) -> Any:
        """An unfitted copy of the whole model for the audit's reference models, taking coded rows: a pipeline over
        raw values gets a first step turning them back into its raw table (monitor.platform.feature_schema.to_frame,
        saved by skops as a named function), so every reference model trains the team's preprocessing too."""
        from sklearn.base import clone
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer

        from monitor.platform.feature_schema import to_frame

        estimator = clone(self.estimator)
        if self.schema is None:
            return estimator
        raw_rows = ("raw_rows", FunctionTransformer(to_frame, kw_args=self.schema.frame_spec()))
        steps = list(estimator.steps) if isinstance(estimator, Pipeline) else [("model", estimator)]
        return Pipeline([raw_rows, *steps])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities for coded rows (a float matrix) or for a frame of raw values."""
        import pandas as pd

        if not isinstance(X, pd.DataFrame):
            if self.schema is not None:
                X = self.schema.to_frame(X)
                if self.feature_names is None:  # fitted on an array: the same values, by position
                    X = X.to_numpy(dtype=object)
            elif self.feature_names is not None:
                # Fitted on named columns: give it a frame so scikit-learn does not warn on every call.
                X = pd.DataFrame(X, columns=self.feature_names)
        return np.asarray(self.estimator.predict_proba(X), dtype=np.float64)


def load_skops(data: bytes) -> SklearnPredictor:
    import skops.io as sio

    check_zip(data)  # also here: a stored artifact is loaded again, by hash, without sniff_format
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ArtifactError(f"the skops file cannot be read: {exc}") from exc
    refused = sorted(set(untrusted) - TRUSTED_SKOPS_TYPES)
    if refused:
        raise ArtifactError(
            "the skops file contains types we do not trust, so it was not loaded: " + ", ".join(refused)
            + (BOOSTER_IN_SKOPS if any(name.startswith(("xgboost.", "lightgbm.")) for name in refused) else "")
        )
    try:
        estimator = sio.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise ArtifactError(f"the skops file cannot be loaded: {exc}") from exc
    validate_trees(estimator, n_features=getattr(estimator, "n_features_in_", None))
    return SklearnPredictor(estimator)


MAX_OBJECT_DEPTH = 64  # nesting of a loaded estimator (pipelines in pipelines, lists, dicts): past it, refused


def validate_trees(obj: Any, *, n_features: int | None, depth: int = 0) -> None:
    """Bounds-check every tree inside a loaded estimator: scikit-learn's compiled code indexes nodes, features and
    category bitsets without checks, so a crafted file could point them anywhere. Walks every attribute, list,
    tuple, dict and object array, however the trees are nested; past MAX_OBJECT_DEPTH levels the file is refused
    rather than left partly unchecked."""
    from sklearn.tree._tree import Tree

    if depth > MAX_OBJECT_DEPTH:
        raise ArtifactError(f"the skops file nests objects more than {MAX_OBJECT_DEPTH} levels deep; it was not loaded")
    if isinstance(obj, Tree):
        _check_tree(obj, n_features=n_features)
        return
    if type(obj).__name__ == "TreePredictor" and type(obj).__module__.startswith("sklearn."):
        _check_tree_predictor(obj, n_features=n_features)
        return
    if isinstance(obj, str | bytes | int | float | bool | type(None) | np.generic):
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for item in obj.ravel():
                validate_trees(item, n_features=n_features, depth=depth + 1)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            validate_trees(key, n_features=n_features, depth=depth + 1)
            validate_trees(value, n_features=n_features, depth=depth + 1)
        return
    if isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            validate_trees(item, n_features=n_features, depth=depth + 1)
        return
    if hasattr(obj, "__dict__"):
        # A step inside a pipeline sees its own input width (a forest after a one-hot encoder sees more columns than
        # the raw table has), which scikit-learn checks each input against before its trees read it.
        own = getattr(obj, "n_features_in_", None) if type(obj).__module__.startswith("sklearn") else None
        for value in vars(obj).values():
            validate_trees(value, n_features=own if isinstance(own, int) else n_features, depth=depth + 1)


def _check_tree(tree: Any, *, n_features: int | None) -> None:
    n = tree.node_count
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    leaf = left == -1
    ids = np.arange(n)
    width = n_features if n_features is not None else tree.n_features
    arrays = (left, right, feature, tree.threshold, tree.n_node_samples, tree.impurity,
              getattr(tree, "missing_go_to_left", left))
    ok = (
        n >= 1 and all(len(array) == n for array in arrays)
        and np.all((right == -1) == leaf)
        and np.all((left[~leaf] > ids[~leaf]) & (left[~leaf] < n))
        and np.all((right[~leaf] > ids[~leaf]) & (right[~leaf] < n))
        and np.all((feature[~leaf] >= 0) & (feature[~leaf] < width))
        and 0 < tree.n_features and (n_features is None or tree.n_features <= max(n_features, 1))
        and tree.value.shape[0] == n
    )
    if not ok:
        raise ArtifactError("the skops file contains a malformed decision tree (node indices out of range)")


def _check_tree_predictor(predictor: Any, *, n_features: int | None) -> None:
    nodes = predictor.nodes
    n = len(nodes)
    inner = nodes["is_leaf"] == 0
    categorical = inner & (nodes["is_categorical"] == 1)
    bitsets = [getattr(predictor, name, None) for name in ("raw_left_cat_bitsets", "binned_left_cat_bitsets")]
    ok = (
        n >= 1
        and np.all((nodes["left"][inner] > 0) & (nodes["left"][inner] < n))
        and np.all((nodes["right"][inner] > 0) & (nodes["right"][inner] < n))
        and np.all(nodes["feature_idx"][inner] >= 0)
        and (n_features is None or np.all(nodes["feature_idx"][inner] < n_features))
        and all(array is not None and array.ndim == 2 and array.shape[1] == 8 and
                np.all(nodes["bitset_idx"][categorical] < array.shape[0]) for array in bitsets)
    )
    if not ok:
        raise ArtifactError("the skops file contains a malformed gradient-boosting tree (node or category bitset "
                            "indices out of range)")


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
    if fmt in BOOSTER_FORMATS:
        try:
            return load_booster(data, fmt)
        except BoosterError as exc:
            raise ArtifactError(str(exc)) from exc
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
