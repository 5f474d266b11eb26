"""Tail probabilities and their calibration on benign traffic: the statistics behind every threshold.

Benign clients differ (each has its own customers), so counts are overdispersed against a plain
binomial; we widen the binomial by the intra-client correlation measured on reference traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betainc, ndtr


def binomial_tail(hits: np.ndarray, n: np.ndarray, p: float, *, rho: float | np.ndarray = 0.0) -> np.ndarray:
    """P(X >= hits) for X ~ Binomial(n, p) widened by intra-client correlation rho (a number, or one per n).

    Overdispersion is handled with Kish's design effect 1 + (n - 1) rho: the test runs on an
    effective sample n / deff with hits / deff (Kish 1965; the usual beta-binomial approximation).
    The regularised incomplete beta I_p(x, n - x + 1) is the exact binomial tail and accepts the
    non-integer effective counts.
    """
    hits = np.asarray(hits, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    deff = 1.0 + np.maximum(n - 1.0, 0.0) * rho
    n_eff, x_eff = n / deff, hits / deff
    tail = np.ones(np.broadcast(hits, n).shape)
    positive = x_eff > 0
    x_pos, n_pos = np.broadcast_to(x_eff, tail.shape)[positive], np.broadcast_to(n_eff, tail.shape)[positive]
    tail[positive] = betainc(x_pos, np.maximum(n_pos - x_pos, 0.0) + 1.0, p)
    return tail


def fit_base_rate(hits: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """(base rate, intra-client correlation rho) from per-client counts of benign reference traffic.

    rho is the method-of-moments estimate from Var(x_i) = n_i p q (1 + (n_i - 1) rho), clipped to
    [0, 0.5]. The base rate gets half a hit added so that a clean reference never yields zero.
    """
    hits = np.asarray(hits, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    total = float(n.sum())
    if total == 0:
        return 0.5, 0.0
    p = (float(hits.sum()) + 0.5) / (total + 1.0)
    q = 1.0 - p
    usable = n >= 2
    if usable.sum() < 2:
        return p, 0.0
    n_u, x_u = n[usable], hits[usable]
    excess = float(((x_u - n_u * p) ** 2 - n_u * p * q).sum())
    scale = float((n_u * (n_u - 1) * p * q).sum())
    rho = 0.0 if scale <= 0 else min(0.5, max(0.0, excess / scale))
    return p, rho


def rho_upper_bound(hits: np.ndarray, n: np.ndarray, p: float, rho: float, *, z: float = 2.0) -> float:
    """rho plus z standard errors of its method-of-moments estimate, clipped to [0, 0.5].

    The estimate is excess / scale with excess = sum((x_i - n_i p)^2 - n_i p q); each square has variance about
    2 v_i^2 + v_i with v_i = n_i p q (1 + (n_i - 1) rho) (normal, plus the Poisson term that matters at small
    counts), so se = sqrt(sum(2 v_i^2 + v_i)) / scale. Fewer than two usable clients: 0.5, the largest rho allowed.
    """
    hits = np.asarray(hits, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    usable = n >= 2
    q = 1.0 - p
    scale = float((n[usable] * (n[usable] - 1) * p * q).sum())
    if usable.sum() < 2 or scale <= 0:
        return 0.5
    v = n[usable] * p * q * (1.0 + (n[usable] - 1.0) * rho)
    se = float(np.sqrt((2.0 * v**2 + v).sum())) / scale
    return float(min(0.5, max(0.0, rho) + z * se))


def fit_mean_dispersion(means: np.ndarray, n: np.ndarray, *, unit_variance: float, centre: float) -> float:
    """Between-client variance tau^2 of a per-client mean, beyond the within-client unit_variance / n."""
    means = np.asarray(means, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if len(means) < 2:
        return 0.0
    excess = (means - centre) ** 2 - unit_variance / n
    return max(0.0, float(excess.mean()))


def normal_two_sided(z: np.ndarray) -> np.ndarray:
    z = np.abs(np.asarray(z, dtype=np.float64))
    return np.minimum(1.0, 2.0 * ndtr(-z))


@dataclass(frozen=True)
class CountTail:
    """Survival function P(V >= v) of a non-negative integer statistic of benign traffic.

    Empirical up to a high threshold u; beyond it a geometric tail fitted to the exceedances
    (peaks over threshold, Pickands 1975, with the exponential/geometric member of the family),
    because a false-alarm rate of 1e-5 per window lies far beyond what any reference window shows.
    """

    values: tuple[int, ...]  # support points up to u
    survival: tuple[float, ...]  # P(V >= value)
    u: int
    p_excess: float  # P(V > u)
    theta: float  # P(V >= v + 1 | V >= v) beyond u
    n: int

    @classmethod
    def fit(cls, samples: np.ndarray) -> CountTail:
        samples = np.sort(np.asarray(samples, dtype=np.int64))
        n = len(samples)
        if n == 0:
            return cls(values=(0,), survival=(1.0,), u=0, p_excess=1.0, theta=0.5, n=0)
        # Put u where about 200 samples exceed it (at least the 90th percentile), so the geometric
        # tail is fitted close to where we extrapolate.
        level = max(0.9, 1.0 - 200.0 / n)
        u = int(np.quantile(samples, level, method="lower"))
        support = np.unique(samples[samples <= u])
        survival = (n - np.searchsorted(samples, support, side="left")) / n
        excess = samples[samples > u] - u  # >= 1
        # Add-one smoothing keeps the tail alive when the reference never went beyond u.
        p_excess = (len(excess) + 1.0) / (n + 1.0)
        continuations = float((excess - 1).sum())
        theta = (continuations + 1.0) / (continuations + len(excess) + 2.0)
        return cls(
            values=tuple(int(v) for v in support),
            survival=tuple(float(s) for s in survival),
            u=u,
            p_excess=float(p_excess),
            theta=float(theta),
            n=n,
        )

    def sf(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.int64)
        values = np.asarray(self.values)
        survival = np.asarray(self.survival)
        position = np.searchsorted(values, v, side="left")
        body = np.where(
            position < len(values), survival[np.minimum(position, len(values) - 1)], self.p_excess
        )
        tail = self.p_excess * self.theta ** np.maximum(v - self.u - 1, 0).astype(np.float64)
        return np.where(v <= 0, 1.0, np.where(v <= self.u, body, tail))

    def threshold(self, p: float) -> int:
        """Smallest count whose survival is at most p."""
        for value, survival in zip(self.values, self.survival, strict=True):
            if survival <= p and value > 0:
                return value
        if self.p_excess <= p:
            return self.u + 1
        if self.theta <= 0:
            return self.u + 2
        steps = np.ceil(np.log(p / self.p_excess) / np.log(self.theta))
        return int(self.u + 1 + max(0.0, float(steps)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": list(self.values),
            "survival": list(self.survival),
            "u": self.u,
            "p_excess": self.p_excess,
            "theta": self.theta,
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CountTail:
        return cls(
            values=tuple(int(v) for v in data["values"]),
            survival=tuple(float(s) for s in data["survival"]),
            u=int(data["u"]),
            p_excess=float(data["p_excess"]),
            theta=float(data["theta"]),
            n=int(data["n"]),
        )
