"""What every query detector shares: a batch of queries, the model context, findings, the base class.

Pure numpy/scipy; the Django task converts rows to these arrays and findings to alerts.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar, cast

import numpy as np
from scipy.spatial import cKDTree

from monitor.detection.detectors.fingerprints import mix64, quantised_fingerprints, unique_first
from monitor.platform.severity import Severity

# Evidence lists are capped: an attacker's 100,000 query ids would make an unreadable alert.
MAX_EVIDENCE_IDS = 50
# Score ceiling: p-values below 1e-300 underflow and carry no more meaning.
MAX_SCORE = 300.0
SECONDS_PER_DAY = 86_400.0
# A client's carried state is forgotten after this long without a query from it (the scanner deletes its rows).
STATE_HORIZON_SECONDS = 30 * SECONDS_PER_DAY
# Queries closer than about a tenth of a standard deviation on every feature are the same record.
REPEAT_CELL_SIZE = 0.1


class NotCalibrated(RuntimeError):
    """A detector was asked to scan before `calibrate()` ran on the model's reference traffic."""


@dataclass(frozen=True, eq=False)
class QueryBatch:
    """New queries of one model, in any order; arrays are coerced and checked on construction."""

    query_ids: np.ndarray  # int64 (n,)
    client_ids: np.ndarray  # str (n,)
    timestamps: np.ndarray  # float64 (n,), seconds
    features: np.ndarray  # float32 (n, d), raw feature values as the client sent them
    outputs: np.ndarray  # float32 (n, k), what the client saw (probabilities, rounded, one-hot...)

    def __post_init__(self) -> None:
        features = np.asarray(self.features, dtype=np.float32)
        outputs = np.asarray(self.outputs, dtype=np.float32)
        # A quiet beat sends empty lists: treat them as zero rows of unknown width.
        features = features.reshape(0, 0) if features.size == 0 and features.ndim == 1 else features
        outputs = outputs.reshape(0, 0) if outputs.size == 0 and outputs.ndim == 1 else outputs
        if features.ndim != 2 or outputs.ndim != 2:
            raise ValueError("features and outputs must be 2-d arrays (n, d) and (n, k)")
        n = len(features)
        columns = {
            "query_ids": np.asarray(self.query_ids, dtype=np.int64).reshape(-1),
            # Fixed-width unicode: np.unique and sorting stay in C (object arrays compare in Python).
            "client_ids": np.asarray(self.client_ids).astype(str).reshape(-1),
            "timestamps": np.asarray(self.timestamps, dtype=np.float64).reshape(-1),
        }
        for name, column in columns.items():
            if len(column) != n:
                raise ValueError(f"{name} has {len(column)} entries for {n} queries")
        if len(outputs) != n:
            raise ValueError(f"outputs has {len(outputs)} rows for {n} queries")
        if not (
            np.isfinite(features).all()
            and np.isfinite(outputs).all()
            and np.isfinite(columns["timestamps"]).all()
        ):
            raise ValueError("features, outputs and timestamps must be finite")
        for name, column in columns.items():
            object.__setattr__(self, name, column)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "outputs", outputs)

    def __len__(self) -> int:
        return len(self.query_ids)

    def take(self, index: np.ndarray) -> QueryBatch:
        """The queries at `index` (an integer index or a boolean mask)."""
        return QueryBatch(
            query_ids=self.query_ids[index],
            client_ids=self.client_ids[index],
            timestamps=self.timestamps[index],
            features=self.features[index],
            outputs=self.outputs[index],
        )


@dataclass(frozen=True)
class Finding:
    """One suspicious client as one detector sees it. Evidence holds counts and ids, never feature values."""

    detector: str
    client_id: str
    score: float  # -log10 of the false-alarm probability per client-day; comparable across detectors
    severity: str  # info | warning | critical
    evidence: dict[str, Any]

    @property
    def member_ids(self) -> list[Any]:
        return list(self.evidence.get("member_ids", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "client_id": self.client_id,
            "score": self.score,
            "severity": self.severity,
            "evidence": self.evidence,
        }


def score_from_p(p_value: float) -> float:
    """-log10(p), capped, rounded so that reruns print identical numbers."""
    return round(min(MAX_SCORE, -math.log10(max(p_value, 10.0**-MAX_SCORE))), 6)


def severity_for(score: float, threshold: float) -> str:
    """warning when the score clears the calibrated threshold, critical when it clears it twice over.

    Twice the threshold in -log10 units is a false-alarm probability of alpha squared (1e-6 for
    the default 1e-3): benign traffic essentially never gets there.
    """
    return "critical" if score >= 2 * threshold else "warning"


def lower_severity(severity: str) -> str:
    return Severity(severity).lowered().value


def raise_severity(severity: str) -> str:
    return Severity(severity).raised().value


def raise_severity_for_exposed(findings: Iterable[Finding], most_exposed_ids: Iterable[Any]) -> list[Finding]:
    """Raise by one level every finding that touches a record among the audit's most exposed ones.

    The audit knows which members leak most; an attacker probing exactly those is the worst case.
    """
    exposed = {str(record_id) for record_id in most_exposed_ids}
    bumped = []
    for finding in findings:
        touched = sorted({str(record_id) for record_id in finding.member_ids} & exposed)
        if touched:
            evidence = {**finding.evidence, "most_exposed_member_ids": touched}
            finding = replace(finding, severity=raise_severity(finding.severity), evidence=evidence)
        bumped.append(finding)
    return bumped


def evidence_ids(values: np.ndarray) -> list[Any]:
    """At most MAX_EVIDENCE_IDS ids, sorted, as plain Python values (JSON-ready)."""
    unique = np.unique(np.asarray(values))[:MAX_EVIDENCE_IDS]
    return [item.item() if isinstance(item, np.generic) else item for item in unique]


# KD-tree leaves of 64 members rather than scipy's 16: with a match radius of about half the nearest-member distance in
# 10-40 dimensions a query visits many leaves either way, and fewer, larger ones cost less (1.6x faster at 20
# features, the same at 8, on 5,000 members and 100,000 queries). Exact either way (test_fast_paths.py).
LEAF_SIZE = 64


class MemberIndex:
    """Member records in standardised space, held in memory only, with a match radius per record.

    A query matches a member when it lies within a fraction of that member's own nearest-member
    distance: closer to the record than any other training record is, so it is "that record".
    The radius is capped at the median so isolated members cannot swallow traffic (and the
    KD-tree search stays short).
    """

    def __init__(self, members_z: np.ndarray, member_ids: np.ndarray, *, radius_fraction: float) -> None:
        self.member_ids = member_ids
        # Principal axes: a rotation keeps every distance, and KD-tree splits along high-variance
        # axes prune about twice as well on correlated features.
        if len(members_z) > 1:
            _, vectors = np.linalg.eigh(np.cov(members_z, rowvar=False).reshape(members_z.shape[1], -1))
            self.rotation = vectors[:, ::-1]
        else:
            self.rotation = np.eye(members_z.shape[1])
        members_z = members_z @ self.rotation
        self.tree = cKDTree(members_z, leafsize=LEAF_SIZE)
        if len(members_z) > 1:
            distances, _ = self.tree.query(members_z, k=2, workers=-1)
            nearest = distances[:, 1]
        else:
            nearest = np.ones(len(members_z))
        cap = float(np.median(nearest)) if len(nearest) else 1.0
        # Float32 logging moves an exact copy of a member by ~1e-7 sigma; 1e-3 sigma absorbs that.
        self.radius = np.maximum(radius_fraction * np.minimum(nearest, cap), 1e-3)
        self.max_radius = float(self.radius.max()) if len(self.radius) else 0.0

    def match(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(matched, member position) for each row of z; position is -1 where nothing matches."""
        if len(z) == 0 or len(self.radius) == 0:
            return np.zeros(len(z), bool), np.full(len(z), -1, np.int64)
        distance, position = self.tree.query(
            np.asarray(z, dtype=np.float64) @ self.rotation,
            k=1,
            distance_upper_bound=self.max_radius * (1 + 1e-9),
            workers=-1,  # the queries are independent: every core (the scan's largest single cost)
        )
        found = np.isfinite(distance)
        matched = np.zeros(len(z), bool)
        matched[found] = distance[found] <= self.radius[position[found]]
        return matched, np.where(matched, position, -1).astype(np.int64)


class RememberedMatches:
    """The member matches of the feature vectors matched so far, found again by their exact bytes."""

    def __init__(self, index: MemberIndex) -> None:
        self.index = index
        self.matched = np.zeros(0, bool)
        self.position = np.zeros(0, np.int64)
        self.rows: dict[bytes, int] = {}

    def match(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(z) == 0 or z.shape[1] == 0:
            return self.index.match(z)
        z = np.ascontiguousarray(z)
        keys = cast(list[bytes], z.view(np.dtype((np.void, z.itemsize * z.shape[1]))).reshape(-1).tolist())
        rows = np.fromiter((self.rows.get(key, -1) for key in keys), np.int64, len(keys))
        new = np.flatnonzero(rows < 0)
        if len(new):
            matched, position = self.index.match(z[new])
            rows[new] = np.arange(len(self.matched), len(self.matched) + len(new))
            self.rows.update(zip((keys[i] for i in new.tolist()), rows[new].tolist(), strict=True))
            self.matched = np.concatenate([self.matched, matched])
            self.position = np.concatenate([self.position, position])
        return self.matched[rows], self.position[rows]


@dataclass(eq=False)
class ModelContext:
    """What the detectors know about the model: scaling, classes, members (in memory only), key, calibration."""

    feature_means: np.ndarray  # (d,) from reference traffic
    feature_stds: np.ndarray  # (d,)
    n_classes: int
    fingerprint_key: bytes  # secret per model; without it nobody can tell which queries share a fingerprint
    # Decrypted member records (m, d): used in memory for the member index, never persisted.
    members: np.ndarray | None = field(default=None, repr=False)
    member_ids: np.ndarray | None = None  # (m,) record ids reported in evidence
    # Detector name -> what its calibrate() returned (stored by the caller as JSON).
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.feature_means = np.asarray(self.feature_means, dtype=np.float64).reshape(-1)
        stds = np.asarray(self.feature_stds, dtype=np.float64).reshape(-1)
        # A constant column carries no distance; scaling it by 1 keeps it harmless.
        self.feature_stds = np.where(np.isfinite(stds) & (stds > 0), stds, 1.0)
        if self.feature_means.shape != self.feature_stds.shape:
            raise ValueError("feature_means and feature_stds must have the same length")
        if len(self.fingerprint_key) < 16:
            raise ValueError("fingerprint_key must be at least 16 bytes of secret")
        if self.members is not None:
            self.members = np.asarray(self.members, dtype=np.float64)
            if self.members.ndim != 2 or self.members.shape[1] != self.n_features:
                raise ValueError(f"members must be (m, {self.n_features})")
            ids = np.arange(len(self.members)) if self.member_ids is None else np.asarray(self.member_ids)
            if len(ids) != len(self.members):
                raise ValueError("member_ids must have one id per member row")
            self.member_ids = ids

    @classmethod
    def from_reference(
        cls,
        reference_features: np.ndarray,
        *,
        n_classes: int,
        fingerprint_key: bytes,
        members: np.ndarray | None = None,
        member_ids: np.ndarray | None = None,
        calibration: Mapping[str, dict[str, Any]] | None = None,
    ) -> ModelContext:
        """Means and standard deviations taken from reference (benign production) traffic."""
        reference = np.asarray(reference_features, dtype=np.float64)
        return cls(
            feature_means=reference.mean(axis=0),
            feature_stds=reference.std(axis=0),
            n_classes=n_classes,
            fingerprint_key=fingerprint_key,
            members=members,
            member_ids=member_ids,
            calibration=dict(calibration or {}),
        )

    @property
    def n_features(self) -> int:
        return len(self.feature_means)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, dtype=np.float64) - self.feature_means) / self.feature_stds).astype(
            np.float32
        )

    def member_index(self, *, radius_fraction: float) -> MemberIndex | None:
        """The member KD-tree, built once per context; None when the caller passed no members."""
        if self.members is None or self.member_ids is None:
            return None
        key = ("member_index", radius_fraction)
        if key not in self._cache:
            members_z = (self.members - self.feature_means) / self.feature_stds
            self._cache[key] = MemberIndex(members_z, self.member_ids, radius_fraction=radius_fraction)
        index: MemberIndex = self._cache[key]
        return index

    def match_members(self, z: np.ndarray, *, radius_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(matched, member position) of standardised rows z against the member index (which the caller has)."""
        index = self.member_index(radius_fraction=radius_fraction)
        if index is None:
            raise ValueError("no member records were given")
        remembered = self._cache.get("remembered_matches")
        if remembered is None:
            return index.match(z)
        matches: RememberedMatches = remembered.setdefault(radius_fraction, RememberedMatches(index))
        return matches.match(z)

    @contextmanager
    def remembering_matches(self) -> Iterator[None]:
        """While this lasts each distinct feature vector is matched against the members once, whatever batch it comes
        in: a trimmed calibration prepares the rows of one window in several batches (folds, rounds), and their
        KD-tree queries were two thirds of its time."""
        self._cache["remembered_matches"] = {}
        try:
            yield
        finally:
            self._cache.pop("remembered_matches", None)

    def prepared(self, batch: QueryBatch) -> PreparedBatch:
        """Derived arrays of `batch`, shared by all detectors scanning it with this context."""
        cached = self._cache.get("prepared")
        if cached is None or cached.batch is not batch:
            if len(batch) and batch.features.shape[1] != self.n_features:
                raise ValueError(
                    f"queries have {batch.features.shape[1]} features, the model {self.n_features}"
                )
            cached = PreparedBatch(batch, self)
            self._cache["prepared"] = cached
        prepared: PreparedBatch = cached
        return prepared

    def forget_batch(self) -> None:
        """Drop the last batch's derived arrays (a context kept between scans keeps only its member index)."""
        self._cache.pop("prepared", None)


class PreparedBatch:
    """A batch sorted by client, then time, then query id, with per-client offsets and lazy derived arrays.

    Honest traffic sends the same record again and again; everything that depends only on the features
    (fingerprints, member matches) is computed once per distinct feature vector and broadcast.
    """

    def __init__(self, batch: QueryBatch, context: ModelContext) -> None:
        self.batch = batch
        self.context = context
        self.clients, codes = np.unique(batch.client_ids, return_inverse=True)
        self.order = np.lexsort((batch.query_ids, batch.timestamps, codes))
        self.codes = codes[self.order].astype(np.int64)
        self.starts = np.searchsorted(self.codes, np.arange(len(self.clients) + 1))
        self.times = batch.timestamps[self.order]
        self.query_ids = batch.query_ids[self.order]
        self._fingerprints: dict[float, np.ndarray] = {}  # cell size -> (n, grids computed so far)
        self._matches: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.order)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    @cached_property
    def z(self) -> np.ndarray:
        """Standardised features, in sorted order (float32 throughout: a million rows in a blink)."""
        means = self.context.feature_means.astype(np.float32)
        scale = (1.0 / self.context.feature_stds).astype(np.float32)
        if len(self) == 0:
            return np.zeros((0, self.context.n_features), dtype=np.float32)
        return (self.batch.features[self.order] - means) * scale

    @cached_property
    def outputs(self) -> np.ndarray:
        return self.batch.outputs[self.order]

    @cached_property
    def repeat_keys(self) -> np.ndarray:
        """Fine fingerprint per sorted row: equal keys are the same record sent again.

        Honest clients re-score the same customer; counting those repeats as fresh evidence would
        make every share test overdispersed. Attack queries (noisy copies, bisection steps,
        candidates) are distinct at this resolution.
        """
        return quantised_fingerprints(
            self.z, key=self.context.fingerprint_key, cell_size=REPEAT_CELL_SIZE, n_grids=1, purpose="repeat"
        )[:, 0]

    @cached_property
    def _records(self) -> tuple[np.ndarray, np.ndarray]:
        _, first, inverse, _ = unique_first(self.repeat_keys)
        return first, inverse

    @property
    def record_rows(self) -> np.ndarray:
        """First sorted row of each distinct record (across all clients)."""
        return self._records[0]

    @property
    def row_record(self) -> np.ndarray:
        """Distinct record of each sorted row."""
        return self._records[1]

    @cached_property
    def _exact(self) -> tuple[np.ndarray, np.ndarray]:
        """First sorted row of each distinct feature vector, and each row's: what depends only on the
        features (fingerprints, member matches) is computed once per vector. Exact, not by repeat cell:
        a cell's first row depends on which clients and which rows share the batch, and a value derived
        from it would change with how a scan is split into parts and chunks."""
        if len(self) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        z = np.ascontiguousarray(self.z)
        hashes = np.zeros(len(z), np.uint64)
        for column in z.view(np.uint32).T:
            hashes = mix64(hashes ^ column.astype(np.uint64))
        _, first, inverse, _ = unique_first(hashes)
        if (z != z[first[inverse]]).any():  # a 64-bit collision: compare the bytes themselves
            _, first, inverse = np.unique(
                z.view(np.dtype((np.void, z.itemsize * z.shape[1]))).reshape(-1),
                return_index=True, return_inverse=True,
            )
            inverse = inverse.reshape(-1)
        return first, inverse

    @cached_property
    def first_seen(self) -> np.ndarray:
        """True for the first row of each (client, record) in this batch (sorted order)."""
        first = np.zeros(len(self), bool)
        if len(self):
            order = np.lexsort((np.arange(len(self)), self.row_record, self.codes))
            records, codes = self.row_record[order], self.codes[order]
            new = np.r_[True, (records[1:] != records[:-1]) | (codes[1:] != codes[:-1])]
            first[order[new]] = True
        return first

    def fingerprints(self, *, cell_size: float, n_grids: int) -> np.ndarray:
        """(n, n_grids) keyed fingerprints in sorted order; grid g is the same whatever n_grids is asked."""
        cached = self._fingerprints.get(cell_size, np.zeros((len(self), 0), dtype=np.int64))
        if cached.shape[1] < n_grids:
            first, inverse = self._exact
            missing = quantised_fingerprints(
                self.z[first],
                key=self.context.fingerprint_key,
                cell_size=cell_size,
                n_grids=n_grids - cached.shape[1],
                first_grid=cached.shape[1],
            )
            cached = np.hstack([cached, missing[inverse]])
            self._fingerprints[cell_size] = cached
        return cached[:, :n_grids]

    def member_matches(self, radius_fraction: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(matched, member position) per sorted row, or None without members; one KD-tree query per distinct
        feature vector."""
        index = self.context.member_index(radius_fraction=radius_fraction)
        if index is None:
            return None
        if radius_fraction not in self._matches:
            first, inverse = self._exact
            matched, position = self.context.match_members(self.z[first], radius_fraction=radius_fraction)
            self._matches[radius_fraction] = (matched[inverse], position[inverse])
        return self._matches[radius_fraction]

    def client_positions(self, client_ids: Iterable[str]) -> dict[str, int]:
        """Code of each given client in this batch (absent clients are left out)."""
        wanted = np.asarray(list(client_ids), dtype=str)
        if len(wanted) == 0 or len(self.clients) == 0:
            return {}
        position = np.searchsorted(self.clients, wanted)
        position = np.minimum(position, len(self.clients) - 1)
        found = self.clients[position] == wanted
        return {
            str(client): int(code) for client, code, ok in zip(wanted, position, found, strict=True) if ok
        }


class Detector(ABC):
    """One detector: `calibrate` on benign reference traffic, then `scan` new batches with carried state.

    Subclasses are frozen dataclasses whose fields are their settings, and carry their own words for people
    (`title`, `describe`). `calibrate` and `scan` are deterministic: the same inputs give the same findings and
    the same state, so a rescan is harmless.
    Calibration and state are JSON-serialisable dicts; neither ever holds member records. A state is
    {section: {client id: entry}}: the scanner stores each client's entries apart and passes a scan only
    the clients of its batch, or, for a detector that `compares_clients`, every client it still holds.
    """

    name: ClassVar[str]
    title: ClassVar[str]  # an incident's title when this detector leads it ("Query volume far above baseline")
    compares_clients: ClassVar[bool] = False

    @property
    def state_horizon_seconds(self) -> float:
        """How long a client's state is kept after its last query."""
        return STATE_HORIZON_SECONDS

    @abstractmethod
    def calibrate(self, reference: QueryBatch, context: ModelContext) -> dict[str, Any]:
        """Thresholds from the model's benign reference traffic, at this detector's false-alarm rate."""

    @abstractmethod
    def scan(
        self, batch: QueryBatch, context: ModelContext, state: Mapping[str, Any] | None = None
    ) -> tuple[list[Finding], dict[str, Any]]:
        """Findings for the new queries and the state to pass to the next scan."""

    @abstractmethod
    def describe(self, evidence: Mapping[str, Any]) -> str:
        """What the client did, in one sentence with the evidence's own numbers (what alerts and reports lead with).

        `evidence` is one of this detector's findings' (stored ones may come from an older version: a reader
        catches TypeError, ValueError and ZeroDivisionError and shows the evidence lines alone)."""

    def settings(self) -> dict[str, Any]:
        """This detector's settings (its dataclass fields), as recorded in its calibration."""
        return dict(sorted(vars(self).items()))

    def calibration(self, context: ModelContext) -> dict[str, Any]:
        """The model's calibration for this detector, refusing one made under other settings."""
        try:
            calibration = context.calibration[self.name]
        except KeyError:
            raise NotCalibrated(
                f"{self.name}: no calibration for this model; run calibrate() on benign reference traffic first"
            ) from None
        if calibration.get("settings") != self.settings():
            raise NotCalibrated(f"{self.name}: settings changed since calibration; run calibrate() again")
        return calibration
