"""Every evaluated member's exposure under one attack: its rank among the members (1 = the record the attack is
surest about), and whether an attacker thresholding at each FPR target would call it a member. Ids and ranks
only: the scores stay inside the audit's encrypted store, the records' values never leave the member data."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from audits.attacks.metrics import FPR_TARGETS


@dataclass(frozen=True, eq=False)
class MemberExposure:
    attack: str
    ids: tuple[str, ...]  # evaluated members' record ids
    ranks: np.ndarray  # int (n,): 1 = most exposed; the order top_exposed reports
    scores: np.ndarray = field(repr=False)  # float (n,)
    thresholds: dict[str, float] = field(default_factory=dict)  # per FPR target: a score above it reads "member"

    @property
    def n_members(self) -> int:
        return len(self.ids)


def member_ranks(member_scores: np.ndarray, *, tie_keys: np.ndarray | None = None) -> np.ndarray:
    """Rank 1 for the highest score; ties ordered by content key, exactly as `metrics.top_exposed` orders them."""
    scores = np.asarray(member_scores, dtype=np.float64)
    secondary = np.arange(len(scores)) if tie_keys is None else np.asarray(tie_keys)
    order = np.lexsort((secondary, -scores))
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def fpr_threshold(nonmember_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold t among the non-member scores with at most `fpr` of them strictly above it: the
    attacker who calls "member" above t stays within that false-positive rate on these non-members."""
    ordered = np.sort(np.asarray(nonmember_scores, dtype=np.float64))
    if not len(ordered):
        return math.inf
    allowed = int(math.floor(fpr * len(ordered) + 1e-9))
    return float(ordered[len(ordered) - allowed - 1]) if allowed < len(ordered) else -math.inf


def member_exposure(attack: str, *, ids: Sequence[str | int], member_scores: np.ndarray,
                    nonmember_scores: np.ndarray, tie_keys: np.ndarray | None = None,
                    fpr_targets: Sequence[float] = FPR_TARGETS) -> MemberExposure:
    scores = np.asarray(member_scores, dtype=np.float64)
    if len(ids) != len(scores):
        raise ValueError("one id per member score")
    return MemberExposure(attack=attack, ids=tuple(str(i) for i in ids), ranks=member_ranks(scores, tie_keys=tie_keys),
                          scores=scores, thresholds={str(f): fpr_threshold(nonmember_scores, f) for f in fpr_targets})


def lookup(exposure: MemberExposure, record_id: str, *, top_k: int) -> dict | None:
    """One member's place in the ranking, or None if it was not among the evaluated members."""
    try:
        i = exposure.ids.index(str(record_id))
    except ValueError:
        return None
    return entry(exposure, i, top_k=top_k)


def entry(exposure: MemberExposure, i: int, *, top_k: int) -> dict:
    """The evaluated member at position `i`: its rank, percentile, most-exposed flag and FPR flags."""
    n = exposure.n_members
    rank = int(exposure.ranks[i])
    return {
        "attack": exposure.attack, "rank": rank, "n_members": n,
        # share of the evaluated members this record is at least as exposed as
        "percentile": round(100.0 * (n - rank + 1) / n, 2),
        "most_exposed": rank <= top_k,
        "flagged_at_fpr": {fpr: bool(exposure.scores[i] > threshold) for fpr, threshold in exposure.thresholds.items()},
    }
