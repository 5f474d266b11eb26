"""The Ed25519 key that signs evidence bundles, from settings.EVIDENCE_SIGNING_KEY, and its key id. The trail's
signed heads use the same key, so it is read in monitor.trail.signing (infrastructure, which may not import
audits)."""
from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from monitor.trail.chain import key_id
from monitor.trail.signing import signing_key as signing_key


def public_key_id() -> str:
    """The signing key's id (monitor.trail.chain.key_id): what bundles and signed heads name their key by, and what
    a published public key should be listed under."""
    return key_id(signing_key().public_key())


def public_key_pem() -> bytes:
    """The public half of the signing key, as PEM (SubjectPublicKeyInfo): what auditors verify with."""
    return signing_key().public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
