"""The Fernet keys member data, everything derived from it and the channels' secrets are encrypted with
(DATA_ENCRYPTION_KEYS, newest first): the newest encrypts, any of them decrypts, and `rotate_data_key` re-encrypts
every column in ENCRYPTED_COLUMNS with the newest so that an older key can then be dropped."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models.functions import Cast

# Every column data_fernet() encrypts, as "app_label.Model.field". A binary column holds the Fernet token; a text
# column holds SEALED_PREFIX + the token (tests/platform/test_key_rotation.py checks no binary column is missed).
ENCRYPTED_COLUMNS = (
    "monitor.ReferenceDataset.ciphertext",
    "monitor.DetectorState.fingerprint_key",
    "monitor.NotificationChannel.secret",
    "monitor.NotificationChannel.target",
    "audits.ReferenceCache.ciphertext",
    "audits.ExposureRanking.ciphertext",
    "audits.HardenedArtifact.ciphertext",
    "audits.GateCandidate.members_ciphertext",
)
# Marks an encrypted value in a text column, so that one column can hold both (a channel's email addresses stay
# readable) and a row written before encryption still reads.
SEALED_PREFIX = "fernet:"
GENERATE_HINT = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


def parse_data_keys(raw: str, *, name: str) -> list[str]:
    """A comma-separated list of Fernet keys, newest first; ImproperlyConfigured naming the position of an empty,
    malformed or repeated key (never the key itself: the message reaches logs)."""
    keys = [part.strip() for part in raw.split(",")]
    for position, key in enumerate(keys, start=1):
        where = f"{name}: key {position} of {len(keys)}"
        if not key:
            raise ImproperlyConfigured(f"{where} is empty (a stray comma?)")
        check_fernet_key(key, where=where)
        if key in keys[:position - 1]:
            raise ImproperlyConfigured(f"{where} repeats key {keys.index(key) + 1}")
    return keys


def check_fernet_key(key: str, *, where: str) -> None:
    """ImproperlyConfigured unless `key` is a Fernet key; `where` names the setting (and the key's position)."""
    try:
        if len(base64.urlsafe_b64decode(key.encode())) == 32:
            return
    except (ValueError, binascii.Error):
        pass
    raise ImproperlyConfigured(f"{where} must be a Fernet key: 32 bytes, url-safe base64 ({GENERATE_HINT})")


def data_fernet() -> MultiFernet:
    """Encrypts with the newest key, decrypts with any configured one."""
    # str(): on a localhost-only install the one key is a lazy string, generated on first use
    # (monitor/platform/local_secrets.py); keys set in the environment were checked when settings loaded.
    return MultiFernet([Fernet(str(key).encode()) for key in settings.DATA_ENCRYPTION_KEYS])


def newest_fernet() -> Fernet:
    return Fernet(str(settings.DATA_ENCRYPTION_KEYS[0]).encode())


def seal_text(value: str) -> str:
    """A text column's value, encrypted."""
    return SEALED_PREFIX + data_fernet().encrypt(value.encode()).decode()


def open_text(stored: str) -> str:
    """A text column's value in the clear (a value stored before it was encrypted passes as it is)."""
    if not stored.startswith(SEALED_PREFIX):
        return stored
    return data_fernet().decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()


# --- rotation --------------------------------------------------------------------------------------------------

@dataclass
class ColumnRotation:
    rotated: int = 0      # re-encrypted with the newest key
    current: int = 0      # already under the newest key
    unreadable: int = 0   # opened by no configured key: left as it was

    def as_dict(self) -> dict[str, int]:
        return {"rotated": self.rotated, "current": self.current, "unreadable": self.unreadable}


def rotate_column(column: str, *, batch_size: int) -> ColumnRotation:
    """Re-encrypt one column of ENCRYPTED_COLUMNS with the newest key, `batch_size` rows per transaction.

    Each row is written by a conditional UPDATE on the value read, so a row rewritten meanwhile (already under the
    newest key) is left to its writer. A QuerySet.update sends no signal: the trail gets one entry for the whole
    rotation, not a channel change per row. Running it again finds every row current."""
    label, field_name = column.rsplit(".", 1)
    model = apps.get_model(label)
    field = model._meta.get_field(field_name)
    text = isinstance(field, models.TextField)
    # The stored value, not what the field makes of it (a channel's target field opens its own).
    raw = Cast(field_name, output_field=models.TextField() if text else models.BinaryField())
    keys: Sequence[Fernet] = [Fernet(str(key).encode()) for key in settings.DATA_ENCRYPTION_KEYS]
    newest, every = keys[0], MultiFernet(list(keys))
    counts, last_pk = ColumnRotation(), None
    while True:
        rows = model._default_manager.order_by("pk").annotate(stored=raw)
        if last_pk is not None:
            rows = rows.filter(pk__gt=last_pk)
        batch = list(rows.values_list("pk", "stored")[:batch_size])
        if not batch:
            return counts
        with transaction.atomic():
            for pk, stored in batch:
                token = _token(stored, text=text)
                if token is None:  # nothing encrypted in it: an empty secret, an email channel's addresses
                    continue
                try:
                    newest.decrypt(token)
                    counts.current += 1
                    continue
                except InvalidToken:
                    pass
                try:
                    fresh = every.rotate(token)
                except InvalidToken:
                    counts.unreadable += 1
                    continue
                value = SEALED_PREFIX + fresh.decode() if text else fresh
                counts.rotated += model._default_manager.filter(pk=pk, **{field_name: stored}).update(
                    **{field_name: value})
        last_pk = batch[-1][0]


def _token(stored: str | bytes | memoryview | None, *, text: bool) -> bytes | None:
    """The Fernet token in a stored value; None for an empty one or a text value kept in the clear."""
    if text:
        return stored.removeprefix(SEALED_PREFIX).encode() if isinstance(stored, str) and \
            stored.startswith(SEALED_PREFIX) else None
    return bytes(stored) if stored else None
