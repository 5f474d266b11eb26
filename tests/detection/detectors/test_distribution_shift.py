"""Distribution shift: synthetic shadow data does not look like production traffic."""

from __future__ import annotations

import numpy as np

from monitor.demo import traffic
from monitor.detection.detectors import DistributionShiftDetector, scan


def test_flags_marginal_and_uniform_shadow_data(attack_scan):
    assert {"attacker-shadow", "attacker-uniform"} <= attack_scan.flagged("distribution_shift")
    marginal = attack_scan.finding("distribution_shift", "attacker-shadow").evidence
    # Per-feature marginal sampling keeps every marginal right; the joint cells give it away.
    assert marginal["mean_cell_rank"] < marginal["benign_mean_ranks"][1]


def test_stays_quiet_on_benign_traffic_from_people_it_never_saw(
    benign_at_default_rate, benign_at_five_percent
):
    for run in (benign_at_default_rate, benign_at_five_percent):
        assert len(run.flagged["distribution_shift"]) <= run.allowed()


def test_real_records_are_not_a_shift(attack_scan):
    # The candidate tester sends real people, members or not: other detectors' business.
    assert "attacker-candidates" not in attack_scan.flagged("distribution_shift")


def test_waits_for_its_minimum_sample_before_judging(adult, context):
    minimum = context.calibration["distribution_shift"]["min_queries"]
    synthetic = traffic.shadow_harvest(
        adult.reference_pool, n=minimum, client_id="harvester", seed=3, method="uniform"
    )
    early, late = synthetic.take(slice(0, minimum // 2)), synthetic.take(slice(minimum // 2, minimum))
    detector = DistributionShiftDetector()
    found_early, state = scan(adult.answer(early), context, detectors=[detector])
    found_late, _ = scan(adult.answer(late, first_id=minimum), context, state, detectors=[detector])
    assert found_early == []
    assert [f.client_id for f in found_late] == ["harvester"]
    assert found_late[0].evidence["n_queries"] == minimum


def test_a_client_re_scoring_a_few_customers_with_edits_is_judged_on_its_customers(adult, context):
    """Thirty unusual customers re-scored 600 times, most with one value edited: the edited copies carry their
    customer's ranks, so the client's mean counts each customer's neighbourhood once (about 45 units: too few to
    judge), not each edited copy (about 150 "distinct" records, a full block whose mean is far from benign)."""
    pool = adult.test_pool
    z = (pool - pool.mean(axis=0)) / pool.std(axis=0)
    unusual = pool[np.argsort((z**2).sum(axis=1))[-300:]]
    editor = traffic.benign_traffic(unusual, n_clients=1, seed=5, queries_per_day=600, rate_spread=0.01,
                                    book_size=(30, 31), jitter=0.05, jitter_share=0.9, client_prefix="editor-")
    batch = adult.answer(editor)
    detector = DistributionShiftDetector()
    found, state = scan(batch, context, detectors=[detector])
    [client] = state["distribution_shift"]["pending"]
    units = state["distribution_shift"]["pending"][client]["n"]
    assert found == []
    assert units <= 60 < len(np.unique(context.prepared(batch).repeat_keys))
