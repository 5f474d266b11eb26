"""The Ed25519 key that signs evidence bundles, from settings.EVIDENCE_SIGNING_KEY."""
from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def signing_key() -> Ed25519PrivateKey:
    """The Ed25519 key from settings.EVIDENCE_SIGNING_KEY (base64 of a 32-byte seed)."""
    try:
        # str(): on a localhost-only install the setting is a lazy string, generated on first use
        # (monitor/platform/local_secrets.py); b64decode would refuse the lazy object itself.
        seed = base64.b64decode(str(settings.EVIDENCE_SIGNING_KEY), validate=True)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("EVIDENCE_SIGNING_KEY must be base64 of 32 random bytes") from exc
    if len(seed) != 32:
        raise ImproperlyConfigured(f"EVIDENCE_SIGNING_KEY must decode to 32 bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_pem() -> bytes:
    """The public half of the signing key, as PEM (SubjectPublicKeyInfo): what auditors verify with."""
    return signing_key().public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
