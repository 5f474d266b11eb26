"""The security trail: an append-only, hash-chained record of what users and the system did (logins,
registrations, alert actions, audits requested, evidence exported). Its tables keep their first names."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from monitor.trail.chain import (
    GENESIS,
    KEY_ID_HEX,
    canonical_json,
    check_chain,
    check_head,
    entry_hash,
    head_statement,
)


class TrailHead(models.Model):
    """One row, locked while appending, so concurrent writers extend the chain one at a time."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS)

    class Meta:
        db_table = "audits_auditchainhead"


class TrailEntry(models.Model):
    """Append-only record of a security-relevant action. `hash` = SHA-256(prev_hash + canonical JSON)."""

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_name = models.CharField(max_length=150)
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        db_table = "audits_auditlogentry"
        ordering = ["seq"]
        verbose_name = "security trail entry"
        verbose_name_plural = "security trail entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_type}:{self.object_id}"

    def payload(self) -> dict:
        """What the hash covers (everything but the hash itself and the nullable actor link)."""
        return {
            "seq": self.seq, "at": self.at.isoformat(), "actor": self.actor_name, "ip": self.ip, "action": self.action,
            "object_type": self.object_type, "object_id": self.object_id, "before": self.before, "after": self.after,
        }

    def compute_hash(self) -> str:
        return entry_hash(self.prev_hash, self.payload())

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RuntimeError("security trail entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("security trail entries are append-only")

    @classmethod
    def record(cls, *, action: str, actor: Any = None, actor_name: str | None = None, ip: str | None = None,
               obj: Any = None, object_type: str = "", object_id: str = "",
               before: Any = None, after: Any = None) -> TrailEntry:
        """Append one entry to the chain (inside the caller's transaction when there is one)."""
        if obj is not None:
            object_type = object_type or obj._meta.label_lower
            object_id = object_id or str(obj.pk)
        name = actor_name or (actor.get_username() if actor is not None and actor.is_authenticated else "system")
        with transaction.atomic():
            head, _ = TrailHead.objects.select_for_update().get_or_create(pk=1)
            entry = cls(
                seq=head.seq + 1, at=timezone.now(), actor=actor if getattr(actor, "pk", None) else None,
                actor_name=name[:150], ip=ip, action=action, object_type=object_type[:64], object_id=str(object_id)[:64],
                before=json.loads(canonical_json(before)) if before is not None else None,
                after=json.loads(canonical_json(after)) if after is not None else None,
                prev_hash=head.hash,
            )
            entry.hash = entry.compute_hash()
            entry.save()
            TrailHead.objects.filter(pk=1).update(seq=entry.seq, hash=entry.hash)
        return entry


class SignedTrailHead(models.Model):
    """The trail's head at one moment, signed with the evidence key (monitor.trail.signing, hourly). The owner of
    the database can rebuild a keyless chain and its head; not these signatures. Append-only like the trail."""

    seq = models.PositiveBigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    signature = models.CharField(max_length=128)  # Ed25519, hex, over head_statement()
    key_sha256 = models.CharField(max_length=64)  # monitor.trail.chain.key_fingerprint of the signing key

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"trail head #{self.seq} signed {self.signed_at:%Y-%m-%d %H:%M:%S}"

    def statement(self) -> bytes:
        return head_statement(seq=self.seq, hash=self.hash, signed_at=self.signed_at.isoformat())

    @property
    def key_id(self) -> str:
        """monitor.trail.chain.key_id of the key that signed it."""
        return self.key_sha256[:KEY_ID_HEX]

    def as_json(self) -> dict:
        """The signed head as an evidence bundle and the log carry it: everything needed to check it offline."""
        return {"seq": self.seq, "hash": self.hash, "signed_at": self.signed_at.isoformat(),
                "signature": self.signature, "key_sha256": self.key_sha256, "key_id": self.key_id, "algorithm": "Ed25519",
                "statement": self.statement().decode()}

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RuntimeError("signed trail heads are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("signed trail heads are append-only")


class LoginFailureWindowQuerySet(models.QuerySet):
    def fold(self, *, now: datetime) -> int:
        """Write the count of every window closed by `now` (its minute is over) to the trail and delete the
        windows; returns the entries written. A window with one failure and at most one lockout needs none: the
        entries its first failure and first lockout wrote say it all. Rows are locked, so two folds write a window
        once."""
        open_from = now.replace(second=0, microsecond=0)
        written = 0
        with transaction.atomic():
            for window in self.select_for_update().filter(minute__lt=open_from).order_by("minute", "address"):
                if window.failures > 1 or window.locked_out > 1:
                    TrailEntry.record(action="auth.login_failures", actor_name="anonymous", ip=window.address or None,
                                      after=window.summary())
                    written += 1
                window.delete()
        return written


class LoginFailureWindow(models.Model):
    """Failed logins from one address in one minute (monitor.trail.hooks): the first failure and the first lockout
    of the window are trail entries; the rest only count here until the window is folded into one more entry."""

    address = models.CharField(max_length=64, blank=True)  # "" when the request (and so the address) is unknown
    minute = models.DateTimeField()
    failures = models.PositiveIntegerField(default=0)
    locked_out = models.PositiveIntegerField(default=0)
    usernames = models.JSONField(default=list)  # the first hooks.USERNAMES_PER_WINDOW distinct names tried
    more_usernames = models.BooleanField(default=False)

    objects = LoginFailureWindowQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["address", "minute"], name="login_failure_window_unique")]

    def __str__(self) -> str:
        return f"{self.address or 'unknown address'} {self.minute:%Y-%m-%d %H:%M}: {self.failures} failed logins"

    def summary(self) -> dict[str, Any]:
        """The folded entry's `after`: how many failures and lockouts the minute had, and which usernames."""
        return {"minute": self.minute.isoformat(), "failures": self.failures, "locked_out": self.locked_out,
                "usernames": list(self.usernames), "more_usernames": self.more_usernames}


def verify_chain(entries: Any = None) -> tuple[bool, str]:
    """Walk the whole stored chain and compare its end with the head row; (False, reason naming the first broken
    entry or the missing end) or (True, summary). Given `entries`, only their chain is checked."""
    if entries is not None:
        return check_chain(entries)
    last = {"seq": 0, "hash": GENESIS}

    def walked() -> Any:
        for entry in TrailEntry.objects.order_by("seq").iterator():
            last["seq"], last["hash"] = entry.seq, entry.hash
            yield entry

    ok, message = check_chain(walked())
    if not ok:
        return ok, message
    head = TrailHead.objects.filter(pk=1).values_list("seq", "hash").first()
    at_head, head_message = check_head(last_seq=int(last["seq"]), last_hash=str(last["hash"]),
                                       head_seq=head[0] if head else None, head_hash=head[1] if head else GENESIS)
    return (True, message) if at_head else (False, head_message)
