"""The data key rotates (issue 27, low finding "one Fernet key without rotation"): DATA_ENCRYPTION_KEYS lists keys
newest first, the newest encrypts and any decrypts, and `rotate_data_key` re-encrypts every encrypted column with
the newest so that the older keys can be dropped."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.core.management import call_command
from django.db import connection, models

from audits.models import AuditRun, ExposureRanking, GateCandidate, HardenedArtifact, ReferenceCache
from monitor.models import DetectorState, NotificationChannel, ReferenceDataset
from monitor.models.reference_arrays import DatasetError
from monitor.platform.crypto import ENCRYPTED_COLUMNS, data_fernet
from monitor.trail.models import TrailEntry
from tests.factories import make_channel, make_model
from tests.workers import ROOT

KEY_A, KEY_B = Fernet.generate_key().decode(), Fernet.generate_key().decode()
SLACK_URL = "https://hooks.slack.invalid/services/T0001/B0002/rotatedSlackPath"
# Binary columns that are not secret: artifacts are the model as its owner uploaded it; logged vectors and the
# detectors' sketches are query data, bounded and never member records.
NOT_ENCRYPTED = {"monitor.ModelArtifact.data", "monitor.QueryLog.features", "monitor.QueryLog.outputs",
                 "monitor.ScannerState.data", "audits.GateCandidate.artifact_data"}


def store_one_of_everything() -> dict[str, bytes]:
    """A row in every encrypted column, under whatever key is configured now; what each holds in the clear."""
    model = make_model()
    run = AuditRun.objects.create(model=model, status="done")
    fernet = data_fernet()
    DetectorState.objects.update_or_create(model=model, defaults={"fingerprint_key": fernet.encrypt(b"k" * 32)})
    ReferenceCache.objects.create(model=model, key="cache", ciphertext=fernet.encrypt(b"reference outputs"))
    ExposureRanking.objects.create(run=run, attack="lira", n_members=3, ciphertext=fernet.encrypt(b"ranks"))
    HardenedArtifact.objects.create(run=run, candidate=0, sha256="0" * 64, size=5, ciphertext=fernet.encrypt(b"skops"))
    GateCandidate.objects.create(model=model, artifact_data=b"skops", artifact_format="skops", artifact_sha256="0" * 64,
                                 artifact_size=5, production_version=1, members_ciphertext=fernet.encrypt(b"own members"))
    webhook = make_channel(kind="webhook", target="https://collector.example.invalid/hook/rotatedHookPath")
    make_channel(kind="slack", target=SLACK_URL)
    return {"members": ReferenceDataset.objects.get(model=model, kind="members").load().X.tobytes(),
            "fingerprint": b"k" * 32, "cache": b"reference outputs", "ranks": b"ranks", "skops": b"skops",
            "whsec": webhook.new_secret.encode(), "slack": SLACK_URL.encode(), "candidate members": b"own members"}


def read_everything() -> dict[str, bytes]:
    """Every encrypted column read back through the configured keys (InvalidToken when none fits)."""
    fernet = data_fernet()
    return {"members": ReferenceDataset.objects.get(kind="members").load().X.tobytes(),
            "fingerprint": fernet.decrypt(bytes(DetectorState.objects.get().fingerprint_key)),
            "cache": fernet.decrypt(bytes(ReferenceCache.objects.get().ciphertext)),
            "ranks": fernet.decrypt(bytes(ExposureRanking.objects.get().ciphertext)),
            "skops": fernet.decrypt(bytes(HardenedArtifact.objects.get().ciphertext)),
            "whsec": NotificationChannel.objects.get(kind="webhook").signing_secret().encode(),
            "slack": NotificationChannel.objects.get(kind="slack").target.encode(),
            "candidate members": fernet.decrypt(bytes(GateCandidate.objects.get().members_ciphertext))}


@pytest.mark.django_db
def test_data_written_under_the_old_key_reads_once_a_new_key_is_put_in_front(settings):
    settings.DATA_ENCRYPTION_KEYS = [KEY_A]
    stored = store_one_of_everything()
    settings.DATA_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert read_everything() == stored
    # The newest key encrypts.
    assert Fernet(KEY_B.encode()).decrypt(data_fernet().encrypt(b"new")) == b"new"


@pytest.mark.django_db
def test_after_rotate_data_key_everything_reads_with_the_new_key_alone(settings):
    settings.DATA_ENCRYPTION_KEYS = [KEY_A]
    stored = store_one_of_everything()
    settings.DATA_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises((InvalidToken, DatasetError)):  # not yet: the rows are under A
        read_everything()
    settings.DATA_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    call_command("rotate_data_key", batch_size=1, stdout=open(os.devnull, "w"))  # noqa: SIM115
    settings.DATA_ENCRYPTION_KEYS = [KEY_B]
    assert read_everything() == stored


@pytest.mark.django_db
def test_rotation_is_recorded_once_with_counts_and_never_the_keys(settings):
    settings.DATA_ENCRYPTION_KEYS = [KEY_A]
    store_one_of_everything()
    settings.DATA_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    before = TrailEntry.objects.count()
    call_command("rotate_data_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    [entry] = TrailEntry.objects.filter(seq__gt=before)
    assert entry.action == "data_key.rotated" and entry.actor_name == "system"
    counts = entry.after["columns"]
    assert counts["monitor.ReferenceDataset.ciphertext"] == {"rotated": 2, "current": 0, "unreadable": 0}
    assert counts["monitor.NotificationChannel.target"] == {"rotated": 2, "current": 0, "unreadable": 0}
    assert counts["monitor.NotificationChannel.secret"] == {"rotated": 1, "current": 0, "unreadable": 0}
    assert sum(column["rotated"] for column in counts.values()) == 10 and entry.after["keys"] == 2
    text = str(entry.payload())
    assert KEY_A not in text and KEY_B not in text


@pytest.mark.django_db
def test_rotating_again_changes_nothing(settings):
    settings.DATA_ENCRYPTION_KEYS = [KEY_A]
    store_one_of_everything()
    settings.DATA_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    call_command("rotate_data_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    raw = {table: list(rows) for table, rows in raw_columns().items()}
    call_command("rotate_data_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert raw_columns() == raw
    again = TrailEntry.objects.filter(action="data_key.rotated").latest("seq")
    assert sum(column["rotated"] for column in again.after["columns"].values()) == 0
    assert sum(column["current"] for column in again.after["columns"].values()) == 10


@pytest.mark.django_db
def test_a_row_no_configured_key_opens_fails_the_command_and_is_left_as_it_was(settings):
    settings.DATA_ENCRYPTION_KEYS = [KEY_A]
    store_one_of_everything()
    settings.DATA_ENCRYPTION_KEYS = [KEY_B]  # A forgotten: nothing can be rotated
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_data_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    settings.DATA_ENCRYPTION_KEYS = [KEY_A]
    read_everything()
    with pytest.raises(InvalidToken):
        Fernet(KEY_B.encode()).decrypt(bytes(DetectorState.objects.get().fingerprint_key))


def raw_columns() -> dict[str, list]:
    found = {}
    with connection.cursor() as cursor:
        for column in ENCRYPTED_COLUMNS:
            label, field = column.rsplit(".", 1)
            model = apps.get_model(label)
            cursor.execute(f"SELECT {model._meta.get_field(field).column} FROM {model._meta.db_table} "  # noqa: S608
                           "ORDER BY 1")
            found[column] = [bytes(value) if not isinstance(value, str) else value for (value,) in cursor.fetchall()]
    return found


def test_every_binary_column_is_either_rotated_or_known_to_be_clear():
    binary = {f"{model._meta.label}.{field.name}" for model in apps.get_models() for field in model._meta.concrete_fields
              if isinstance(field, models.BinaryField)}
    assert binary - NOT_ENCRYPTED == {column for column in ENCRYPTED_COLUMNS
                                      if column != "monitor.NotificationChannel.target"}
    assert not NOT_ENCRYPTED & set(ENCRYPTED_COLUMNS)


# --- the setting ---------------------------------------------------------------------------------------------

def settings_in_subprocess(tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATA_ENCRYPTION_KEY", "DATA_ENCRYPTION_KEYS"}}
    clean.update(env, MONITOR_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="monitor.settings")
    script = ("import django; django.setup(); from django.conf import settings; "
              "print(len(settings.DATA_ENCRYPTION_KEYS), str(settings.DATA_ENCRYPTION_KEYS[0]))")
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=120)


def test_a_malformed_key_in_the_list_stops_the_start_naming_its_position(tmp_path):
    result = settings_in_subprocess(tmp_path, DATA_ENCRYPTION_KEYS=f"{KEY_B}, {KEY_A[:20]}")
    assert result.returncode != 0
    assert "DATA_ENCRYPTION_KEYS: key 2 of 2 must be a Fernet key" in result.stderr
    assert KEY_B not in result.stderr and KEY_A[:20] not in result.stderr


@pytest.mark.parametrize("raw", [f"{KEY_B},,{KEY_A}", f"{KEY_B},{KEY_B}", " , "], ids=["empty", "repeated", "blank"])
def test_an_empty_or_repeated_key_stops_the_start(tmp_path, raw):
    result = settings_in_subprocess(tmp_path, DATA_ENCRYPTION_KEYS=raw)
    assert result.returncode != 0 and "DATA_ENCRYPTION_KEYS: " in result.stderr
    assert KEY_B not in result.stderr


def test_the_list_is_read_newest_first(tmp_path):
    result = settings_in_subprocess(tmp_path, DATA_ENCRYPTION_KEYS=f" {KEY_B} , {KEY_A} ")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", KEY_B]


def test_a_single_data_encryption_key_is_still_accepted(tmp_path):
    result = settings_in_subprocess(tmp_path, DATA_ENCRYPTION_KEY=KEY_A)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", KEY_A]


def test_setting_both_the_key_and_the_list_stops_the_start(tmp_path):
    result = settings_in_subprocess(tmp_path, DATA_ENCRYPTION_KEY=KEY_A, DATA_ENCRYPTION_KEYS=f"{KEY_B},{KEY_A}")
    assert result.returncode != 0 and "not both" in result.stderr
