"""What every membership-inference attack shares: the records an audit scores, the outputs it collected, the
view of them one output policy allows, and the `Attack` base class. Pure numpy; no Django."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np

from audits.attacks.records import record_keys
from audits.attacks.reference import ReferenceModels
from audits.attacks.whatif import apply_policy
from monitor.platform.output_policy import OutputPolicy

Family = Literal["threshold", "reference", "label_only", "regression"]
ReferenceKind = Literal["offline", "online"]  # offline: never trained on an evaluation record; online: half did
REFERENCE_KINDS: tuple[ReferenceKind, ...] = ("offline", "online")


@dataclass(frozen=True, eq=False)
class EvaluationRecords:
    """The records an audit scores (members first) and the population records it may use besides."""

    X: np.ndarray
    y: np.ndarray
    is_member: np.ndarray
    keys: np.ndarray  # content key of each evaluation record (records.record_keys)
    member_ids: tuple[int | str, ...]  # for each selected member, its id (or index in the members array)
    pool_X: np.ndarray  # what the reference models train on: the population pool, then unevaluated members
    pool_y: np.ndarray
    z_X: np.ndarray  # population records no model trained on (RMIA's z)
    z_y: np.ndarray
    feature_std: np.ndarray  # the label-only attack's noise scale per feature
    dropped_duplicates: int  # population rows left out for equalling an evaluation record
    # Where the population came from: "uploaded", "nonmember_split" (half the non-members, none uploaded), "none".
    population_source: str = "uploaded"
    # How many of the pool's last rows are members the audit does not evaluate (the target trained on them, so
    # they train reference models but never stand in for non-members).
    pool_members: int = 0
    kinds: Any = None  # label_only.FeatureKinds of a table of raw values (categories, missing values), else None

    @cached_property
    def pool_keys(self) -> np.ndarray:
        return record_keys(self.pool_X)

    @property
    def n_population_pool(self) -> int:
        """How many of the pool's rows (the first ones) are population records: records the target never trained on."""
        return len(self.pool_X) - self.pool_members

    @property
    def population_pool(self) -> tuple[np.ndarray, np.ndarray]:
        """The pool's population records only."""
        return self.pool_X[: self.n_population_pool], self.pool_y[: self.n_population_pool]

    @cached_property
    def z_keys(self) -> np.ndarray:
        return record_keys(self.z_X)


@dataclass(eq=False)
class CollectedOutputs:
    """Raw probabilities of the target and of the reference models, before any output policy."""

    target: np.ndarray  # (n_eval, C)
    target_z: np.ndarray  # (n_z, C)
    references: dict[str, ReferenceModels] = field(default_factory=dict)  # by kind: "offline", "online"
    offline: np.ndarray | None = None  # (K, n_eval, C)
    offline_z: np.ndarray | None = None  # (K, n_z, C)
    offline_pool: np.ndarray | None = None  # (K, n_pool, C)
    target_pool: np.ndarray | None = None  # (n_population_pool, C) the target on the population pool (regression)
    online: np.ndarray | None = None  # (K, n_eval, C)
    online_z: np.ndarray | None = None  # (K, n_z, C) the online reference models on RMIA's z
    neighbourhood: np.ndarray | None = None  # the target on the label-only queries (records, then noisy copies)
    neighbourhood_keys: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class AttackInputs:
    """What an attacker sees under one output policy, computed on first use and shared by every attack.

    The reference models' outputs go through the same policy as the target's: an attacker calibrates on what
    the target would show. Each output is a function of the records' content keys and the seed, so which
    attack asks first changes no figure.
    """

    policy: OutputPolicy
    records: EvaluationRecords
    collected: CollectedOutputs
    clip: float  # probability floor for logs under this policy (whatif.policy_clip)
    seed: int

    @property
    def y(self) -> np.ndarray:
        return self.records.y

    @cached_property
    def target(self) -> np.ndarray:
        """(n_eval, C) the target's answers on the evaluation records."""
        return apply_policy(self.policy, self.collected.target, keys=self.records.keys, seed=self.seed)

    @cached_property
    def target_z(self) -> np.ndarray:
        """(n_z, C) the target's answers on the population records z."""
        return apply_policy(self.policy, self.collected.target_z, keys=self.records.z_keys, seed=self.seed)

    @cached_property
    def target_pool(self) -> np.ndarray:
        """(n_pool, C) the target's answers on the population pool (records it never trained on)."""
        if self.collected.target_pool is None:
            raise ValueError("the audit did not query the target on the pool (the attack must set needs_target_pool)")
        population_keys = self.records.pool_keys[: self.records.n_population_pool]
        return apply_policy(self.policy, self.collected.target_pool, keys=population_keys, seed=self.seed)

    @cached_property
    def offline(self) -> np.ndarray:
        """(K, n_eval, C) the offline reference models on the evaluation records."""
        return self._seen(self.collected.offline, self.records.keys, "offline")

    @cached_property
    def offline_z(self) -> np.ndarray:
        return self._seen(self.collected.offline_z, self.records.z_keys, "offline")

    @cached_property
    def offline_pool(self) -> np.ndarray:
        """(K, n_pool, C) the offline reference models on their own pool (their IN/OUT mask is known)."""
        return self._seen(self.collected.offline_pool, self.records.pool_keys, "offline")

    @cached_property
    def online(self) -> np.ndarray:
        return self._seen(self.collected.online, self.records.keys, "online")

    @cached_property
    def online_z(self) -> np.ndarray:
        return self._seen(self.collected.online_z, self.records.z_keys, "online")

    @cached_property
    def neighbourhood_labels(self) -> np.ndarray:
        """The target's label for each label-only query (label_only.neighbourhood_queries)."""
        if self.collected.neighbourhood is None or self.collected.neighbourhood_keys is None:
            raise ValueError("the audit collected no neighbourhood queries (the attack must set needs_neighbourhood)")
        return apply_policy(self.policy, self.collected.neighbourhood, keys=self.collected.neighbourhood_keys,
                            seed=self.seed).argmax(axis=1)

    def reference_models(self, kind: ReferenceKind) -> ReferenceModels:
        """The fitted reference models of `kind`, for their IN/OUT masks."""
        if kind not in self.collected.references:
            raise ValueError(f"the audit trained no {kind} reference models (the attack must list them in "
                             "reference_sets)")
        return self.collected.references[kind]

    def _seen(self, proba: np.ndarray | None, keys: np.ndarray, kind: ReferenceKind) -> np.ndarray:
        if proba is None:
            raise ValueError(f"the audit trained no {kind} reference models (the attack must list them in "
                             "reference_sets)")
        # Stream k + 1: each reference model draws its own noise, the target stream 0.
        return np.stack([apply_policy(self.policy, p, keys=keys, seed=self.seed, stream=k + 1)
                         for k, p in enumerate(proba)])


@dataclass(frozen=True, eq=False)
class AttackScores:
    scores: np.ndarray  # one per evaluation record, members first; higher = more likely a member
    details: dict[str, Any] = field(default_factory=dict)  # shown beside the attack's figures
    # Settings the attack settled on (say, calibrated on the reference models): the audit records them in its
    # config under the attack's name, for the audited policy only.
    recorded: Mapping[str, Any] = field(default_factory=dict)


class Attack(ABC):
    """One membership-inference attack: score every evaluation record from the outputs the audit collected.

    Subclasses are frozen dataclasses whose fields are their settings, registered with
    `catalogue.register`. The class-level metadata tells the audit what to collect before scoring:
    `reference_sets` which reference models to train, `needs_neighbourhood` whether to query the target on
    noisy copies of each record. Scoring is deterministic: the same inputs give the same scores.
    """

    name: ClassVar[str]
    label: ClassVar[str]  # how pages and reports name the attack, with its paper
    family: ClassVar[Family]
    note: ClassVar[str]  # one line on what the attack exploits and what it costs
    rank: ClassVar[int]  # place in the catalogue (tables, forms): lower first
    reference_sets: ClassVar[tuple[ReferenceKind, ...]] = ()
    needs_neighbourhood: ClassVar[bool] = False
    needs_target_pool: ClassVar[bool] = False  # the target's answers on the population pool (no reference models)

    @abstractmethod
    def score(self, inputs: AttackInputs) -> AttackScores:
        """Member scores for `inputs.records`, in their order, from what `inputs.policy` lets callers see."""
