"""The Fernet key member data and everything derived from it are encrypted with (DATA_ENCRYPTION_KEY): reference
datasets, cached reference-model outputs, the scanners' fingerprint keys."""
from __future__ import annotations

from cryptography.fernet import Fernet
from django.conf import settings


def data_fernet() -> Fernet:
    return Fernet(settings.DATA_ENCRYPTION_KEY.encode())
