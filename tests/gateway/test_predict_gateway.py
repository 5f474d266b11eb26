"""POST /api/v1/models/{slug}/predict: the model answers under its output policy; every row is logged."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.ingestion.validate import IngestError, IngestRefusal
from monitor.ingestion.vectors import decode_vectors
from monitor.models import QueryLog, RegisteredModel
from monitor.registry.predictors import predictor_for
from tests.factories import ingest_token, make_data, make_model

pytestmark = pytest.mark.django_db


def predict(api_as, model, rows, client_id="app-1"):
    api = api_as(ingest_token(model=model))
    return api.post(f"/api/v1/models/{model.slug}/predict", {"client_id": client_id, "features": rows})


@pytest.fixture
def rows():
    X, _ = make_data(seed=7, n=6)
    return X.astype(np.float32).tolist()


def test_full_policy_returns_probabilities_and_logs_every_row(api_as, rows):
    model = make_model(slug="full")
    response = predict(api_as, model, rows)
    assert response.status_code == 200, response.content
    body = response.json()
    expected = predictor_for(model).predict_proba(np.asarray(rows))
    assert np.allclose(body["outputs"], expected)
    assert body["labels"] == [model.class_labels[i] for i in expected.argmax(axis=1)]
    logged = QueryLog.objects.filter(model=model).order_by("id")
    assert logged.count() == len(rows) and set(logged.values_list("client_id", flat=True)) == {"app-1"}
    assert np.array_equal(decode_vectors(list(logged.values_list("features", flat=True)), 4), np.asarray(rows, dtype=np.float32))
    assert np.allclose(decode_vectors(list(logged.values_list("outputs", flat=True)), 2), expected, atol=1e-6)


def test_round_policy_rounds(api_as, rows):
    model = make_model(slug="rounded", output_policy="round:1")
    outputs = np.asarray(predict(api_as, model, rows).json()["outputs"])
    assert np.allclose(outputs, np.round(outputs, 1))
    assert np.allclose(outputs, np.round(predictor_for(model).predict_proba(np.asarray(rows)), 1))


def test_label_policy_returns_one_hot_labels_only(api_as, rows):
    model = make_model(slug="labels", output_policy="label")
    body = predict(api_as, model, rows).json()
    outputs = np.asarray(body["outputs"])
    assert set(np.unique(outputs)) <= {0.0, 1.0} and np.all(outputs.sum(axis=1) == 1)
    assert QueryLog.objects.filter(model=model, confidence=1.0).count() == len(rows)


def test_noise_policy_perturbs_but_stays_a_distribution(api_as, rows):
    model = make_model(slug="noisy", output_policy="noise:0.1")
    outputs = np.asarray(predict(api_as, model, rows).json()["outputs"])
    exact = predictor_for(model).predict_proba(np.asarray(rows))
    assert not np.allclose(outputs, exact, atol=1e-3)
    assert np.allclose(outputs.sum(axis=1), 1.0) and np.all((outputs >= 0) & (outputs <= 1))


@pytest.mark.parametrize(("body", "field", "phrase"), [
    ({"client_id": "a", "features": [[1, 2, 3]]}, "features", "has 3 values"),
    ({"client_id": "a", "features": []}, "features", "non-empty list"),
    ({"client_id": "", "features": [[1, 2, 3, 4]]}, "client_id", "non-empty string"),
    ({"client_id": "a", "features": [[1, 2, 3, None]]}, "features", "does not accept missing values"),
    ({"client_id": "a", "features": [[1, 2, 3, "x"]]}, "features", "not a number"),
    ({"client_id": "a", "features": [[1, 2, 3, 4]], "extra": 1}, "extra", "unknown field"),
])
def test_bad_requests_are_named_and_nothing_is_logged(api_as, model, body, field, phrase):
    response = api_as(ingest_token(model=model)).post("/api/v1/models/credit/predict", body)
    assert response.status_code == 400, response.content
    assert any(d["field"] == field and phrase in d["message"] for d in response.json()["details"])
    assert not QueryLog.objects.exists()


def test_too_many_rows_is_413(api_as, model, settings):
    settings.PREDICT_MAX_ROWS = 3
    response = api_as(ingest_token(model=model)).post("/api/v1/models/credit/predict",
                                                      {"client_id": "a", "features": [[1, 2, 3, 4]] * 4})
    assert response.status_code == 413


def test_a_model_without_an_artifact_for_its_version_is_409_and_logs_nothing(api_as, model, rows):
    RegisteredModel.objects.filter(pk=model.pk).update(version=model.version + 1)
    model.refresh_from_db()
    response = predict(api_as, model, rows)
    assert response.status_code == 409
    assert response.json()["error"] == f"model 'credit' has no artifact for version {model.version}"
    assert not QueryLog.objects.exists()


def test_the_gateway_refuses_in_domain_words_not_http_statuses(model, rows):
    """The audit engine gets its predictor from the registry: a missing artifact is the registry's NoArtifact there;
    the gateway names the refusal's reason, and only the API turns it into 409."""
    from monitor.gateway.predict import predict_and_log
    from monitor.registry.predictors import NoArtifact

    RegisteredModel.objects.filter(pk=model.pk).update(version=model.version + 1)
    model.refresh_from_db()
    with pytest.raises(NoArtifact):
        predictor_for(model)
    with pytest.raises(IngestError) as caught:
        predict_and_log(model, {"client_id": "c", "features": rows})
    assert caught.value.refusal is IngestRefusal.NO_ARTIFACT and not hasattr(caught.value, "status")


def test_an_unreachable_endpoint_model_answers_502_and_logs_nothing(api_as):
    from monitor.registry.registration import Upload, register_model
    from tests.factories import csv_bytes

    model = register_model(slug="remote", name="Remote", label_column="label", endpoint_url="http://127.0.0.1:9/predict",
                           members=Upload(csv_bytes(*make_data(seed=1))), nonmembers=Upload(csv_bytes(*make_data(seed=2))))
    response = predict(api_as, model, [[1.0, 2.0, 3.0, 4.0]])
    assert response.status_code == 502
    assert "could not answer" in response.json()["error"]
    assert not QueryLog.objects.exists()


def test_an_endpoint_model_is_called_over_real_http(api_as):
    """A real HTTP server on loopback stands in for the team's model service."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from monitor.registry.registration import Upload, register_model
    from tests.factories import csv_bytes

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            answer = json.dumps({"probabilities": [[0.25, 0.75] for _ in body["instances"]]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/predict"
        model = register_model(slug="remote", name="Remote", label_column="label", endpoint_url=url, output_policy="round:1",
                               members=Upload(csv_bytes(*make_data(seed=1))), nonmembers=Upload(csv_bytes(*make_data(seed=2))))
        response = predict(api_as, model, [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    finally:
        server.shutdown()
    assert response.status_code == 200, response.content
    assert response.json()["outputs"] == [[0.2, 0.8], [0.2, 0.8]]
    assert response.json()["labels"] == ["yes", "yes"]
    assert seen == [{"instances": [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]}]
    assert QueryLog.objects.filter(model=model).count() == 2
