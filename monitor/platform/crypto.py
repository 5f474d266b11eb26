"""The Fernet key member data and everything derived from it are encrypted with (DATA_ENCRYPTION_KEY): reference
datasets, cached reference-model outputs, the scanners' fingerprint keys."""
from __future__ import annotations

from cryptography.fernet import Fernet
from django.conf import settings


def data_fernet() -> Fernet:
    # str(): on a localhost-only install the setting is a lazy string, generated on first use
    # (monitor/platform/local_secrets.py); a key set in the environment was checked when settings loaded.
    return Fernet(str(settings.DATA_ENCRYPTION_KEY).encode())
