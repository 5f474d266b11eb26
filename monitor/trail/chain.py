"""The hash chain of the security trail, on plain values (no Django): the web app appends with it, and an
auditor's verifier (audits/evidence/verify.py) checks an exported segment with the same code.

Each entry's hash = SHA-256(previous entry's hash + canonical JSON of its payload); the first entry chains
to GENESIS. Editing, removing or reordering any entry breaks every hash after it. Removing entries from the end
breaks nothing in the chain itself: the head row names that, and a head signed with the evidence key (kept out
of the owner's reach in evidence bundles and the logs) names a trail rebuilt or cut below it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64
HEAD_FORMAT = "mi-monitor-trail-head/1"
KEY_ID_HEX = 16  # a key id's length: 64 bits of the key's SHA-256, enough to tell an organisation's keys apart


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(prev_hash: str, payload: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(payload)).encode()).hexdigest()


class Link(Protocol):
    seq: int
    prev_hash: str
    hash: str

    def payload(self) -> dict[str, Any]: ...


def check_chain(entries: Iterable[Link], *, first_seq: int = 1, anchor: str = GENESIS) -> tuple[bool, str]:
    """Walk the chain from `first_seq` (whose prev_hash must be `anchor`); (False, the first broken entry)
    or (True, a summary)."""
    previous, expected_seq, count = anchor, first_seq, 0
    for entry in entries:
        if entry.seq != expected_seq:
            return False, f"entry #{expected_seq} is missing (next is #{entry.seq})"
        if entry.prev_hash != previous:
            return False, f"entry #{entry.seq}: prev_hash does not match the hash of entry #{entry.seq - 1}"
        if entry_hash(entry.prev_hash, entry.payload()) != entry.hash:
            return False, f"entry #{entry.seq}: its content does not match its hash (edited after it was written)"
        previous, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    return True, f"{count} entries, chain intact"


def check_head(*, last_seq: int, last_hash: str, head_seq: int | None, head_hash: str) -> tuple[bool, str]:
    """The chain's last entry against the head row (None: no head row). A chain intact to its end can still
    have lost its end; the head, moved forward under a lock with every append, remembers where it was."""
    if head_seq is None:
        if last_seq == 0:
            return True, "no entries, no head"
        return False, f"the trail ends at entry #{last_seq} but has no head row: the head was deleted"
    if last_seq < head_seq:
        ends = f"ends at entry #{last_seq}" if last_seq else "is empty"
        return False, f"the trail {ends} but its head says #{head_seq}: entries were removed (truncated)"
    if last_seq > head_seq:
        return False, f"the trail goes on to entry #{last_seq} but its head says #{head_seq}: the head was moved back"
    if last_hash != head_hash:
        return False, f"entry #{last_seq}'s hash is not the head's hash: the trail or its head was rewritten"
    return True, f"ends at its head (#{head_seq})"


def head_statement(*, seq: int, hash: str, signed_at: str) -> bytes:
    """The exact bytes a signed trail head's Ed25519 signature covers (the web app signs them, verify_audit_log
    and an auditor's bundle verifier check them)."""
    return canonical_json({"format": HEAD_FORMAT, "seq": seq, "hash": hash, "signed_at": signed_at}).encode()


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex: what a signed head records of its key."""
    return hashlib.sha256(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()


def key_id(key: Ed25519PublicKey) -> str:
    """The key id bundles and signed heads carry: the first 16 hex characters of key_fingerprint. It tells a verifier
    which published key to use after the signing key has changed; the signature still decides."""
    return key_fingerprint(key)[:KEY_ID_HEX]
