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


@njit(cache=True, inline="always")
def _decode_utf8(data, i):
    """The code point starting at data[i] of valid UTF-8 (surrogates encoded with
    "surrogatepass" decode to themselves), and the index after it."""
    b0 = np.int64(data[i])
    if b0 < 0x80:
        return b0, i + 1
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), i + 2
    if b0 < 0xF0:
        return (((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6)
                | (np.int64(data[i + 2]) & 0x3F)), i + 3
    return (((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
            | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)), i + 4


@njit(cache=True)
def decode_utf8(data, lo, hi):
    """Code points (uint32) of the valid UTF-8 bytes data[lo:hi]."""
    cps = np.empty(hi - lo, dtype=np.uint32)
    count = 0
    i = lo
    while i < hi:
        cp, i = _decode_utf8(data, i)
        cps[count] = cp
        count += 1
    return cps[:count]


@njit(cache=True)
def normalize_utf8_into(data, lo, hi, table, exp_offsets, exp_values, keep_separators, out):
    """Normalize the UTF-8 bytes data[lo:hi] straight into out, as normalize_units would.

    One pass, no origins: the signature path. out must hold at least 2 * (hi - lo) values;
    returns how many were written, or -1 if an expansion could overflow out (then use
    normalize_units on decode_utf8's code points).
    """
    count = 0
    is_pending = False
    n_table = table.size
    no_origins = np.zeros(0, dtype=np.int64)
    i = lo
    while i < hi:
        start = i
        cp, i = _decode_utf8(data, i)
        value = table[cp] if cp < n_table else np.int32(cp)
        if value <= EXPANSION_BASE:
            row = EXPANSION_BASE - value
            # each remaining byte can still add two values (a space and a character)
            if count + 2 * (exp_offsets[row + 1] - exp_offsets[row]) + 2 * (hi - i) > out.size:
                return -1
            for k in range(exp_offsets[row], exp_offsets[row + 1]):
                count, is_pending = _put(exp_values[k], start, out, no_origins, count,
                                         is_pending, keep_separators, True)
        elif keep_separators:
            if value != DROP:
                count, is_pending = _put(value, start, out, no_origins, count, is_pending,
                                         True, True)
        else:
            # character mode drops every negative value (DROP, SEPARATOR, PUNCT); writing
            # first and counting after avoids a branch the CPU cannot predict
            out[count] = value
            count += value >= 0
    return count
