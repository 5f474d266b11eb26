"""2-D projections for the client page: PCA fitted on production traffic, members only as a density.

Pure numpy/scikit-learn. Member records never leave as points: a coarse histogram with sparse cells
blanked is all a page gets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

MIN_MEMBERS_PER_CELL = 5


@dataclass(frozen=True)
class Projection:
    production: np.ndarray  # (n, 2)
    client: np.ndarray  # (m, 2)
    explained: tuple[float, float]
    member_density: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # x edges, y edges, counts (blanked)


def project(*, production: np.ndarray, client: np.ndarray, members: np.ndarray | None = None, bins: int = 40) -> Projection:
    """Standardise on production traffic, fit a 2-component PCA there, and place the client (and members) on it."""
    mean = production.mean(axis=0)
    scale = production.std(axis=0)
    scale[scale == 0] = 1.0
    pca = PCA(n_components=2, random_state=0).fit((production - mean) / scale)

    def place(X: np.ndarray) -> np.ndarray:
        return pca.transform((X - mean) / scale) if len(X) else np.empty((0, 2))

    prod_2d, client_2d = place(production), place(client)
    density = None
    if members is not None and len(members):
        member_2d = place(members)
        both = np.vstack([prod_2d, client_2d])
        x_edges = np.linspace(*np.percentile(both[:, 0], [0.5, 99.5]), bins + 1)
        y_edges = np.linspace(*np.percentile(both[:, 1], [0.5, 99.5]), bins + 1)
        counts, _, _ = np.histogram2d(member_2d[:, 0], member_2d[:, 1], bins=[x_edges, y_edges])
        counts[counts < MIN_MEMBERS_PER_CELL] = 0  # a sparse cell could single out a record
        density = (x_edges, y_edges, counts)
    ratio = pca.explained_variance_ratio_
    return Projection(production=prod_2d, client=client_2d, explained=(float(ratio[0]), float(ratio[1])),
                      member_density=density)
