"""Output policies: what a model's caller gets back (ML04 "model obfuscation").

Pure numpy; the predict gateway and the audit's what-if table apply the same code,
so the audit measures exactly what clients see.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_POLICY_RE = re.compile(r"^(full|label|round:(\d{1,2})|noise:([0-9]*\.?[0-9]+(?:e-?\d+)?))$")


@dataclass(frozen=True)
class OutputPolicy:
    kind: str  # full | round | label | noise
    decimals: int | None = None
    scale: float | None = None

    @classmethod
    def parse(cls, text: str) -> OutputPolicy:
        """Parse `full`, `round:K` (0 ≤ K ≤ 15), `label` or `noise:SCALE` (0 < SCALE ≤ 1)."""
        match = _POLICY_RE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise ValueError(
                f"unknown output policy {text!r}: expected full, round:K, label or noise:SCALE"
            )
        if match.group(2) is not None:
            decimals = int(match.group(2))
            if decimals > 15:
                raise ValueError(f"round:K needs 0 ≤ K ≤ 15, got {decimals}")
            return cls("round", decimals=decimals)
        if match.group(3) is not None:
            scale = float(match.group(3))
            if not 0 < scale <= 1:
                raise ValueError(f"noise:SCALE needs 0 < SCALE ≤ 1, got {scale}")
            return cls("noise", scale=scale)
        return cls(match.group(1))

    def __str__(self) -> str:
        if self.kind == "round":
            return f"round:{self.decimals}"
        if self.kind == "noise":
            return f"noise:{self.scale:g}"
        return self.kind

    @property
    def returns_labels_only(self) -> bool:
        return self.kind == "label"

    def apply(self, proba: np.ndarray, *, rng: np.random.Generator | None = None) -> np.ndarray:
        """Transform class probabilities (n, k) into what the caller receives (n, k).

        `label` returns the one-hot vector of the top-1 class, so every logged output
        has the same shape; `noise` adds Gaussian noise of standard deviation SCALE,
        clips to [0, 1] and renormalises.
        """
        proba = np.asarray(proba, dtype=np.float64)
        if self.kind == "full":
            return proba.copy()
        if self.kind == "round":
            assert self.decimals is not None
            return np.round(proba, self.decimals)
        if self.kind == "label":
            onehot = np.zeros_like(proba)
            onehot[np.arange(len(proba)), proba.argmax(axis=1)] = 1.0
            return onehot
        rng = rng if rng is not None else np.random.default_rng()
        assert self.scale is not None
        noisy = np.clip(proba + rng.normal(0.0, self.scale, size=proba.shape), 0.0, 1.0)
        totals = noisy.sum(axis=1, keepdims=True)
        uniform = np.full_like(noisy, 1.0 / proba.shape[1])
        return np.where(totals > 0, noisy / np.where(totals > 0, totals, 1.0), uniform)
