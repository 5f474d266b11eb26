"""What an attacker who reads our code can still do (issue 29): adaptive membership-inference attackers that know
every detector, its calibration and the rate limit, through the real scan path, beside the same attackers unmonitored.

The target is the demo's forest (100 trees) on a seeded half of UCI Adult, registered with every training record as
a member (the training-proximity detector's best case; the demo registers a 4,000-record sample). A reference day of
benign clients (`monitor.demo.traffic.benign_traffic`) calibrates the detectors; then, day after day, the same
clients and the attackers are stored and scanned once a day (`scan_model`: `prepare_scan`, then every part).

The attacker holds population records (reference-model data; cover, RMIA's z too) and candidate records, half of them
members. It reads the stored calibration (`DetectorState.calibration`) and the per-token rate limit, and stays a
margin under each threshold it can compute:
  a. candidates: one query per candidate, scored with the product's offline RMIA (`audits.attacks.rmia`: 4 reference
     forests on half its population records each, `a` calibrated on them, z = its cover records);
  b. augment: each candidate and 8 noisy copies (2 at each radius 0.05-0.4 σ, `label_only.neighbourhood_queries`,
     continuous columns only, rounded to their grid), one an hour, scored by the product's label-only attack;
  c. boundary: label-only boundary search, one bisection step an hour (12 steps towards a population record of
     the other label: continuous columns move, the others jump at half way), scored by correctness, then distance.
Each spreads over K accounts; each account also sends a book of cover records a day (population records, each once,
a fresh book every day from its own share of the attacker's population records, none shared with another account:
the carried test counts a client's distinct regions over its epoch, so a book sent again would dilute nothing, and
account linking pairs accounts that send the same records; as large as the attacker's reading of the calibration
says is best, `evasion.best_rate`, as far as its share lasts over D days); an account-day is spread over 24 hours,
records of one coarse cell in different hours (the sweep counter and the density check look within an hour). The attacker predicts from the
calibration how many candidates an account-day can carry (the training-proximity and boundary-probing block tests,
the volume tail at 80 %); the bench then searches, all strategies at once, for the largest rate that opens no
incident over D days: each trial is D days with fresh accounts, doubling from the prediction, then bisecting.

Printed per strategy: candidates per account-day before the first incident; the records tested over D days × K
accounts and the TPR@1%FPR the attacker reaches on them (`audits.attacks.metrics.evaluate`); the anchor, the same
attacker unmonitored: all its candidates on day one with its full design (b: the audit's 48 copies; c: 3
directions), and the ratio of members identified at 1 % FPR (TPR × members tested).

Usage: python bench/adversary.py [--quick] [--accounts K] [--days D] [--seed S] [--trials N] [--book B] [--blocks-alone]
                                [--reference-days R] [--narrower-match]
--blocks-alone runs the same attackers against the block tests alone (the detectors before the carried test of
monitor/detection/detectors/carried.py): the before of the after. --narrower-match prints, instead of the search,
whether a narrower match radius for training proximity would shrink the figure (`narrower_match`).
On DATABASE_URL when set (migrated, nothing dropped: the model gets a fresh slug), else on SQLite in a fresh folder
under MONITOR_DATA_DIR (a temporary folder when unset). No goal yet: the figure is the honest one to improve.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from attacker_designs import (  # noqa: E402
    AUGMENT,
    BOUNDARY_STEPS,
    BOUNDARY_TRIES,
    FULL_COPIES,
    FULL_DIRECTIONS,
    Support,
    augmentation_design,
    boundary_design,
    rmia_design,
)
from common import setup_private_django  # noqa: E402
from detect import store  # noqa: E402
from sklearn.base import clone  # noqa: E402

from audits.attacks.label_only import LabelOnlyConfig  # noqa: E402
from audits.attacks.metrics import RateEstimate, evaluate  # noqa: E402
from audits.attacks.reference import train_reference_models  # noqa: E402
from monitor.demo import traffic as gen  # noqa: E402
from monitor.detection.detectors import evasion  # noqa: E402

DAY, HOUR = 86_400.0, 3_600.0
SLOTS = 24  # one-hour slots: the sweep counter and the density check count within an hour (window_seconds 3,600)
N_REFERENCE = 4  # reference models, as the audit's tier 1


@dataclass(frozen=True)
class Thresholds:
    """What the attacker reads: the stored calibration (`monitor.detection.detectors.evasion`, the product's own
    reading, which the model page states) and the rate limit."""

    core: evasion.Thresholds
    means: np.ndarray
    stds: np.ndarray
    per_minute: int  # rows per token per minute; 0: no limit

    @property
    def windows_per_day(self) -> float:
        return self.core.windows_per_day

    def describe(self) -> str:
        return f"{self.core.describe()}; rate limit {self.per_minute:,} rows a minute per token"


def read_thresholds(model: Any) -> Thresholds:
    from django.conf import settings

    from monitor.models import DetectorState

    calibration = DetectorState.objects.get(model=model).calibration
    return Thresholds(core=evasion.Thresholds.from_calibration(calibration),
                      means=np.asarray(calibration["_context"]["feature_means"]),
                      stds=np.asarray(calibration["_context"]["feature_stds"]), per_minute=settings.TOKEN_QUERIES_PER_MINUTE)


@dataclass
class Strategy:
    """One attacker: its candidates, each candidate's queries under the monitored design (in order, one an hour
    when there are several), the scores of both designs, and each account's own cover records (its book of day d
    is the d-th `book` of them, wrapping round when they run out)."""

    key: str
    title: str
    design: str
    full_design: str
    is_member: np.ndarray
    sequences: list[np.ndarray]
    scores: np.ndarray
    full_scores: np.ndarray
    full_queries: int
    probes_boundary: bool  # the attacker's guess: each candidate brings a hesitant region (else the base rate)
    covers: list[np.ndarray]
    book: int

    def book_of(self, account: int, day: int) -> np.ndarray:
        rows = self.covers[account]
        return rows[(day * self.book + np.arange(self.book)) % len(rows)]

    @property
    def queries_per_record(self) -> float:
        return float(np.mean([len(s) for s in self.sequences]))


@dataclass(frozen=True)
class Trial:
    rate: int
    incident_day: int | None  # 1-based day of the scan that opened its first incident
    detectors: tuple[str, ...]  # the signals of its incidents
    findings: dict[str, int]  # every finding on its accounts, "detector severity": count


@dataclass
class Search:
    """The largest rate with no incident over D days: doubling from the prediction, then bisecting."""

    predicted: int
    cap: int
    lo: int = 0
    hi: int | None = None
    next: int | None = None
    trials: list[Trial] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next = min(max(self.predicted, 1), self.cap)

    def record(self, trial: Trial) -> None:
        self.trials.append(trial)
        if trial.incident_day is None:
            self.lo = max(self.lo, trial.rate)
        else:
            self.hi = trial.rate if self.hi is None else min(self.hi, trial.rate)
        if self.hi is None:
            self.next = None if self.lo >= self.cap else min(self.cap, 2 * self.lo)
        elif self.hi - self.lo <= max(1, self.lo // 8):
            self.next = None
        else:
            self.next = max(1, self.hi // 2) if self.lo == 0 else round(math.sqrt(self.lo * self.hi))
            self.next = None if self.next in (self.lo, self.hi) else self.next

    def first_failure(self) -> Trial | None:
        failed = [t for t in self.trials if t.incident_day is not None]
        return min(failed, key=lambda t: t.rate) if failed else None


def predicted_rate(strategy: Strategy, thresholds: Thresholds, *, cap: int, blocks: int, days: int = 1,
                   pooled: int = 1) -> int:
    """Candidates per account-day the calibration allows with the attacker's margin (`evasion.quiet_rate`: for each
    block test, a block of `days` days of `pooled` accounts, a fresh book every account-day, a region per record as
    the worst case, a 90 % chance that none of `blocks` blocks fires; the volume per window under 80 % of the
    volume detector's)."""
    return evasion.quiet_rate(thresholds.core, book=strategy.book, cap=cap,
                              queries_per_record=strategy.queries_per_record,
                              probes_boundary=strategy.probes_boundary, blocks=blocks, days=days, pooled=pooled)


# ---- traffic -------------------------------------------------------------------------------------------------

def spread(items: list[np.ndarray], *, start: float, thresholds: Thresholds,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One account-day: each item's queries in consecutive hours, items whose first record shares a 2-σ cell in
    different hours (the sweep counter and the density check look within an hour)."""
    if not items:
        return np.zeros((0, len(thresholds.means)), np.float32), np.zeros(0)
    firsts = np.stack([item[0] for item in items])
    cells = np.floor((firsts - thresholds.means) / np.where(thresholds.stds > 0, thresholds.stds, 1.0) / 2.0)
    _, cell = np.unique(cells, axis=0, return_inverse=True)
    rank = np.empty(len(items), np.int64)
    rank[np.lexsort((rng.random(len(items)), cell.reshape(-1)))] = np.arange(len(items))
    features, times = [], []
    for item, r in zip(items, rank.tolist(), strict=True):
        slots = r % (SLOTS - len(item) + 1) + np.arange(len(item))
        features.append(item)
        times.append(start + (slots + rng.random(len(item))) * HOUR)
    return np.concatenate(features).astype(np.float32), np.concatenate(times)


def account_day(strategy: Strategy, *, account: int, day: int, name: str, rate: int, first: int, start: float,
                thresholds: Thresholds, rng: np.random.Generator) -> gen.Traffic:
    """One account's day: `rate` candidates from position `first`, and its book of the day, once each."""
    attack, attack_times = spread(strategy.sequences[first:first + rate], start=start, thresholds=thresholds, rng=rng)
    book = strategy.book_of(account, day)
    cover, cover_times = spread([row[None] for row in book], start=start, thresholds=thresholds, rng=rng)
    features = np.concatenate([attack, cover])
    return gen.Traffic(features=features, client_ids=np.full(len(features), name).astype(str),
                       timestamps=np.concatenate([attack_times, cover_times]),
                       origin_ids=np.full(len(features), -1, np.int64), attackers={name: strategy.key})


# ---- the product ---------------------------------------------------------------------------------------------

def fix_fingerprint_key(model: Any) -> None:
    """The same keyed fingerprints every run, as bench/detect.py does, while the model has such a key."""
    import hashlib

    from monitor.models import DetectorState
    from monitor.platform.crypto import data_fernet

    if "fingerprint_key" in {f.name for f in DetectorState._meta.get_fields()}:
        key = hashlib.sha256(b"bench/adversary.py fingerprint key").digest()
        DetectorState.objects.update_or_create(model=model, defaults={"fingerprint_key": data_fernet().encrypt(key)})


def outcome_of(model: Any, names: list[str]) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
    """Which of `names` are in a detector incident, with the detectors that signalled in it; and every finding on
    them, info included, counted by "detector severity"."""
    from collections import Counter

    from monitor.models import AlertAccount, AlertSource, DetectorFinding

    rows = AlertAccount.objects.filter(alert__model=model, alert__source=AlertSource.DETECTOR, client_id__in=names)
    incidents = {client: tuple(sorted((evidence or {}).get("signals") or {}))
                 for client, evidence in rows.values_list("client_id", "alert__evidence")}
    findings = Counter(" ".join(row) for row in DetectorFinding.objects.filter(model=model, client_id__in=names)
                       .values_list("detector", "severity"))
    return incidents, dict(sorted(findings.items()))


# ---- the run -------------------------------------------------------------------------------------------------

@dataclass
class World:
    model: Any
    target: Any
    pool: np.ndarray  # what benign clients query
    thresholds: Thresholds | None = None
    strategies: list[Strategy] = field(default_factory=list)
    # For --narrower-match: design a's scorer of moved candidates (offline RMIA with the attacker's reference models,
    # the candidates' labels bound) and what the attacker knows of the table.
    rescore: Any = None
    support: Support | None = None
    feature_names: tuple[str, ...] = ()


def build_world(args: argparse.Namespace) -> tuple[World, dict[str, Any]]:
    """Train and register the target; the attacker's holdings, its reference models and its three designs."""
    import skops.io as sio

    from monitor.demo.datasets import load_adult
    from monitor.demo.seed import dataset_csv, train_demo_model
    from monitor.registry.registration import Upload, register_model

    data = load_adult()
    order = np.random.default_rng(args.seed).permutation(len(data.y))
    members, held = order[: len(order) // 2], order[len(order) // 2:]
    benign_pool, reference_pool, cover_pool, nonmembers = held[:5000], held[5000:9000], held[9000:12000], held[12000:]
    target = train_demo_model(data, members)
    slug = f"adversary-{args.seed}-{int(time.time())}"
    model = register_model(slug=slug, name="Adversary bench (UCI Adult forest)", label_column="income",
                           artifact=Upload(sio.dumps(target), "forest.skops"),
                           members=Upload(dataset_csv(data, members), "members.csv"),
                           nonmembers=Upload(dataset_csv(data, nonmembers), "nonmembers.csv"),
                           population=Upload(dataset_csv(data, benign_pool), "population.csv"))
    fix_fingerprint_key(model)
    world = World(model=model, target=target, pool=data.X[benign_pool], feature_names=tuple(data.feature_names))

    rng = np.random.default_rng([args.seed, 29])
    side = len(nonmembers) // 3
    chosen_members, chosen_nonmembers = rng.choice(members, 3 * side, replace=False), rng.permutation(nonmembers)
    # Cover: the attacker's population records (its reference models' pool too), each account its own, so no two
    # accounts share a record (account linking pairs accounts that do); a fresh book a day while they last.
    covers = np.array_split(rng.permutation(np.concatenate([cover_pool, reference_pool])), 3 * args.accounts)
    z_parts = np.array_split(rng.permutation(cover_pool), 3)
    book = args.book or min(len(c) for c in covers) // args.days  # until the attacker has read the calibration
    references = train_reference_models(estimator=clone(target), pool_X=data.X[reference_pool],
                                        pool_y=data.y[reference_pool], n_models=N_REFERENCE, seed=args.seed)
    pool = (data.X[reference_pool], data.y[reference_pool])
    stds, support = pool[0].std(axis=0), Support.of(pool[0])
    designs = [
        ("a", "one query per candidate, offline RMIA", "1 query per record", "the same"),
        ("b", "augmentation queries, label-only attack", f"the record + {AUGMENT.n_neighbours * len(AUGMENT.radii)} "
         "copies in its continuous columns, one an hour", f"the record + {FULL_COPIES} copies"),
        ("c", "label-only boundary search", f"own label + up to {BOUNDARY_TRIES} tries + {BOUNDARY_STEPS} steps, "
         "one an hour", f"{FULL_DIRECTIONS} directions of the same"),
    ]
    for s, (key, title, design, full_design) in enumerate(designs):
        rows = np.concatenate([chosen_members[s * side:(s + 1) * side], chosen_nonmembers[s * side:(s + 1) * side]])
        rows = rows[rng.permutation(len(rows))]
        X, y = data.X[rows], data.y[rows]
        own_covers = [data.X[c] for c in covers[s * args.accounts:(s + 1) * args.accounts]]
        z_rows = z_parts[s]
        if key == "a":
            z = (data.X[z_rows], data.y[z_rows])
            scores = rmia_design(target, references, pool=pool, candidates=(X, y), z=z)
            sequences, full, full_queries = [x[None] for x in X], scores, 1
            world.support, world.rescore = support, lambda moved, y=y, z=z: rmia_design(
                target, references, pool=pool, candidates=(moved, y), z=z)
        elif key == "b":
            scores, sequences = augmentation_design(target, X, y, stds=stds, config=AUGMENT, support=support)
            full, full_sequences = augmentation_design(target, X, y, stds=stds, config=LabelOnlyConfig())
            full_queries = len(full_sequences[0])
        else:
            scores, sequences = boundary_design(target, X, y, pool=pool, stds=stds, support=support, directions=1,
                                                seed=args.seed)
            full, full_sequences = boundary_design(target, X, y, pool=pool, stds=stds, support=support,
                                                   directions=FULL_DIRECTIONS, seed=args.seed)
            full_queries = round(float(np.mean([len(q) for q in full_sequences])))
        world.strategies.append(Strategy(
            key=key, title=title, design=design, full_design=full_design, is_member=np.isin(rows, members),
            sequences=sequences, scores=scores, full_scores=full, full_queries=full_queries,
            probes_boundary=key == "c", covers=own_covers, book=book))
    facts = {"members": len(members), "candidates": 2 * side,
             "references": f"{references.n_models} reference forests on "
                           f"{int(references.pool_in.sum(axis=1).mean()):,} population records each"}
    return world, facts


def run_trial(world: World, active: dict[str, int], *, trial: int, args: argparse.Namespace,
              start: float) -> dict[str, Trial]:
    """D days of benign clients and every active strategy at its rate over K fresh accounts, scanned once a day."""
    from monitor.detection.scanning import scan_model

    assert world.thresholds is not None
    rng = np.random.default_rng([args.seed, trial])
    benign = gen.benign_traffic(world.pool, n_clients=args.clients, seed=args.seed * 1000 + trial + 1, start=start,
                                duration=args.days * DAY, queries_per_day=args.per_day)
    names = {s.key: [f"acct-{s.key}{trial}-{k}" for k in range(args.accounts)] for s in world.strategies}
    caught: dict[str, tuple[int, tuple[str, ...]]] = {}
    for day in range(args.days):
        begin = start + day * DAY
        parts = [benign.take((benign.timestamps >= begin) & (benign.timestamps < begin + DAY))]
        for strategy in world.strategies:
            rate = active.get(strategy.key)
            if rate is None or strategy.key in caught:
                continue
            for k, name in enumerate(names[strategy.key]):
                parts.append(account_day(strategy, account=k, day=day, name=name, rate=rate,
                                         first=(day * args.accounts + k) * rate, start=begin,
                                         thresholds=world.thresholds, rng=rng))
        store(world.model, world.target, gen.combine(*parts))
        scan_model(world.model)
        for key in set(active) - set(caught):
            found, _ = outcome_of(world.model, names[key])
            if found:
                caught[key] = (day + 1, tuple(sorted({d for signals in found.values() for d in signals})))
    return {key: Trial(rate=rate, incident_day=caught.get(key, (None, ()))[0], detectors=caught.get(key, (0, ()))[1],
                       findings=outcome_of(world.model, names[key])[1]) for key, rate in active.items()}


def rate_text(rate: RateEstimate | None) -> str:
    flag = "" if rate is None or rate.reliable else "*"
    return "n/a" if rate is None else f"{rate.value:.1%} [{rate.low:.1%}, {rate.high:.1%}]{flag}"


def tpr(scores: np.ndarray, is_member: np.ndarray) -> RateEstimate | None:
    if is_member.all() or not is_member.any():
        return None
    return evaluate(scores[is_member], scores[~is_member], fprs=(0.01,)).tpr_at_fpr[0.01]


def report(strategy: Strategy, search: Search, args: argparse.Namespace, facts: dict[str, Any],
           thresholds: Thresholds) -> None:
    k, d = args.accounts, args.days
    print(f"== {strategy.key}. {strategy.title}: {strategy.design} (monitored; {strategy.queries_per_record:.1f} "
          f"queries a record) + a fresh book of {strategy.book} cover records an account-day (from "
          f"{len(strategy.covers[0]):,})"
          + (f"; {facts['references']}" if strategy.key == "a" else ""))
    print("   trials: " + "; ".join(
        f"{t.rate}/account-day " + (f"incident on day {t.incident_day} ({', '.join(t.detectors)})"
                                    if t.incident_day else "no incident")
        + (f" [findings: {', '.join(f'{n} {c}' for n, c in t.findings.items())}]" if t.findings else "")
        for t in search.trials))
    failed = search.first_failure()
    limit = "" if search.hi is not None else f" (no incident up to the cap: {search.cap} = the candidates / (K × D))"
    caught = "" if failed is None else (f"; {failed.rate} opened one at the scan of day {failed.incident_day}, "
                                        f"{failed.rate * k * failed.incident_day:,} records in, by "
                                        f"{', '.join(failed.detectors)}")
    print(f"   candidates per account-day before the first incident: {search.lo} (the attacker predicted "
          f"{search.predicted} from the calibration){limit}{caught}")
    n = search.lo * k * d
    tested = strategy.is_member[:n]
    monitored, design = tpr(strategy.scores[:n], tested), tpr(strategy.scores, strategy.is_member)
    anchor = tpr(strategy.full_scores, strategy.is_member)
    # Members identified from the design's TPR on every candidate: the tested records are too few to pin it down.
    found = (design.value if design else 0.0) * int(tested.sum())
    anchor_found = (anchor.value if anchor else 0.0) * int(strategy.is_member.sum())
    print(f"   monitored, {d} days × {k} accounts: {n:,} records tested ({int(tested.sum()):,} members), TPR@1%FPR on "
          f"them {rate_text(monitored)} (the design on all {len(strategy.scores):,} candidates: {rate_text(design)});"
          f" members identified at 1 % FPR {found:.0f}")
    queries = f"{strategy.full_queries} quer{'y' if strategy.full_queries == 1 else 'ies'} a record"
    print(f"   unmonitored anchor ({strategy.full_design}, {queries}): all {len(strategy.is_member):,} candidates on "
          f"day one, TPR@1%FPR {rate_text(anchor)}; members identified {anchor_found:.0f}")
    ratio, per_account_day = (found / anchor_found if anchor_found else float("nan")), found / (k * d)
    print(f"   ratio monitored ÷ unmonitored: records {n / len(strategy.is_member):.3f}, TPR "
          f"{(monitored.value / anchor.value) if monitored and anchor and anchor.value else float('nan'):.2f}, "
          f"members identified {ratio:.3f}; account-days to match the unmonitored day one: "
          + (f"{anchor_found / per_account_day:,.0f}" if per_account_day else "never at this rate"))
    blocks_alone = predicted_rate(strategy, replace(thresholds, core=thresholds.core.without_carried()), cap=search.cap,
                                  blocks=k * d)
    linked = predicted_rate(strategy, thresholds, cap=search.cap, blocks=d, pooled=k)
    print(f"   the calibration's arithmetic (not run): {blocks_alone} a day with the block tests alone (no carried "
          f"test); {linked} if the {k} accounts' epochs were one (account linking)")


NARROWER = 0.1  # --narrower-match: a match radius of this fraction of a member's nearest-member distance


def narrower_match(world: World) -> None:
    """Whether a narrower match would shrink the figure (--narrower-match): an attacker of design a that sends exact
    copies of its candidates hits members at training proximity's radius and at a narrower one alike, and the narrower
    radius hits far fewer benign records; but the attacker can move each candidate just past the narrower radius, in
    one continuous column (on its grid, a zero measurement left at zero), and score what it moved. Printed per column:
    the records moved, the member candidates still matching at each radius, and the TPR@1%FPR offline RMIA keeps."""
    from monitor.detection.context import model_context
    from monitor.models import DetectorState

    assert world.support is not None
    design = next(strategy for strategy in world.strategies if strategy.key == "a")
    X, is_member = np.vstack(design.sequences), design.is_member  # one query per candidate: the candidate itself
    state = DetectorState.objects.get(model=world.model)
    context = model_context(world.model, state)
    wide = float(state.calibration["training_proximity"]["radius_fraction"])
    means, stds = np.asarray(context.feature_means), np.asarray(context.feature_stds)

    def matching(rows: np.ndarray, fraction: float) -> float:
        return float(context.match_members((rows - means) / stds, radius_fraction=fraction)[0].mean())

    reach = context.member_index(radius_fraction=NARROWER).max_radius  # the widest narrower radius, in σ
    print(f"== narrower match (a test the product does not run): a match within {NARROWER:g} of a member's nearest-member"
          f" distance (at most {reach:.3f} σ) beside training proximity's {wide:g}; benign clients' records matching: "
          f"{matching(world.pool, NARROWER):.2%} against {matching(world.pool, wide):.2%}")
    members = X[is_member]
    exact = tpr(design.scores, is_member)
    print(f"   exact copies: member candidates matching {matching(members, NARROWER):.0%} / {matching(members, wide):.0%}"
          f"; TPR@1%FPR {rate_text(exact)}")
    rng = np.random.default_rng(0)
    for j in np.flatnonzero(world.support.continuous):
        step = reach * 1.05 * stds[j]
        step = math.ceil(step) if world.support.integral[j] else step
        moved = X.copy()
        moved[:, j] += rng.choice([-1.0, 1.0], len(X)) * step
        moved = world.support.snap(moved, X)
        share = float(np.mean(moved[:, j] != X[:, j]))
        zeros = "" if share == 1 else f", {1 - share:.0%} hold a zero and stay"
        print(f"   {world.feature_names[j]} moved by {step:,.4g} ({step / stds[j]:.3f} σ{zeros}): member candidates matching {matching(moved[is_member], NARROWER):.0%} / "
              f"{matching(moved[is_member], wide):.0%}; TPR@1%FPR {rate_text(tpr(world.rescore(moved), is_member))}",
              flush=True)


def drop_carried_test(model: Any) -> None:
    """The stored calibration as one made before the carried test: without `rho_upper` the share detectors run their
    block tests alone (`detectors/carried.py`), and the attacker reads no carried test."""
    from monitor.models import DetectorState

    state = DetectorState.objects.get(model=model)
    for name in ("training_proximity", "boundary_probing"):
        state.calibration.get(name, {}).pop("rho_upper", None)
    state.save(update_fields=["calibration"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 days a trial, 4 trials, 50 queries a client-day")
    parser.add_argument("--accounts", type=int, default=4, help="K: accounts per attacker")
    parser.add_argument("--days", type=int, help="D: days per trial (default 3, --quick 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, help="most trials of the search (default 10, --quick 4)")
    parser.add_argument("--clients", type=int, default=1000, help="benign clients")
    parser.add_argument("--reference-days", type=int, default=1,
                        help="days of benign traffic the detectors calibrate on (default 1)")
    parser.add_argument("--blocks-alone", action="store_true",
                        help="the detectors as before the carried test (its calibration figure removed): the before")
    parser.add_argument("--book", type=int, default=None,
                        help="cover records an account sends a day (default: the best cover by the attacker's reading "
                             "of the calibration, at most its own cover records ÷ D)")
    parser.add_argument("--per-day", type=float, help="benign queries a client-day (default 100, --quick 50)")
    parser.add_argument("--narrower-match", action="store_true",
                        help="instead of the search: would a narrower training-proximity match shrink the figure "
                             "(design a's candidates moved past it, one column at a time, and scored)")
    args = parser.parse_args()
    args.days, args.trials = args.days or (2 if args.quick else 3), args.trials or (4 if args.quick else 10)
    args.per_day = args.per_day or (50.0 if args.quick else 100.0)
    started = time.perf_counter()
    where = setup_private_django("adversary-")
    from monitor.detection.calibration import calibrate_model
    from monitor.models import AlertAccount, AlertSource, DetectorState

    world, facts = build_world(args)
    first = time.time() // DAY * DAY - (args.reference_days + args.trials * args.days) * DAY
    reference = gen.benign_traffic(world.pool, n_clients=args.clients, seed=args.seed * 1000, start=first,
                                   duration=args.reference_days * DAY, queries_per_day=args.per_day)
    store(world.model, world.target, reference)
    calibrate_model(world.model)
    if args.blocks_alone:
        drop_carried_test(world.model)
    DetectorState.objects.filter(model=world.model).update(watermark_id=len(reference))  # scan after the benign day
    world.thresholds = read_thresholds(world.model)
    if args.narrower_match:
        narrower_match(world)
        return 0
    if args.book is None:  # the cover the attacker's reading says is best, as far as its own cover records go
        for strategy in world.strategies:
            best = evasion.best_rate(world.thresholds.core, benign_book=0,
                                     queries_per_record=strategy.queries_per_record,
                                     probes_boundary=strategy.probes_boundary)
            strategy.book = min(strategy.book, best.book)
    cap = facts["candidates"] // (args.accounts * args.days)
    searches = {s.key: Search(predicted=predicted_rate(s, world.thresholds, cap=cap, blocks=args.accounts * args.days),
                              cap=cap) for s in world.strategies}
    print(f"adversary: UCI Adult forest (100 trees) on {facts['members']:,} members, all registered; {args.clients:,} "
          f"benign clients × {args.per_day:g} queries a day; K = {args.accounts} accounts, D = {args.days} days a "
          f"trial; {facts['candidates']:,} candidates per strategy (half members); {where}; setup "
          f"{time.perf_counter() - started:.0f} s")
    print(f"  the attacker read: {world.thresholds.describe()}")
    for trial in range(args.trials):
        active = {key: s.next for key, s in searches.items() if s.next is not None}
        if not active:
            break
        outcome = run_trial(world, active, trial=trial, args=args,
                            start=first + (args.reference_days + trial * args.days) * DAY)
        for key, result in outcome.items():
            searches[key].record(result)
        print(f"  trial {trial + 1}: " + "; ".join(
            f"{key} {r.rate}/account-day " + (f"incident day {r.incident_day}" if r.incident_day else "quiet")
            for key, r in outcome.items()) + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    for strategy in world.strategies:
        report(strategy, searches[strategy.key], args, facts, world.thresholds)
    trials = max(len(s.trials) for s in searches.values())
    benign = AlertAccount.objects.filter(alert__model=world.model, alert__source=AlertSource.DETECTOR,
                                         client_id__startswith="client-").values("alert").distinct().count()
    print(f"benign clients: {benign} incident(s) in {args.clients * args.days * trials:,} "
          f"client-days scanned; wall {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
