"""LSH banding: band keys per unit, and candidate pairs from runs of equal keys."""

import numpy as np
from numba import njit, prange

from .hashing import P1, P3, fmix64, rotl64


@njit(cache=True, parallel=True)
def band_keys(signatures, n_bands, rows):
    """One uint64 key per band: a hash of the band's `rows` signature values and its index.

    signatures: uint32[n_units, num_perm] with num_perm >= n_bands * rows.
    Returns uint64[n_units, n_bands].
    """
    n_units = signatures.shape[0]
    keys = np.empty((n_units, n_bands), dtype=np.uint64)
    for unit in prange(n_units):
        for band in range(n_bands):
            h = fmix64(np.uint64(band + 1) * P3)
            for k in range(band * rows, (band + 1) * rows):
                h = rotl64((h ^ np.uint64(signatures[unit, k])) * P1, 31)
            keys[unit, band] = fmix64(h)
    return keys


@njit(cache=True)
def _run_pairs(order, lo, hi, max_bucket, left, right, pos, write):
    """Pairs of one run of equal keys: all pairs, or a star to the first member when the run is
    larger than max_bucket (a bucket of m members then gives m - 1 pairs, not m(m-1)/2)."""
    m = hi - lo
    if m <= max_bucket:
        for i in range(lo, hi):
            for j in range(i + 1, hi):
                if write:
                    a = order[i]
                    b = order[j]
                    left[pos] = min(a, b)
                    right[pos] = max(a, b)
                pos += 1
    else:
        first = order[lo]
        for j in range(lo + 1, hi):
            if write:
                left[pos] = min(first, order[j])
                right[pos] = max(first, order[j])
            pos += 1
    return pos


@njit(cache=True)
def _band_pairs(column, max_bucket, left, right, pos, write):
    order = np.argsort(column, kind="mergesort")  # stable: a run lists units in input order
    lo = 0
    n = column.size
    while lo < n:
        hi = lo + 1
        while hi < n and column[order[hi]] == column[order[lo]]:
            hi += 1
        if hi - lo > 1:
            pos = _run_pairs(order, lo, hi, max_bucket, left, right, pos, write)
        lo = hi
    return pos


@njit(cache=True)
def _sort_unique_pairs(left, right):
    n = left.size
    packed = np.empty(n, dtype=np.uint64)
    for i in range(n):
        packed[i] = (np.uint64(left[i]) << np.uint64(32)) | np.uint64(right[i])
    packed.sort()
    n_unique = 0
    for i in range(n):
        if n_unique == 0 or packed[i] != packed[n_unique - 1]:
            packed[n_unique] = packed[i]
            n_unique += 1
    out_left = np.empty(n_unique, dtype=np.int64)
    out_right = np.empty(n_unique, dtype=np.int64)
    for i in range(n_unique):
        out_left[i] = np.int64(packed[i] >> np.uint64(32))
        out_right[i] = np.int64(packed[i] & np.uint64(0xFFFFFFFF))
    return out_left, out_right


@njit(cache=True, parallel=True)
def candidate_pairs(keys, max_bucket):
    """Distinct pairs of units that share a band key.

    keys: uint64[n_units, n_bands] (n_units < 2^32); max_bucket: runs larger than this are
    linked as a star to their first unit.
    Returns (left, right): int64 arrays, left < right, sorted by (left, right).
    """
    n_bands = keys.shape[1]
    counts = np.zeros(n_bands, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    for band in prange(n_bands):
        counts[band] = _band_pairs(keys[:, band].copy(), max_bucket, empty, empty, 0, False)
    starts = np.zeros(n_bands + 1, dtype=np.int64)
    for band in range(n_bands):
        starts[band + 1] = starts[band] + counts[band]
    left = np.empty(starts[n_bands], dtype=np.int64)
    right = np.empty(starts[n_bands], dtype=np.int64)
    for band in prange(n_bands):
        _band_pairs(keys[:, band].copy(), max_bucket, left[starts[band]:starts[band + 1]],
                    right[starts[band]:starts[band + 1]], 0, True)
    return _sort_unique_pairs(left, right)
