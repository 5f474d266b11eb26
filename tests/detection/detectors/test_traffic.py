"""The traffic generators produce what they promise."""

from __future__ import annotations

import numpy as np

from monitor.demo import traffic
from monitor.detection.detectors.boundary_probing import top_two_margin


def test_benign_clients_follow_the_day_and_come_back_to_their_customers(adult):
    day = traffic.benign_traffic(adult.test_pool, n_clients=200, seed=4)
    assert np.all(np.diff(day.timestamps) >= 0)
    assert day.timestamps.min() >= 0 and day.timestamps.max() <= 86_400
    assert day.attackers == {} and len(day.clients) <= 200
    hour = (day.timestamps // 3600).astype(int)
    noon, night = np.sum((hour >= 10) & (hour < 14)), np.sum((hour < 2) | (hour >= 22))
    assert noon > 2 * night
    assert len(np.unique(day.origin_ids)) < len(day)  # re-scoring
    assert np.isin(day.origin_ids, np.arange(len(adult.test_pool))).all()


def test_noise_sweep_sends_each_target_then_its_copies(adult):
    sweep = traffic.noise_sweep(
        adult.members[:3],
        feature_stds=adult.stds,
        client_id="a",
        seed=1,
        copies=9,
        target_ids=np.array([7, 8, 9]),
    )
    assert len(sweep) == 3 * 10 and sweep.attackers == {"a": "noise_sweep"}
    assert np.array_equal(sweep.origin_ids, np.repeat([7, 8, 9], 10))
    assert np.allclose(sweep.features[0], adult.members[0])


def test_candidate_list_has_the_requested_share_of_members(adult):
    candidates = traffic.candidate_testing(
        adult.members, adult.test_pool, n_candidates=200, member_share=0.3, client_id="c", seed=2
    )
    assert np.mean(candidates.origin_ids >= 0) == 0.3


def test_boundary_search_queries_sit_where_the_model_hesitates(adult):
    probe = traffic.boundary_search(
        adult.model.predict_proba,
        adult.test_pool[:20],
        adult.test_pool,
        feature_stds=adult.stds,
        client_id="b",
        seed=3,
    )
    honest = traffic.benign_traffic(adult.test_pool, n_clients=20, seed=3)
    margins = top_two_margin(adult.model.predict_proba(probe.features.astype(np.float64)))
    benign_margins = top_two_margin(adult.model.predict_proba(honest.features.astype(np.float64)))
    assert np.median(margins) < np.median(benign_margins)


def test_shadow_data_keeps_marginals_or_ranges(adult):
    marginal = traffic.shadow_harvest(adult.reference_pool, n=300, client_id="s", seed=4)
    uniform = traffic.shadow_harvest(adult.reference_pool, n=300, client_id="u", seed=4, method="uniform")
    for j in range(adult.reference_pool.shape[1]):
        assert np.isin(marginal.features[:, j], adult.reference_pool[:, j].astype(np.float32)).all()
    assert (uniform.features >= adult.reference_pool.min(0).astype(np.float32) - 1).all()
    assert (uniform.features <= adult.reference_pool.max(0).astype(np.float32) + 1).all()


def test_split_accounts_deal_every_target_to_every_account(adult):
    sweep = traffic.noise_sweep(adult.members[:5], feature_stds=adult.stds, client_id="x", seed=5, copies=19)
    split = traffic.split_accounts(sweep, n_accounts=4)
    assert set(split.clients) == {f"x-account{i}" for i in range(4)}
    assert set(split.accounts.values()) == {"x"} and set(split.attackers.values()) == {"noise_sweep"}
    for account in split.clients:
        assert set(split.origin_ids[split.of_client(account)].tolist()) == set(range(5))


def test_adaptive_sweep_hides_each_query_among_benign_looking_ones(adult):
    sweep = traffic.adaptive_sweep(adult.members[:4], adult.test_pool, feature_stds=adult.stds, client_id="x", seed=3,
                                   copies=10, cover_per_query=3, rate_per_second=0.05)
    assert len(sweep) == 4 * 10 * 4 and sweep.attackers == {"x": "adaptive_sweep"}
    assert np.sum(sweep.origin_ids >= 0) == 40 and np.sum(sweep.origin_ids == -1) == 120  # 1 : 3
    # The noise follows each feature's spread: per-feature deviations from the targets scale with the stds.
    swept = sweep.features[sweep.origin_ids >= 0].astype(np.float64)
    deviation = np.abs(swept - adult.members[sweep.origin_ids[sweep.origin_ids >= 0]]).mean(axis=0)
    varying = adult.stds > 0
    ratio = deviation[varying] / adult.stds[varying]
    assert 0.15 < np.median(ratio) < 0.35
    span = sweep.timestamps.max() - sweep.timestamps.min()
    assert span > 0.5 * len(sweep) / 0.05  # an honest client's pace, not a burst


def test_low_and_slow_spreads_candidate_testing_over_days(adult):
    slow = traffic.low_and_slow(adult.members, adult.test_pool, n_candidates=150, client_id="s", seed=5, start=0.0,
                                days=5)
    assert len(slow) == 150 and slow.attackers == {"s": "low_and_slow"}
    per_day = np.bincount((slow.timestamps // 86_400).astype(int), minlength=5)
    assert len(per_day) == 5 and per_day.max() < 60  # about 30 a day, never a burst


def test_slow_sweep_shuffles_every_target_s_copies_over_days(adult):
    targets = adult.members[:10]
    slow = traffic.slow_sweep(targets, feature_stds=adult.members.std(axis=0), client_id="s", seed=6, start=0.0,
                              days=3, copies=29)
    assert len(slow) == 300 and slow.attackers == {"s": "slow_sweep"}
    assert (np.unique(slow.origin_ids, return_counts=True)[1] == 30).all()  # each target and its 29 copies
    per_day = np.bincount((slow.timestamps // 86_400).astype(int), minlength=3)
    assert len(per_day) == 3 and per_day.min() > 50  # spread over the three days
    first_hour = slow.origin_ids[slow.timestamps < slow.timestamps.min() + 3600]
    assert len(np.unique(first_hour)) >= min(len(first_hour), 4)  # targets interleaved, not one after another
