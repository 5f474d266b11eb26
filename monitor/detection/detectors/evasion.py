"""What an attacker who reads the detectors' calibration can send per account-day and stay under every threshold.

The attacker of `bench/adversary.py` design (a): it holds candidate records, a share of them members it cannot tell
apart, and sends each once, scored offline with reference models (RMIA/LiRA offline need no more). Beside its
candidates each account sends a book of cover records, as many distinct records a day as a benign client does. It
reads the stored calibration and keeps a margin under each threshold it can compute:

- training proximity: its block's member hits (candidates that are members, plus the base rate on the rest and on
  its book) stay at the hit count the product's own binomial tail lets through, with a 90 % chance that the block
  does not fire (a normal quantile of the hits' spread); and, where the calibration carries it, the same over its
  whole epoch (`carried.py`: HORIZON_SECONDS of days, a fresh book every day, the carried tail with rho's upper
  bound and the sketch's error), each test on its share of the false-alarm budget;
- boundary probing: the same with the base rate of hesitant regions (one query per record probes no boundary);
- volume: its mean count per volume window, spread evenly over the day, stays under 80 % of the volume threshold
  with three standard deviations to spare.

The figure is a prediction from the calibration, not a measurement: `bench/adversary.py` searches the real scan path
for the largest quiet rate and, against the demo forest with one account and up to 777 fresh cover records a day,
found 54 records per account-day where this predicted 45 (`best_rate`'s figure for the model: 64, with 995 cover).
Sweep, distribution-shift and account-linking thresholds do not bind a one-query-per-record attacker that spreads its
day over 24 hours and sends records drawn from the population, so they are not modelled.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import norm

from monitor.detection.detectors.base import SECONDS_PER_DAY
from monitor.detection.detectors.carried import (
    BLOCK_SHARE,
    CARRIED_SHARE,
    HORIZON_SECONDS,
    applies,
    carried_tail,
)
from monitor.detection.detectors.significance import CountTail, binomial_tail

VOLUME_MARGIN = 0.8  # of the count per volume window at which the volume detector finds
QUIET_CHANCE = 0.9  # the attacker's chance that none of its blocks fires
MEMBER_SHARE = 0.5  # of the candidates; the attacker does not know which
MAX_RECORDS = 1_000_000  # per account-day: the search's upper bound
MAX_SEARCH = 200_000  # rates tried at once when no volume test bounds them
EXACT_RATES = 1024  # every rate up to this is tried
GRID_POINTS = 400  # past it, a geometric grid of this many rates up to the bound, then every rate of one stretch
COVER_FACTORS = (0.0, 0.5, 1.0, 2.0, 4.0)  # cover books the attacker tries, in a benign client-day's distinct records
COVER_SHARES = (0.2, 0.4, 0.6, 0.8, 0.9)  # and, within a day's query budget, these shares of it


@dataclass(frozen=True)
class BlockTest:
    """A share test as the attacker reads it from the calibration (`detectors/client_blocks.py`), with the carried
    test over the client's epoch (`detectors/carried.py`) when the calibration has one (`rho_upper`)."""

    base_rate: float
    rho: float
    blocks_per_day: float
    false_alarm_rate: float
    rho_upper: float | None = None  # the carried test's rho; None: a calibration without the carried test

    @classmethod
    def from_calibration(cls, calibration: Mapping[str, Any] | None) -> BlockTest | None:
        """None when the detector is not calibrated or not applicable (training proximity without members)."""
        if not calibration or not calibration.get("applicable", True) or "base_rate" not in calibration:
            return None
        rho_upper = float(calibration["rho_upper"]) if applies(calibration) else None
        return cls(float(calibration["base_rate"]), float(calibration["rho"]),
                   float(calibration["blocks_per_client_day"]), float(calibration["false_alarm_rate"]), rho_upper)

    def share(self, *, carried: bool) -> float:
        """The part of the false-alarm budget a test has (`carried.joint_p`)."""
        if self.rho_upper is None:
            return 1.0
        return CARRIED_SHARE if carried else BLOCK_SHARE

    def max_hits(self, n: np.ndarray | int, *, carried: bool = False) -> np.ndarray:
        """Most hits a block of n units (with `carried`, an epoch of n units) holds and stays quiet, by the product's
        own tail (for each n): the tail falls as hits rise, so a bisection on every n at once finds the last quiet
        count (-1: none is)."""
        n = np.asarray(n, dtype=np.int64)
        if carried and self.rho_upper is None:
            return n  # no carried test: every count is quiet
        rho_upper = self.rho_upper or 0.0
        lo, hi = np.full(n.shape, -1, np.int64), n.copy()
        while (hi > lo).any():
            mid = (lo + hi + 1) // 2
            tail = (carried_tail(mid, n, self.base_rate, rho_upper) if carried
                    else binomial_tail(mid, n, self.base_rate, rho=self.rho))
            quiet = tail * self.blocks_per_day > self.false_alarm_rate * self.share(carried=carried)
            quiet |= mid <= 0  # no hit at all never fires
            lo, hi = np.where(quiet, mid, lo), np.where(quiet, hi, mid - 1)
        return lo


@dataclass(frozen=True)
class Thresholds:
    """What the attacker reads from a model's stored calibration."""

    window_count: int | None  # queries in one volume window at which the volume detector finds
    windows_per_day: float
    proximity: BlockTest | None
    boundary: BlockTest | None
    sweep_records: int | None  # distinct records in one cell within an hour that the sweep counter flags

    @classmethod
    def from_calibration(cls, calibration: Mapping[str, Any]) -> Thresholds:
        volume, sweep = calibration.get("volume"), calibration.get("near_duplicate_sweep")
        windows = SECONDS_PER_DAY / float(volume["window_seconds"]) if volume else 144.0
        window_count = (CountTail.from_dict(volume["tail"]).threshold(volume["false_alarm_rate"] / windows)
                        if volume else None)
        sweep_records = (CountTail.from_dict(sweep["counter_tail"]).threshold(
            sweep["false_alarm_rate"] / sweep["buckets_per_client_day"] / 2) if sweep and "counter_tail" in sweep
            else None)
        return cls(window_count=window_count, windows_per_day=windows,
                   proximity=BlockTest.from_calibration(calibration.get("training_proximity")),
                   boundary=BlockTest.from_calibration(calibration.get("boundary_probing")),
                   sweep_records=sweep_records)

    def without_carried(self) -> Thresholds:
        """These thresholds as a calibration without the carried test reads them: the block tests alone."""
        return replace(self, proximity=self.proximity and replace(self.proximity, rho_upper=None),
                       boundary=self.boundary and replace(self.boundary, rho_upper=None))

    def describe(self) -> str:
        parts = []
        if self.window_count is not None:
            parts.append(f"volume {self.window_count:,} queries in one "
                         f"{SECONDS_PER_DAY / self.windows_per_day / 60:g}-minute window")
        if self.proximity is not None:
            p = self.proximity
            carried = "" if p.rho_upper is None else (f", carried over {HORIZON_SECONDS / SECONDS_PER_DAY:g} days "
                                                      f"with rho ≤ {p.rho_upper:.3g}")
            parts.append(f"training proximity {p.base_rate:.2%} of benign regions hit a member (rho {p.rho:.3g}, "
                         f"{p.blocks_per_day:.2f} blocks a client-day{carried})")
        if self.boundary is not None:
            parts.append(f"boundary probing {self.boundary.base_rate:.2%} of regions hesitant")
        return "; ".join(parts) or "no calibrated threshold"


def _stays_under(test: BlockTest, share: float, cover: Any, sent: np.ndarray, margin: float, *,
                 carried: bool = False) -> np.ndarray:
    """Whether the hits of `cover` units at the base rate and `sent` at `share` stay, with `margin` standard
    deviations, at most what the test lets through in a block (with `carried`, an epoch) of that many units."""
    expected = test.base_rate * cover + share * sent
    sd = np.sqrt(test.base_rate * (1 - test.base_rate) * cover + share * (1 - share) * sent)
    return expected + margin * sd <= test.max_hits(cover + sent, carried=carried)


def quiet_mask(thresholds: Thresholds, rates: np.ndarray, *, book: int, queries_per_record: float = 1.0,
               probes_boundary: bool = False, blocks: int = 1, days: int = 1, pooled: int = 1,
               member_share: float = MEMBER_SHARE) -> np.ndarray:
    """For each rate, True when that many candidates an account-day (with a `book` of cover records an account-day)
    keep every modelled test under its threshold with the attacker's margin, over a block of `days` days of `pooled`
    accounts; `blocks` is how many such blocks must all stay quiet."""
    rates = np.asarray(rates, dtype=np.int64)
    margin = float(norm.ppf(1 - (1 - QUIET_CHANCE) / max(blocks, 1)))
    cover, sent = pooled * days * book, pooled * days * rates
    ok = np.ones(rates.shape, bool)
    p, b = thresholds.proximity, thresholds.boundary
    tests = []
    if p is not None:
        tests.append((p, member_share + (1 - member_share) * p.base_rate))
    if b is not None:
        tests.append((b, 1.0 if probes_boundary else b.base_rate))
    epoch = HORIZON_SECONDS / SECONDS_PER_DAY
    for test, share in tests:
        ok &= _stays_under(test, share, cover, sent, margin)
        if test.rho_upper is not None:
            # The carried test sees the whole epoch: a fresh book every day, as many candidates every day.
            ok &= _stays_under(test, share, np.int64(round(pooled * epoch * book)),
                               np.rint(pooled * epoch * rates).astype(np.int64), margin, carried=True)
    if thresholds.window_count is not None:
        per_window = (book + queries_per_record * rates) / thresholds.windows_per_day
        ok &= per_window + 3 * np.sqrt(per_window) <= VOLUME_MARGIN * thresholds.window_count
    return ok


def quiet(thresholds: Thresholds, rate: int, **kwargs: Any) -> bool:
    """`quiet_mask` for one rate."""
    return bool(quiet_mask(thresholds, np.asarray([rate]), **kwargs)[0])


def quiet_rate(thresholds: Thresholds, *, book: int, cap: int = MAX_RECORDS, queries_per_record: float = 1.0,
               **kwargs: Any) -> int:
    """The largest number of candidates an account-day (at most `cap`) that stays `quiet`; 0 when none does.

    Whole counts make the quiet rates uneven (a block's allowed hits step by one: one record can be loud where two
    are not), so every rate up to the volume test's bound is tried at once; without a volume test, up to
    MAX_SEARCH."""
    bound = min(max(0, int(cap)), MAX_SEARCH)
    volume = volume_per_day(thresholds)
    if volume is not None:  # one past the last rate the volume test lets through (volume_per_day rounds down)
        bound = min(bound, max(0, math.floor((volume - book) / queries_per_record) + 1))
    kwargs = {"book": book, "queries_per_record": queries_per_record, **kwargs}
    # Every rate up to EXACT_RATES; past it, where a step of one hit is small against the drift, a geometric grid
    # finds the last quiet stretch and every rate between its two grid points is tried.
    rates = np.arange(1, min(bound, EXACT_RATES) + 1)
    if bound > EXACT_RATES:
        grid = np.unique(np.geomspace(EXACT_RATES, bound, GRID_POINTS).astype(np.int64))
        quiet_grid = grid[quiet_mask(thresholds, grid, **kwargs)]
        if len(quiet_grid):
            last = int(quiet_grid.max())
            following = grid[grid > last]
            rates = np.arange(last, int(following[0]) if len(following) else last + 1)
    ok = quiet_mask(thresholds, rates, **kwargs)
    return int(rates[ok].max()) if ok.any() else 0


def volume_per_day(thresholds: Thresholds) -> int | None:
    """Queries a day one client can send spread evenly and keep the volume test's margin; None: no volume test."""
    if thresholds.window_count is None:
        return None
    # per_window + 3 sqrt(per_window) <= c  <=>  sqrt(per_window) <= (-3 + sqrt(9 + 4c)) / 2
    c = VOLUME_MARGIN * thresholds.window_count
    return max(0, math.floor(((-3 + math.sqrt(9 + 4 * c)) / 2) ** 2 * thresholds.windows_per_day))


@dataclass(frozen=True)
class Best:
    """The attacker's best day: candidates tested and the cover book sent beside them."""

    records: int
    book: int


def best_rate(thresholds: Thresholds, *, benign_book: int, per_day: int | None = None,
              queries_per_record: float = 1.0, **kwargs: Any) -> Best:
    """The most candidates one account can test a day and stay `quiet`, over the cover books it may choose: multiples
    of a benign client-day's records (COVER_FACTORS) and, within the day's query budget (`per_day`, a per-client
    throttle, or the volume test's), shares of that budget (COVER_SHARES); candidates and cover share the budget."""
    budgets = [b for b in (per_day, volume_per_day(thresholds)) if b is not None]
    budget = min(budgets) if budgets else None
    books = {round(f * benign_book) for f in COVER_FACTORS}
    if budget is not None:
        books = {b for b in books if b < budget} | {round(s * budget) for s in (0.0, *COVER_SHARES)}
    best = Best(0, 0)
    for book in sorted(books):
        cap = MAX_RECORDS if budget is None else math.floor((budget - book) / queries_per_record)
        if cap <= best.records:
            continue
        rate = quiet_rate(thresholds, book=book, cap=cap, queries_per_record=queries_per_record, **kwargs)
        if rate > best.records:
            best = Best(rate, book)
    return best


def throttle_for(thresholds: Thresholds, target: int, *, benign_book: int, upper: int) -> int:
    """The largest per-client limit of queries a day, from `target` to `upper`, under which the best attacker
    (`best_rate`) tests at most `target` records a day: a limit of `target` always does (one query a record at
    least), and the detectors let a looser one do as well. Bisection on a geometric scale, to within 2 %."""
    lo, hi = max(1, target), max(1, target, upper)
    if best_rate(thresholds, benign_book=benign_book, per_day=hi).records <= target:
        return hi
    while hi - lo > max(1, lo // 50):
        mid = min(hi - 1, max(lo + 1, round(math.sqrt(lo * hi))))
        if best_rate(thresholds, benign_book=benign_book, per_day=mid).records <= target:
            lo = mid
        else:
            hi = mid
    return lo
