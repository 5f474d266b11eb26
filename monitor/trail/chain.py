"""The hash chain of the security trail, on plain values (no Django): the web app appends with it, and an
auditor's verifier (audits/evidence/verify.py) checks an exported segment with the same code.

Each entry's hash = SHA-256(previous entry's hash + canonical JSON of its payload); the first entry chains
to GENESIS. Editing, removing or reordering any entry breaks every hash after it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Protocol

GENESIS = "0" * 64


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
