"""The fuzz stage: schemathesis against our own /api/v1/openapi.json.

Every operation is fuzzed with a token of each role, an ingestion token, an invalid token and none. What must
hold: no 5xx; every 4xx is a JSON error whose "error" says what is wrong; documented statuses, content types
and 2xx bodies that match the schema. Nothing may leave this machine: the only channels are loopback servers.
"""
from __future__ import annotations

import ipaddress
import itertools
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from audits import runner
from audits.candidates import Upload, submit
from audits.models import CandidateStatus, GateCandidate
from audits.scheduling import request_audit
from monitor.alerts.channels import queue_test
from monitor.alerts.lifecycle import raise_signal, resolve
from monitor.alerts.outbox import deliver_due
from monitor.models import NotificationChannel
from tests.factories import ingest_token, make_channel, make_model, make_user, signal, skops_bytes, user_token

pytestmark = pytest.mark.django_db

# Examples per operation: the admin token reaches every view, the others mostly their role's refusal, and the
# invalid token and none only authentication.
EXAMPLES = {"admin": 60, "security": 20, "compliance": 15, "viewer": 15, "ingest": 15, "invalid": 6, "none": 6}
CREDENTIALS = tuple(EXAMPLES)
# The credentials in three tests of about equal work (the admin token's 60 examples alone are 44 % of it), so that
# a parallel run (pytest -n) spreads them: one test of all seven took 6.5 min, a third of the serial suite.
GROUPS = (("admin",), ("security", "compliance"), ("viewer", "ingest", "invalid", "none"))
# An evidence bundle renders a PDF (slow) from inputs that are only an id or a period.
AT_MOST = {"GET /api/v1/audits/{run_id}/evidence.zip": 10, "GET /api/v1/models/{slug}/evidence.zip": 15}
MIN_REQUESTS = 2_000

# Fuzzing dictionaries: values that break web apps on PostgreSQL, mixed into generated strings and numbers.
# Short lists, so that each value turns up often: NUL (PostgreSQL text refuses it), numbers past 64 bits and
# float32, dates that leave the calendar once converted to UTC, names of the seeded objects.
HOSTILE = {
    "string": ["\x00", "credit\x00", "\x00\x00", "", " ", "\u202e", "credit", "ops@example.com", "' OR 1=1 --",
               "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9223372036854775808"],
    "integer": [0, -1, 2**63, -(2**63) - 1, 10**20],
    "number": [1e308, -1e308, 5e-324, 3.5e38],
}
HOSTILE_PROBABILITY = 0.5


def body_bindings(document: dict) -> dict[str, dict]:
    """A dictionary binding for every string and number in every request body: schemathesis applies type-wide
    bindings to parameters only, and bodies by path (`body.queries.[*].client_id`)."""
    components = document.get("components", {}).get("schemas", {})
    bindings: dict[str, dict] = {}

    def walk(schema: dict, path: tuple[str, ...]) -> None:
        if "$ref" in schema:
            schema = components[schema["$ref"].rsplit("/", 1)[1]]
        for option in schema.get("anyOf", []) + schema.get("oneOf", []):
            walk(option, path)
        for name, property_schema in schema.get("properties", {}).items():
            walk(property_schema, (*path, name))
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], (*path, "[*]"))
        kinds = schema.get("type", [])
        for kind in [kinds] if isinstance(kinds, str) else kinds:
            if kind in HOSTILE and path:
                bindings["body." + ".".join(path)] = {"dictionary": f"hostile-{kind}", "probability": HOSTILE_PROBABILITY}

    for item in document["paths"].values():
        for operation in item.values():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                walk(content.get("schema", {}), ())
    return bindings


def fuzz_config(document: dict) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "dictionaries": {f"hostile-{kind}": {"values": values} for kind, values in HOSTILE.items()},
        "generation": {"dictionaries": {kind: {"dictionary": f"hostile-{kind}", "probability": HOSTILE_PROBABILITY}
                                        for kind in HOSTILE}},
        "parameters": body_bindings(document),
        # 413 is how we refuse a batch over its documented size: a rejection like any 4xx.
        "checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "409", "413", "415", "429"]}},
    })


# --- nothing leaves this machine -------------------------------------------------------------------

_guard: dict[str, Any] = {"installed": False, "armed": False, "refused": []}


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _network_tripwire(event: str, args: tuple) -> None:
    """An audit hook: while armed, any lookup or connection beyond loopback is refused and recorded."""
    if not _guard["armed"]:
        return
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    else:
        return
    if not _is_loopback(host):
        _guard["refused"].append(f"{event} {host!r}")
        raise ConnectionRefusedError(f"the fuzz stage may not reach {host!r}")


@contextmanager
def loopback_only() -> Iterator[list[str]]:
    if not _guard["installed"]:  # an audit hook cannot be removed: it stays, disarmed, for the rest of the session
        sys.addaudithook(_network_tripwire)
        _guard["installed"] = True
    _guard["armed"], _guard["refused"] = True, []
    try:
        yield _guard["refused"]
    finally:
        _guard["armed"] = False


@contextmanager
def in_process_wsgi() -> Iterator[list[BaseException]]:
    """Requests through the real WSGI handler, in the test's transaction, as Django's own test client does it:
    without closing the connection at request boundaries. Yields the exceptions views raised."""
    raised: list[BaseException] = []

    def record(sender: Any, request: Any = None, **kwargs: Any) -> None:
        raised.append(sys.exc_info()[1])

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    got_request_exception.connect(record)
    try:
        yield raised
    finally:
        got_request_exception.disconnect(record)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def hypothesis_outside_the_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No example database (database=None below), and hypothesis's other caches go to a temporary directory,
    not to .hypothesis/ in the checkout."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


# --- the world the fuzzer aims at ----------------------------------------------------------------------

@dataclass
class World:
    path_values: dict[str, list[Any]]
    tokens: dict[str, str | None]
    sent: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)


@pytest.fixture
def world(settings, smtp_server, slack_server) -> World:
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    credit, other = make_model(slug="credit"), make_model(slug="other")
    open_alert = raise_signal(signal(model=credit, client_id="probe-1", severity="critical"))[0]
    resolved_alert = resolve(raise_signal(signal(model=credit, client_id="probe-2"))[0], note="seen")
    done_run = runner.execute(request_audit(credit, enqueue=False).pk)
    queued_run = request_audit(other, enqueue=False)
    email = make_channel(kind="email", target="ops@example.com")
    queued_candidate = submit(credit, artifact=Upload(skops_bytes(seed=1), "candidate.skops"))
    failed_candidate = submit(credit, artifact=Upload(skops_bytes(seed=2), "candidate.skops"))
    GateCandidate.objects.filter(pk=failed_candidate.pk).update(status=CandidateStatus.FAILED, error="seeded")
    slack = make_channel(kind="slack", target=slack_server.url)
    tokens: dict[str, str | None] = {role: user_token(role=role) for role in ("admin", "security", "compliance", "viewer")}
    tokens["ingest"] = ingest_token(model=credit)
    tokens["invalid"] = "not-a-token-" + "x" * 30
    tokens["none"] = None
    return World(
        # As sent on the wire: "%00" arrives as NUL, which schemathesis never puts in a generated path.
        path_values={"slug": ["credit", "other", "credit%00"], "alert_id": [open_alert.pk, resolved_alert.pk],
                     "run_id": [done_run.pk, queued_run.pk], "channel_id": [email.pk, slack.pk],
                     "client_id": ["client-1", "nobody", "x" * 129], "record_id": ["1", "nobody", "=cmd"],
                     # Never a seeded token's id or prefix: revoking a credential mid-run would turn its later
                     # requests into 401s that say nothing about the operation under test.
                     "token": ["999999999", "mim_user_nobody", "x" * 300],
                     "candidate_id": [queued_candidate.pk, failed_candidate.pk, 999999],
                     "kind": ["junit", "sarif", "summary", "json", "pdf"]},
        tokens=tokens,
    )


@pytest.fixture
def api_schema(world: World) -> Any:
    """Our own /api/v1/openapi.json, fetched by a signed-in user (the document needs a role), sent to the WSGI app."""
    browser = Client()
    browser.force_login(make_user(role="viewer"))
    response = browser.get("/api/v1/openapi.json")
    assert response.status_code == 200, response.status_code
    document = response.json()
    schema = schemathesis.openapi.from_dict(document, config=fuzz_config(document))
    schema.app, schema.location = WSGIHandler(), "/api/v1/openapi.json"
    return schema


# --- what every response must satisfy ---------------------------------------------------------------

def json_error_says_what_is_wrong(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    if not 400 <= response.status_code < 500:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"a {response.status_code} answered with {content_type!r}"
    body = response.json()
    assert isinstance(body, dict), f"a {response.status_code} body is not an object: {body!r:.200}"
    assert isinstance(body.get("error"), str) and body["error"].strip(), f"no error message: {body!r:.200}"
    assert isinstance(body.get("details", []), list), f"details is not a list: {body!r:.200}"


CHECKS: list[Callable] = [not_a_server_error, status_code_conformance, content_type_conformance,
                          response_headers_conformance, response_schema_conformance, negative_data_rejection,
                          json_error_says_what_is_wrong]


def targets(operation: schemathesis.APIOperation, world: World, *, examples: int) -> list[tuple[dict | None, int]]:
    """(path parameters, examples): generated path parameters, then each seeded object the path can name in turn
    (hypothesis alone rarely draws a given one), each with a third of the examples."""
    names = re.findall(r"{(\w+)}", operation.path)
    if not names:
        return [(None, examples)]
    real = [dict(zip(names, values, strict=True)) for values in itertools.product(*(world.path_values[n] for n in names))]
    return [(params, max(2, examples // 3)) for params in [None, *real]]


def fuzz(operation: schemathesis.APIOperation, *, credential: str, path_parameters: dict | None, examples: int,
         world: World, raised: list[BaseException]) -> None:
    token = world.tokens[credential]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cases = st.one_of([operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
                       for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)])

    # A fixed seed per credential, operation and target: reproducible in CI, and different cases for each of them.
    @hypothesis.seed(zlib.crc32(f"{credential} {operation.label} {path_parameters}".encode()))
    @hypothesis.settings(max_examples=examples, database=None, deadline=None,
                         phases=[Phase.explicit, Phase.generate, Phase.shrink],
                         suppress_health_check=list(HealthCheck), print_blob=False)
    @hypothesis.given(case=cases)
    def run(case: schemathesis.Case) -> None:
        raised.clear()
        started = time.monotonic()
        with transaction.atomic():  # every case starts from the same seeded world
            response = case.call(headers=headers)
            transaction.set_rollback(True)
        world.seconds[operation.label] += time.monotonic() - started
        world.sent[credential] += 1
        world.statuses[response.status_code] += 1
        assert not raised, f"the view raised {raised[0]!r}; reproduce with\n{case.as_curl_command(headers=headers)}"
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


def test_the_groups_hold_every_credential_once():
    assert sorted(itertools.chain.from_iterable(GROUPS)) == sorted(CREDENTIALS)


@pytest.mark.long
@pytest.mark.parametrize("group", GROUPS, ids="+".join)
def test_every_operation_survives_fuzzing_with_every_kind_of_credential(group, api_schema, world, smtp_server,
                                                                      slack_server, hypothesis_outside_the_repository):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert labels >= {"POST /api/v1/models/{slug}/queries", "POST /api/v1/models/{slug}/predict",
                      "POST /api/v1/alerts/{alert_id}/mute", "POST /api/v1/channels/{channel_id}/test",
                      "GET /api/v1/audits/{run_id}/evidence.zip"}, labels
    failures: list[str] = []
    started = time.monotonic()
    with in_process_wsgi() as raised, loopback_only() as refused:
        for credential, operation in itertools.product(group, operations):
            examples = min(EXAMPLES[credential], AT_MOST.get(operation.label, EXAMPLES[credential]))
            for path_parameters, share in targets(operation, world, examples=examples):
                try:
                    fuzz(operation, credential=credential, path_parameters=path_parameters, examples=share,
                         world=world, raised=raised)
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 (one report naming every failure)
                    failures.append(f"--- {operation.label} {path_parameters or ''} with the {credential} credential:\n"
                                    f"{str(exc)[:3000]}")
    elapsed = time.monotonic() - started
    print(f"\nfuzz: {sum(world.sent.values())} requests in {elapsed:.0f} s; per credential {dict(world.sent)}; "
          f"statuses {dict(sorted(world.statuses.items()))}; slowest {world.seconds.most_common(5)}")
    assert not refused, f"outbound traffic attempted: {refused}"
    # The test-send endpoint queues (each case's row is rolled back); what the outbox sends for it reaches only the
    # seeded channels' loopback servers.
    with loopback_only() as refused:
        for channel in NotificationChannel.objects.all():
            queue_test(channel)
        deliver_due()
    assert not refused, f"outbound traffic attempted: {refused}"
    assert smtp_server.messages and slack_server.requests, (len(smtp_server.messages), len(slack_server.requests))
    assert not failures, "\n".join(failures)
    # The whole stage sends at least MIN_REQUESTS; each group its share, by examples per operation.
    share = sum(EXAMPLES[credential] for credential in group) / sum(EXAMPLES.values())
    assert sum(world.sent.values()) >= MIN_REQUESTS * share, world.sent
    for credential in group:
        assert world.sent[credential] >= len(operations), (credential, world.sent)
