"""Account linking: several clients sending queries with the same rare fingerprints (one attacker, many accounts).

A careful attacker splits each target's sweep over accounts to stay under per-client thresholds;
the accounts then share keyed fingerprints far more often than independent clients do. Each
client keeps a bottom-k sketch of its fingerprints (Broder 1997; Cohen & Kaplan 2007), so the
state stays bounded and shared sketch entries are a uniform sample of shared cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

import numpy as np
from scipy.stats import nbinom, poisson

from monitor.detection.detectors.base import (
    SECONDS_PER_DAY,
    Detector,
    Finding,
    ModelContext,
    PreparedBatch,
    QueryBatch,
    evidence_ids,
    score_from_p,
    severity_for,
)
from monitor.detection.detectors.fingerprints import FINGERPRINT_BITS
from monitor.detection.detectors.registry import register
from monitor.detection.detectors.wording import as_count, short_value

HASH_SPACE = float(1 << FINGERPRINT_BITS)
MAX_POPULAR_CELLS = 5000
MAX_LINKED_CLIENTS = 50


def distinct_pairs(owners: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (owner, hash) pairs, sorted by owner then hash."""
    order = np.lexsort((hashes, owners))
    owners, hashes = owners[order], hashes[order]
    new = (
        np.r_[True, (owners[1:] != owners[:-1]) | (hashes[1:] != hashes[:-1])]
        if len(owners)
        else np.zeros(0, bool)
    )
    return owners[new], hashes[new]


def _client_cells(
    prepared: PreparedBatch, hashes: np.ndarray, popular: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (client code, fingerprint) pairs of the batch, without popular cells."""
    keep = ~np.isin(hashes, popular)
    return distinct_pairs(prepared.codes[keep], hashes[keep])


def shared_cell_pairs(
    owners: np.ndarray, hashes: np.ndarray, *, max_clients_per_cell: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Client pairs (a < b) and how many cells they share, from distinct (owner, hash) entries.

    Cells held by more than `max_clients_per_cell` clients are common ground, not a link.
    """
    order = np.lexsort((owners, hashes))
    h, o = hashes[order], owners[order]
    if len(h) < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    boundary = np.flatnonzero(np.r_[True, h[1:] != h[:-1], True])
    starts, sizes = boundary[:-1], np.diff(boundary)
    firsts, seconds = [], []
    for size in range(2, max_clients_per_cell + 1):
        group_starts = starts[sizes == size]
        if len(group_starts) == 0:
            continue
        combo = np.asarray(list(combinations(range(size), 2)))
        firsts.append(o[group_starts[:, None] + combo[None, :, 0]].reshape(-1))
        seconds.append(o[group_starts[:, None] + combo[None, :, 1]].reshape(-1))
    if not firsts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    a, b = np.concatenate(firsts), np.concatenate(seconds)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    n_owners = int(owners.max()) + 1
    codes, shared = np.unique(lo * n_owners + hi, return_counts=True)
    return codes // n_owners, codes % n_owners, shared


@dataclass
class _Sketches:
    """Bottom-k sketch of each owner's distinct rare cells, with the cardinality estimate and sampling rate."""

    owners: np.ndarray  # all distinct (owner, hash) entries, sorted by owner then hash
    hashes: np.ndarray
    starts: np.ndarray  # (n_owners + 1,) offsets into owners/hashes
    in_sketch: np.ndarray  # entries kept in the sketch (the owner's sketch_size smallest hashes)
    n_cells: np.ndarray  # estimated distinct cells per owner
    sample_rate: np.ndarray  # share of an owner's cells its sketch holds

    @classmethod
    def build(cls, owners: np.ndarray, hashes: np.ndarray, n_owners: int, sketch_size: int) -> _Sketches:
        owners, hashes = distinct_pairs(owners, hashes)
        starts = np.searchsorted(owners, np.arange(n_owners + 1))
        in_sketch = (np.arange(len(owners)) - starts[owners]) < sketch_size
        union = np.diff(starts)
        full = union >= sketch_size
        kth = np.ones(n_owners)
        kth[full] = hashes[starts[:-1][full] + sketch_size - 1] / HASH_SPACE
        # Exact while everything fits; otherwise the bottom-k estimate (k - 1) / h_k (Cohen & Kaplan 2007).
        n_cells = np.where(full, (sketch_size - 1) / kth, union.astype(np.float64))
        return cls(owners, hashes, starts, in_sketch, n_cells, np.where(full, kth, 1.0))

    def expected_shared(self, first: np.ndarray, second: np.ndarray, kappa: float) -> np.ndarray:
        """E|S_a ∩ S_b| for independent benign clients: kappa |A| |B|, thinned by the sketches' sampling."""
        return (
            kappa
            * self.n_cells[first]
            * self.n_cells[second]
            * np.minimum(self.sample_rate[first], self.sample_rate[second])
        )


def negative_binomial_tail(shared: np.ndarray, expected: np.ndarray, dispersion: float) -> np.ndarray:
    """P(X >= shared) for X with mean `expected` and variance expected * (1 + dispersion * expected)."""
    shared = np.asarray(shared, dtype=np.float64)
    expected = np.maximum(np.asarray(expected, dtype=np.float64), 1e-12)
    if dispersion <= 1e-9:
        return poisson.sf(shared - 1, expected)
    size = 1.0 / dispersion
    return nbinom.sf(shared - 1, size, size / (size + expected))


@register
@dataclass(frozen=True)
class AccountLinkingDetector(Detector):
    name: ClassVar[str] = "account_linking"
    title: ClassVar[str] = "Same probing pattern across several accounts"
    compares_clients: ClassVar[bool] = True

    false_alarm_rate: float = 1e-3  # per benign client-day
    cell_size: float = 1.0  # same grid as the near-duplicate sweep, so fingerprints are computed once
    sketch_size: int = 128
    window_seconds: float = SECONDS_PER_DAY  # sketches restart every window
    min_shared: int = 3  # one or two shared customers between honest clients is ordinary
    max_clients_per_cell: int = 32
    popular_share: float = 0.01  # cells used by this share of reference clients are ignored
    max_calibration_clients: int = 3000  # pairs grow quadratically; the dispersion fit needs no more

    def describe(self, evidence: Mapping[str, Any]) -> str:
        return (f"Shares {as_count(evidence.get('shared_fingerprints'))} rare query fingerprints with "
                f"{evidence.get('strongest_link')} (about {short_value(evidence.get('expected_shared'))} expected by "
                f"chance); linked to {as_count(evidence.get('n_linked_clients'))} account(s): "
                f"{short_value((evidence.get('linked_clients') or [])[:5])}.")

    @property
    def state_horizon_seconds(self) -> float:
        return self.window_seconds

    def _hashes(self, prepared: PreparedBatch) -> np.ndarray:
        return prepared.fingerprints(cell_size=self.cell_size, n_grids=1)[:, 0]

    def calibrate(self, reference: QueryBatch, context: ModelContext) -> dict[str, Any]:
        prepared = context.prepared(reference)
        codes, hashes = _client_cells(prepared, self._hashes(prepared), np.zeros(0, np.int64))
        cells, clients_per_cell = np.unique(hashes, return_counts=True)
        popular_floor = max(3, int(math.ceil(self.popular_share * len(prepared.clients))))
        popular_rank = np.lexsort((cells, -clients_per_cell))
        popular = np.sort(
            cells[popular_rank][clients_per_cell[popular_rank] >= popular_floor][:MAX_POPULAR_CELLS]
        )
        rare = ~np.isin(hashes, popular)
        per_client = np.bincount(codes[rare], minlength=len(prepared.clients)).astype(np.float64)
        rare_counts = clients_per_cell[~np.isin(cells, popular)].astype(np.float64)
        # kappa: chance that a given rare cell of one benign client is also a given one of another,
        # so that E|A ∩ B| = kappa |A| |B| for independent clients A and B.
        pair_mass = per_client.sum() ** 2 - (per_client**2).sum()
        kappa = float((rare_counts * (rare_counts - 1)).sum() / pair_mass) if pair_mass > 0 else 0.0
        kappa = max(kappa, 1.0 / max(pair_mass, 1.0))
        dispersion, inflation = self._fit_pair_model(codes[rare], hashes[rare], len(prepared.clients), kappa)
        return {
            "settings": self.settings(),
            "false_alarm_rate": self.false_alarm_rate,
            "kappa": kappa,
            "dispersion": dispersion,
            "inflation": inflation,
            "popular_cells": [int(h) for h in popular],
            "reference_clients": int(len(prepared.clients)),
        }

    def _fit_pair_model(
        self, codes: np.ndarray, hashes: np.ndarray, n_clients: int, kappa: float
    ) -> tuple[float, float]:
        """(dispersion, inflation) of the shared-cell count over all benign reference client pairs.

        The dispersion is the negative-binomial moment estimate: honest clients in the same trade
        share more cells than kappa alone says. The inflation is how much more often than nominal
        the reference pairs still reach small p-values (a tail heavier than the negative binomial,
        e.g. clients sharing customers they both keep editing); scan p-values are multiplied by it.
        """
        kept = min(n_clients, self.max_calibration_clients)
        use = codes < kept  # clients are sorted by id, so this is a deterministic subset
        sketches = _Sketches.build(codes[use], hashes[use], kept, self.sketch_size)
        first, second, shared = shared_cell_pairs(
            sketches.owners[sketches.in_sketch],
            sketches.hashes[sketches.in_sketch],
            max_clients_per_cell=self.max_clients_per_cell,
        )
        a, b = np.triu_indices(kept, k=1)
        mu_all = sketches.expected_shared(a, b, kappa)
        mu_pairs = sketches.expected_shared(first, second, kappa)
        # Sum over all pairs of (X - mu)^2 - mu, with X = 0 for pairs that share nothing.
        excess = float((mu_all**2 - mu_all).sum() + ((shared - mu_pairs) ** 2 - mu_pairs**2).sum())
        scale = float((mu_all**2).sum())
        dispersion = max(0.0, excess / scale) if scale > 0 else 0.0
        tested = shared >= self.min_shared
        p_values = negative_binomial_tail(shared[tested], mu_pairs[tested], dispersion)
        inflation = 1.0
        for level in 10.0 ** -np.arange(2, 8):
            observed = int((p_values <= level).sum())
            # Only levels the reference can speak to: at least five pairs observed there.
            if observed >= 5:
                inflation = max(inflation, observed / (level * len(a)))
        return dispersion, inflation

    def scan(
        self, batch: QueryBatch, context: ModelContext, state: Mapping[str, Any] | None = None
    ) -> tuple[list[Finding], dict[str, Any]]:
        calibration = self.calibration(context)
        state = state or {}
        prepared = context.prepared(batch)
        if len(prepared) == 0:
            return [], dict(state)
        window = int(np.floor(prepared.times.max() / self.window_seconds))
        # Each client's sketch belongs to one window; sketches of an earlier window are forgotten.
        carried: dict[str, Any] = {
            client: entry for client, entry in (state.get("clients") or {}).items() if entry.get("window") == window
        }

        popular = np.asarray(calibration["popular_cells"], dtype=np.int64)
        batch_codes, batch_hashes = _client_cells(prepared, self._hashes(prepared), popular)
        # Every client of this window, active now or only in the state, gets one index.
        everyone = np.asarray(sorted(set(carried) | set(prepared.clients.tolist())), dtype=str)
        active_owner = np.searchsorted(everyone, prepared.clients)
        carried_names = [c for c in everyone.tolist() if c in carried]
        carried_owner = (
            np.searchsorted(everyone, np.asarray(carried_names, dtype=str))
            if carried_names
            else np.zeros(0, np.int64)
        )
        owners = np.concatenate(
            [
                active_owner[batch_codes],
                *[
                    np.full(len(carried[c]["sketch"]), o, np.int64)
                    for c, o in zip(carried_names, carried_owner, strict=True)
                ],
            ]
        )
        hashes = np.concatenate(
            [batch_hashes, *[np.asarray(carried[c]["sketch"], np.int64) for c in carried_names]]
        )
        sketches = _Sketches.build(owners, hashes, len(everyone), self.sketch_size)
        sketch_owners, sketch_hashes = (
            sketches.owners[sketches.in_sketch],
            sketches.hashes[sketches.in_sketch],
        )

        first, second, shared = shared_cell_pairs(
            sketch_owners, sketch_hashes, max_clients_per_cell=self.max_clients_per_cell
        )
        active = np.zeros(len(everyone), bool)
        active[active_owner] = True
        relevant = (shared >= self.min_shared) & (active[first] | active[second])
        first, second, shared = first[relevant], second[relevant], shared[relevant]
        expected = sketches.expected_shared(first, second, float(calibration["kappa"]))
        # Bonferroni over each client's possible partners.
        p_pair = np.minimum(
            1.0,
            negative_binomial_tail(shared, expected, float(calibration["dispersion"]))
            * float(calibration["inflation"])
            * max(1, len(everyone) - 1),
        )
        far = float(calibration["false_alarm_rate"])
        significant = p_pair <= far

        findings = self._findings(
            prepared,
            everyone,
            first[significant],
            second[significant],
            shared[significant],
            expected[significant],
            p_pair[significant],
            sketch_owners,
            sketch_hashes,
            far,
        )
        new_clients: dict[str, Any] = {}
        for index, client in enumerate(everyone.tolist()):
            lo = sketches.starts[index]
            hi = min(sketches.starts[index + 1], lo + self.sketch_size)
            new_clients[client] = {"window": window, "sketch": [int(h) for h in sketches.hashes[lo:hi]]}
        return findings, {"clients": new_clients}

    def _findings(
        self,
        prepared: PreparedBatch,
        everyone: np.ndarray,
        first: np.ndarray,
        second: np.ndarray,
        shared: np.ndarray,
        expected: np.ndarray,
        p_pair: np.ndarray,
        sketch_owners: np.ndarray,
        sketch_hashes: np.ndarray,
        far: float,
    ) -> list[Finding]:
        threshold = -math.log10(far)
        active = {client: code for code, client in enumerate(prepared.clients.tolist())}
        hashes = self._hashes(prepared)
        findings = []
        for owner in np.unique(np.concatenate([first, second])).tolist():
            mine = (first == owner) | (second == owner)
            partners = np.where(first[mine] == owner, second[mine], first[mine])
            strongest = int(np.argmin(p_pair[mine]))
            client = str(everyone[owner])
            linked_hashes = np.intersect1d(
                sketch_hashes[sketch_owners == owner], sketch_hashes[np.isin(sketch_owners, partners)]
            )
            query_ids: list[Any] = []
            if client in active:
                code = active[client]
                lo, hi = prepared.starts[code], prepared.starts[code + 1]
                query_ids = evidence_ids(prepared.query_ids[lo:hi][np.isin(hashes[lo:hi], linked_hashes)])
            score = score_from_p(float(p_pair[mine][strongest]))
            findings.append(
                Finding(
                    detector=self.name,
                    client_id=client,
                    score=score,
                    severity=severity_for(score, threshold),
                    evidence={
                        "linked_clients": sorted(str(everyone[p]) for p in partners)[:MAX_LINKED_CLIENTS],
                        "n_linked_clients": int(len(partners)),
                        "shared_fingerprints": int(shared[mine][strongest]),
                        "expected_shared": round(float(expected[mine][strongest]), 6),
                        "strongest_link": str(everyone[partners[strongest]]),
                        "false_alarm_rate": far,
                        "false_alarm_unit": "client-day",
                        "query_ids": query_ids,
                    },
                )
            )
        return findings
