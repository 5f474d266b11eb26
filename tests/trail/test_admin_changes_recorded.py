"""Every change to tokens, channels, users, groups, lockouts and models reaches the trail, from the admin, a shell or
a command, once, by whom, without its secrets; the admin refuses to delete evidence (issue 27, finding 2)."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db.models import Max
from django.forms import MultiWidget
from django.test import RequestFactory
from django.utils import timezone

from audits.models import AuditRun
from monitor.alerts.channels import create_channel, delete_channel
from monitor.alerts.lifecycle import raise_signal
from monitor.models import (
    ApiToken,
    DetectorFinding,
    ModelArtifact,
    RegisteredModel,
    TrailEntry,
)
from monitor.trail.actor import current_actor, serving
from tests.factories import make_model, make_user, signal

pytestmark = pytest.mark.django_db

SLACK_URL = "https://hooks.slack.invalid/services/T0001/B0002/s3cr3tSlackPathPart"
ATTACKER_URL = "https://collector.attacker.invalid/hook/aTtAcKeRpAtH"


def last_seq() -> int:
    return TrailEntry.objects.aggregate(Max("seq"))["seq__max"] or 0


def entries_since(seq: int) -> list[TrailEntry]:
    return list(TrailEntry.objects.filter(seq__gt=seq).order_by("seq"))


def as_text(entries: list[TrailEntry]) -> str:
    return json.dumps([entry.payload() for entry in entries])


@pytest.fixture
def site_admin(client):
    admin = make_user(role="admin", username="site-admin")
    admin.is_staff = True
    admin.save()
    client.force_login(admin)
    return admin


def admin_form(client, url: str) -> dict:
    """The change form's current values, as the browser would post them back."""
    response = client.get(url)
    assert response.status_code == 200, url
    data: dict = {}
    for bound in response.context["adminform"].form:
        if bound.field.disabled:
            continue
        value, widget = bound.value(), bound.field.widget
        if isinstance(widget, MultiWidget):
            parts = widget.decompress(value) if not isinstance(value, list) else value
            for i, part in enumerate(parts):
                data[f"{bound.html_name}_{i}"] = "" if part is None else str(part)
        elif isinstance(value, bool):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(value, (list, tuple)):
            data[bound.html_name] = [str(v) for v in value]
        else:
            data[bound.html_name] = "" if value is None else str(value)
    return data


def test_revoking_a_token_in_the_admin_is_recorded_by_the_admin_without_its_hash(client, site_admin):
    token, clear = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="viewer"))
    url = f"/admin/monitor/apitoken/{token.pk}/change/"
    form = admin_form(client, url)
    mark = last_seq()
    now = timezone.localtime()
    response = client.post(url, {**form, "revoked_at_0": now.date().isoformat(), "revoked_at_1": "12:00:00",
                                 "queries_per_minute": "5"})
    assert response.status_code == 302, response.content.decode()[:2000]
    [entry] = entries_since(mark)
    assert (entry.action, entry.actor_name, entry.ip, entry.object_id) == ("token.revoked", "site-admin", "127.0.0.1",
                                                                           str(token.pk))
    assert entry.before == {"revoked_at": None, "queries_per_minute": None}
    assert entry.after["queries_per_minute"] == 5 and entry.after["revoked_at"]
    assert token.token_hash not in as_text(TrailEntry.objects.all()) and clear not in as_text(TrailEntry.objects.all())


def test_deleting_a_token_in_the_admin_is_recorded(client, site_admin):
    token, _ = ApiToken.issue(kind=ApiToken.USER, user=make_user(role="viewer"))
    mark = last_seq()
    response = client.post(f"/admin/monitor/apitoken/{token.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    [entry] = entries_since(mark)
    assert (entry.action, entry.actor_name, entry.before["prefix"]) == ("token.deleted", "site-admin", token.prefix)
    assert entry.before["token_hash"] == "(hidden)"


def test_pointing_the_slack_channel_at_another_url_in_the_admin_is_recorded_by_host_only(client, site_admin):
    channel = create_channel(name="oncall", kind="slack", target=SLACK_URL)
    url = f"/admin/monitor/notificationchannel/{channel.pk}/change/"
    form = admin_form(client, url)
    mark = last_seq()
    response = client.post(url, {**form, "target": ATTACKER_URL, "min_severity": "critical"})
    assert response.status_code == 302, response.content.decode()[:2000]
    [entry] = entries_since(mark)
    assert (entry.action, entry.actor_name) == ("channel.changed", "site-admin")
    assert entry.before == {"target": "https://hooks.slack.invalid/…", "min_severity": "warning"}
    assert entry.after == {"target": "https://collector.attacker.invalid/…", "min_severity": "critical"}
    text = as_text(TrailEntry.objects.all())
    assert "s3cr3tSlackPathPart" not in text and "aTtAcKeRpAtH" not in text


def test_turning_a_channel_into_a_webhook_records_that_a_signing_secret_was_set_not_the_secret(client, site_admin):
    channel = create_channel(name="oncall", kind="slack", target=SLACK_URL)
    url = f"/admin/monitor/notificationchannel/{channel.pk}/change/"
    form = admin_form(client, url)
    mark = last_seq()
    response = client.post(url, {**form, "kind": "webhook", "target": ATTACKER_URL}, follow=True)
    assert response.status_code == 200
    [entry] = entries_since(mark)
    assert entry.before["kind"] == "slack" and entry.after["kind"] == "webhook"
    assert (entry.before["signing_secret"], entry.after["signing_secret"]) == ("(none)", "(set)")
    channel.refresh_from_db()
    assert channel.signing_secret() not in as_text(TrailEntry.objects.all())


def test_a_channel_changed_from_a_shell_is_recorded_as_the_system_with_its_models(model):
    channel = create_channel(name="oncall", kind="email", target="soc@example.org")
    mark = last_seq()
    channel.enabled = False
    channel.save()
    channel.selected_models.add(model)
    changed, models = entries_since(mark)
    assert (changed.action, changed.before, changed.after) == ("channel.changed", {"enabled": True}, {"enabled": False})
    assert changed.actor_name.startswith("system:") and changed.actor is None
    assert (models.action, models.before, models.after) == ("channel.changed", {"models": []}, {"models": ["credit"]})


def test_making_a_user_superuser_and_security_in_the_admin_is_recorded(client, site_admin):
    user = make_user(role=None, username="mallory")
    security = Group.objects.get_or_create(name="security")[0]
    url = f"/admin/auth/user/{user.pk}/change/"
    form = admin_form(client, url)
    mark = last_seq()
    response = client.post(url, {**form, "is_superuser": "on", "is_staff": "on", "groups": [str(security.pk)]})
    assert response.status_code == 302, response.content.decode()[:3000]
    flags, groups = entries_since(mark)
    assert (flags.action, flags.actor_name, flags.object_id) == ("user.changed", "site-admin", str(user.pk))
    assert flags.before == {"is_staff": False, "is_superuser": False}
    assert flags.after == {"is_staff": True, "is_superuser": True}
    assert (groups.action, groups.before, groups.after) == ("user.groups_changed", {"groups": []},
                                                           {"groups": ["security"]})


def test_roles_and_flags_changed_from_a_shell_are_recorded_on_the_user_as_the_system():
    user = make_user(role="viewer", username="eve")
    security = Group.objects.get_or_create(name="security")[0]
    mark = last_seq()
    security.user_set.add(user)  # the reverse side: recorded on the user all the same
    user.groups.remove(Group.objects.get(name="viewer"))
    user.is_active = False
    user.set_password("a new password")
    user.save()
    added, removed, flags = entries_since(mark)
    assert (added.action, added.object_id, added.before, added.after) == (
        "user.groups_changed", str(user.pk), {"groups": ["viewer"]}, {"groups": ["security", "viewer"]})
    assert (removed.before, removed.after) == ({"groups": ["security", "viewer"]}, {"groups": ["security"]})
    assert flags.before == {"is_active": True, "password": "(set)"}
    assert flags.after == {"is_active": False, "password": "(set) (changed)"}
    assert all(entry.actor_name.startswith("system:") for entry in (added, removed, flags))
    assert user.password not in as_text(TrailEntry.objects.all())


def test_a_login_after_failures_records_the_login_and_the_lifted_failures_but_no_user_change(client):
    make_user(role="viewer", username="alice", password="correct horse battery")
    client.post("/login/", {"username": "alice", "password": "wrong"})
    mark = last_seq()
    assert client.post("/login/", {"username": "alice", "password": "correct horse battery"}).status_code == 302
    assert [(entry.action, entry.actor_name) for entry in entries_since(mark)] == [
        ("lockout.reset", "alice"), ("auth.login", "alice")]


def test_deleting_a_user_from_a_shell_is_one_entry_naming_their_roles_and_tokens():
    user = make_user(role="security", username="leaver")
    token, _ = ApiToken.issue(kind=ApiToken.USER, user=user)
    mark = last_seq()
    user.delete()
    [entry] = entries_since(mark)
    assert (entry.action, entry.before["username"], entry.before["groups"], entry.before["tokens"]) == (
        "user.deleted", "leaver", ["security"], [token.prefix])


def test_group_permissions_and_deletes_are_recorded(client, site_admin):
    group = Group.objects.create(name="auditors")
    make_user(role="auditors", username="carol")
    permission = Permission.objects.get(codename="delete_alert")
    url = f"/admin/auth/group/{group.pk}/change/"
    form = admin_form(client, url)
    mark = last_seq()
    assert client.post(url, {**form, "permissions": [str(permission.pk)]}).status_code == 302
    assert client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"}).status_code == 302
    changed, deleted = entries_since(mark)
    assert (changed.action, changed.after, changed.actor_name) == (
        "group.permissions_changed", {"permissions": ["monitor.delete_alert"]}, "site-admin")
    assert (deleted.action, deleted.before) == ("group.deleted", {"name": "auditors", "members": ["carol"]})


def failed_attempts(*, username: str, minutes_ago: float = 0) -> AccessAttempt:
    attempt = AccessAttempt.objects.create(username=username, ip_address="203.0.113.9", user_agent="curl",
                                           http_accept="*/*", path_info="/login/", get_data="", post_data="",
                                           failures_since_start=5)
    AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=timezone.now() - timedelta(minutes=minutes_ago))
    return attempt


def test_lockout_resets_are_recorded_from_the_command_and_the_admin(client, site_admin):
    failed_attempts(username="bob")
    mark = last_seq()
    call_command("axes_reset_username", "bob")
    [entry] = entries_since(mark)
    assert (entry.action, entry.object_id, entry.before["failures"]) == ("lockout.reset", "bob", 5)
    assert entry.actor_name.startswith("system:")

    attempt = failed_attempts(username="dave")
    mark = last_seq()
    assert client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 302
    [entry] = entries_since(mark)
    assert (entry.action, entry.object_id, entry.actor_name) == ("lockout.reset", "dave", "site-admin")


def test_expired_attempts_cleaned_by_axes_are_not_a_reset():
    failed_attempts(username="bob", minutes_ago=24 * 60)
    mark = last_seq()
    call_command("axes_reset")
    assert entries_since(mark) == []


def test_model_settings_changed_from_a_shell_are_recorded(model):
    mark = last_seq()
    model.auto_restrict_action = "block"
    model.endpoint_url = "https://user:pw@serving.example/predict?api_key=k3y"
    model.save()
    [entry] = entries_since(mark)
    assert entry.action == "model.updated" and entry.actor_name.startswith("system:")
    assert entry.before == {"auto_restrict_action": "", "endpoint_url": ""}
    assert entry.after == {"auto_restrict_action": "block", "endpoint_url": "https://serving.example/predict"}


def test_a_model_changed_through_the_api_is_one_entry(model, api_as):
    from tests.factories import user_token

    api = api_as(user_token(role="admin"))
    mark = last_seq()
    response = api.client.patch(f"/api/v1/models/{model.slug}", data=json.dumps({"retention_days": 14}),
                                content_type="application/json", **api._headers())
    assert response.status_code == 200, response.content
    [entry] = entries_since(mark)
    assert (entry.action, entry.after) == ("model.updated", {"retention_days": 14})


def test_an_artifact_swapped_from_a_shell_is_recorded_on_its_model(model):
    artifact = ModelArtifact.objects.get(model=model)
    mark = last_seq()
    artifact.data = b"not the model that was registered"
    artifact.save()
    [entry] = entries_since(mark)
    assert (entry.action, entry.object_type, entry.object_id) == ("artifact.changed", "monitor.registeredmodel",
                                                                  str(model.pk))
    assert set(entry.after) == {"data_sha256", "id"}


def test_the_domain_writers_leave_one_entry_per_change():
    mark = last_seq()
    model = make_model(slug="one-entry")
    token, _ = ApiToken.issue(kind=ApiToken.INGEST, model=model)
    channel = create_channel(name="soc", kind="email", target="soc@example.org", models=["one-entry"])
    delete_channel(channel)
    assert [entry.action for entry in entries_since(mark)] == [
        "model.registered", "token.issued", "channel.created", "channel.deleted"]


def evidence_of(model: RegisteredModel) -> tuple:
    alert, _ = raise_signal(signal(model=model, client_id="client-7"))
    finding = DetectorFinding.objects.create(model=model, detector="near_duplicate_sweep", client_id="client-7",
                                             score=9.0, severity="warning", range_start=1, range_end=10)
    run = AuditRun.objects.create(model=model)
    return alert, finding, run


def test_evidence_deleted_from_a_shell_is_recorded(model):
    alert, finding, run = evidence_of(model)
    mark = last_seq()
    alert.delete()
    DetectorFinding.objects.filter(pk=finding.pk).delete()
    run.delete()
    entries = entries_since(mark)
    assert [entry.action for entry in entries] == ["alert.deleted", "finding.deleted", "audit.deleted"]
    assert entries[0].before["client_id"] == "client-7" and entries[2].before["model"] == "credit"


def test_deleting_a_model_from_a_shell_is_one_entry_that_counts_what_went_with_it(model):
    evidence_of(model)
    token, _ = ApiToken.issue(kind=ApiToken.INGEST, model=model)
    mark = last_seq()
    model.delete()
    [entry] = entries_since(mark)
    assert entry.action == "model.deleted" and entry.before["slug"] == "credit"
    assert {key: entry.before[key] for key in ("alerts", "findings", "audit_runs", "tokens")} == {
        "alerts": 1, "findings": 1, "audit_runs": 1, "tokens": [token.prefix]}


@pytest.mark.parametrize("what", ["alert", "auditrun", "trailentry", "registeredmodel", "querylog"])
def test_the_admin_refuses_to_delete_evidence(client, site_admin, model, what):
    from monitor.models import QueryLog

    alert, _, run = evidence_of(model)
    query = QueryLog.objects.create(model=model, client_id="c", ts=timezone.now(), features=b"", outputs=b"", label=0,
                                    confidence=0.9, request_id="r-1")
    row = {"alert": alert, "auditrun": run, "trailentry": TrailEntry.objects.first(), "registeredmodel": model,
           "querylog": query}[what]
    base = f"/admin/{row._meta.app_label}/{what}/"
    assert client.post(f"{base}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    changelist = client.get(base)
    assert changelist.status_code == 200 and "delete_selected" not in changelist.content.decode()
    client.post(base, {"action": "delete_selected", "_selected_action": [str(row.pk)], "post": "yes"})
    assert type(row).objects.filter(pk=row.pk).exists()


def test_an_api_token_request_acts_as_the_tokens_owner():
    owner = make_user(role="admin", username="api-owner")
    token, _ = ApiToken.issue(kind=ApiToken.USER, user=owner)
    request = RequestFactory().get("/api/v1/models", REMOTE_ADDR="198.51.100.4")
    request.auth = token
    with serving(request):
        actor = current_actor()
    assert (actor.user, actor.name, actor.ip) == (owner, "api-owner", "198.51.100.4")


def test_the_chain_verifies_after_admin_and_shell_changes(client, site_admin, model, capsys):
    channel = create_channel(name="oncall", kind="slack", target=SLACK_URL)
    url = f"/admin/monitor/notificationchannel/{channel.pk}/change/"
    assert client.post(url, {**admin_form(client, url), "target": ATTACKER_URL}).status_code == 302
    evidence_of(model)
    model.delete()
    call_command("verify_audit_log")
    assert "chain intact" in capsys.readouterr().out
