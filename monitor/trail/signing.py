"""The trail's head signed with the evidence key, so that a chain rebuilt or cut by whoever owns the database is
found: every hour the head, when it moved, is signed and kept (SignedTrailHead) and written to the log; evidence
bundles carry the latest. The key is the evidence bundles' Ed25519 key (settings.EVIDENCE_SIGNING_KEY); each head
names it by its key id (monitor.trail.chain.key_id), so a head signed before a key change says which key it needs."""
from __future__ import annotations

import base64
import logging

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from monitor.trail.chain import GENESIS, check_chain, head_statement, key_fingerprint, key_id
from monitor.trail.models import SignedTrailHead, TrailEntry, TrailHead

logger = logging.getLogger(__name__)


class TrailBroken(Exception):
    """The trail does not chain from the last signed head to its head: signing it would vouch for the damage."""


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


def sign_trail_head() -> SignedTrailHead | None:
    """Sign and keep the current head if it moved since the last signed one (None if it did not).

    The entries since the last signed head are checked first (a signed head vouches for the chain up to it), so
    each hour reads only what was appended in it. A duplicated beat tick signs nothing twice: seq is unique.
    """
    head = TrailHead.objects.filter(pk=1).first()
    latest = SignedTrailHead.objects.order_by("-seq").first()
    if latest is not None and (head is None or latest.seq > head.seq
                               or (latest.seq == head.seq and latest.hash != head.hash)):
        where = f"#{head.seq}" if head is not None else "gone"
        raise TrailBroken(f"the trail's head ({where}) is not at or past the last signed head #{latest.seq}")
    if head is None or head.seq == 0 or (latest is not None and latest.seq == head.seq):
        return None
    first_seq, anchor = (latest.seq + 1, latest.hash) if latest is not None else (1, GENESIS)
    ok, message = check_chain(TrailEntry.objects.filter(seq__gte=first_seq, seq__lte=head.seq).order_by("seq").iterator(),
                              first_seq=first_seq, anchor=anchor)
    last = TrailEntry.objects.filter(seq=head.seq).values_list("hash", flat=True).first()
    if not ok or last != head.hash:
        raise TrailBroken(f"trail head #{head.seq} not signed: {message if not ok else 'its entry does not match it'}")
    key = signing_key()
    signed_at = timezone.now()
    signature = key.sign(head_statement(seq=head.seq, hash=head.hash, signed_at=signed_at.isoformat()))
    try:
        with transaction.atomic():
            signed = SignedTrailHead.objects.create(seq=head.seq, hash=head.hash, signed_at=signed_at,
                                                    signature=signature.hex(),
                                                    key_sha256=key_fingerprint(key.public_key()))
    except IntegrityError:
        return None  # another tick signed this head first
    # A copy outside the database: whoever can rewrite the tables cannot rewrite the shipped logs.
    logger.info("trail head signed: seq=%s hash=%s signed_at=%s key=%s key_id=%s signature=%s", signed.seq,
                signed.hash, signed.signed_at.isoformat(), signed.key_sha256, signed.key_id, signed.signature)
    return signed


def check_signed_heads() -> tuple[bool, str]:
    """Each kept signed head: its signature by the evidence key, and that the trail still holds its (seq, hash).
    (False, one line per failing head, naming it) or (True, summary)."""
    heads = list(SignedTrailHead.objects.order_by("seq"))
    if not heads:
        return True, "no signed heads yet"
    public_key = signing_key().public_key()
    fingerprint = key_fingerprint(public_key)
    stored = dict(TrailEntry.objects.filter(seq__in=[h.seq for h in heads]).values_list("seq", "hash"))
    problems = []
    for signed in heads:
        name = f"signed head #{signed.seq} (signed {signed.signed_at:%Y-%m-%d %H:%M:%S} UTC)"
        if signed.key_sha256 != fingerprint:
            problems.append(f"{name}: signed with key {signed.key_id}, not the evidence key {key_id(public_key)} "
                            "(check it with the public key of that id)")
            continue
        try:
            public_key.verify(bytes.fromhex(signed.signature), signed.statement())
        except (InvalidSignature, ValueError):
            problems.append(f"{name}: its signature does not verify (the row was edited)")
            continue
        if signed.seq not in stored:
            problems.append(f"{name}: the trail has no entry #{signed.seq}: it was truncated below a signed head")
        elif stored[signed.seq] != signed.hash:
            problems.append(f"{name}: entry #{signed.seq} is not the entry that was signed: the trail was rebuilt")
    if problems:
        return False, "\n".join(problems)
    return True, f"{len(heads)} signed head(s) verified, the latest #{heads[-1].seq}"
