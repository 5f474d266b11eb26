"""Verifying an evidence bundle: an untouched one passes; every kind of tampering fails, naming the file
or the audit-log entry, through verify_bundle and through `manage.py verify_evidence`."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from audits.evidence.format import key_id
from audits.evidence.keys import public_key_pem, signing_key
from audits.evidence.verify import verify_bundle
from tests.factories import sample_run_bundle

# The bundle is built once against the database; the checks themselves need none.
pytestmark = pytest.mark.django_db

EXPORTED_FILES = ["report.pdf", "report.html", "audit.json", "metrics.csv", "roc.csv", "alerts.csv", "audit_log.jsonl",
                  "public_key.pem", "README.txt", "controls.json", "controls.csv", "candidates.json",
                  "controls/owasp-aisvs-c11.json"]
ANNEX = "controls.json annex"


@pytest.fixture(scope="module")
def bundle(django_db_setup, django_db_blocker) -> bytes:
    """One real bundle (an audit, an acknowledged alert), built once; the database is rolled back after."""
    with django_db_blocker.unblock(), transaction.atomic():
        data = sample_run_bundle(slug="verified")
        transaction.set_rollback(True)
    return data


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def changed(data: bytes, name: str, change: Callable[[bytes], bytes]) -> bytes:
    files = unzip(data)
    files[name] = change(files[name])
    return rezip(files)


def flip_middle_byte(content: bytes) -> bytes:
    middle = len(content) // 2
    return content[:middle] + bytes([content[middle] ^ 0x01]) + content[middle + 1:]


def resigned(files: dict[str, bytes], key: Ed25519PrivateKey) -> bytes:
    """What someone holding `key` would ship: every hash in the manifest recomputed, its key id named, the manifest
    re-signed."""
    manifest = json.loads(files["MANIFEST.json"])
    manifest["signature"]["key_id"] = key_id(key.public_key())
    manifest["files"] = {name: {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
                         for name, content in files.items() if name not in ("MANIFEST.json", "MANIFEST.sig")}
    files["MANIFEST.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    files["MANIFEST.sig"] = key.sign(files["MANIFEST.json"])
    return rezip(files)


def pem_of(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def failed_items(report) -> set[str]:
    return {check.item for check in report.failures}


def log_lines(files: dict[str, bytes]) -> list[dict]:
    return [json.loads(line) for line in files["audit_log.jsonl"].decode().splitlines()]


def with_log_lines(files: dict[str, bytes], lines: list[dict]) -> dict[str, bytes]:
    files["audit_log.jsonl"] = "".join(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n" for line in lines).encode()
    return files


def test_an_untouched_bundle_verifies_with_its_own_and_with_the_trusted_key(bundle):
    report = verify_bundle(bundle)
    assert report.ok, report.lines()
    trusted = verify_bundle(bundle, public_key_pem=public_key_pem())
    assert trusted.ok, trusted.lines()
    items = [check.item for check in trusted.checks]
    assert set(EXPORTED_FILES) <= set(items) and "MANIFEST.sig" in items and "audit_log.jsonl chain" in items
    assert "is the given public key" in next(c.message for c in trusted.checks if c.item == "public_key.pem")


@pytest.mark.parametrize("name", EXPORTED_FILES)
def test_a_changed_byte_is_named_by_its_file(bundle, name):
    report = verify_bundle(changed(bundle, name, flip_middle_byte), public_key_pem=public_key_pem())
    assert not report.ok
    assert name in failed_items(report), report.lines()
    assert "MANIFEST.sig" not in failed_items(report)  # the manifest itself is intact: it is the file that changed


def test_a_byte_changed_inside_the_zip_itself_is_named(bundle):
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        info = archive.getinfo("audit.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    position = start + info.compress_size // 2
    damaged = bundle[:position] + bytes([bundle[position] ^ 0xFF]) + bundle[position + 1:]
    report = verify_bundle(damaged)
    assert "audit.json" in failed_items(report), report.lines()


def test_a_missing_file_is_named(bundle):
    files = unzip(bundle)
    del files["roc.csv"]
    report = verify_bundle(rezip(files))
    [failure] = report.failures
    assert failure.item == "roc.csv" and "missing" in failure.message


def test_an_extra_file_is_named(bundle):
    files = unzip(bundle)
    files["notes.txt"] = b"added later"
    report = verify_bundle(rezip(files))
    [failure] = report.failures
    assert failure.item == "notes.txt" and "extra file" in failure.message


def test_a_missing_signature_is_named(bundle):
    files = unzip(bundle)
    del files["MANIFEST.sig"]
    assert failed_items(verify_bundle(rezip(files))) == {"MANIFEST.sig"}


def test_an_edited_manifest_no_longer_matches_its_signature(bundle):
    # A consistent forgery: metrics.csv changed and its hash updated in the manifest, without the key.
    files = unzip(bundle)
    files["metrics.csv"] = files["metrics.csv"].replace(b"rmia", b"RMIA", 1)
    manifest = json.loads(files["MANIFEST.json"])
    manifest["files"]["metrics.csv"] = {"sha256": hashlib.sha256(files["metrics.csv"]).hexdigest(),
                                        "size": len(files["metrics.csv"])}
    files["MANIFEST.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    report = verify_bundle(rezip(files))
    [failure] = report.failures
    assert failure.item == "MANIFEST.sig" and "MANIFEST.json was changed" in failure.message


def test_a_bundle_signed_by_another_key_fails_against_the_trusted_key(bundle):
    forger = Ed25519PrivateKey.generate()
    files = unzip(bundle)
    files["audit.json"] = files["audit.json"].replace(b'"passed": false', b'"passed": true')
    files["public_key.pem"] = pem_of(forger)
    forged = resigned(files, forger)
    assert verify_bundle(forged).ok  # intact by its own key: integrity alone does not prove origin
    report = verify_bundle(forged, public_key_pem=public_key_pem())
    assert failed_items(report) == {"public_key.pem", "MANIFEST.sig", "key id"}, report.lines()


def test_the_wrong_trusted_key_is_named(bundle):
    other = Ed25519PrivateKey.generate()
    report = verify_bundle(bundle, public_key_pem=pem_of(other))
    assert failed_items(report) == {"public_key.pem", "MANIFEST.sig", "key id"}
    assert "is not the given public key" in next(c.message for c in report.failures if c.item == "public_key.pem")
    assert next(c.message for c in report.failures if c.item == "key id") == (
        f"the bundle was signed with key {key_id(signing_key().public_key())}; the given public key is "
        f"{key_id(other.public_key())}")


def test_an_edited_log_line_is_named_by_its_entry(bundle):
    files = unzip(bundle)
    lines = log_lines(files)
    target = next(line for line in lines if line.get("action") == "alert.acknowledged")
    target["actor"] = "someone-else"
    report = verify_bundle(rezip(with_log_lines(files, lines)))
    assert failed_items(report) == {"audit_log.jsonl", "audit_log.jsonl chain"}, report.lines()
    chain = [c.message for c in report.failures if c.item == "audit_log.jsonl chain"]
    assert any(f"entry #{target['seq']}" in message and "differ from the payload" in message for message in chain)


def test_a_rehashed_log_edit_signed_with_the_real_key_still_breaks_the_chain(bundle):
    # Even the holder of the signing key cannot rewrite history: the next entry no longer links.
    files = unzip(bundle)
    lines = log_lines(files)
    index = next(i for i, line in enumerate(lines) if line.get("action") == "alert.acknowledged")
    forged = lines[index]
    forged["after"] = {**forged["after"], "note": "nothing to see"}
    forged["payload"] = json.dumps({k: forged[k] for k in ("seq", "at", "actor", "ip", "action", "object_type",
                                                           "object_id", "before", "after")},
                                   sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    forged["hash"] = hashlib.sha256((forged["prev_hash"] + forged["payload"]).encode()).hexdigest()
    report = verify_bundle(resigned(with_log_lines(files, lines), signing_key()), public_key_pem=public_key_pem())
    [failure] = report.failures
    assert failure.item == "audit_log.jsonl chain"
    assert f"(entry #{lines[index + 1]['seq']}): prev_hash does not match the hash of entry #{forged['seq']}" in failure.message


def test_a_deleted_log_line_is_named(bundle):
    files = unzip(bundle)
    lines = log_lines(files)
    removed = lines.pop(1)
    report = verify_bundle(resigned(with_log_lines(files, lines), signing_key()))
    messages = [c.message for c in report.failures if c.item == "audit_log.jsonl chain"]
    assert any(f"follows entry #{removed['seq'] - 1}" in message for message in messages), report.lines()


def test_a_segment_that_does_not_end_with_its_export_fails(bundle):
    files = unzip(bundle)
    lines = log_lines(files)[:-1]
    manifest = json.loads(files["MANIFEST.json"])
    manifest["audit_log"].update(last_seq=lines[-1]["seq"], count=len(lines), head_hash=lines[-1]["hash"])
    files["MANIFEST.json"] = json.dumps(manifest).encode()
    report = verify_bundle(resigned(with_log_lines(files, lines), signing_key()))
    [failure] = report.failures
    assert "is not this export's evidence.exported entry" in failure.message


def test_the_command_prints_one_line_per_check_and_passes(bundle, tmp_path, capsys):
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle)
    key = tmp_path / "key.pem"
    key.write_bytes(public_key_pem())
    call_command("verify_evidence", str(path), "--public-key", str(key))
    out = capsys.readouterr().out
    assert out.count("OK  ") == len(verify_bundle(bundle).checks) + 1  # + the public-key match line
    assert "report.pdf: SHA-256 and size" in out and "evidence bundle OK" in out


@pytest.mark.parametrize(("tamper", "named"), [
    (lambda data: changed(data, "report.pdf", flip_middle_byte), "report.pdf"),
    (lambda data: rezip({k: v for k, v in unzip(data).items() if k != "alerts.csv"}), "alerts.csv"),
    (lambda data: rezip({**unzip(data), "payload.exe": b"MZ"}), "payload.exe"),
])
def test_the_command_fails_naming_what_failed(bundle, tmp_path, tamper, named):
    path = tmp_path / "bundle.zip"
    path.write_bytes(tamper(bundle))
    with pytest.raises(CommandError, match=f"evidence bundle FAILED .*{named}"):
        call_command("verify_evidence", str(path))


def test_the_command_names_a_wrong_key_and_an_unreadable_bundle(bundle, tmp_path):
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle)
    other = tmp_path / "other.pem"
    other.write_bytes(pem_of(Ed25519PrivateKey.generate()))
    with pytest.raises(CommandError, match="public_key.pem: is not the given public key"):
        call_command("verify_evidence", str(path), "--public-key", str(other))
    with pytest.raises(CommandError, match="cannot read the bundle"):
        call_command("verify_evidence", str(tmp_path / "absent.zip"))
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(CommandError, match="bundle: not a readable ZIP"):
        call_command("verify_evidence", str(tmp_path / "junk.zip"))


def test_an_annex_whose_status_was_raised_is_refused_even_signed_with_the_real_key(bundle):
    files = unzip(bundle)
    annex = json.loads(files["controls.json"])
    row = next(row for row in annex["rows"] if row["status"] == "not met")
    row["status"] = "met"
    files["controls.json"] = json.dumps(annex).encode()
    report = verify_bundle(resigned(files, signing_key()), public_key_pem=public_key_pem())
    assert failed_items(report) == {ANNEX}, report.lines()
    [failure] = report.failures
    assert f"({row['control']}): status 'met', but its checks make it 'not met'" in failure.message


def test_an_annex_with_a_status_outside_the_vocabulary_is_named_by_its_row(bundle):
    files = unzip(bundle)
    annex = json.loads(files["controls.json"])
    annex["rows"][3]["checks"][0]["status"] = "compliant"
    files["controls.json"] = json.dumps(annex).encode()
    report = verify_bundle(resigned(files, signing_key()))
    messages = [c.message for c in report.failures if c.item == ANNEX]
    assert any(m.startswith(f"row 3 ({annex['rows'][3]['control']}): status ['compliant']") for m in messages), messages


def test_a_mapping_file_changed_after_the_annex_was_computed_is_named(bundle):
    files = unzip(bundle)
    mapping = json.loads(files["controls/owasp-ml04-2023.json"])
    mapping["controls"][0]["clause"] = "ML04:2023 (loosened)"
    files["controls/owasp-ml04-2023.json"] = json.dumps(mapping).encode()
    report = verify_bundle(resigned(files, signing_key()))
    [failure] = report.failures
    assert failure.item == ANNEX and "is not that of controls/owasp-ml04-2023.json in the bundle" in failure.message


def test_a_controls_csv_that_disagrees_with_the_annex_is_named(bundle):
    files = unzip(bundle)
    files["controls.csv"] = files["controls.csv"].replace(b",not met,", b",met,", 1)
    report = verify_bundle(resigned(files, signing_key()))
    [failure] = report.failures
    assert failure.item == ANNEX and "controls.csv does not list the same controls and statuses" in failure.message


def test_a_bundle_without_its_annex_is_refused_but_one_from_before_the_annex_verifies(bundle):
    files = unzip(bundle)
    annexed = ("controls.json", "controls.csv", "candidates.json")
    stripped = {name: content for name, content in files.items()
                if name not in annexed and not name.startswith("controls/")}
    report = verify_bundle(resigned(dict(stripped), signing_key()))
    assert failed_items(report) == set(annexed), report.lines()
    manifest = json.loads(stripped["MANIFEST.json"])
    manifest["format"] = "mi-monitor-evidence/1"
    stripped["MANIFEST.json"] = json.dumps(manifest).encode()
    report = verify_bundle(resigned(stripped, signing_key()))
    assert report.ok, report.lines()
    assert "none: a bundle of format mi-monitor-evidence/1" in next(c.message for c in report.checks
                                                                     if c.item == "controls annex")
