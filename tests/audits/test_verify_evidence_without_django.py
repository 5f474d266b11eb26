"""An auditor verifies a bundle without Django: audits.evidence.verify imports and runs with Django poisoned,
passes an untouched bundle and names the file in which one byte was flipped."""
from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.db import transaction

from audits.evidence.keys import public_key_pem
from tests.factories import sample_run_bundle

ROOT = Path(__file__).resolve().parents[2]
# Prints the report's lines, then whether it passed, then every django module that got imported (none may).
SCRIPT = """
import sys
sys.modules["django"] = None  # any `import django...` now raises ImportError
from pathlib import Path
from audits.evidence.verify import verify_bundle
bundle, key = Path(sys.argv[1]), Path(sys.argv[2])
report = verify_bundle(bundle.read_bytes(), public_key_pem=key.read_bytes())
print("\\n".join(report.lines()))
print("VALID" if report.ok else "INVALID")
print("django modules:", sorted(name for name, module in sys.modules.items()
                                if module is not None and (name == "django" or name.startswith("django."))))
"""


@pytest.fixture(scope="module")
def bundle(django_db_setup, django_db_blocker) -> bytes:
    """A real bundle (an audit, an acknowledged alert), built with Django; the database is rolled back after."""
    with django_db_blocker.unblock(), transaction.atomic():
        data = sample_run_bundle(slug="offline")
        transaction.set_rollback(True)
    return data


def verify_without_django(bundle: bytes, tmp_path: Path) -> list[str]:
    (tmp_path / "bundle.zip").write_bytes(bundle)
    (tmp_path / "key.pem").write_bytes(public_key_pem())
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "bundle.zip"), str(tmp_path / "key.pem")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "django modules: []"
    return lines[:-1]


def flip_one_byte(bundle: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    content = files[name]
    middle = len(content) // 2
    files[name] = content[:middle] + bytes([content[middle] ^ 0x01]) + content[middle + 1:]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file_name, file_content in files.items():
            archive.writestr(file_name, file_content)
    return buffer.getvalue()


def test_an_untouched_bundle_verifies_with_django_unavailable(bundle, tmp_path):
    lines = verify_without_django(bundle, tmp_path)
    assert lines[-1] == "VALID", lines
    assert "OK    public_key.pem: is the given public key" in lines
    # The chain verifies through the hash-only links that stand for other entries (here: the analyst's account).
    assert any(line.startswith("OK    audit_log.jsonl chain: ") and "links to entries about other models" in line
               for line in lines), lines
    assert any(line.startswith("OK    controls.json annex: ") for line in lines), lines


@pytest.mark.parametrize("name", ["audit.json", "audit_log.jsonl", "controls.json"])
def test_a_flipped_byte_is_named_by_its_file_with_django_unavailable(bundle, tmp_path, name):
    lines = verify_without_django(flip_one_byte(bundle, name), tmp_path)
    assert lines[-1] == "INVALID", lines
    assert any(line.startswith(f"FAIL  {name}: SHA-256 ") and "the file was changed" in line for line in lines), lines
    assert not any(line.startswith("FAIL  MANIFEST.sig") for line in lines), lines  # the manifest itself is intact
