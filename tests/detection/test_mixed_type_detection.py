"""Detection on a model of raw mixed-type rows (issue 26): the detectors see categories as equal or not, numbers in
σ cells, missing as a value of its own, so a sweep of noise around a member's numbers with its categories held
fixed, candidate testing of real member records and boundary probing are caught as on numeric models, without
flagging benign clients beyond the budget."""
from __future__ import annotations

import time

import numpy as np
import pytest

from monitor.demo.simulation import Plan, build_traffic
from monitor.detection.calibration import calibrate_model
from monitor.detection.scanning import scan_model
from monitor.detection.space import detection_features, width
from monitor.models import DetectorState
from monitor.platform.crypto import data_fernet
from tests.detection.helpers import in_incidents, store
from tests.factories import register_credit_pipeline

pytestmark = pytest.mark.django_db

ATTACKS = ("noise_sweep", "candidate_testing", "boundary_search")


def test_the_detectors_space_keeps_categories_apart_and_missing_as_its_own_value():
    model = register_credit_pipeline(slug="space", n=100)[0]
    schema = model.schema
    X = model.datasets.get(kind="members").load().X[:20]
    seen = detection_features(X, schema)
    assert seen.shape == (20, width(schema)) and np.isfinite(seen).all()
    same, other = X[0].copy(), X[0].copy()
    sex = model.feature_names.index("sex")
    other[sex] = 1 - other[sex]
    a, b = detection_features(np.vstack([same, other]), schema)
    assert np.count_nonzero(a != b) == 2  # one category column off, another on: never "a little different"
    blank = X[0].copy()
    blank[model.feature_names.index("workclass")] = np.nan
    c = detection_features(blank[None, :], schema)[0]
    assert np.count_nonzero(c != a) >= 2  # missing is a category of its own, not the most frequent one


@pytest.mark.parametrize("key", [b"mixed-type-detection-key-0000001", b"mixed-type-detection-key-0000002",
                                 b"mixed-type-detection-key-0000003"])
def test_a_sweep_holding_categories_candidate_testing_and_boundary_probing_are_caught_on_raw_rows(key):
    model = register_credit_pipeline(slug="mixed-detect", n=600)[0]
    DetectorState.objects.create(model=model, fingerprint_key=data_fernet().encrypt(key))
    now = time.time()
    store(model, build_traffic(model, Plan(benign_clients=40, hours=24, seed=1), end=now - 7 * 3600))
    calibrate_model(model)
    live = build_traffic(model, Plan(benign_clients=40, hours=6, seed=2, attacks=ATTACKS), end=now - 600)
    categories = model.schema.categorical
    sweep = live.features[live.of_client("attacker-noise-sweep")][:, categories]
    assert np.all((sweep == np.round(sweep)) | np.isnan(sweep))  # categories held: whole codes, never noised
    store(model, live)
    scan_model(model)
    caught = in_incidents(model)
    assert set(live.attackers) <= caught, (set(live.attackers) - caught)
    assert len(caught & set(live.benign_clients)) <= 1
