"""Bad model files (pickles and joblib, untrusted skops types, ZIP bombs, ONNX) through the form and the command;
see tests/registry/uploads/__init__.py for what every refusal must leave behind."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from monitor.models import RegisteredModel
from monitor.registry.artifacts import UNRECOGNISED
from tests.factories import (
    make_data,
)
from tests.registry.uploads.helpers import (
    EMPTY,
    MiB,
    Touch,
    command,
    deflate_run,
    good_skops,
    onnx_bytes,
    onnx_graph,
    peak_memory,
    refusal,
    skops_members,
    skops_rebuilt,
    skops_with_attribute,
    stored,
)

pytestmark = pytest.mark.django_db


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
    ("touch", "tests.registry.uploads.helpers.Touch"),
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
    ("text", UNRECOGNISED),
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
    assert errors == {"artifact": [UNRECOGNISED]}
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

