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
            keys[unit, band] = band_key(signatures[unit], band, rows)
    return keys


@njit(cache=True, inline="always")
def band_key(signature, band, rows):
    """The key of one band of one signature (uint32[num_perm]): band_keys' hash."""
    h = fmix64(np.uint64(band + 1) * P3)
    for k in range(band * rows, (band + 1) * rows):
        h = rotl64((h ^ np.uint64(signature[k])) * P1, 31)
    return fmix64(h)


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
def _runs_pairs(units, sorted_keys, max_bucket, left, right, pos, write):
    """Pairs of every run of equal sorted_keys (units: the unit of each, in input order within a
    run); returns the count (write False) or the next free position."""
    lo = 0
    n = units.size
    while lo < n:
        hi = lo + 1
        while hi < n and sorted_keys[hi] == sorted_keys[lo]:
            hi += 1
        if hi - lo > 1:
            pos = _run_pairs(units, lo, hi, max_bucket, left, right, pos, write)
        lo = hi
    return pos


@njit(cache=True)
def _shared_members(column, shared):
    """Units (ascending) whose key is in shared (sorted distinct keys), through an open-addressing
    table: keys are already mixed hashes, so their low bits index it directly."""
    size = 2
    while size < 2 * shared.size:
        size <<= 1
    mask = np.uint64(size - 1)
    table = np.zeros(size, dtype=np.uint64)
    used = np.zeros(size, dtype=np.bool_)
    for key in shared:
        slot = key & mask
        while used[slot]:
            slot = (slot + np.uint64(1)) & mask
        table[slot] = key
        used[slot] = True
    out = np.empty(column.size, dtype=np.int64)
    n = 0
    for unit in range(column.size):
        key = column[unit]
        slot = key & mask
        while used[slot]:
            if table[slot] == key:
                out[n] = unit
                n += 1
                break
            slot = (slot + np.uint64(1)) & mask
    return out[:n]


def pack_pairs(left, right) -> np.ndarray:
    """uint64 keys left << 32 | right of pairs of unit indices (each < 2^32); sorted keys are
    pairs sorted by (left, right)."""
    return (np.asarray(left).astype(np.uint64) << np.uint64(32)) | \
        np.asarray(right).astype(np.uint64)


def unpack_pairs(packed) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) int64 arrays of pack_pairs keys."""
    return ((packed >> np.uint64(32)).astype(np.int64),
            (packed & np.uint64(0xFFFFFFFF)).astype(np.int64))


def distinct_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (np.unique sorts again, and was 15x slower on 6M
    packed pairs with numpy 2.4)."""
    if values.size < 2:
        return values
    is_first = np.empty(values.size, dtype=bool)
    is_first[0] = True
    np.not_equal(values[1:], values[:-1], out=is_first[1:])
    return values[is_first]


def _band_runs(column):
    """(units, their keys) of the units whose key in this band is shared, sorted by key and by
    unit within a key. numpy sorts the keys (about 20x numba's argsort of the whole column);
    only the units in a shared bucket, usually few, are argsorted."""
    ordered = np.sort(column)
    is_repeat = ordered[1:] == ordered[:-1]
    if not is_repeat.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    units = _shared_members(column, distinct_sorted(ordered[1:][is_repeat]))
    keys = column[units]
    order = np.argsort(keys, kind="stable")  # stable: a run lists its units in input order
    return units[order], keys[order]


def candidate_pairs(keys, max_bucket):
    """Distinct pairs of units that share a band key.

    keys: uint64[n_units, n_bands] (n_units < 2^32); max_bucket: runs larger than this are
    linked as a star to their first unit.
    Returns (left, right): int64 arrays, left < right, sorted by (left, right).
    """
    keys = np.asarray(keys, dtype=np.uint64)
    lefts, rights = [], []
    empty = np.zeros(0, dtype=np.int64)
    for band in range(keys.shape[1]):
        units, sorted_keys = _band_runs(np.ascontiguousarray(keys[:, band]))
        if units.size == 0:
            continue
        count = _runs_pairs(units, sorted_keys, max_bucket, empty, empty, 0, False)
        left = np.empty(count, dtype=np.int64)
        right = np.empty(count, dtype=np.int64)
        _runs_pairs(units, sorted_keys, max_bucket, left, right, 0, True)
        lefts.append(left)
        rights.append(right)
    if not lefts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return unpack_pairs(distinct_sorted(np.sort(pack_pairs(np.concatenate(lefts),
                                                          np.concatenate(rights)))))


@njit(cache=True)
def sorted_lookup(sorted_keys, directory, shift, queries):
    """Where each query sits in sorted_keys: every (query index, position) with
    sorted_keys[position] == queries[query index].

    sorted_keys: uint64 ascending; directory: int64[2^bits + 1], directory[t] the first
    position whose key >> shift is t (directory[-1] = sorted_keys.size), with shift = 64 - bits:
    a query reads one directory entry and searches a few keys, wherever the array is in memory
    (a plain binary search over millions of keys misses the cache at every step).
    Returns (query int64[m], position int64[m]), by query then position.
    """
    n_queries = queries.size
    starts = np.empty(n_queries, dtype=np.int64)
    counts = np.zeros(n_queries, dtype=np.int64)
    total = 0
    for q in range(n_queries):
        key = queries[q]
        top = np.int64(key >> np.uint64(shift)) if shift < 64 else 0
        lo, hi = directory[top], directory[top + 1]
        while lo < hi:  # first position >= key
            mid = (lo + hi) >> 1
            if sorted_keys[mid] < key:
                lo = mid + 1
            else:
                hi = mid
        starts[q] = lo
        end = lo
        while end < sorted_keys.size and sorted_keys[end] == key:
            end += 1
        counts[q] = end - lo
        total += end - lo
    query = np.empty(total, dtype=np.int64)
    position = np.empty(total, dtype=np.int64)
    n = 0
    for q in range(n_queries):
        for i in range(counts[q]):
            query[n] = q
            position[n] = starts[q] + i
            n += 1
    return query, position


def key_directory(sorted_keys: np.ndarray) -> tuple[np.ndarray, int]:
    """(directory, shift) for sorted_lookup: about four keys per directory entry."""
    bits = 1
    while bits < 26 and (1 << (bits + 2)) < sorted_keys.size:
        bits += 1
    shift = 64 - bits
    tops = np.arange((1 << bits) + 1, dtype=np.uint64)
    directory = np.searchsorted(sorted_keys, tops[:-1] << np.uint64(shift)).astype(np.int64)
    return np.append(directory, sorted_keys.size), shift


@njit(cache=True, inline="always")
def _table_add(slot_key, slot_head, entry_key, entry_value, entry_next, n_entries, key, value):
    """One (key, value) into table_insert's table, as entry n_entries."""
    mask = np.uint64(slot_key.size - 1)
    slot = key & mask
    while slot_head[slot] >= 0 and slot_key[slot] != key:
        slot = (slot + np.uint64(1)) & mask
    slot_key[slot] = key
    entry_key[n_entries] = key
    entry_value[n_entries] = value
    entry_next[n_entries] = slot_head[slot]
    slot_head[slot] = n_entries


@njit(cache=True)
def table_insert(slot_key, slot_head, entry_key, entry_value, entry_next, n_entries, keys,
                 values):
    """Add (keys[k], values[k]) pairs to a hash table of lists (open addressing on the key's
    low bits: keys are already well mixed hashes). The table: slot_key uint64[size] and
    slot_head int64[size] (-1 for an empty slot; size a power of two, at least twice the
    entries), entries entry_key uint64, entry_value int64, entry_next int64 (the slot's list,
    newest first), n_entries of them in use. Returns the new n_entries; the caller keeps room.
    """
    for k in range(keys.size):
        _table_add(slot_key, slot_head, entry_key, entry_value, entry_next, n_entries,
                   np.uint64(keys[k]), values[k])
        n_entries += 1
    return n_entries


@njit(cache=True)
def table_insert_units(slot_key, slot_head, entry_key, entry_value, entry_next, n_entries,
                       keys, counts, ids):
    """table_insert of units' band keys: unit ids[k] under its next counts[k] keys (keys int64
    or uint64, in order). Returns the new n_entries."""
    at = 0
    for k in range(ids.size):
        for _ in range(counts[k]):
            _table_add(slot_key, slot_head, entry_key, entry_value, entry_next, n_entries,
                       np.uint64(keys[at]), ids[k])
            at += 1
            n_entries += 1
    return n_entries


@njit(cache=True)
def table_lookup(slot_key, slot_head, entry_value, entry_next, queries):
    """(query index, value) of every entry of table_insert's table under each query, by query.
    Returns (query int64[m], value int64[m])."""
    mask = np.uint64(slot_key.size - 1)
    heads = np.full(queries.size, -1, dtype=np.int64)
    total = 0
    for q in range(queries.size):
        key = queries[q]
        slot = key & mask
        while slot_head[slot] >= 0:
            if slot_key[slot] == key:
                heads[q] = slot_head[slot]
                entry = heads[q]
                while entry >= 0:
                    total += 1
                    entry = entry_next[entry]
                break
            slot = (slot + np.uint64(1)) & mask
    query = np.empty(total, dtype=np.int64)
    value = np.empty(total, dtype=np.int64)
    n = 0
    for q in range(queries.size):
        entry = heads[q]
        while entry >= 0:
            query[n] = q
            value[n] = entry_value[entry]
            n += 1
            entry = entry_next[entry]
    return query, value


@njit(cache=True)
def _map_values(bulk, queries):
    """(query index, value) of every value under each query in one in-memory map: a tuple
    (sorted keys, directory, shift, values, slot_key, slot_head, entry_value, entry_next,
    extra sorted keys, extra values): a sorted bulk searched through its directory
    (sorted_lookup), a hash table of recent additions (table_insert) and a small sorted
    extra part (searched by bisection: a write transaction's own additions)."""
    keys, directory, shift, values, slot_key, slot_head, entry_value, entry_next, \
        extra_keys, extra_values = bulk
    query, position = sorted_lookup(keys, directory, shift, queries)
    recent_query, recent_value = table_lookup(slot_key, slot_head, entry_value, entry_next,
                                              queries)
    no_directory = np.array([0, extra_keys.size], dtype=np.int64)
    extra_query, extra_position = sorted_lookup(extra_keys, no_directory, 64, queries)
    n = query.size + recent_query.size + extra_query.size
    all_query = np.empty(n, dtype=np.int64)
    all_value = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(query.size):
        all_query[k], all_value[k] = query[i], values[position[i]]
        k += 1
    for i in range(recent_query.size):
        all_query[k], all_value[k] = recent_query[i], recent_value[i]
        k += 1
    for i in range(extra_query.size):
        all_query[k], all_value[k] = extra_query[i], extra_values[extra_position[i]]
        k += 1
    return all_query, all_value


@njit(cache=True, inline="always")
def _is_dead(dead, unit_id):
    at = np.searchsorted(dead, unit_id)
    return at < dead.size and dead[at] == unit_id


@njit(cache=True)
def probe_units(hashes, is_active, keys, exact_map, band_map, dead):
    """Everything one text's units find in the in-memory maps of a persistent index, in one
    call: their exact copies, the members of their buckets, and the candidate pairs to verify.

    hashes: uint64[n_units] normalized hashes (unit 0 the document, kind 0; the others
    paragraphs, kind 1); is_active: bool[n_units] (the unit normalizes to something);
    keys: uint64[n_units, n_bands] band keys; exact_map: a map (see _map_values) hash ->
    stored unit id << 1 | kind; band_map: band key -> stored unit id; dead: int64 sorted ids
    of removed units, left out of every answer.
    Returns (exact int64[n_units]: the stored unit of the same hash and kind, -1 if none;
    counts int64[n_units, n_bands]: live members of each searched bucket, searched being the
    active units save paragraphs with an exact copy; left, right int64[n_pairs]: the distinct
    (unit, stored id) pairs sharing a bucket, but for a unit's own exact copy, sorted by
    (left, right)).
    """
    n_units, n_bands = keys.shape
    exact = np.full(n_units, -1, dtype=np.int64)
    counts = np.zeros((n_units, n_bands), dtype=np.int64)
    active = np.flatnonzero(is_active)
    query, coded = _map_values(exact_map, hashes[active])
    for i in range(query.size):
        unit = active[query[i]]
        kind = 0 if unit == 0 else 1
        unit_id = coded[i] >> 1
        if (coded[i] & 1) == kind and exact[unit] < 0 and not _is_dead(dead, unit_id):
            exact[unit] = unit_id
    n_searched = 0
    searched = np.empty(active.size, dtype=np.int64)
    for unit in active:
        if unit == 0 or exact[unit] < 0:
            searched[n_searched] = unit
            n_searched += 1
    flat = np.empty(n_searched * n_bands, dtype=np.uint64)
    for s in range(n_searched):
        flat[s * n_bands:(s + 1) * n_bands] = keys[searched[s]]
    query, members = _map_values(band_map, flat)
    left = np.empty(query.size, dtype=np.int64)
    right = np.empty(query.size, dtype=np.int64)
    n_pairs = 0
    for i in range(query.size):
        unit_id = members[i]
        if _is_dead(dead, unit_id):
            continue
        unit = searched[query[i] // n_bands]
        counts[unit, query[i] % n_bands] += 1
        if exact[unit] != unit_id:
            left[n_pairs], right[n_pairs] = unit, unit_id
            n_pairs += 1
    left, right = left[:n_pairs], right[:n_pairs]
    order = np.argsort(right, kind="mergesort")
    order = order[np.argsort(left[order], kind="mergesort")]
    out_left = np.empty(n_pairs, dtype=np.int64)
    out_right = np.empty(n_pairs, dtype=np.int64)
    n = 0
    for k in order:
        if n == 0 or left[k] != out_left[n - 1] or right[k] != out_right[n - 1]:
            out_left[n], out_right[n] = left[k], right[k]
            n += 1
    return exact, counts, out_left[:n], out_right[:n]
