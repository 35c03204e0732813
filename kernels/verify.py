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


@njit(cache=True, inline="always")
def set_similarity(shared, size_a, size_b):
    """(Jaccard, containment) of two non-empty sets from their distinct sizes and the count
    they share, containment being the share of the smaller set found in the larger: the one
    definition every kernel uses, so the floats agree bit for bit."""
    return shared / (size_a + size_b - shared), shared / min(size_a, size_b)


@njit(cache=True, inline="always")
def is_edge_pair(jaccard, containment, shorter, threshold, containment_threshold,
                 min_contained_length):
    """pipeline.is_edge of one pair: a near copy, or a contained one whose shorter unit has at
    least min_contained_length normalized characters."""
    return jaccard >= threshold or (containment >= containment_threshold
                                    and shorter >= min_contained_length)


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
        jaccard[k], containment[k] = set_similarity(shared, size_a, size_b)
    return jaccard, containment


@njit(cache=True, inline="always")
def _stamp_insert(slot_key, slot_stamp, mask, h, stamp):
    """Put hash h in an open-addressing table whose slots count only under the current stamp
    (a table reused for unit after unit is never cleared): whether h was not there yet."""
    slot = h & mask
    while slot_stamp[slot] == stamp and slot_key[slot] != h:
        slot = (slot + np.uint64(1)) & mask
    if slot_stamp[slot] == stamp:
        return False
    slot_stamp[slot] = stamp
    slot_key[slot] = h
    return True


@njit(cache=True, inline="always")
def _table_size(n):
    size = 16
    while size < 2 * n:
        size <<= 1
    return size


@njit(cache=True)
def set_overlaps(raw, raw_offsets, first):
    """Distinct sizes of every unit, and the exact intersection sizes of every pair of units
    from `first` on, through one hash table (no sort).

    raw: uint64 shingle hashes per unit, in any order and with repeats (already well mixed: the
    low bits index the table); raw_offsets: int64[n_units + 1].
    Returns (sizes int64[n_units], shared int64[k, k]) with k = n_units - first, where
    shared[i, j] (i < j) is the number of distinct hashes units first + i and first + j share;
    the rest of shared is 0. A hash met in several units keeps the list of those units, so the
    work is the raw count plus one step per (unit, earlier unit) sharing a hash.
    """
    n_units = raw_offsets.size - 1
    sizes = np.zeros(n_units, dtype=np.int64)
    k = max(n_units - first, 0)
    shared = np.zeros((k, k), dtype=np.int64)
    most = 0
    for unit in range(min(first, n_units)):
        most = max(most, raw_offsets[unit + 1] - raw_offsets[unit])
    size = _table_size(most)
    mask = np.uint64(size - 1)
    slot_key = np.empty(size, dtype=np.uint64)
    slot_stamp = np.zeros(size, dtype=np.int64)
    for unit in range(min(first, n_units)):  # alone: distinct counts only
        for i in range(raw_offsets[unit], raw_offsets[unit + 1]):
            if _stamp_insert(slot_key, slot_stamp, mask, raw[i], unit + 1):
                sizes[unit] += 1
    if k == 0:
        return sizes, shared
    lo = raw_offsets[first]
    size = _table_size(raw_offsets[n_units] - lo)
    mask = np.uint64(size - 1)
    slot_key = np.empty(size, dtype=np.uint64)
    slot_head = np.full(size, -1, dtype=np.int64)  # last entry of the hash's unit list
    slot_last = np.zeros(size, dtype=np.int64)     # last unit that met the hash
    entry_unit = np.empty(raw_offsets[n_units] - lo, dtype=np.int64)
    entry_next = np.empty(raw_offsets[n_units] - lo, dtype=np.int64)
    n_entries = 0
    for unit in range(first, n_units):
        for i in range(raw_offsets[unit], raw_offsets[unit + 1]):
            h = raw[i]
            slot = h & mask
            while slot_head[slot] >= 0 and slot_key[slot] != h:
                slot = (slot + np.uint64(1)) & mask
            if slot_head[slot] >= 0:
                if slot_last[slot] == unit:
                    continue  # a repeat inside the unit
                entry = slot_head[slot]
                while entry >= 0:
                    shared[entry_unit[entry] - first, unit - first] += 1
                    entry = entry_next[entry]
            else:
                slot_key[slot] = h
            entry_unit[n_entries] = unit
            entry_next[n_entries] = slot_head[slot]
            slot_head[slot] = n_entries
            slot_last[slot] = unit
            n_entries += 1
            sizes[unit] += 1
    return sizes, shared


@njit(cache=True)
def pair_overlaps(raw_a, offsets_a, raw_b, offsets_b, left, right):
    """Exact intersection sizes of the distinct hashes of unit left[k] of a and unit right[k]
    of b, for each pair k (hashes in any order, repeats allowed, as in set_overlaps). A table
    of the left unit is built once for a run of pairs with the same left: sort pairs by left.
    Returns (shared int64[n_pairs], left_sizes int64[n_pairs]: distinct hashes of left[k]).
    """
    n_pairs = left.size
    shared = np.zeros(n_pairs, dtype=np.int64)
    left_sizes = np.zeros(n_pairs, dtype=np.int64)
    most = 0
    for k in range(n_pairs):
        most = max(most, offsets_a[left[k] + 1] - offsets_a[left[k]])
    size = _table_size(most)
    mask = np.uint64(size - 1)
    slot_key = np.empty(size, dtype=np.uint64)
    slot_stamp = np.zeros(size, dtype=np.int64)  # which table build filled the slot
    slot_hit = np.zeros(size, dtype=np.int64)    # the last pair (k + 1) that counted it
    build = 0
    current = -1
    for k in range(n_pairs):
        a = left[k]
        if a != current:
            current = a
            build += 1
            size_a = 0
            for i in range(offsets_a[a], offsets_a[a + 1]):
                if _stamp_insert(slot_key, slot_stamp, mask, raw_a[i], build):
                    size_a += 1
        left_sizes[k] = size_a
        b = right[k]
        count = 0
        for i in range(offsets_b[b], offsets_b[b + 1]):
            h = raw_b[i]
            slot = h & mask
            while slot_stamp[slot] == build:
                if slot_key[slot] == h:
                    if slot_hit[slot] != k + 1:
                        slot_hit[slot] = k + 1
                        count += 1
                    break
                slot = (slot + np.uint64(1)) & mask
        shared[k] = count
    return shared, left_sizes


@njit(cache=True)
def has_repeat_pair(sizes, shared, lengths, threshold, containment_threshold,
                    min_contained_length):
    """Whether some pair i < j of units (distinct sizes int64[n], shared int64[n, n] as
    set_overlaps gives, normalized lengths int64[n]) is a repeat: Jaccard >= threshold, or
    containment >= containment_threshold with the shorter unit at least min_contained_length
    long (pipeline.is_edge, with pair_similarities' formulas). Empty units repeat nothing."""
    n = sizes.size
    for i in range(n):
        for j in range(i + 1, n):
            a = sizes[i]
            b = sizes[j]
            if a == 0 or b == 0:
                continue
            jaccard, containment = set_similarity(shared[i, j], a, b)
            if is_edge_pair(jaccard, containment, min(lengths[i], lengths[j]), threshold,
                            containment_threshold, min_contained_length):
                return True
    return False


@njit(cache=True)
def paragraph_repeats(raw, raw_offsets, norm_offsets, threshold, containment_threshold,
                      min_contained_length, exhaustive_pairs):
    """Whether the paragraphs of one text (units 1.. of raw/raw_offsets and norm_offsets;
    unit 0 is the whole text) may repeat each other, in one call: False when fewer than two
    of them normalize to something, or when they make at most exhaustive_pairs pairs and no
    pair is a repeat (has_repeat_pair over set_overlaps). Two equal paragraphs are such a
    pair: a unit that normalizes to something has at least one shingle, so equal ones have
    Jaccard 1. Returns (may_repeat, sizes int64[n_paragraphs], shared
    int64[n_paragraphs, n_paragraphs]), sizes and shared as set_overlaps gives them when
    counted, else empty."""
    n_paragraphs = raw_offsets.size - 2
    sizes = np.zeros(0, dtype=np.int64)
    shared = np.zeros((0, 0), dtype=np.int64)
    if n_paragraphs < 2:
        return False, sizes, shared
    lengths = np.empty(n_paragraphs, dtype=np.int64)
    n_active = 0
    for p in range(n_paragraphs):
        lengths[p] = norm_offsets[p + 2] - norm_offsets[p + 1]
        if lengths[p] > 0:
            n_active += 1
    if n_active < 2:
        return False, sizes, shared
    if n_active * (n_active - 1) // 2 > exhaustive_pairs:
        return True, sizes, shared
    lo = raw_offsets[1]
    sizes, shared = set_overlaps(raw[lo:], raw_offsets[1:] - lo, 0)
    return has_repeat_pair(sizes, shared, lengths, threshold, containment_threshold,
                           min_contained_length), sizes, shared


# shingle_bits: a unit's shingles marked in 512 bits, by the top 9 bits of their hash
_BITS_SHIFT = np.uint64(55)
BIT_WORDS = 8


@njit(cache=True, inline="always")
def mark_part(bits, row, h):
    """Set, in bits[row], the bit of the part of the hash space hash h falls in."""
    part = h >> _BITS_SHIFT
    bits[row, part >> np.uint64(6)] |= np.uint64(1) << (part & np.uint64(63))


@njit(cache=True)
def shingle_bits(raw, raw_offsets):
    """Which of 512 parts of the hash space each unit's shingles fall in (the top 9 bits of
    the hash): uint64[n_units, 8], bit p of the unit's row set when a shingle lies in part p.
    Order and repeats do not matter. pair_bound takes these as a stored unit's summary."""
    n_units = raw_offsets.size - 1
    bits = np.zeros((n_units, BIT_WORDS), dtype=np.uint64)
    for unit in range(n_units):
        for i in range(raw_offsets[unit], raw_offsets[unit + 1]):
            mark_part(bits, unit, raw[i])
    return bits


@njit(cache=True)
def pair_bound(raw, raw_offsets, left, right_ids, sizes, bits, threshold,
               containment_threshold):
    """Which candidate pairs (unit left[k] of raw/raw_offsets, a stored unit right_ids[k])
    may be repeats, from in-memory summaries alone: a bound, never an estimate. The stored
    unit's distinct shingle count (sizes[id]) and shingle_bits row (bits[id]) give it: every
    shared shingle lies in a part the stored unit marks, so the shared count is at most the
    left unit's distinct shingles in those parts (and at most either size). A pair whose
    Jaccard and containment, with that many shared, are below threshold and
    containment_threshold (pair_similarities' formulas: both grow with the shared count) can
    be no repeat. Pairs of unit 0 (a whole document: its stored copy marks nearly every part)
    and of stored units with no summary (id beyond sizes, or size 0) are kept.
    Pairs sorted by left count each left unit's shingles once.
    Returns keep bool[n_pairs]."""
    n_pairs = left.size
    keep = np.ones(n_pairs, dtype=np.bool_)
    most = 1
    for k in range(n_pairs):
        if left[k] > 0:
            most = max(most, raw_offsets[left[k] + 1] - raw_offsets[left[k]])
    size = _table_size(most)
    mask = np.uint64(size - 1)
    slot_key = np.empty(size, dtype=np.uint64)
    slot_stamp = np.zeros(size, dtype=np.int64)
    counts = np.zeros(BIT_WORDS * 64, dtype=np.int64)  # the left unit's distinct, per part
    current = -1
    n_distinct = 0
    build = 0
    for k in range(n_pairs):
        unit, unit_id = left[k], right_ids[k]
        if unit == 0 or unit_id >= sizes.size or sizes[unit_id] == 0:
            continue
        if unit != current:
            current = unit
            build += 1
            counts[:] = 0
            n_distinct = 0
            for i in range(raw_offsets[unit], raw_offsets[unit + 1]):
                if _stamp_insert(slot_key, slot_stamp, mask, raw[i], build):
                    n_distinct += 1
                    counts[np.int64(raw[i] >> _BITS_SHIFT)] += 1
        a, b = n_distinct, sizes[unit_id]
        if a == 0:
            continue
        bound = 0
        for word in range(BIT_WORDS):
            w = bits[unit_id, word]
            for bit in range(64):
                bound += counts[word * 64 + bit] * np.int64((w >> np.uint64(bit)) & np.uint64(1))
        jaccard, containment = set_similarity(min(bound, a, b), a, b)
        if jaccard < threshold and containment < containment_threshold:
            keep[k] = False
    return keep
