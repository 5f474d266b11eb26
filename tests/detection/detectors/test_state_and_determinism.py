"""Scans are deterministic, their state survives JSON, and incremental scanning keeps its memory."""

from __future__ import annotations

import json

import numpy as np

from monitor.detection.detectors import ModelContext, QueryBatch, scan
from monitor.detection.detectors.registry import build_detectors


def fresh_copy(context: ModelContext) -> ModelContext:
    """The same model as a new process would rebuild it: no caches, calibration through JSON."""
    return ModelContext(
        feature_means=context.feature_means,
        feature_stds=context.feature_stds,
        n_classes=context.n_classes,
        fingerprint_key=context.fingerprint_key,
        members=context.members,
        member_ids=context.member_ids,
        calibration=json.loads(json.dumps(context.calibration)),
    )


def as_dicts(findings) -> list[dict]:
    return [finding.to_dict() for finding in findings]


def test_the_same_batch_gives_the_same_findings_and_state(attack_scan, context):
    findings, state = scan(attack_scan.batch, fresh_copy(context))
    assert as_dicts(findings) == as_dicts(attack_scan.findings)
    assert json.dumps(state, sort_keys=True) == json.dumps(attack_scan.state, sort_keys=True)


def test_query_order_in_the_batch_does_not_matter(attack_scan, context):
    shuffled = attack_scan.batch.take(np.random.default_rng(3).permutation(len(attack_scan.batch)))
    findings, _ = scan(shuffled, fresh_copy(context))
    assert as_dicts(findings) == as_dicts(attack_scan.findings)


def test_state_and_findings_are_json_and_survive_a_round_trip(adult, attack_scan, context):
    half = len(attack_scan.batch) // 2
    first, second = (
        attack_scan.batch.take(np.arange(half)),
        attack_scan.batch.take(np.arange(half, len(attack_scan.batch))),
    )
    _, state = scan(first, fresh_copy(context))
    round_tripped = json.loads(json.dumps(state))
    assert round_tripped == state
    from_memory, next_state = scan(second, fresh_copy(context), state)
    from_json, next_state_json = scan(second, fresh_copy(context), round_tripped)
    assert as_dicts(from_memory) == as_dicts(from_json)
    assert next_state == next_state_json
    json.dumps(as_dicts(from_json))


def test_rescanning_a_batch_with_the_same_state_is_harmless(attack_scan, context):
    half = len(attack_scan.batch) // 2
    first, second = (
        attack_scan.batch.take(np.arange(half)),
        attack_scan.batch.take(np.arange(half, len(attack_scan.batch))),
    )
    _, state = scan(first, fresh_copy(context))
    once = scan(second, fresh_copy(context), state)
    again = scan(second, fresh_copy(context), state)
    assert as_dicts(once[0]) == as_dicts(again[0]) and once[1] == again[1]


def test_two_half_day_scans_catch_every_attacker_one_scan_catches(attack_scan, context):
    times = attack_scan.batch.timestamps
    noon = np.median(times)
    state, flagged = None, set()
    for part in (times < noon, times >= noon):
        findings, state = scan(attack_scan.batch.take(part), fresh_copy(context), state)
        flagged |= {finding.client_id for finding in findings}
    caught_at_once = {f.client_id for f in attack_scan.findings} & set(attack_scan.traffic.attackers)
    assert caught_at_once <= flagged


def test_an_empty_batch_changes_nothing(attack_scan, context):
    from_lists = QueryBatch(query_ids=[], client_ids=[], timestamps=[], features=[], outputs=[])
    for empty in (attack_scan.batch.take(np.zeros(len(attack_scan.batch), bool)), from_lists):
        findings, state = scan(empty, fresh_copy(context), attack_scan.state)
        assert findings == []
        assert json.loads(json.dumps(state)) == json.loads(json.dumps(attack_scan.state))


def test_a_clients_findings_do_not_depend_on_the_other_clients_in_its_batch(attack_scan, context):
    """How a scan is split into parts must not change what it finds: a sharded scan puts each client in
    a batch with other clients than a one-part scan does. Here another client sends near-copies (0.03 sigma
    apart, inside one repeat cell) of every attacking query, and sorts before the attackers."""
    batch = attack_scan.batch
    attacking = np.isin(batch.client_ids, list(attack_scan.traffic.attackers))
    rng = np.random.default_rng(5)
    jitter = (0.03 * context.feature_stds * rng.standard_normal((int(attacking.sum()), context.n_features)))
    copies = QueryBatch(
        query_ids=batch.query_ids[attacking] + 10**9,
        client_ids=np.full(int(attacking.sum()), "0-copier"),
        timestamps=batch.timestamps[attacking],
        features=batch.features[attacking] + jitter.astype(np.float32),
        outputs=batch.outputs[attacking],
    )
    shared = QueryBatch(*(np.concatenate([getattr(batch, f), getattr(copies, f)]) for f in (
        "query_ids", "client_ids", "timestamps", "features", "outputs")))

    def derived(one: QueryBatch) -> dict[int, tuple]:
        prepared = fresh_copy(context).prepared(one)
        cells = prepared.fingerprints(cell_size=0.5, n_grids=3)
        matched, position = prepared.member_matches(0.5)
        return {int(q): (tuple(c), bool(m), int(p)) for q, c, m, p in zip(
            prepared.query_ids, cells.tolist(), matched, position, strict=True)}

    alone, together = derived(batch), derived(shared)
    assert all(together[q] == alone[q] for q in alone)
    per_client = [detector for detector in build_detectors() if not detector.compares_clients]
    findings, _ = scan(shared, fresh_copy(context), detectors=per_client)
    mine = [f for f in as_dicts(findings) if f["client_id"] != "0-copier"]
    expected, _ = scan(batch, fresh_copy(context), detectors=per_client)
    assert mine == as_dicts(expected)
