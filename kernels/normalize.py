"""Normalization of code points through a precomputed table (see dedup/normtable.py)."""

import numpy as np
from numba import njit, prange

DROP = -1
SEPARATOR = -2
PUNCT = -3
EXPANSION_BASE = -16  # table value EXPANSION_BASE - k: the k-th expansion row
SPACE = 32  # the one separator word-mode output keeps between words


@njit(cache=True, inline="always")
def _put(value, origin, out, origins, count, is_pending, keep_separators, write):
    """Emit one mapped value; returns (count, is_pending)."""
    if value < 0:  # SEPARATOR or PUNCT: a word boundary, dropped in character mode
        if keep_separators and count > 0:
            is_pending = True
        return count, is_pending
    if is_pending:
        if write:
            out[count] = SPACE
            if origins.size:
                origins[count] = origin
        count += 1
        is_pending = False
    if write:
        out[count] = value
        if origins.size:
            origins[count] = origin
    return count + 1, is_pending


@njit(cache=True)
def _normalize_one(cps, start, end, table, exp_offsets, exp_values, keep_separators,
                   out, origins, write):
    count = 0
    is_pending = False
    n_table = table.size
    for i in range(start, end):
        cp = np.int64(cps[i])
        value = table[cp] if 0 <= cp < n_table else cp
        if value == DROP:
            continue
        if value <= EXPANSION_BASE:
            row = EXPANSION_BASE - value
            for k in range(exp_offsets[row], exp_offsets[row + 1]):
                count, is_pending = _put(exp_values[k], i, out, origins, count, is_pending,
                                         keep_separators, write)
        else:
            count, is_pending = _put(value, i, out, origins, count, is_pending,
                                     keep_separators, write)
    return count


@njit(cache=True, parallel=True)
def normalize_units(cps, starts, ends, table, exp_offsets, exp_values, keep_separators,
                    with_origins):
    """Normalize each unit cps[starts[u]:ends[u]].

    cps: uint32[n] code points; starts, ends: int64[n_units]; table: int32[0x110000].
    keep_separators: False drops white space and punctuation (character shingles); True
    turns each run of them between words into one SPACE (word shingles).
    Returns (values int32[m], offsets int64[n_units + 1], origins int64[m]): unit u is
    values[offsets[u]:offsets[u + 1]], and origins gives the index in cps each value came from
    (empty unless with_origins).
    """
    n_units = starts.size
    counts = np.zeros(n_units, dtype=np.int64)
    dummy = np.zeros(0, dtype=np.int32)
    dummy_origins = np.zeros(0, dtype=np.int64)
    for unit in prange(n_units):
        counts[unit] = _normalize_one(cps, starts[unit], ends[unit], table, exp_offsets,
                                      exp_values, keep_separators, dummy, dummy_origins, False)
    offsets = np.zeros(n_units + 1, dtype=np.int64)
    for unit in range(n_units):
        offsets[unit + 1] = offsets[unit] + counts[unit]
    values = np.empty(offsets[n_units], dtype=np.int32)
    origins = np.empty(offsets[n_units] if with_origins else 0, dtype=np.int64)
    for unit in prange(n_units):
        lo = offsets[unit]
        hi = offsets[unit + 1]
        _normalize_one(cps, starts[unit], ends[unit], table, exp_offsets, exp_values,
                       keep_separators, values[lo:hi],
                       origins[lo:hi] if with_origins else origins, True)
    return values, offsets, origins
