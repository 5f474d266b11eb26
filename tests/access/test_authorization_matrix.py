"""Who may use what: every URL of the URL conf × every role × anonymous × each kind of token.

The expected table below is the specification. URLs are collected from the URL conf, API operations from the
OpenAPI schema and admin pages from the admin registry, so a new URL without an entry here fails the test.
"""
from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone
from ninja.responses import NinjaJSONEncoder

from monitor.api import api
from tests.factories import ingest_token, make_model, make_user, query, user_token

pytestmark = pytest.mark.django_db

ROLES = ("admin", "security", "compliance", "viewer")
READ = {f"{how}:{role}" for how in ("session", "token") for role in ROLES}
OPERATE = {f"{how}:{role}" for how in ("session", "token") for role in ("admin", "security")}
EXPORT = OPERATE | {"session:compliance", "token:compliance"}
CONFIGURE = {"session:admin", "token:admin"}
OWN_INGEST = {"ingest:own"}
# A GET that writes the trail takes no session: a link from another site could make it (the pages POST instead).
EXPORT_BY_TOKEN = {p for p in EXPORT if p.startswith("token:")}
PAGE_READ = {f"session:{role}" for role in ROLES}
PAGE_OPERATE = {"session:admin", "session:security"}
PAGE_EXPORT = PAGE_OPERATE | {"session:compliance"}
PRINCIPALS = ("anonymous", "token:invalid", "ingest:own", "ingest:other", "session:staff-without-role",
              *(f"session:{role}" for role in ROLES), *(f"token:{role}" for role in ROLES))
EVERYONE = set(PRINCIPALS)

# (method, URL name or API path) -> principals that get through. Pages never accept bearer tokens.
PAGES = {
    ("GET", "overview"): PAGE_READ,
    ("GET", "model-list"): PAGE_READ,
    ("GET", "model-detail"): PAGE_READ,
    ("GET", "model-register"): {"session:admin"},
    ("POST", "model-register"): {"session:admin"},
    ("GET", "client-detail"): PAGE_READ,
    ("POST", "audit-start"): PAGE_OPERATE,
    ("POST", "client-restriction"): PAGE_OPERATE,
    ("GET", "audit-run"): PAGE_READ,
    ("POST", "audit-evidence"): PAGE_EXPORT,  # the lookup and the downloads write the trail: POST with the token
    ("GET", "record-exposure"): PAGE_EXPORT,
    ("POST", "record-exposure"): PAGE_EXPORT,
    ("POST", "hardened-download"): PAGE_OPERATE,
    ("POST", "exposure-download"): PAGE_EXPORT,
    ("GET", "evidence-public-key"): PAGE_READ,
    ("POST", "candidate-submit"): PAGE_OPERATE,
    ("POST", "client-rate-limit"): PAGE_OPERATE,
    ("GET", "candidate-detail"): PAGE_READ,
    ("GET", "candidate-report"): PAGE_READ,
    ("POST", "candidate-promote"): PAGE_OPERATE,
    ("GET", "alert-list"): PAGE_READ,
    ("GET", "alert-detail"): PAGE_READ,
    ("POST", "alert-action"): PAGE_OPERATE,
    ("GET", "channel-list"): {"session:admin"},
    ("POST", "channel-list"): {"session:admin"},
    ("POST", "channel-action"): {"session:admin"},
    ("GET", "metrics"): READ,  # the one page that also takes a bearer token (Prometheus scrapes it)
    ("GET", "login"): EVERYONE,
    ("GET", "oidc_authentication_init"): EVERYONE,  # 404 until OIDC_* is set (tests/access/test_sso.py signs in for real)
    ("GET", "oidc_authentication_callback"): EVERYONE,
    ("GET", "sso-denied"): EVERYONE,
    ("POST", "logout"): EVERYONE,
}
API = {
    ("POST", "/api/v1/models/{slug}/queries"): OWN_INGEST | {"session:admin", "token:admin"},
    ("POST", "/api/v1/models/{slug}/predict"): OWN_INGEST | OPERATE,
    ("GET", "/api/v1/models"): READ,
    ("GET", "/api/v1/models/{slug}"): READ,
    ("PATCH", "/api/v1/models/{slug}"): CONFIGURE,
    ("PATCH", "/api/v1/models/{slug}/client-rate-limit"): OPERATE,
    ("GET", "/api/v1/alerts"): READ,
    ("GET", "/api/v1/alerts/{alert_id}"): READ,
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): OPERATE,
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): OPERATE,
    ("POST", "/api/v1/alerts/{alert_id}/mute"): OPERATE,
    ("GET", "/api/v1/channels"): CONFIGURE,
    ("POST", "/api/v1/channels"): CONFIGURE,
    ("POST", "/api/v1/channels/{channel_id}/test"): CONFIGURE,
    ("DELETE", "/api/v1/channels/{channel_id}"): CONFIGURE,
    ("GET", "/api/v1/models/{slug}/audit-policy"): READ,
    ("POST", "/api/v1/models/{slug}/clients/{client_id}/restriction"): OPERATE,
    ("DELETE", "/api/v1/models/{slug}/clients/{client_id}/restriction"): OPERATE,
    ("GET", "/api/v1/models/{slug}/restrictions"): READ | OWN_INGEST,
    ("PATCH", "/api/v1/models/{slug}/audit-policy"): CONFIGURE,
    ("POST", "/api/v1/models/{slug}/audits"): OPERATE,
    ("GET", "/api/v1/models/{slug}/audits"): READ,
    ("GET", "/api/v1/audits/{run_id}"): READ,
    ("GET", "/api/v1/audits/{run_id}/evidence.zip"): EXPORT_BY_TOKEN,
    ("GET", "/api/v1/models/{slug}/evidence.zip"): EXPORT_BY_TOKEN,
    ("GET", "/api/v1/models/{slug}/records/{record_id}/exposure"): EXPORT_BY_TOKEN,
    ("GET", "/api/v1/models/{slug}/exposure.csv"): EXPORT_BY_TOKEN,
    ("GET", "/api/v1/audits/{run_id}/remediation/artifact"): {p for p in OPERATE if p.startswith("token:")},
    ("GET", "/api/v1/alerts/export"): OPERATE,
    ("GET", "/api/v1/tokens"): READ,  # each their own; an admin every token
    ("DELETE", "/api/v1/tokens/{token}"): READ,  # likewise (a token not theirs is a 404, as is this unknown prefix)
    ("POST", "/api/v1/models/{slug}/candidates"): OPERATE,
    ("GET", "/api/v1/models/{slug}/candidates"): READ,
    ("GET", "/api/v1/models/{slug}/candidates/{candidate_id}"): READ,
    ("GET", "/api/v1/models/{slug}/candidates/{candidate_id}/reports/{kind}"): READ,
    ("POST", "/api/v1/models/{slug}/candidates/{candidate_id}/promote"): OPERATE,
}
# The API's own documentation: any signed-in role (it names every endpoint, so not the public).
DOCS = {("GET", "/api/v1/openapi.json"): PAGE_READ, ("GET", "/api/v1/docs"): PAGE_READ}
ADMIN_PAGES = {"session:admin"}


def api_operations() -> set[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return {(method.upper(), path) for path, operations in schema["paths"].items() for method in operations}


def named_patterns(patterns: list, prefix: str = "") -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace in ("admin", "api"):
                continue
            names |= named_patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            names.add(pattern.name or f"{prefix}{pattern.pattern}")
    return names


def admin_pages() -> list[str]:
    pages = ["/admin/"]
    for model in admin.site._registry:
        pages.append(f"/admin/{model._meta.app_label}/{model._meta.model_name}/")
    return pages


def test_every_url_has_an_entry_in_the_table():
    from django.urls import get_resolver

    assert named_patterns(get_resolver().url_patterns) == {name for _, name in PAGES}
    assert api_operations() == set(API)
    api_routes = {str(p.pattern) for p in api.urls[0] if isinstance(p, URLPattern)}
    assert {"openapi.json", "docs"} <= api_routes


@pytest.fixture
def world(db, tmp_path) -> dict:
    """The objects the URLs name, and one client per principal."""
    from audits.scheduling import request_audit
    from monitor.alerts.lifecycle import raise_signal
    from monitor.ingestion.store import store_queries
    from monitor.ingestion.validate import QueryBatch
    from tests.factories import make_channel, signal

    model = make_model()
    other = make_model(slug="other")
    rows = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    store_queries(model, QueryBatch(client_ids=["client-1"] * 20, timestamps=[timezone.now()] * 20, features=rows,
                                    outputs=np.full((20, 2), 0.5, dtype=np.float32), request_ids=[None] * 20))
    alert, _ = raise_signal(signal(model=model, client_id="client-1"))
    run = request_audit(model, enqueue=False)
    from audits.candidates import Upload, submit
    from tests.factories import skops_bytes

    candidate = submit(model, artifact=Upload(skops_bytes(seed=1), "candidate.skops"))
    return {"model": model, "other": other, "alert": alert, "run": run, "candidate": candidate,
            "channel": make_channel(kind="email", target="sec@example.com"), "make_channel": make_channel}


def client_for(principal: str, world: dict) -> Client:
    how, _, who = principal.partition(":")
    if how == "session":
        user = make_user(role=None if who == "staff-without-role" else who)
        user.is_staff = who in ("admin", "staff-without-role")
        user.save()
        client = Client()
        client.force_login(user)
        return client
    if how == "ingest":
        clear = ingest_token(model=world["model"] if who == "own" else world["other"])
    elif how == "token":
        clear = "mim_user_" + "x" * 43 if who == "invalid" else user_token(role=who)
    else:
        return Client()
    return Client(HTTP_AUTHORIZATION=f"Bearer {clear}")


def page_request(client: Client, method: str, name: str, world: dict):
    candidate = {"slug": "credit", "candidate_id": world["candidate"].pk}
    kwargs = {"model-detail": {"slug": "credit"}, "client-detail": {"slug": "credit"}, "audit-start": {"slug": "credit"},
              "client-restriction": {"slug": "credit"}, "record-exposure": {"slug": "credit"},
              "exposure-download": {"slug": "credit"},
              "audit-run": {"run_id": world["run"].pk}, "audit-evidence": {"run_id": world["run"].pk},
              "hardened-download": {"run_id": world["run"].pk},
              "alert-detail": {"alert_id": world["alert"].pk},
              "alert-action": {"alert_id": world["alert"].pk, "action": "acknowledge"},
              "channel-action": {"channel_id": world["channel"].pk, "action": "test"},
              "candidate-submit": {"slug": "credit"}, "client-rate-limit": {"slug": "credit"}, "candidate-detail": candidate, "candidate-promote": candidate,
              "candidate-report": {**candidate, "kind": "sarif"}}.get(name, {})
    address = reverse(name, kwargs=kwargs) + ("?id=client-1" if name == "client-detail" else "")
    return client.get(address) if method == "GET" else client.post(address)


def api_request(client: Client, method: str, path: str, world: dict):
    channel = world["make_channel"](kind="email", target="ops@example.com", name="to delete") \
        if method == "DELETE" else world["channel"]
    address = path.format(slug="credit", alert_id=world["alert"].pk, channel_id=channel.pk, run_id=world["run"].pk,
                          client_id="client-1", record_id="1", token="mim_user_zzz",
                          candidate_id=world["candidate"].pk, kind="sarif")
    today = timezone.now().date()
    bodies = {
        "/api/v1/models/{slug}/queries": {"queries": [query(client_id="matrix")]},
        "/api/v1/models/{slug}/predict": {"client_id": "matrix", "features": [[40.0, 5000.0, 5.0, 0.1]]},
        "/api/v1/models/{slug}/clients/{client_id}/restriction": {"action": "label_only", "reason": "matrix"},
        "/api/v1/alerts/{alert_id}/mute": {"until": (timezone.now() + timedelta(hours=1)).isoformat(), "reason": "matrix"},
        "/api/v1/channels": {"name": "matrix", "kind": "email", "target": "matrix@example.com"},
    }
    if path == "/api/v1/models/{slug}/evidence.zip":
        address += f"?start={today - timedelta(days=1)}&end={today}"
    if path == "/api/v1/alerts/export":
        address += f"?since={today - timedelta(days=1)}T00:00:00Z"
    if method == "GET":
        return client.get(address)
    if method == "DELETE":
        return client.delete(address)
    if method == "PATCH":
        body = ({"cadence_hours": 12} if path.endswith("/audit-policy") else {"per_day": 500}
                if path.endswith("/client-rate-limit") else {"retention_days": 60})
        return client.patch(address, body, content_type="application/json")
    return client.post(address, bodies.get(path, {}), content_type="application/json")


def got_through(response, *, page: bool) -> bool:
    assert response.status_code < 500, response.content[:500]
    if response.status_code in (401, 403):
        return False
    if page and response.status_code == 302:
        return not response["Location"].startswith((reverse("login"), "/admin/login/"))
    return True


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_each_principal_reaches_exactly_what_the_table_allows(principal, world, smtp_server):
    client = client_for(principal, world)
    checks = [(f"{method} {name}", allowed, True, lambda m=method, n=name: page_request(client, m, n, world))
              for (method, name), allowed in PAGES.items() if name != "logout"]
    checks += [(f"{method} {path}", allowed, False, lambda m=method, p=path: api_request(client, m, p, world))
               for (method, path), allowed in API.items()]
    checks += [(f"GET {path}", allowed, True, lambda p=path: client.get(p)) for (_, path), allowed in DOCS.items()]
    checks += [(f"GET {path}", ADMIN_PAGES, True, lambda p=path: client.get(p)) for path in admin_pages()]
    # Logging out comes last (it ends the session) and succeeds by sending everyone to the login page.
    checks.append(("POST logout", PAGES[("POST", "logout")], False, lambda: page_request(client, "POST", "logout", world)))
    wrong = [f"{label}: expected {'allowed' if principal in allowed else 'denied'}"
             for label, allowed, page, send in checks if got_through(send(), page=page) != (principal in allowed)]
    assert wrong == [], f"{principal}:\n" + "\n".join(wrong)


def test_anonymous_api_answers_are_json_401():
    response = Client().get("/api/v1/models")
    assert response.status_code == 401 and response.json()["error"].startswith("no API token")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("name", sorted(name for method, name in PAGES if method == "POST"))
def test_every_form_post_needs_the_csrf_token(name, world):
    """Even the right role cannot post a form without the token the page handed out."""
    strict = Client(enforce_csrf_checks=True)
    user = make_user(role="admin")
    strict.force_login(user)
    response = page_request(strict, "POST", name, world)
    assert response.status_code == 403 and "CSRF" in response.content.decode()


# --- training-member ids --------------------------------------------------------------------------
# Member record ids are personal data about the people the product protects. They go to exactly the roles that may
# look a record up (the exposure lookup above), in the API and on the pages, and each read is in the trail (how many
# ids, never which); every other role gets no `top_exposed` / `member_ids` key at all, only the count under another.
MEMBER_ID_READERS = {f"{how}:{role}" for how in ("session", "token") for role in ("admin", "security", "compliance")}
PEOPLE = tuple(f"{how}:{role}" for how in ("session", "token") for role in ROLES)
EXPOSED_IDS = [f"person-{n:04d}" for n in range(7)]  # record ids no page or answer could show by chance
HIT_IDS = ["person-0001", "person-0002", "person-9001"]


def test_member_ids_go_to_the_roles_that_may_look_a_record_up():
    by_session = {p for p in MEMBER_ID_READERS if p.startswith("session:")}
    assert API[("GET", "/api/v1/models/{slug}/records/{record_id}/exposure")] == MEMBER_ID_READERS - by_session
    assert PAGES[("POST", "record-exposure")] == PAGES[("GET", "record-exposure")] == by_session


@pytest.fixture
def exposed(db) -> dict:
    """A finished audit whose attacks name EXPOSED_IDS as most exposed, and an incident whose evidence names HIT_IDS
    (at the top and inside a folded detector's evidence)."""
    from audits import runner
    from audits.models import AuditRun
    from audits.scheduling import request_audit
    from monitor.alerts.lifecycle import raise_signal
    from tests.factories import make_audited_model, signal

    model = make_audited_model(slug="credit", n=200)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    assert run.status == "done", run.error
    for attack in run.result["attacks"]:
        attack["top_exposed"] = list(EXPOSED_IDS)
    AuditRun.objects.filter(pk=run.pk).update(result=run.result)
    evidence = {"n_members_hit": 3, "member_ids": HIT_IDS, "most_exposed_member_ids": HIT_IDS[:2],
                "signals": {"near_duplicate_sweep": {"score": 9.0, "evidence": {"member_ids": HIT_IDS[1:]}}}}
    alert, _ = raise_signal(signal(model=model, kind="training_proximity", client_id="probe-1", evidence=evidence))
    return {"model": model, "run": AuditRun.objects.get(pk=run.pk), "alert": alert}


def id_keys(value) -> set[str]:
    """The member-id keys anywhere in an answer."""
    if isinstance(value, dict):
        found = {key for key in value if key in ("top_exposed", "member_ids", "most_exposed_member_ids")}
        return found.union(*(id_keys(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(id_keys(item) for item in value))
    return set()


def says_how_many(what: str, answer, text: str, *, alert_id: int) -> bool:
    """What a role without member ids reads instead: the count, under another key or in words."""
    if what == "api audit":
        return {attack.get("n_top_exposed") for attack in answer["attacks"]} == {len(EXPOSED_IDS)}
    if what == "api alert":
        folded = answer["evidence"]["signals"]["near_duplicate_sweep"]["evidence"]
        return answer["evidence"].get("n_member_ids") == len(HIT_IDS) and folded.get("n_member_ids") == 2
    if what == "api alerts":
        return [a["evidence"].get("n_member_ids") for a in answer if a["id"] == alert_id] == [len(HIT_IDS)]
    if what == "audit page":
        return f"names {len(EXPOSED_IDS)} member records as most exposed" in text
    return f"n_member_ids: {len(HIT_IDS)}" in text


def test_member_ids_reach_exactly_the_roles_that_may_look_a_record_up_and_each_read_is_in_the_trail(exposed):
    from monitor.trail.models import TrailEntry

    run, alert = exposed["run"], exposed["alert"]
    reads = TrailEntry.objects.filter(action="member_ids.read")
    asked = {"api audit": (f"/api/v1/audits/{run.pk}?full=true", run, EXPOSED_IDS),
             "api alert": (f"/api/v1/alerts/{alert.pk}", alert, HIT_IDS),
             "api alerts": ("/api/v1/alerts", alert, HIT_IDS),
             "audit page": (reverse("audit-run", kwargs={"run_id": run.pk}), run, EXPOSED_IDS),
             "alert page": (reverse("alert-detail", kwargs={"alert_id": alert.pk}), alert, HIT_IDS)}
    wrong = []
    for principal in PEOPLE:
        client, reader = client_for(principal, exposed), principal in MEMBER_ID_READERS
        for what, (path, obj, ids) in asked.items():
            if what.endswith("page") and not principal.startswith("session:"):
                continue  # pages never accept bearer tokens
            last = reads.order_by("-seq").values_list("seq", flat=True).first() or 0
            response = client.get(path)
            assert response.status_code == 200, (principal, what, response.content[:300])
            text = response.content.decode()
            shown = [i for i in EXPOSED_IDS + HIT_IDS if i in text]
            new = list(reads.filter(seq__gt=last))
            if reader:
                if set(shown) != set(ids):
                    wrong.append(f"{principal} {what}: shows {shown}, not the {len(ids)} ids")
                if [(e.object_type, e.object_id, e.after["member_ids"]) for e in new] != [
                        (obj._meta.label_lower, str(obj.pk), len(ids))] or new[0].actor_name == "system":
                    wrong.append(f"{principal} {what}: not one trail entry naming who, the object and how many")
                elif any(i in str(new[0].after) for i in EXPOSED_IDS + HIT_IDS):
                    wrong.append(f"{principal} {what}: the trail entry holds the ids themselves")
                continue
            if shown or new:
                wrong.append(f"{principal} {what}: shows {shown}, {len(new)} trail entries")
            answer = response.json() if what.startswith("api") else None
            if answer is not None and id_keys(answer):
                wrong.append(f"{principal} {what}: keeps the keys {sorted(id_keys(answer))}")
            if not says_how_many(what, answer, text, alert_id=alert.pk):
                wrong.append(f"{principal} {what}: does not say how many member ids there are")
        # Either way the audit answers exactly its summary (its schema drops or adds nothing).
        full = client.get(f"/api/v1/audits/{run.pk}?full=true").json()
        if full != json.loads(json.dumps(run.summary(full=True, member_ids=reader), cls=NinjaJSONEncoder)):
            wrong.append(f"{principal}: the audit answer is not its summary (member_ids={reader})")
    assert wrong == [], "\n".join(wrong)
