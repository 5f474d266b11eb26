"""Every change to what decides who may do what and where alerts go, written to the trail from the model layer, so
the admin, a shell, a management command and the API are all seen: tokens, notification channels, users (flags,
password, groups = roles, permissions), groups, lockout resets (django-axes attempts), registered models with their
artifacts and datasets, and deletes of evidence (alerts, audit runs, findings).

Secrets are never written: a token's hash, a password and a webhook signing secret show only that they changed; a
channel's secret URL shows its scheme and host (where alerts go, not the key to post there).

One entry per change: a writer that records its own, richer entry marks its work `recorded_by_caller()`, and a
delete that cascades from a model or a user is summed up in that one's entry instead of a row each. A
QuerySet.update() sends no signal: the few that touch these tables (enable_channel, Channel.disable, a token's
last_used_at) record their own entry or change nothing of note.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Model, QuerySet
from django.db.models.signals import m2m_changed, post_save, pre_delete, pre_save
from django.utils import timezone

from monitor.models import (
    ApiToken,
    ModelArtifact,
    NotificationChannel,
    ReferenceDataset,
    RegisteredModel,
    TrailEntry,
)
from monitor.models.alerts import url_site
from monitor.trail.actor import current_actor
from monitor.trail.recording import caller_records


def record(action: str, *, obj: Any = None, object_type: str = "", object_id: str = "", before: Any = None,
           after: Any = None, deleting: Any = None) -> None:
    actor = current_actor()
    user = actor.user
    if deleting is not None and getattr(user, "pk", None) == deleting.pk and isinstance(deleting, type(user)):
        user = None  # a user deleting their own account: the entry keeps their name, not a link to a deleted row
    TrailEntry.record(action=action, actor=user, actor_name=actor.name, ip=actor.ip, obj=obj,
                      object_type=object_type, object_id=object_id, before=before, after=after)


# --- what is shown of each watched model ---------------------------------------------------------------------

@dataclass(frozen=True)
class Shown:
    value: Callable[[Any], Any]                   # compared between the stored row and the saved one
    masked: Callable[[Any], Any] | None = None    # a secret: what the trail shows instead of the value


@dataclass(frozen=True)
class Watched:
    name: str                                     # the actions' prefix: token.created, token.changed, ...
    columns: frozenset[str]                       # the model fields `fields` read (a save of others is not a change)
    fields: dict[str, Shown]
    subject: Callable[[Any], Any] = lambda obj: obj   # what the entry is about (an artifact: its model)
    changed_action: Callable[[Any, Any], str] | None = None
    extra_on_delete: Callable[[Any], dict] = lambda obj: {}


def _hidden(_: Any) -> str:
    return "(hidden)"


def url_for_trail(url: str) -> str:
    """Scheme, host and path, without credentials or query (where they hide in endpoint URLs)."""
    site = url_site(url)
    return site + urlsplit(url).path if site else ("…" if url else "")


def channel_target(channel: NotificationChannel) -> str:
    """An email channel's addresses; a URL channel's scheme and host (the path is the secret); a routing key masked:
    the same as the API and the admin show."""
    return channel.masked_target()


def _sha256(data: Any) -> str:
    return hashlib.sha256(bytes(data or b"")).hexdigest()


def _plain(*names: str) -> dict[str, Shown]:
    return {name: Shown(lambda obj, name=name: getattr(obj, name)) for name in names}


def _token_action(old: ApiToken, new: ApiToken) -> str:
    if old.revoked_at is None and new.revoked_at is not None:
        return "token.revoked"
    if old.revoked_at is not None and new.revoked_at is None:
        return "token.restored"
    return "token.changed"


def _model_deleted(model: RegisteredModel) -> dict:
    """What goes with a model: its evidence, counted here rather than one entry per row."""
    return {"alerts": model.alerts.count(), "audit_runs": model.audit_runs.count(),
            "findings": model.findings.count(), "queries": model.queries.count(),
            "tokens": sorted(model.tokens.values_list("prefix", flat=True)),
            "artifacts": [f"v{v} {sha[:12]}" for v, sha in model.artifacts.values_list("version", "sha256")],
            "datasets": dict(model.datasets.values_list("kind", "sha256"))}


def _user_deleted(user: Any) -> dict:
    return {"groups": sorted(user.groups.values_list("name", flat=True)),
            "tokens": sorted(user.api_tokens.values_list("prefix", flat=True))}


def _group_deleted(group: Group) -> dict:
    return {"members": sorted(group.user_set.values_list(get_user_model().USERNAME_FIELD, flat=True))}


def watched_models() -> dict[type[Model], Watched]:
    user_model = get_user_model()
    return {
        ApiToken: Watched(
            name="token", columns=frozenset({"kind", "prefix", "model", "user", "revoked_at", "queries_per_minute",
                                             "token_hash"}),
            fields={**_plain("kind", "prefix", "revoked_at", "queries_per_minute"),
                    "model": Shown(lambda t: t.model.slug if t.model_id else None),
                    "user": Shown(lambda t: t.user.get_username() if t.user_id else None),
                    "token_hash": Shown(lambda t: t.token_hash, masked=_hidden)},
            changed_action=_token_action),
        NotificationChannel: Watched(
            name="channel", columns=frozenset({"name", "kind", "target", "secret", "min_severity", "all_models",
                                               "enabled", "rate_limit_per_hour", "digest"}),
            fields={**_plain("name", "kind", "min_severity", "all_models", "enabled", "rate_limit_per_hour", "digest"),
                    "target": Shown(lambda c: c.target, masked=channel_target),
                    "signing_secret": Shown(lambda c: bytes(c.secret or b""),
                                            masked=lambda c: "(set)" if c.secret else "(none)")}),
        user_model: Watched(
            name="user", columns=frozenset({"username", "email", "is_active", "is_staff", "is_superuser", "password"}),
            fields={**_plain("username", "email", "is_active", "is_staff", "is_superuser"),
                    "password": Shown(lambda u: u.password,
                                      masked=lambda u: "(set)" if u.has_usable_password() else "(unusable)")},
            extra_on_delete=_user_deleted),
        Group: Watched(name="group", columns=frozenset({"name"}), fields=_plain("name"), extra_on_delete=_group_deleted),
        RegisteredModel: Watched(
            name="model", columns=frozenset({f.name for f in RegisteredModel._meta.concrete_fields}
                                            - {"id", "created_at", "updated_at", "created_by"}),
            fields={**_plain("slug", "name", "team", "source", "feature_names", "features", "class_labels",
                             "label_column", "output_policy", "version", "retention_days", "auto_restrict_action",
                             "auto_restrict_severity", "auto_restrict_hours", "false_alarm_budget"),
                    "endpoint_url": Shown(lambda m: m.endpoint_url, masked=lambda m: url_for_trail(m.endpoint_url))},
            changed_action=lambda old, new: "model.updated", extra_on_delete=_model_deleted),
        ModelArtifact: Watched(
            name="artifact", columns=frozenset({"model", "version", "format", "data", "sha256", "size", "filename"}),
            fields={**_plain("version", "format", "sha256", "size", "filename"),
                    "data_sha256": Shown(lambda a: _sha256(a.data))},
            subject=lambda a: a.model),
        ReferenceDataset: Watched(
            name="dataset", columns=frozenset({"model", "kind", "ciphertext", "sha256", "n_rows", "filename"}),
            fields={**_plain("kind", "sha256", "n_rows", "filename"),
                    "ciphertext_sha256": Shown(lambda d: _sha256(d.ciphertext))},
            subject=lambda d: d.model),
    }


def shown(watched: Watched, obj: Any) -> dict:
    return {name: (spec.masked or spec.value)(obj) for name, spec in watched.fields.items()}


def difference(watched: Watched, old: Any, new: Any) -> tuple[dict, dict]:
    before, after = {}, {}
    for name, spec in watched.fields.items():
        if spec.value(old) == spec.value(new):
            continue
        show = spec.masked or spec.value
        before[name], after[name] = show(old), show(new)
        if before[name] == after[name]:  # a secret whose masked form did not move (a new hash, the same host)
            after[name] = f"{after[name]} (changed)"
    return before, after


# --- receivers ----------------------------------------------------------------------------------------------

WATCHED: dict[type[Model], Watched] = {}


def _before_save(sender: type[Model], instance: Any, raw: bool = False, update_fields: Any = None,
                 **kwargs: Any) -> None:
    watched = WATCHED[sender]
    if raw or instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not set(update_fields) & watched.columns:
        return  # e.g. a login's last_login
    instance.__dict__["_trail_old"] = sender._default_manager.filter(pk=instance.pk).first()


def _after_save(sender: type[Model], instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    old = instance.__dict__.pop("_trail_old", None)
    if raw or caller_records():
        return
    watched = WATCHED[sender]
    subject = watched.subject(instance)
    if created:
        after = shown(watched, instance)
        if subject is not instance:
            after["id"] = instance.pk
        record(f"{watched.name}.created", obj=subject, after=after)
        return
    if old is None:
        return
    before, after = difference(watched, old, instance)
    if after:
        action = watched.changed_action(old, instance) if watched.changed_action else f"{watched.name}.changed"
        if subject is not instance:
            after["id"] = instance.pk
        record(action, obj=subject, before=before, after=after)


def _origin_model(origin: Any) -> Any:
    return origin.model if isinstance(origin, QuerySet) else type(origin)


def _summed_up_by_origin(sender: type[Model], origin: Any) -> bool:
    """A row deleted because its model or user is: that delete's one entry counts it."""
    model = _origin_model(origin)
    return model is not sender and model in (RegisteredModel, get_user_model())


def _before_delete(sender: type[Model], instance: Any, origin: Any = None, **kwargs: Any) -> None:
    if caller_records() or _summed_up_by_origin(sender, origin):
        return
    watched = WATCHED[sender]
    subject = watched.subject(instance)
    before = {**shown(watched, instance), **watched.extra_on_delete(instance)}
    if subject is not instance:
        before["id"] = instance.pk
    record(f"{watched.name}.deleted", obj=subject, before=before, deleting=instance)


# Evidence: refused in the admin; a delete from anywhere else is recorded with what was deleted. (A receiver means
# Django loads the rows it deletes instead of one DELETE: only a model's delete deletes findings in bulk.)
EVIDENCE: dict[str, tuple[str, Callable[[Any], dict]]] = {
    "monitor.alert": ("alert.deleted", lambda a: {
        "model": a.model.slug, "kind": a.kind, "client_id": a.client_id, "severity": a.severity, "status": a.status,
        "first_seen": a.first_seen, "last_seen": a.last_seen, "occurrences": a.occurrences}),
    "monitor.detectorfinding": ("finding.deleted", lambda f: {
        "model": f.model.slug, "detector": f.detector, "client_id": f.client_id, "severity": f.severity,
        "score": f.score, "range": [f.range_start, f.range_end], "created_at": f.created_at}),
    "audits.auditrun": ("audit.deleted", lambda r: {
        "model": r.model.slug, "status": r.status, "trigger": r.trigger, "created_at": r.created_at,
        "finished_at": r.finished_at, "artifact_sha256": r.artifact_sha256}),
}


def _evidence_deleted(sender: type[Model], instance: Any, origin: Any = None, **kwargs: Any) -> None:
    if _summed_up_by_origin(sender, origin):
        return
    action, describe = EVIDENCE[sender._meta.label_lower]
    record(action, obj=instance, before=describe(instance))


def _lockout_deleted(sender: type[Model], instance: AccessAttempt, **kwargs: Any) -> None:
    """Deleting a live attempt row lifts its lockout (axes_reset*, the admin, a successful login); deleting an
    expired one (axes' own housekeeping) changes nothing and is not recorded."""
    cool_off = get_cool_off()
    if cool_off is not None and instance.attempt_time <= timezone.now() - cool_off:
        return
    record("lockout.reset", object_type="auth.user", object_id=str(instance.username or "")[:64],
           before={"username": instance.username, "ip_address": instance.ip_address,
                   "failures": instance.failures_since_start, "last_attempt": instance.attempt_time})


@dataclass(frozen=True)
class Related:
    owner: type[Model]
    relation: str                                 # the owner's many-to-many field
    action: str
    key: str
    label: Callable[[Any], str]


def _permission(perm: Permission) -> str:
    return f"{perm.content_type.app_label}.{perm.codename}"


def watched_relations() -> dict[Any, Related]:
    user_model = get_user_model()
    return {
        user_model.groups.through: Related(user_model, "groups", "user.groups_changed", "groups", lambda g: g.name),
        user_model.user_permissions.through: Related(user_model, "user_permissions", "user.permissions_changed",
                                                     "permissions", _permission),
        Group.permissions.through: Related(Group, "permissions", "group.permissions_changed", "permissions",
                                           _permission),
        NotificationChannel.selected_models.through: Related(NotificationChannel, "selected_models",
                                                             "channel.changed", "models", lambda m: m.slug),
    }


RELATIONS: dict[Any, Related] = {}


def _related_names(related: Related, owner: Any) -> list[str]:
    rows = getattr(owner, related.relation).all()
    if related.label is _permission:
        rows = rows.select_related("content_type")
    return sorted(related.label(row) for row in rows)


def _relation_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any) -> None:
    """Before an add/remove/clear: each owner's related names; after: an entry for each owner whose names moved.
    Reverse changes (group.user_set.add(user)) are recorded on the users, as the forward ones are."""
    related = RELATIONS[sender]
    stage, _, _ = action.partition("_")
    if stage == "pre":
        if caller_records():
            return
        if not reverse:
            owners = [instance]
        elif action == "pre_clear":
            owners = list(related.owner._default_manager.filter(**{related.relation: instance}))
        else:
            owners = list(related.owner._default_manager.filter(pk__in=pk_set or ()))
        instance.__dict__.setdefault("_trail_related", {})[sender] = [
            (owner, _related_names(related, owner)) for owner in owners]
        return
    for owner, before in instance.__dict__.get("_trail_related", {}).pop(sender, []):
        after = _related_names(related, owner)
        if after != before:
            record(related.action, obj=owner, before={related.key: before}, after={related.key: after})


def connect() -> None:
    """Connect the receivers (AppConfig.ready): the models are known by then, the audits app's by its label."""
    WATCHED.update(watched_models())
    RELATIONS.update(watched_relations())
    for model in WATCHED:
        uid = f"trail-{model._meta.label_lower}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=f"{uid}-pre-save")
        post_save.connect(_after_save, sender=model, dispatch_uid=f"{uid}-post-save")
        pre_delete.connect(_before_delete, sender=model, dispatch_uid=f"{uid}-delete")
    for label in EVIDENCE:
        evidence = apps.get_model(label)
        pre_delete.connect(_evidence_deleted, sender=evidence, dispatch_uid=f"trail-{label}-delete")
    pre_delete.connect(_lockout_deleted, sender=AccessAttempt, dispatch_uid="trail-axes-accessattempt-delete")
    for through in RELATIONS:
        m2m_changed.connect(_relation_changed, sender=through, dispatch_uid=f"trail-{through._meta.label_lower}")

