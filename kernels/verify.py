"""Exact verification of candidate pairs on their shingle sets."""

import numpy as np
from numba import njit, prange


@njit(cache=True)
def intersection_size(shingles, lo_a, hi_a, lo_b, hi_b):
    """Size of the intersection of two sorted, distinct runs of shingles."""
    i = lo_a
    j = lo_b
    shared = 0
    while i < hi_a and j < hi_b:
        if shingles[i] < shingles[j]:
            i += 1
        elif shingles[i] > shingles[j]:
            j += 1
        else:
            shared += 1
            i += 1
            j += 1
    return shared


@njit(cache=True, parallel=True)
def pair_similarities(shingles, offsets, left, right):
    """Exact Jaccard and containment of each pair.

    shingles: uint64 sorted distinct per unit, offsets: int64[n_units + 1];
    left, right: int64[n_pairs] unit indices.
    Returns (jaccard float64[n_pairs], containment float64[n_pairs]) where containment is the
    share of the smaller set found in the larger; both 0.0 when either set is empty.
    """
    n_pairs = left.size
    jaccard = np.zeros(n_pairs, dtype=np.float64)
    containment = np.zeros(n_pairs, dtype=np.float64)
    for k in prange(n_pairs):
        a = left[k]
        b = right[k]
        size_a = offsets[a + 1] - offsets[a]
        size_b = offsets[b + 1] - offsets[b]
        if size_a == 0 or size_b == 0:
            continue
        shared = intersection_size(shingles, offsets[a], offsets[a + 1], offsets[b], offsets[b + 1])
        jaccard[k] = shared / (size_a + size_b - shared)
        containment[k] = shared / min(size_a, size_b)
    return jaccard, containment
