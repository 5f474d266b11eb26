"""Real bad inputs, built byte by byte, and the paths a user takes to upload them."""
from __future__ import annotations

import functools
import html
import io
import os
import re
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from monitor.models import ModelArtifact, ReferenceDataset, RegisteredModel
from monitor.trail.models import TrailEntry
from tests.factories import (
    csv_bytes,
    make_data,
    make_user,
    skops_bytes,
)

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


def stored(upload_dir: Path) -> dict:
    return {
        "models": RegisteredModel.objects.count(), "artifacts": ModelArtifact.objects.count(),
        "datasets": ReferenceDataset.objects.count(),
        "registrations logged": TrailEntry.objects.filter(action="model.registered").count(),
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

