"""A client's evidence carried over days: the share test on everything it sent within a horizon.

A block test (`client_blocks.py`) forgets a client's block once it is tested, so an attacker that keeps each block
under the threshold can go on for ever: the per-day figure of `evasion.py` is the most one block lets through, day
after day. The carried test adds the client's blocks up over `HORIZON_SECONDS` (a tumbling epoch that opens at the
client's first unit and closes HORIZON_SECONDS later), counting distinct units and distinct hits over the whole epoch,
so re-sending the same customers every day (as honest clients do) is counted once and an attacker's excess adds up:
its z grows as the square root of the days, until benign clients' own differences (rho) dominate.

- Distinct hits are kept exactly (member positions, or the hit units' keys), at most MAX_HITS; past that the count
  is a lower bound, which only makes the test more lenient.
- Distinct units are counted with a k-minimum-values sketch (Bar-Yossef et al. 2002; Beyer et al. 2007) of
  SKETCH_SIZE 32-bit hashes: exact below SKETCH_SIZE units, then an estimate with a relative standard error of about
  1/sqrt(SKETCH_SIZE - 2), added to the test's variance. The hashes come from the keyed fingerprints, so an attacker
  without the key cannot choose records that the sketch undercounts.
- The test is the block test's binomial tail with the calibration's upper bound on rho (`rho_upper`), not its
  estimate: over a week a client sends ten times the regions a calibration day shows per client, and an rho that
  reads zero within its noise would turn a benign client's own slightly higher rate into an alarm.

The block test and the carried test share the detector's false-alarm budget by weighted Bonferroni: a tested block's
p-value is min(p_block / BLOCK_SHARE, p_carried / CARRIED_SHARE). Calibrations made before the carried test (no
`rho_upper`) keep the block test alone, with the whole budget.
"""
from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.detection.detectors.base import SECONDS_PER_DAY
from monitor.detection.detectors.fingerprints import mix64
from monitor.detection.detectors.significance import binomial_tail

HORIZON_SECONDS = 7 * SECONDS_PER_DAY
SKETCH_SIZE = 256
MAX_HITS = 4096
# The block test and the carried test split the false-alarm budget (weighted Bonferroni): the block keeps most of it,
# so a burst is found as before; the carried test's threshold moves little for a fifth (z 3.8 instead of 3.6 at the
# default rate), since its evidence grows with the days.
BLOCK_SHARE = 0.8
CARRIED_SHARE = 1.0 - BLOCK_SHARE
_HASH_SPACE = float(1 << 32)


def unit_hashes(keys: np.ndarray) -> np.ndarray:
    """The sketch's 32-bit hash of each unit key (the high half of MurmurHash3's finaliser over the keyed key)."""
    return (mix64(np.asarray(keys, dtype=np.int64).view(np.uint64)) >> np.uint64(32)).astype(np.uint32)


def sketch_rho(n: np.ndarray | float, base_rate: float, rho: float) -> np.ndarray:
    """rho widened by the sketch's error once it estimates: Var(x - p n^) adds p^2 n^2 / k to p q n deff, which is
    deff + p n / (q k) in the design-effect form of `binomial_tail`."""
    n = np.asarray(n, dtype=np.float64)
    extra = np.where(n >= SKETCH_SIZE, base_rate * n / ((1.0 - base_rate) * SKETCH_SIZE), 0.0)
    return rho + extra / np.maximum(n - 1.0, 1.0)


def carried_tail(hits: np.ndarray | float, n: np.ndarray | float, base_rate: float, rho_upper: float) -> np.ndarray:
    """P(X >= hits) for a client's carried counts: the block test's tail with rho_upper and the sketch's error."""
    return binomial_tail(np.asarray(hits, dtype=np.float64), np.asarray(n, dtype=np.float64), base_rate,
                         rho=sketch_rho(n, base_rate, rho_upper))


def joint_p(p_block: float, p_carried: float) -> float:
    """The tested block's p-value: the weighted Bonferroni of its two tests."""
    return min(1.0, p_block / BLOCK_SHARE, p_carried / CARRIED_SHARE)


def applies(calibration: Mapping[str, Any]) -> bool:
    """Whether this calibration carries the test (it has rho_upper)."""
    return "rho_upper" in calibration


@dataclass(frozen=True)
class History:
    """One client's epoch: when it opened, its last unit, the sketch of its units and its distinct hits."""

    since: float
    last: float
    sketch: np.ndarray  # uint32, sorted, the SKETCH_SIZE smallest distinct unit hashes
    hits: np.ndarray  # int64, sorted, distinct, at most MAX_HITS

    @classmethod
    def empty(cls, since: float) -> History:
        return cls(since=since, last=since, sketch=np.zeros(0, np.uint32), hits=np.zeros(0, np.int64))

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> History:
        sketch = np.frombuffer(base64.b64decode(entry["sketch"]), dtype="<u4").astype(np.uint32)
        return cls(since=float(entry["since"]), last=float(entry["last"]), sketch=sketch,
                   hits=np.asarray(entry["hits"], dtype=np.int64))

    def to_entry(self) -> dict[str, Any]:
        return {"since": self.since, "last": self.last,
                "sketch": base64.b64encode(self.sketch.astype("<u4").tobytes()).decode("ascii"),
                "hits": self.hits.tolist()}

    @property
    def saturated(self) -> bool:
        return len(self.sketch) >= SKETCH_SIZE

    @property
    def units(self) -> float:
        """Distinct units in the epoch: exact below SKETCH_SIZE, else the KMV estimate (k - 1) / u_(k)."""
        if not self.saturated:
            return float(len(self.sketch))
        return (SKETCH_SIZE - 1) / ((float(self.sketch[SKETCH_SIZE - 1]) + 1.0) / _HASH_SPACE)

    @property
    def days(self) -> float:
        return max(self.last - self.since, 0.0) / SECONDS_PER_DAY

    def add(self, hashes: np.ndarray, hit_ids: np.ndarray, *, first: float, last: float) -> History:
        """This history with a batch's units (their hashes) and hits; a new epoch when this one is over."""
        current = self if last - self.since <= HORIZON_SECONDS else History.empty(first)
        hashes = np.asarray(hashes, dtype=np.uint32)
        if current.saturated:  # only a hash below the sketch's largest can enter it (a scan adds a client often)
            hashes = hashes[hashes < current.sketch[-1]]
        sketch = current.sketch
        if len(hashes):
            sketch = np.union1d(sketch, hashes)[:SKETCH_SIZE].astype(np.uint32)
        hits, hit_ids = current.hits, np.asarray(hit_ids, dtype=np.int64)
        if len(hits) < MAX_HITS and len(hit_ids):
            hits = np.union1d(hits, hit_ids)[:MAX_HITS]
        return History(since=current.since, last=max(current.last, last), sketch=sketch, hits=hits)


def update(entry: Mapping[str, Any] | None, hashes: np.ndarray, hit_ids: np.ndarray, *, first: float,
           last: float) -> History:
    """A client's history after a batch (first and last: the times of its queries in it)."""
    history = History.from_entry(entry) if entry else History.empty(first)
    return history.add(hashes, hit_ids, first=first, last=last)


def prune(histories: Mapping[str, Mapping[str, Any]], now: float) -> dict[str, dict[str, Any]]:
    """Histories whose epoch is still open at `now` (a later batch would open a new one), sorted by client."""
    return {client: dict(entry) for client, entry in sorted(histories.items())
            if now - float(entry["since"]) <= HORIZON_SECONDS}
