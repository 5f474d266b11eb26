"""One shared scenario for the detector tests: UCI Adult, a random forest trained on a member half,
benign traffic from non-members, and one attacker of each kind. Built once per session.

Reference (calibration) traffic and test traffic come from disjoint halves of the non-members, so
the detectors must generalise to people they never saw rather than remember the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from monitor.demo import traffic
from monitor.demo.datasets import load_adult
from monitor.demo.traffic import Traffic
from monitor.detection.detectors import (
    Finding,
    ModelContext,
    QueryBatch,
    build_detectors,
    calibrate,
    detector_names,
    scan,
)

HOUR = 3600.0
KEY = b"detector-tests-fingerprint-key-0123456789"


@dataclass
class Adult:
    members: np.ndarray
    member_ids: np.ndarray
    reference_pool: np.ndarray  # non-members behind the calibration traffic
    test_pool: np.ndarray  # other non-members, behind the benign test traffic
    stds: np.ndarray
    model: Any  # anything with predict_proba

    def answer(
        self,
        queries: Traffic,
        *,
        first_id: int = 0,
        outputs: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> QueryBatch:
        """The queries as the query log holds them, answered by the target model."""
        proba = (outputs or self.model.predict_proba)(queries.features.astype(np.float64))
        return QueryBatch(
            query_ids=np.arange(first_id, first_id + len(queries)),
            client_ids=queries.client_ids,
            timestamps=queries.timestamps,
            features=queries.features,
            outputs=proba,
        )

    def context(self, reference: QueryBatch, **changes: Any) -> ModelContext:
        settings = {
            "n_classes": 2,
            "fingerprint_key": KEY,
            "members": self.members,
            "member_ids": self.member_ids,
        }
        settings.update(changes)
        return ModelContext.from_reference(reference.features, **settings)


@dataclass
class Scan:
    traffic: Traffic
    batch: QueryBatch
    findings: list[Finding]
    state: dict[str, Any]

    def flagged(self, detector: str) -> set[str]:
        return {finding.client_id for finding in self.findings if finding.detector == detector}

    def finding(self, detector: str, client_id: str) -> Finding:
        matches = [f for f in self.findings if f.detector == detector and f.client_id == client_id]
        assert matches, f"{detector} did not flag {client_id}"
        return matches[0]

    def benign_flagged(self, detector: str) -> set[str]:
        return self.flagged(detector) - set(self.traffic.attackers)


@pytest.fixture(scope="session")
def adult() -> Adult:
    data = load_adult()
    order = np.random.default_rng(0).permutation(len(data.X))
    member_rows, other_rows = order[: len(order) // 2], order[len(order) // 2 :]
    members = data.X[member_rows]
    non_members = data.X[other_rows]
    model = RandomForestClassifier(n_estimators=40, random_state=0, n_jobs=1).fit(
        members, data.y[member_rows]
    )
    half = len(non_members) // 2
    return Adult(
        members=members,
        member_ids=member_rows.astype(np.int64),
        reference_pool=non_members[:half],
        test_pool=non_members[half:],
        stds=non_members.std(axis=0),
        model=model,
    )


@pytest.fixture(scope="session")
def reference_batch(adult: Adult) -> QueryBatch:
    return adult.answer(traffic.benign_traffic(adult.reference_pool, n_clients=400, seed=1))


@pytest.fixture(scope="session")
def context(adult: Adult, reference_batch: QueryBatch) -> ModelContext:
    """Calibrated at the default false-alarm rate."""
    context = adult.context(reference_batch)
    context.calibration = calibrate(reference_batch, context)
    return context


def attacks(adult: Adult) -> list[Traffic]:
    """One attacker of each kind, each starting at its own hour of the day."""
    members, ids, stds = adult.members, adult.member_ids, adult.stds
    steps = np.where(stds > 1000, stds * 0.05, 1.0)
    return [
        traffic.noise_sweep(
            members[:10],
            feature_stds=stds,
            client_id="attacker-noise",
            seed=11,
            start=2 * HOUR,
            target_ids=ids[:10],
        ),
        traffic.augmentation_sweep(
            members[10:20],
            feature_steps=steps,
            client_id="attacker-augment",
            seed=12,
            start=4 * HOUR,
            target_ids=ids[10:20],
        ),
        traffic.boundary_search(
            adult.model.predict_proba,
            adult.test_pool[:30],
            adult.test_pool,
            feature_stds=stds,
            client_id="attacker-boundary",
            seed=13,
            start=6 * HOUR,
            rate_per_second=0.5,
        ),
        traffic.candidate_testing(
            members,
            adult.test_pool,
            n_candidates=200,
            member_share=0.5,
            client_id="attacker-candidates",
            seed=14,
            start=8 * HOUR,
            rate_per_second=0.05,
            member_ids=ids,
        ),
        traffic.shadow_harvest(
            adult.reference_pool,
            n=400,
            client_id="attacker-shadow",
            seed=15,
            start=10 * HOUR,
            rate_per_second=0.05,
        ),
        traffic.shadow_harvest(
            adult.reference_pool,
            n=300,
            client_id="attacker-uniform",
            seed=16,
            method="uniform",
            start=12 * HOUR,
            rate_per_second=0.05,
        ),
        traffic.split_accounts(
            traffic.noise_sweep(
                members[40:60],
                feature_stds=stds,
                client_id="attacker-split",
                seed=17,
                copies=20,
                start=14 * HOUR,
                rate_per_second=0.2,
                target_ids=ids[40:60],
            ),
            n_accounts=4,
        ),
    ]


@pytest.fixture(scope="session")
def attack_scan(adult: Adult, context: ModelContext) -> Scan:
    day = traffic.combine(traffic.benign_traffic(adult.test_pool, n_clients=300, seed=2), *attacks(adult))
    batch = adult.answer(day)
    findings, state = scan(batch, context)
    return Scan(day, batch, findings, state)


@dataclass
class BenignRun:
    false_alarm_rate: float
    clients: int  # benign client-days scanned
    flagged: dict[str, set[str]]  # detector -> benign clients it flagged

    def allowed(self) -> float:
        """Twice the stated rate, plus slack for a handful of chance alarms."""
        return 2 * self.false_alarm_rate * self.clients + 3


def run_benign(adult: Adult, reference: QueryBatch, *, false_alarm_rate: float, days: int) -> BenignRun:
    detectors = build_detectors({name: {"false_alarm_rate": false_alarm_rate} for name in detector_names()})
    context = adult.context(reference)
    context.calibration = calibrate(reference, context, detectors=detectors)
    flagged: dict[str, set[str]] = {name: set() for name in detector_names()}
    clients = 0
    for day in range(days):
        benign = traffic.benign_traffic(
            adult.test_pool, n_clients=500, seed=100 + day, client_prefix=f"day{day}-"
        )
        findings, _ = scan(adult.answer(benign), context, detectors=detectors)
        clients += len(benign.clients)
        for finding in findings:
            flagged[finding.detector].add(finding.client_id)
    return BenignRun(false_alarm_rate, clients, flagged)


@pytest.fixture(scope="session")
def benign_at_default_rate(adult: Adult, reference_batch: QueryBatch) -> BenignRun:
    return run_benign(adult, reference_batch, false_alarm_rate=1e-3, days=2)


@pytest.fixture(scope="session")
def benign_at_five_percent(adult: Adult, reference_batch: QueryBatch) -> BenignRun:
    """At a stated 5 % the rate is measurable over a thousand clients, so calibration errors show."""
    return run_benign(adult, reference_batch, false_alarm_rate=0.05, days=2)
