"""Each API token may send a bounded number of rows per minute; beyond it, 429 with Retry-After."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from monitor.access.ratelimit import RateLimited, charge, prune_usage
from monitor.models import ApiToken, QueryLog, TokenUsage
from tests.factories import ingest_token, make_user, query

pytestmark = pytest.mark.django_db


def limited_token(model, per_minute: int) -> str:
    clear = ingest_token(model=model)
    ApiToken.objects.filter(prefix=clear[:12]).update(queries_per_minute=per_minute)
    return clear


def post(api, n: int, *, start: int = 0):
    return api.post("/api/v1/models/credit/queries",
                    {"queries": [query(client_id="c-1", request_id=f"r-{start + i}") for i in range(n)]})


def test_rows_beyond_the_limit_get_429_with_retry_after_and_store_nothing(api_as, model):
    api = api_as(limited_token(model, 10))
    assert post(api, 6).status_code == 201
    refused = post(api, 5, start=6)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "10 rows per minute" in refused.json()["error"]
    assert QueryLog.objects.count() == 6
    assert post(api, 4, start=6).status_code == 201  # what still fits in the window is accepted
    assert QueryLog.objects.count() == 10


def test_a_batch_larger_than_the_whole_limit_is_413_not_429(api_as, model):
    response = post(api_as(limited_token(model, 3)), 4)
    assert response.status_code == 413
    assert "split it into smaller batches" in response.json()["error"]
    assert "Retry-After" not in response


def test_one_tokens_limit_does_not_touch_another(api_as, model):
    assert post(api_as(limited_token(model, 2)), 2).status_code == 201
    assert post(api_as(limited_token(model, 2)), 2, start=2).status_code == 201


def test_predict_rows_count_against_the_same_limit(api_as, model):
    api = api_as(limited_token(model, 3))
    features = [[40.0, 5000.0, 5.0, 0.1]]
    assert api.post("/api/v1/models/credit/predict", {"client_id": "app", "features": features * 3}).status_code == 200
    response = api.post("/api/v1/models/credit/predict", {"client_id": "app", "features": features})
    assert response.status_code == 429 and "Retry-After" in response


def test_the_setting_is_the_default_and_zero_turns_it_off(api_as, model, settings):
    settings.TOKEN_QUERIES_PER_MINUTE = 2
    api = api_as(ingest_token(model=model))
    assert post(api, 2).status_code == 201
    assert post(api, 1, start=2).status_code == 429
    settings.TOKEN_QUERIES_PER_MINUTE = 0
    assert post(api, 50, start=3).status_code == 201


def test_sessions_are_not_rate_limited(client, model, settings):
    settings.TOKEN_QUERIES_PER_MINUTE = 1
    client.force_login(make_user(role="admin"))
    response = client.post("/api/v1/models/credit/queries", {"queries": [query(), query()]}, content_type="application/json")
    assert response.status_code == 201


def test_a_new_window_starts_from_zero(model):
    token = ApiToken.objects.get(prefix=limited_token(model, 5)[:12])
    now = timezone.now().replace(second=30)
    charge(token, 5, now=now)
    with pytest.raises(RateLimited) as refused:
        charge(token, 1, now=now)
    assert refused.value.retry_after == 30
    charge(token, 5, now=now + timedelta(minutes=1))


def test_old_windows_are_pruned(model):
    token = ApiToken.objects.get(prefix=limited_token(model, 5)[:12])
    charge(token, 1, now=timezone.now() - timedelta(hours=3))
    charge(token, 1)
    assert prune_usage() == 1
    assert TokenUsage.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_exceed_the_limit(model):
    token = ApiToken.objects.get(prefix=limited_token(model, 7)[:12])
    now = timezone.now()
    outcomes: list[bool] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            charge(token, 1, now=now)
            ok = True
        except RateLimited:
            ok = False
        finally:
            connection.close()
        with lock:
            outcomes.append(ok)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(True) == 7 and len(outcomes) == 20
    assert TokenUsage.objects.get(token=token).queries == 7
