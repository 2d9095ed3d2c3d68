"""``split.strategy: diverse``: k images spread over the pool in the backbone's feature space.

The choice needs no label at all, so it can run before anyone annotates: each image is one
pooled feature vector of the frozen backbone (:mod:`spino_core.data.pool_features`), and
seeded k-center greedy (farthest-first traversal) picks k of them so that every image of
the pool is as close as possible to one picked image.
"""

from __future__ import annotations

import numpy as np


def k_center_greedy(features: np.ndarray, k: int, seed: int = 0) -> list[int]:
    """(N, D) float features -> k distinct row indices, in selection order.

    The first pick is the first row of a seeded permutation; each next pick is the row
    farthest (Euclidean) from every row picked so far, ties going to the earlier row in
    that permutation. Deterministic for a given (features, k, seed); identical rows never
    make a row picked twice.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"k_center_greedy: expected (N, D) features, got shape {x.shape}")
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k_center_greedy: k must be in 1..{n}, got {k}")
    order = np.random.default_rng(seed).permutation(n)
    x = x[order]  # work in the seeded order: argmax's first maximum is the seeded tie-break
    chosen = [0]
    dist = np.linalg.norm(x - x[0], axis=1)
    dist[0] = -np.inf
    while len(chosen) < k:
        best = int(np.argmax(dist))
        chosen.append(best)
        dist = np.minimum(dist, np.linalg.norm(x - x[best], axis=1))
        dist[chosen] = -np.inf
    return [int(order[i]) for i in chosen]
