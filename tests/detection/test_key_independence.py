"""A blatant attacker in a model's very first traffic is caught whatever the model's fingerprint key, and its incident
names no one else (issue 29: the same sweep was caught on 3 of 6 freshly registered models).

The key decides which cells the fingerprints cut a query's neighbourhood into. The first scan calibrates on the window
the attacker is in: a calibration that counted the attacker learnt it as normal, and whether it was flagged anyway
came down to the key, or to nothing at all when leaving it out would have left fewer than 500 benign queries (the
beat's first scan runs as soon as 500 are logged, in the middle of a sweep). Each client is now judged by a calibration
on the other clients first (`monitor.detection.detectors.trimming`), where its volume and its member hits, which owe
nothing to the key, put a blatant one far beyond benign.

Every scenario: 60 benign clients sending 10 queries each over three hours, and one attacker from the first hour on —
a 360-query noise sweep around 12 member records, 400 candidate records half of them members, or a boundary search
from 8 member records — under 24 keys. The sweep goes through the real scans on a freshly registered model per key;
all three go through the same calibration and scan cores on the log as the database hands it over, logged whole
before the first scan or scanned as the beat would (a model per key for those too would triple the file's time and
run no other detection code).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from monitor.demo import traffic as gen
from monitor.detection import incidents
from monitor.detection.calibration import model_detectors
from monitor.detection.detectors import Finding, ModelContext, scan
from monitor.detection.detectors.trimming import trimmed_calibration
from monitor.detection.log_reader import load_queries, load_window
from monitor.detection.scanning import scan_model
from monitor.detection.space import detection_features
from monitor.ingestion.store import safe_high_water
from monitor.models import Alert, AlertSource, DetectorFinding, DetectorState, RegisteredModel
from monitor.platform.crypto import data_fernet
from monitor.platform.severity import Severity
from monitor.registry.predictors import predictor_for
from tests.detection.helpers import store
from tests.detection.test_cold_start import past_mark
from tests.factories import make_audited_model

pytestmark = pytest.mark.django_db

KEYS = [hashlib.sha256(f"tests/detection/test_key_independence.py key {i}".encode()).digest() for i in range(24)]
ATTACKER = "attacker-7f3a"
ATTACKS = ("noise_sweep", "candidate_testing", "boundary_search")
FIRST_SCAN_ROWS = 500  # DETECTOR_MIN_CALIBRATION_ROWS: the beat's first scan calibrates once this many are logged


def first_traffic(model: RegisteredModel, attack: str) -> gen.Traffic:
    """60 benign clients × 10 queries over three hours, and the attacker from the end of the first hour."""
    data = {dataset.kind: dataset.load() for dataset in model.datasets.all()}  # decrypted in memory only
    pool, members = np.vstack([data["nonmembers"].X, data["population"].X]), data["members"].X
    start = past_mark() - 60 - 3 * 3600
    benign = gen.even_benign_traffic(pool, n_clients=60, queries_per_client=10, seed=29, start=start,
                                     duration=3 * 3600)
    targets = members[np.random.default_rng(29).choice(len(members), 12, replace=False)]
    if attack == "noise_sweep":
        part = gen.noise_sweep(targets, feature_stds=pool.std(axis=0), client_id=ATTACKER, seed=29, copies=29,
                               start=start + 3600)
    elif attack == "candidate_testing":
        part = gen.candidate_testing(members, data["nonmembers"].X, n_candidates=400, client_id=ATTACKER, seed=29,
                                     start=start + 3600)
    else:
        part = gen.boundary_search(predictor_for(model).predict_proba, targets[:8], pool[:2000],
                                   feature_stds=pool.std(axis=0), client_id=ATTACKER, seed=29, start=start + 3600)
    return gen.combine(benign, part)


def logged_by_first_scan(traffic: gen.Traffic) -> np.ndarray:
    """The queries logged when the beat's first scan calibrates: up to the first minute that ends with 500 logged."""
    minute_ends = (np.floor(traffic.timestamps / 60) + 1) * 60
    first = minute_ends[np.searchsorted(traffic.timestamps, minute_ends, side="left") >= FIRST_SCAN_ROWS][0]
    return traffic.timestamps < first


def names_in(words: object, clients: list[str]) -> list[str]:
    """The clients among `clients` whose ids `words` (an alert's title and evidence, findings' evidence) spell out."""
    text = json.dumps(words)
    return sorted(client for client in clients if f'"{client}"' in text)


@pytest.mark.long
def test_a_heavy_sweep_in_a_new_models_first_traffic_is_caught_under_every_key_and_its_incident_names_it_alone():
    template = make_audited_model(n=600, slug="sweep-key-template")
    traffic = first_traffic(template, "noise_sweep")
    assert int(traffic.of_client(ATTACKER).sum()) == 360 and len(traffic.benign_clients) == 60
    assert len(traffic) == 960
    first = logged_by_first_scan(traffic)
    # The first scan calibrates on a window that is mostly the sweep: leaving the attacker out leaves fewer than 500.
    assert int(traffic.take(first).of_client(ATTACKER).sum()) > int(first.sum()) - FIRST_SCAN_ROWS
    outcomes = {}
    for number, key in enumerate(KEYS):
        model = make_audited_model(n=600, slug=f"sweep-key-{number}")  # the same records: the key alone differs
        DetectorState.objects.create(model=model, fingerprint_key=data_fernet().encrypt(key))
        store(model, traffic.take(first))
        scan_model(model)  # the first scan: calibrates on the log so far, the sweep in it, then scans it
        store(model, traffic.take(~first))
        scan_model(model)  # the beat's next scans, in one
        alerts = list(Alert.objects.filter(model=model, source=AlertSource.DETECTOR))
        benign_findings = DetectorFinding.objects.filter(model=model).exclude(client_id=ATTACKER).exclude(
            severity=Severity.INFO)
        outcomes[number] = ([(alert.client_id, alert.evidence["accounts"],
                              names_in([alert.title, alert.client_id, alert.evidence], traffic.clients))
                             for alert in alerts], sorted(benign_findings.values_list("detector", "client_id")))
    expected = ([(ATTACKER, [ATTACKER], [ATTACKER])], [])
    assert {number: outcome for number, outcome in outcomes.items() if outcome != expected} == {}


def first_scans_in_memory(model: RegisteredModel, key: bytes, *, calibrate_upto: int) -> list[Finding]:
    """What the scans find under `key`: `calibrate_model`'s calibration of the log up to `calibrate_upto` (the
    window's scaling, the trimmed calibration) and `scan_part`'s scans of it and of the rest, state carried, as the
    database hands the queries over; without the rows they write."""
    window, _, _ = load_window(model, from_id=0, upto=calibrate_upto, exclude_clients=(), cap=10**6)
    members = model.datasets.get(kind="members").load()
    features = window.features.astype(np.float64)
    context = ModelContext(feature_means=features.mean(axis=0), feature_stds=features.std(axis=0),
                           n_classes=len(model.class_labels), fingerprint_key=key,
                           members=detection_features(members.X, model.schema), member_ids=members.record_ids)
    detectors = model_detectors(model)
    calibration = trimmed_calibration(window, context, detectors).calibration
    context.calibration = json.loads(json.dumps(calibration))  # as the scan reads it back from the database
    findings, state = scan(window, context, None, detectors=detectors)
    rest, _ = load_queries(model, after_id=calibrate_upto, upto_id=safe_high_water(model), limit=10**6)
    if len(rest):
        later, _ = scan(rest, context, json.loads(json.dumps(state)), detectors=detectors)
        findings += later
    return findings


@pytest.mark.parametrize("delivery", ["logged whole", "scanned as it arrives"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_a_sweep_a_candidate_tester_and_a_boundary_prober_in_a_new_models_first_traffic_are_caught_under_every_key(
        attack, delivery):
    model = make_audited_model(n=600, slug=f"{attack.replace('_', '-')}-keys")
    traffic = first_traffic(model, attack)
    first = logged_by_first_scan(traffic) if delivery == "scanned as it arrives" else np.ones(len(traffic), bool)
    store(model, traffic.take(first))
    calibrate_upto = safe_high_water(model)
    if not first.all():
        store(model, traffic.take(~first))
    outcomes = {}
    for number, key in enumerate(KEYS):
        findings = first_scans_in_memory(model, key, calibrate_upto=calibrate_upto)
        # The incidents the scans would open: one per actor with a finding above info.
        opening = [actor for actor in incidents.group_by_actor(model, findings) if incidents.opens_incident(actor)]
        named = names_in([finding.evidence for actor in opening for finding in actor.findings], traffic.clients)
        outcomes[number] = ([sorted(actor.clients) for actor in opening], named)
    assert {number: outcome for number, outcome in outcomes.items() if outcome != ([[ATTACKER]], [])} == {}
