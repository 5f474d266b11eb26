"""Synthetic query traffic as arrays: benign clients and the footprints of membership-inference attacks.

Pure numpy: the detector tests, the simulate_traffic command and the benchmarks share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SECONDS_PER_DAY = 86_400.0
PredictProba = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Traffic:
    """Queries in time order, with the ground truth of who attacks."""

    features: np.ndarray  # float32 (n, d)
    client_ids: np.ndarray  # str (n,)
    timestamps: np.ndarray  # float64 (n,), seconds
    origin_ids: np.ndarray  # int64 (n,): id of the record a query was built from, -1 for none
    attackers: dict[str, str] = field(default_factory=dict)  # attacking client id -> attack kind
    accounts: dict[str, str] = field(default_factory=dict)  # account -> attacker, for split attacks

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def clients(self) -> list[str]:
        return sorted(set(self.client_ids.tolist()))

    @property
    def benign_clients(self) -> list[str]:
        return [client for client in self.clients if client not in self.attackers]

    def of_client(self, client_id: str) -> np.ndarray:
        """Boolean mask of one client's queries."""
        return self.client_ids == client_id

    def take(self, index: np.ndarray) -> Traffic:
        """The queries at `index` (mask or positions), e.g. one scan's worth; the ground truth is kept."""
        return Traffic(
            features=self.features[index],
            client_ids=self.client_ids[index],
            timestamps=self.timestamps[index],
            origin_ids=self.origin_ids[index],
            attackers=dict(self.attackers),
            accounts=dict(self.accounts),
        )


def combine(*parts: Traffic) -> Traffic:
    """All queries of `parts`, in time order (ties keep the order of the parts)."""
    order = np.argsort(np.concatenate([part.timestamps for part in parts]), kind="stable")
    attackers: dict[str, str] = {}
    accounts: dict[str, str] = {}
    for part in parts:
        attackers.update(part.attackers)
        accounts.update(part.accounts)
    return Traffic(
        features=np.concatenate([part.features for part in parts])[order],
        client_ids=np.concatenate([part.client_ids for part in parts])[order],
        timestamps=np.concatenate([part.timestamps for part in parts])[order],
        origin_ids=np.concatenate([part.origin_ids for part in parts])[order],
        attackers=attackers,
        accounts=accounts,
    )


def _diurnal_times(
    n: int, *, start: float, duration: float, amplitude: float, rng: np.random.Generator
) -> np.ndarray:
    """n arrival times with intensity 1 + amplitude * sin(...), peaking at noon and lowest at midnight."""
    grid = np.linspace(start, start + duration, 2049)
    intensity = 1.0 + amplitude * np.sin(2 * np.pi * (grid / SECONDS_PER_DAY - 0.25))
    cumulative = np.concatenate([[0.0], np.cumsum((intensity[1:] + intensity[:-1]) / 2 * np.diff(grid))])
    return np.sort(np.interp(rng.uniform(0, cumulative[-1], n), cumulative, grid))


def _attack_times(n: int, *, start: float, rate_per_second: float, rng: np.random.Generator) -> np.ndarray:
    """A scripted client: Poisson arrivals at a steady rate from `start`."""
    return start + np.cumsum(rng.exponential(1.0 / rate_per_second, n))


def _attack(
    features: np.ndarray,
    origin_ids: np.ndarray,
    *,
    client_id: str,
    kind: str,
    start: float,
    rate_per_second: float,
    rng: np.random.Generator,
) -> Traffic:
    return Traffic(
        features=np.asarray(features, dtype=np.float32),
        client_ids=np.full(len(features), client_id, dtype=object).astype(str),
        timestamps=_attack_times(len(features), start=start, rate_per_second=rate_per_second, rng=rng),
        origin_ids=np.asarray(origin_ids, dtype=np.int64),
        attackers={client_id: kind},
    )


def _ids(record_ids: np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) if record_ids is None else np.asarray(record_ids, dtype=np.int64)


def benign_traffic(
    pool: np.ndarray,
    *,
    n_clients: int,
    seed: int,
    start: float = 0.0,
    duration: float = SECONDS_PER_DAY,
    queries_per_day: float = 200.0,
    rate_spread: float = 0.8,
    diurnal_amplitude: float = 0.6,
    book_size: tuple[int, int] = (20, 400),
    jitter: float = 0.05,
    jitter_share: float = 0.3,
    record_ids: np.ndarray | None = None,
    client_prefix: str = "client-",
    categorical: np.ndarray | None = None,
) -> Traffic:
    """Honest clients: each scores its own book of customers from `pool` (non-member records).

    Rates are log-normal across clients (mean `queries_per_day`), arrivals Poisson with a diurnal
    cycle; customers come back (re-scoring). In `jitter_share` of queries one continuous value
    (more than 50 distinct values in the pool) moves by `jitter` standard deviations, rounded back
    to the column's integer grid where it has one.
    """
    rng = np.random.default_rng(seed)
    pool = np.asarray(pool, dtype=np.float64)
    ids = _ids(record_ids, len(pool))
    stds = np.nan_to_num(np.nanstd(pool, axis=0), nan=0.0) if len(pool) else np.zeros(pool.shape[1])
    fixed = np.zeros(pool.shape[1], dtype=bool) if categorical is None else np.asarray(categorical, dtype=bool)
    # A category (a code) never moves; nor does a missing value.
    continuous = np.asarray([not fixed[j] and len(np.unique(pool[:, j])) > 50 for j in range(pool.shape[1])])
    integral = np.all((pool == np.round(pool)) | np.isnan(pool), axis=0)
    rates = queries_per_day * rng.lognormal(-(rate_spread**2) / 2, rate_spread, n_clients)
    counts = rng.poisson(rates * duration / SECONDS_PER_DAY)
    features, clients, times, origins = [], [], [], []
    for client, count in enumerate(counts.tolist()):
        size = int(np.exp(rng.uniform(np.log(book_size[0]), np.log(book_size[1]))))
        book = rng.choice(len(pool), size=min(size, len(pool)), replace=False)
        rows = book[rng.integers(0, len(book), count)]
        x = pool[rows].copy()
        # Re-scoring mostly sends the record unchanged; sometimes one measurement was updated.
        if continuous.any() and count:
            updated = np.flatnonzero(rng.random(count) < jitter_share)
            column = rng.choice(np.flatnonzero(continuous), len(updated))
            moved = x[updated, column] + rng.normal(0.0, jitter, len(updated)) * stds[column]
            x[updated, column] = np.where(x[updated, column] != 0, moved, 0.0)
        x = np.where(integral & ~fixed, np.round(x), x)
        features.append(x)
        clients.append(np.full(count, f"{client_prefix}{client:05d}"))
        times.append(
            _diurnal_times(count, start=start, duration=duration, amplitude=diurnal_amplitude, rng=rng)
        )
        origins.append(ids[rows])
    order = np.argsort(np.concatenate(times), kind="stable")
    return Traffic(
        features=np.concatenate(features).astype(np.float32)[order],
        client_ids=np.concatenate(clients).astype(str)[order],
        timestamps=np.concatenate(times)[order],
        origin_ids=np.concatenate(origins).astype(np.int64)[order],
    )


def even_benign_traffic(
    pool: np.ndarray,
    *,
    n_clients: int,
    queries_per_client: int,
    seed: int,
    start: float = 0.0,
    duration: float = SECONDS_PER_DAY,
    client_prefix: str = "client-",
    categorical: np.ndarray | None = None,
) -> Traffic:
    """Honest clients as in `benign_traffic` (own books, re-scoring, diurnal arrivals), each sending exactly
    `queries_per_client` queries over the window: a new model's first traffic of many light clients, none of them
    busy enough to fill a detector's block on its own."""
    rng = np.random.default_rng(seed)
    many = benign_traffic(pool, n_clients=n_clients, seed=seed, start=start, duration=duration,
                          queries_per_day=4 * queries_per_client * SECONDS_PER_DAY / duration, rate_spread=0.0,
                          client_prefix=client_prefix, categorical=categorical)
    keep = [rng.choice(rows, min(queries_per_client, len(rows)), replace=False)
            for client in many.clients for rows in [np.flatnonzero(many.client_ids == client)]]
    return many.take(np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64))


def noise_sweep(
    targets: np.ndarray,
    *,
    feature_stds: np.ndarray,
    client_id: str,
    seed: int,
    copies: int = 40,
    noise_scale: float = 0.1,
    start: float = 0.0,
    rate_per_second: float = 2.0,
    target_ids: np.ndarray | None = None,
) -> Traffic:
    """Label-only attack (Choquette-Choo et al. 2021): each target, then `copies` Gaussian-noised copies.

    The noise is `noise_scale` standard deviations per feature; the attacker reads how often the
    label survives it.
    """
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets, dtype=np.float64)
    ids = _ids(target_ids, len(targets))
    noise = rng.normal(0.0, noise_scale, (len(targets), copies, targets.shape[1])) * feature_stds
    sweeps = np.concatenate([targets[:, None, :], targets[:, None, :] + noise], axis=1)
    origins = np.repeat(ids, copies + 1)
    return _attack(
        sweeps.reshape(-1, targets.shape[1]),
        origins,
        client_id=client_id,
        kind="noise_sweep",
        start=start,
        rate_per_second=rate_per_second,
        rng=rng,
    )


def augmentation_sweep(
    targets: np.ndarray,
    *,
    feature_steps: np.ndarray,
    client_id: str,
    seed: int,
    shifts: tuple[int, ...] = (-2, -1, 1, 2),
    start: float = 0.0,
    rate_per_second: float = 2.0,
    target_ids: np.ndarray | None = None,
) -> Traffic:
    """Label-only attack with data augmentation: each target, then one feature at a time moved by a few steps.

    The tabular analogue of the flips and shifts of Choquette-Choo et al. (2021): `feature_steps`
    is one step per feature (1 for a code, a small amount for a measurement).
    """
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets, dtype=np.float64)
    ids = _ids(target_ids, len(targets))
    d = targets.shape[1]
    moves = np.zeros((d * len(shifts), d))
    for i, (feature, shift) in enumerate((j, s) for j in range(d) for s in shifts):
        moves[i, feature] = shift * feature_steps[feature]
    sweeps = np.concatenate([targets[:, None, :], targets[:, None, :] + moves[None, :, :]], axis=1)
    origins = np.repeat(ids, len(moves) + 1)
    return _attack(
        sweeps.reshape(-1, d),
        origins,
        client_id=client_id,
        kind="augmentation_sweep",
        start=start,
        rate_per_second=rate_per_second,
        rng=rng,
    )


def boundary_search(
    predict_proba: PredictProba,
    targets: np.ndarray,
    candidates: np.ndarray,
    *,
    feature_stds: np.ndarray,
    client_id: str,
    seed: int,
    bisection_steps: int = 12,
    rounds: int = 4,
    probes: int = 20,
    probe_scale: float = 0.02,
    start: float = 0.0,
    rate_per_second: float = 2.0,
    target_ids: np.ndarray | None = None,
    categorical: np.ndarray | None = None,
) -> Traffic:
    """Boundary-distance attack in the style of HopSkipJump (Chen, Jordan & Wainwright 2020).

    For each target: find a differently-labelled point among `candidates`, bisect to the decision
    boundary, estimate the boundary's normal from `probes` random queries around it, step along
    it and bisect again, `rounds` times. Only labels are used, as a label-only attacker would. On a table of raw
    values (`categorical` columns hold codes; missing values are NaN) a point between two records takes each
    category, and each missing value, from the record it is nearer to: only numbers move continuously.
    """
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.float64)
    ids = _ids(target_ids, len(targets))
    stds = np.nan_to_num(np.asarray(feature_stds, dtype=np.float64), nan=0.0)
    fixed = np.zeros(targets.shape[1], dtype=bool) if categorical is None else np.asarray(categorical, dtype=bool)
    stds = np.where(fixed, 0.0, stds)
    safe_stds = np.where(stds > 0, stds, 1.0)

    def between(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        mixed = a + t[:, None] * (b - a)
        jump = fixed[None, :] | np.isnan(a) | np.isnan(b)
        return np.where(jump, np.where(t[:, None] < 0.5, a, b), mixed)

    sent: list[np.ndarray] = []
    origins: list[np.ndarray] = []

    def ask(x: np.ndarray, owners: np.ndarray) -> np.ndarray:
        sent.append(x)
        origins.append(ids[owners])
        return np.asarray(predict_proba(x)).argmax(axis=1)

    everyone = np.arange(len(targets))
    own_label = ask(targets, everyone)
    # Random candidates until one has another label (five tries each, as a budget-conscious attacker).
    adversarial = np.full(targets.shape, np.nan)
    for _ in range(5):
        missing = np.flatnonzero(np.isnan(adversarial[:, 0]))
        if len(missing) == 0:
            break
        tries = candidates[rng.integers(0, len(candidates), len(missing))]
        flipped = ask(tries, missing) != own_label[missing]
        adversarial[missing[flipped]] = tries[flipped]
    live = np.flatnonzero(~np.isnan(adversarial[:, 0]))
    x0, x_adv, label = targets[live], adversarial[live], own_label[live]
    for round_number in range(rounds):
        lo, hi = np.zeros(len(live)), np.ones(len(live))
        for _ in range(bisection_steps):
            mid = (lo + hi) / 2
            crossed = ask(between(x0, x_adv, mid), live) != label
            hi, lo = np.where(crossed, mid, hi), np.where(crossed, lo, mid)
        boundary = between(x0, x_adv, hi)
        directions = rng.normal(size=(len(live), probes, targets.shape[1]))
        directions /= np.linalg.norm(directions, axis=2, keepdims=True)
        probe_points = boundary[:, None, :] + probe_scale * directions * stds
        answers = ask(probe_points.reshape(-1, targets.shape[1]), np.repeat(live, probes)).reshape(
            len(live), probes
        )
        sign = np.where(answers != label[:, None], 1.0, -1.0)
        gradient = (sign[:, :, None] * directions).mean(axis=1)
        gradient /= np.maximum(np.linalg.norm(gradient, axis=1, keepdims=True), 1e-12)
        distance = np.linalg.norm(np.nan_to_num((boundary - x0) / safe_stds) * (stds > 0), axis=1, keepdims=True)
        stepped = boundary + gradient * stds * distance / np.sqrt(round_number + 1)
        still_adversarial = ask(stepped, live) != label
        x_adv = np.where(still_adversarial[:, None], stepped, boundary)
    return _attack(
        np.concatenate(sent),
        np.concatenate(origins),
        client_id=client_id,
        kind="boundary_search",
        start=start,
        rate_per_second=rate_per_second,
        rng=rng,
    )


def candidate_testing(
    members: np.ndarray,
    non_members: np.ndarray,
    *,
    n_candidates: int,
    client_id: str,
    seed: int,
    member_share: float = 0.5,
    start: float = 0.0,
    rate_per_second: float = 1.0,
    member_ids: np.ndarray | None = None,
) -> Traffic:
    """An attacker holding candidate records sends each one as is; `member_share` of them are members.

    origin_ids carry the member id of member candidates and -1 for the others.
    """
    rng = np.random.default_rng(seed)
    ids = _ids(member_ids, len(members))
    n_members = int(round(n_candidates * member_share))
    chosen_members = rng.choice(len(members), n_members, replace=False)
    chosen_others = rng.choice(len(non_members), n_candidates - n_members, replace=False)
    features = np.concatenate([np.asarray(members)[chosen_members], np.asarray(non_members)[chosen_others]])
    origins = np.concatenate([ids[chosen_members], np.full(len(chosen_others), -1, np.int64)])
    shuffle = rng.permutation(len(features))
    return _attack(
        features[shuffle],
        origins[shuffle],
        client_id=client_id,
        kind="candidate_testing",
        start=start,
        rate_per_second=rate_per_second,
        rng=rng,
    )


def adaptive_sweep(
    targets: np.ndarray,
    pool: np.ndarray,
    *,
    feature_stds: np.ndarray,
    client_id: str,
    seed: int,
    copies: int = 40,
    noise_scale: float = 0.3,
    cover_per_query: int = 3,
    start: float = 0.0,
    rate_per_second: float = 0.05,
    target_ids: np.ndarray | None = None,
) -> Traffic:
    """An attacker who knows the detectors: a label-only sweep whose noise is scaled to each feature's spread at
    `noise_scale` σ (wider than the near-duplicate cells), each sweep query hidden among `cover_per_query`
    benign-looking queries (records drawn from `pool`, as an honest client's book), at an honest client's rate."""
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets, dtype=np.float64)
    ids = _ids(target_ids, len(targets))
    noise = rng.normal(0.0, noise_scale, (len(targets), copies, targets.shape[1])) * feature_stds
    sweep = (targets[:, None, :] + noise).reshape(-1, targets.shape[1])
    origins = np.repeat(ids, copies)
    book = np.asarray(pool, dtype=np.float64)[rng.choice(len(pool), min(len(pool), 200), replace=False)]
    cover = book[rng.integers(0, len(book), len(sweep) * cover_per_query)]
    features = np.concatenate([sweep, cover])
    origin_ids = np.concatenate([origins, np.full(len(cover), -1, np.int64)])
    order = rng.permutation(len(features))
    return _attack(features[order], origin_ids[order], client_id=client_id, kind="adaptive_sweep", start=start,
                   rate_per_second=rate_per_second, rng=rng)


def low_and_slow(
    members: np.ndarray,
    non_members: np.ndarray,
    *,
    n_candidates: int,
    client_id: str,
    seed: int,
    start: float,
    days: float,
    member_share: float = 0.5,
    member_ids: np.ndarray | None = None,
) -> Traffic:
    """Candidate testing spread over `days` at a benign client's pace, with a diurnal rhythm: no burst to see."""
    rng = np.random.default_rng(seed)
    part = candidate_testing(members, non_members, n_candidates=n_candidates, client_id=client_id, seed=seed,
                             member_share=member_share, member_ids=member_ids)
    times = _diurnal_times(len(part), start=start, duration=days * SECONDS_PER_DAY, amplitude=0.6, rng=rng)
    return Traffic(features=part.features, client_ids=part.client_ids, timestamps=times, origin_ids=part.origin_ids,
                   attackers={client_id: "low_and_slow"})


def slow_sweep(
    targets: np.ndarray,
    *,
    feature_stds: np.ndarray,
    client_id: str,
    seed: int,
    start: float,
    days: float,
    copies: int = 40,
    noise_scale: float = 0.1,
    target_ids: np.ndarray | None = None,
) -> Traffic:
    """A label-only sweep spread over `days` at a benign client's pace: every target's noised copies shuffled among
    the other targets' and sent with a diurnal rhythm, so no hour holds more than a few copies of one record."""
    rng = np.random.default_rng(seed)
    part = noise_sweep(targets, feature_stds=feature_stds, client_id=client_id, seed=seed, copies=copies,
                       noise_scale=noise_scale, target_ids=target_ids)
    order = rng.permutation(len(part.features))
    times = _diurnal_times(len(order), start=start, duration=days * SECONDS_PER_DAY, amplitude=0.6, rng=rng)
    return Traffic(features=part.features[order], client_ids=part.client_ids[order], timestamps=times,
                   origin_ids=part.origin_ids[order], attackers={client_id: "slow_sweep"})


def shadow_harvest(
    reference: np.ndarray,
    *,
    n: int,
    client_id: str,
    seed: int,
    method: str = "marginal",
    start: float = 0.0,
    rate_per_second: float = 1.0,
) -> Traffic:
    """Synthetic records to label for a shadow model (Shokri et al. 2017).

    `marginal`: each feature drawn independently from its observed values (right marginals,
    no joint structure); `uniform`: each feature uniform over its observed range.
    """
    rng = np.random.default_rng(seed)
    reference = np.asarray(reference, dtype=np.float64)
    if method == "marginal":
        features = np.column_stack([rng.choice(column, n) for column in reference.T])
    elif method == "uniform":
        features = rng.uniform(reference.min(axis=0), reference.max(axis=0), (n, reference.shape[1]))
    else:
        raise ValueError(f"unknown method {method!r}: expected 'marginal' or 'uniform'")
    return _attack(
        features,
        np.full(n, -1, np.int64),
        client_id=client_id,
        kind="shadow_harvest",
        start=start,
        rate_per_second=rate_per_second,
        rng=rng,
    )


def split_accounts(traffic: Traffic, *, n_accounts: int) -> Traffic:
    """One attacker's traffic dealt round-robin over `n_accounts` accounts, so every account carries
    a slice of every target's sweep and none stands out alone."""
    client_ids = traffic.client_ids.astype(object)  # object: longer account names must not be truncated
    attackers: dict[str, str] = {}
    accounts: dict[str, str] = {}
    for attacker in sorted(set(traffic.client_ids.tolist())):
        rows = np.flatnonzero(traffic.client_ids == attacker)
        names = [f"{attacker}-account{i}" for i in range(n_accounts)]
        client_ids[rows] = np.asarray(names)[np.arange(len(rows)) % n_accounts]
        kind = traffic.attackers.get(attacker, "unknown")
        attackers.update({name: kind for name in names})
        accounts.update({name: attacker for name in names})
    return Traffic(
        features=traffic.features,
        client_ids=client_ids.astype(str),
        timestamps=traffic.timestamps,
        origin_ids=traffic.origin_ids,
        attackers=attackers,
        accounts=accounts,
    )
