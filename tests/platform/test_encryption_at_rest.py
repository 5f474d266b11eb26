"""Member records are encrypted at rest: their values never appear in the stored bytes."""
from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from monitor.models import ReferenceDataset
from monitor.models.reference_arrays import DatasetError, decrypt_arrays
from monitor.registry.registration import Upload, register_model
from tests.factories import csv_bytes, make_data, skops_bytes

pytestmark = pytest.mark.django_db

# Distinctive values that would be easy to spot in clear text or as float bytes.
SECRET_VALUES = [123456.789012, -98765.4321, 31415.9265]


def test_member_values_do_not_appear_in_the_raw_table_bytes():
    X, y = make_data(seed=1)
    X[:3, 1] = SECRET_VALUES
    members_csv = csv_bytes(X, y)
    register_model(slug="enc", name="Enc", label_column="label", artifact=Upload(skops_bytes()),
                   members=Upload(members_csv), nonmembers=Upload(csv_bytes(*make_data(seed=2))))
    table = ReferenceDataset._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ciphertext FROM {table} WHERE kind = %s", ["members"])  # noqa: S608
        [(raw,)] = cursor.fetchall()
    raw = bytes(raw)
    assert len(raw) > 1000
    needles = [members_csv[:200]]
    for value in SECRET_VALUES:
        needles += [repr(value).encode(), np.float64(value).tobytes(), np.float32(value).tobytes()]
    for needle in needles:
        assert needle not in raw
    # Yet the key recovers them exactly.
    arrays = decrypt_arrays(raw)
    assert np.allclose(arrays.X[:3, 1], SECRET_VALUES)


def test_a_wrong_key_gives_a_clear_error(settings):
    register_model(slug="enc", name="Enc", label_column="label", artifact=Upload(skops_bytes()),
                   members=Upload(csv_bytes(*make_data(seed=1))), nonmembers=Upload(csv_bytes(*make_data(seed=2))))
    from cryptography.fernet import Fernet

    settings.DATA_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DatasetError, match="none of DATA_ENCRYPTION_KEYS is the key"):
        ReferenceDataset.objects.get(kind="members").load()
