"""Set up data in the private database with the app's own code, as a separate process.

    python -m tests.faults.seed '[["ACTION", {"keyword": "arguments"}], ...]'

prints one line of JSON: the list of the actions' answers. The fault tests run it in the private services'
environment (DATABASE_URL, CELERY_BROKER_URL, keys), so records are made exactly as the product makes them, in
the database the app processes under test use; the pytest process never connects to it through Django.
"""
from __future__ import annotations

import json
import sys


def ingest_model(*, slug: str) -> dict:
    from tests.factories import ingest_token, make_model

    model = make_model(slug=slug)
    return {"slug": model.slug, "token": ingest_token(model=model), "n_features": model.n_features}


def user(*, role: str) -> dict:
    import secrets

    from monitor.models import ApiToken
    from tests.factories import make_user

    password = secrets.token_urlsafe(16)
    person = make_user(role=role, password=password)
    return {"username": person.username, "password": password,
            "token": ApiToken.issue(kind=ApiToken.USER, user=person)[1]}


def audited_model(*, slug: str, n: int, attacks: list[str], n_reference: int = 4) -> dict:
    from audits.models import AuditPolicy
    from tests.factories import make_audited_model

    model = make_audited_model(slug=slug, n=n)
    policy = AuditPolicy.objects.ensure(model)
    policy.attacks, policy.n_reference = attacks, n_reference
    policy.save()
    return {"slug": model.slug, "id": model.pk}


def set_policy(*, slug: str, attacks: list[str], n_reference: int = 4) -> dict:
    from audits.models import AuditPolicy
    from monitor.models import RegisteredModel

    policy = AuditPolicy.objects.ensure(RegisteredModel.objects.get(slug=slug))
    policy.attacks, policy.n_reference = attacks, n_reference
    policy.save()
    return {"slug": slug, "attacks": attacks}


def request_audit(*, slug: str) -> dict:
    from audits.scheduling import request_audit as request
    from monitor.models import RegisteredModel

    run = request(RegisteredModel.objects.get(slug=slug))
    return {"id": run.pk}


def slack_channel(*, url: str, slug: str | None = None) -> dict:
    from tests.factories import make_channel

    channel = make_channel(kind="slack", target=url, models=[slug] if slug else None, name=f"slack {url[-12:]}")
    return {"id": channel.pk}


def disable_channels_to(*, url: str) -> dict:
    from monitor.models import NotificationChannel

    ids = [channel.pk for channel in NotificationChannel.objects.filter(enabled=True) if channel.target == url]
    NotificationChannel.objects.filter(pk__in=ids).update(enabled=False)
    return {"disabled": ids}


def alert(*, slug: str, client_id: str) -> dict:
    from monitor.alerts.lifecycle import raise_signal
    from monitor.models import RegisteredModel
    from tests.factories import signal

    raised, _ = raise_signal(signal(model=RegisteredModel.objects.get(slug=slug), client_id=client_id))
    return {"id": raised.pk}


ACTIONS = {f.__name__: f for f in (ingest_model, user, audited_model, set_policy, request_audit, slack_channel,
                                   disable_channels_to, alert)}

if __name__ == "__main__":
    import django

    django.setup()
    steps = json.loads(sys.argv[1])
    print(json.dumps([ACTIONS[action](**arguments) for action, arguments in steps]))
