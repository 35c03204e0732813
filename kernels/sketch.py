"""One article at a time, on the calling thread: everything the persistent index needs from a
text in one call, and the shingles of stored normalized text.

No prange here: an index call handles one text of a few KB, and waking a thread pool costs more
than the work. Shingles stay in text order (neither sorted nor distinct): MinHash ignores order
and repeats, and verify.set_overlaps / verify.pair_overlaps count distinct shared shingles
with hash tables, so no unit is ever sorted.
"""

import numpy as np
from numba import njit

from .band import band_key
from .hashing import fmix32, xxh64_codepoints
from .minhash import EMPTY_SLOT, LOW32, _signature_into
from .normalize import EXPANSION_BASE, _decode_utf8, _normalize_one
from .shingle import CHAR, _combine, _fill_shingles, _finish, _n_shingles
from .verify import (
    BIT_WORDS, _stamp_insert, _table_size, is_edge_pair, mark_part, pair_overlaps,
    set_similarity,
)


@njit(cache=True)
def _fill_char5(values, lo, hi, seed, out):
    """shingle._fill_shingles of character 5-grams (hi - lo >= 5), unrolled: about twice as
    fast as its loop over k (the default n)."""
    for s in range(hi - lo - 4):
        h = _combine(seed, values[lo + s])
        h = _combine(h, values[lo + s + 1])
        h = _combine(h, values[lo + s + 2])
        h = _combine(h, values[lo + s + 3])
        h = _combine(h, values[lo + s + 4])
        out[s] = _finish(h, 5, seed)


@njit(cache=True, inline="always")
def _is_whole_of_parts(whole_of, unit):
    """Whether unit is a joined whole, its normalized text its parts' (the units after it)."""
    return whole_of[unit] == unit and unit + 1 < whole_of.size and whole_of[unit + 1] == unit


@njit(cache=True)
def _normalize_char(cps, starts, ends, whole_of, table, exp_offsets, exp_values):
    """normalize_units in character mode, one pass per unit (parts of a joined whole only, the
    whole copied from them): (norm, norm_offsets), or empty arrays when an expansion would
    outgrow the buffer (then normalize in two passes)."""
    n_units = starts.size
    span = 0
    for unit in range(n_units):
        span += ends[unit] - starts[unit]
    out = np.empty(2 * span + 64, dtype=np.int32)
    offsets = np.zeros(n_units + 1, dtype=np.int64)
    n_table = table.size
    count = 0
    for unit in range(n_units):
        offsets[unit + 1] = count
        if _is_whole_of_parts(whole_of, unit):
            continue  # a joined whole: its parts are written next, it gets its place after
        end = ends[unit]
        for i in range(starts[unit], end):
            cp = np.int64(cps[i])
            value = table[cp] if cp < n_table else np.int32(cp)
            if value <= EXPANSION_BASE:
                row = EXPANSION_BASE - value
                if count + exp_offsets[row + 1] - exp_offsets[row] + 2 * (end - i) + span \
                        > out.size:  # span: every later unit's code points, at most one each
                    return out[:0], offsets[:0]
                for k in range(exp_offsets[row], exp_offsets[row + 1]):
                    if exp_values[k] >= 0:
                        out[count] = exp_values[k]
                        count += 1
            else:
                # a negative value (dropped, separator, punctuation) is written, not counted:
                # no branch the CPU cannot predict
                out[count] = value
                count += value >= 0
        offsets[unit + 1] = count
    # lay out the units in order, each joined whole before its parts
    norm_offsets = np.zeros(n_units + 1, dtype=np.int64)
    for unit in range(n_units):
        size = offsets[unit + 1] - offsets[unit]
        if _is_whole_of_parts(whole_of, unit):
            size = 0
            part = unit + 1
            while part < n_units and whole_of[part] == unit:
                size += offsets[part + 1] - offsets[part]
                part += 1
        norm_offsets[unit + 1] = norm_offsets[unit] + size
    norm = np.empty(norm_offsets[n_units], dtype=np.int32)
    for unit in range(n_units):
        whole = whole_of[unit]
        if _is_whole_of_parts(whole_of, unit):
            continue
        size = offsets[unit + 1] - offsets[unit]
        norm[norm_offsets[unit]:norm_offsets[unit] + size] = out[offsets[unit]:offsets[unit + 1]]
        if whole != unit:
            at = norm_offsets[whole] + (norm_offsets[unit] - norm_offsets[whole + 1])
            norm[at:at + size] = out[offsets[unit]:offsets[unit + 1]]
    return norm, norm_offsets


@njit(cache=True)
def _is_joined(cps, starts, ends, whole, last, table, exp_offsets, exp_values, no_values,
               no_origins):
    """Whether units whole + 1 .. last lie in order inside unit whole and every code point of
    the whole outside them normalizes to nothing (character mode): then the whole's normalized
    text is theirs joined."""
    if last <= whole + 1:
        return False
    pos = starts[whole]
    for part in range(whole + 1, last):
        if starts[part] < pos or ends[part] > ends[whole] or starts[part] > ends[part]:
            return False
        if _normalize_one(cps, pos, starts[part], table, exp_offsets, exp_values, False,
                          no_values, no_origins, False):
            return False
        pos = ends[part]
    return _normalize_one(cps, pos, ends[whole], table, exp_offsets, exp_values, False,
                          no_values, no_origins, False) == 0


@njit(cache=True)
def sketch_units(cps, starts, ends, firsts, table, exp_offsets, exp_values, keep_separators,
                 n, mode, shingle_seed, hash_seed, perm_a, perm_b, n_bands, rows):
    """Normalize, hash, shingle and band each unit cps[starts[u]:ends[u]].

    cps: uint32 code points; starts, ends: int64[n_units]; firsts: int64[n_texts + 1], text k
    being units firsts[k] .. firsts[k + 1] - 1, the first its whole (a document) and the others
    its parts (paragraphs); table, exp_offsets, exp_values, keep_separators: as
    normalize.normalize_units; n, mode, shingle_seed: as shingle.shingle_units; hash_seed: as
    shingle.unit_hashes; perm_a, perm_b: uint32 MinHash permutations (at least
    n_bands * rows); n_bands, rows: the LSH banding.
    Returns (norm int32[m], norm_offsets int64[n_units + 1], hashes uint64[n_units],
    raw uint64[r], raw_offsets int64[n_units + 1], keys uint64[n_units, n_bands]): what
    normalize_units, unit_hashes, raw_shingles and band_keys(minhash_signatures(...)) give.

    When a whole's normalized text is its parts' joined (character shingles: the white space
    between paragraphs normalizes to nothing), the parts are normalized once, the whole's
    shingles inside a part are copied from the part, and its signature is the minimum of the
    parts' signatures and of the shingles that cross from one part to the next.
    """
    n_units = starts.size
    n_texts = firsts.size - 1
    no_origins = np.zeros(0, dtype=np.int64)
    no_values = np.zeros(0, dtype=np.int32)
    is_joined = np.zeros(n_texts, dtype=np.bool_)
    whole_of = np.arange(n_units)  # the joined whole a part belongs to, else itself
    if not keep_separators:
        for text in range(n_texts):
            whole, last = firsts[text], firsts[text + 1]
            is_joined[text] = _is_joined(cps, starts, ends, whole, last, table, exp_offsets,
                                         exp_values, no_values, no_origins)
            if is_joined[text]:
                whole_of[whole + 1:last] = whole
    norm, norm_offsets = _normalize_char(cps, starts, ends, whole_of, table, exp_offsets,
                                         exp_values) if not keep_separators else (no_values,
                                                                                  no_origins)
    if norm_offsets.size != n_units + 1:  # word mode, or an expansion outgrew the buffer
        counts = np.zeros(n_units, dtype=np.int64)
        for unit in range(n_units):
            if _is_whole_of_parts(whole_of, unit):
                continue  # a joined whole: the sum of its parts
            counts[unit] = _normalize_one(cps, starts[unit], ends[unit], table, exp_offsets,
                                          exp_values, keep_separators, no_values, no_origins,
                                          False)
            counts[whole_of[unit]] += counts[unit] if whole_of[unit] != unit else 0
        norm_offsets = np.zeros(n_units + 1, dtype=np.int64)
        for unit in range(n_units):
            norm_offsets[unit + 1] = norm_offsets[unit] + counts[unit]
        norm = np.empty(norm_offsets[n_units], dtype=np.int32)
        for unit in range(n_units):
            lo, hi = norm_offsets[unit], norm_offsets[unit + 1]
            whole = whole_of[unit]
            if _is_whole_of_parts(whole_of, unit):
                continue  # a joined whole: filled from its parts below
            _normalize_one(cps, starts[unit], ends[unit], table, exp_offsets, exp_values,
                           keep_separators, norm[lo:hi], no_origins, True)
            if whole != unit:
                at = norm_offsets[whole] + (lo - norm_offsets[whole + 1])
                norm[at:at + hi - lo] = norm[lo:hi]
    hashes = np.empty(n_units, dtype=np.uint64)
    raw_offsets = np.zeros(n_units + 1, dtype=np.int64)
    for unit in range(n_units):
        lo, hi = norm_offsets[unit], norm_offsets[unit + 1]
        hashes[unit] = xxh64_codepoints(norm, lo, hi, hash_seed)
        raw_offsets[unit + 1] = raw_offsets[unit] + _n_shingles(norm, lo, hi, n, mode)
    raw = np.empty(raw_offsets[n_units], dtype=np.uint64)
    for unit in range(n_units):
        whole = whole_of[unit]
        width = norm_offsets[unit + 1] - norm_offsets[unit]
        if whole != unit and width >= n:  # the whole's shingles at the part's positions
            at = raw_offsets[whole] + (norm_offsets[unit] - norm_offsets[whole + 1])
            raw[raw_offsets[unit]:raw_offsets[unit + 1]] = raw[at:at + width - n + 1]
        elif mode == CHAR and n == 5 and width >= 5:
            _fill_char5(norm, norm_offsets[unit], norm_offsets[unit + 1], shingle_seed,
                        raw[raw_offsets[unit]:raw_offsets[unit + 1]])
        else:
            _fill_shingles(norm, norm_offsets[unit], norm_offsets[unit + 1], n, mode,
                           shingle_seed, raw[raw_offsets[unit]:raw_offsets[unit + 1]])
    n_used = n_bands * rows  # permutations past the bands change no key
    signatures = np.empty((n_units, n_used), dtype=np.uint32)
    keys = np.empty((n_units, n_bands), dtype=np.uint64)
    most = 0
    for unit in range(n_units):
        most = max(most, raw_offsets[unit + 1] - raw_offsets[unit])
    mixed = np.empty(most, dtype=np.uint32)
    is_covered = np.zeros(most, dtype=np.bool_)
    for text in range(n_texts):
        whole, last = firsts[text], firsts[text + 1]
        for unit in range(whole + 1 if is_joined[text] else whole, last):
            lo, hi = raw_offsets[unit], raw_offsets[unit + 1]
            for i in range(hi - lo):
                mixed[i] = fmix32(np.uint32(raw[lo + i] & LOW32))
            _signature_into(mixed, hi - lo, perm_a[:n_used], perm_b[:n_used],
                            signatures[unit])
        if is_joined[text]:
            lo, hi = raw_offsets[whole], raw_offsets[whole + 1]
            is_covered[:hi - lo] = False
            whole_width = norm_offsets[whole + 1] - norm_offsets[whole]
            row = signatures[whole]
            row[:] = EMPTY_SLOT
            for part in range(whole + 1, last):
                width = norm_offsets[part + 1] - norm_offsets[part]
                if width >= n and whole_width >= n:
                    at = norm_offsets[part] - norm_offsets[whole + 1]
                    is_covered[at:at + width - n + 1] = True
                    for perm in range(n_used):
                        row[perm] = min(row[perm], signatures[part, perm])
            n_mixed = 0
            for i in range(hi - lo):
                if not is_covered[i]:
                    mixed[n_mixed] = fmix32(np.uint32(raw[lo + i] & LOW32))
                    n_mixed += 1
            crossing = np.empty(n_used, dtype=np.uint32)
            _signature_into(mixed, n_mixed, perm_a[:n_used], perm_b[:n_used], crossing)
            for perm in range(n_used):
                row[perm] = min(row[perm], crossing[perm])
        for unit in range(whole, last):
            for band in range(n_bands):
                keys[unit, band] = band_key(signatures[unit], band, rows)
    return norm, norm_offsets, hashes, raw, raw_offsets, keys


@njit(cache=True)
def raw_shingles_utf8(data, offsets, n, mode, seed):
    """Every shingle hash (text order, repeats kept) of units given as the UTF-8 bytes of their
    normalized code points: data uint8, offsets int64[n_units + 1] in bytes.
    Returns (raw uint64[r], raw_offsets int64[n_units + 1]), as shingle.raw_shingles gives for
    the code points themselves.
    """
    n_units = offsets.size - 1
    values = np.empty(data.size, dtype=np.int32)
    value_offsets = np.zeros(n_units + 1, dtype=np.int64)
    count = 0
    for unit in range(n_units):
        i = offsets[unit]
        while i < offsets[unit + 1]:
            cp, i = _decode_utf8(data, i)
            values[count] = cp
            count += 1
        value_offsets[unit + 1] = count
    raw_offsets = np.zeros(n_units + 1, dtype=np.int64)
    for unit in range(n_units):
        raw_offsets[unit + 1] = raw_offsets[unit] + _n_shingles(
            values, value_offsets[unit], value_offsets[unit + 1], n, mode)
    raw = np.empty(raw_offsets[n_units], dtype=np.uint64)
    for unit in range(n_units):
        _fill_shingles(values, value_offsets[unit], value_offsets[unit + 1], n, mode, seed,
                       raw[raw_offsets[unit]:raw_offsets[unit + 1]])
    return raw, raw_offsets


@njit(cache=True)
def document_units(cps, text_offsets, is_space):
    """The units of each text cps[text_offsets[k]:text_offsets[k + 1]] (code points) as the
    index takes them: first the whole text without the white space around it, then each
    paragraph (a line without the white space around it, blank lines skipped; lines end at
    \\r\\n, \\n or \\r), as dedup.units.split_units gives "document" and "paragraph" units.
    is_space: bool[m], str.isspace() of the code points below m (none above is white space).
    Returns (starts int64[u], ends int64[u] into cps, lines int64[u] 1-based within the
    text, firsts int64[n_texts + 1]: text k's units are firsts[k] .. firsts[k + 1] - 1).
    """
    n_texts = text_offsets.size - 1
    most = cps.size + 2 * n_texts
    starts = np.empty(most, dtype=np.int64)
    ends = np.empty(most, dtype=np.int64)
    lines = np.empty(most, dtype=np.int64)
    firsts = np.zeros(n_texts + 1, dtype=np.int64)
    n_space = is_space.size
    count = 0
    for text in range(n_texts):
        lo, hi = text_offsets[text], text_offsets[text + 1]
        start, end = lo, hi
        while start < end and cps[start] < n_space and is_space[cps[start]]:
            start += 1
        while end > start and cps[end - 1] < n_space and is_space[cps[end - 1]]:
            end -= 1
        if start == end:  # all white space: an empty document at the text's start
            start = end = lo
        starts[count], ends[count], lines[count] = start, end, 1
        count += 1
        line = 1
        i = lo
        while True:
            j = i
            while j < hi and cps[j] != 10 and cps[j] != 13:
                j += 1
            s, e = i, j
            while s < e and cps[s] < n_space and is_space[cps[s]]:
                s += 1
            while e > s and cps[e - 1] < n_space and is_space[cps[e - 1]]:
                e -= 1
            if s < e:
                starts[count], ends[count], lines[count] = s, e, line
                count += 1
            if j >= hi:
                break
            j += 2 if cps[j] == 13 and j + 1 < hi and cps[j + 1] == 10 else 1
            line += 1
            i = j
        firsts[text + 1] = count
    return starts[:count], ends[:count], lines[:count], firsts


@njit(cache=True)
def overlaps_utf8(raw, raw_offsets, data, data_offsets, left, right, n, mode, seed):
    """verify.pair_overlaps of units of raw (shingle hashes, any order) with units given as
    the UTF-8 bytes of their normalized text (data, data_offsets: as raw_shingles_utf8), each
    shingled once here: the persistent index verifies candidates against stored text this
    way. Returns (shared, left_sizes) as pair_overlaps."""
    stored, stored_offsets = raw_shingles_utf8(data, data_offsets, n, mode, seed)
    return pair_overlaps(raw, raw_offsets, stored, stored_offsets, left, right)


@njit(cache=True)
def verify_utf8(raw, raw_offsets, norm_offsets, data, data_offsets, stored_ids, stored_kinds,
                stored_sizes, stored_lengths, left, right_ids, first_kind, other_kind, n, mode,
                seed, threshold, containment_threshold, min_contained_length):
    """The whole verification of a persistent index's candidate pairs in one call: each pair
    (unit left[k] of raw/raw_offsets, stored unit right_ids[k]) is looked up among the stored
    units fetched (stored_ids ascending, with their kinds, distinct shingle counts, normalized
    lengths, and UTF-8 text in data/data_offsets); a pair whose stored unit is missing or of
    another kind than its left unit (first_kind for unit 0, other_kind for the others) is
    left out.
    The others get overlaps_utf8's counts, pair_similarities' Jaccard and containment (the
    same formulas, so the same floats) and pipeline.is_edge. Pairs sorted by left build one
    table per left unit.
    Returns (jaccard float64[n_pairs], containment float64[n_pairs], left_sizes int64[n_pairs]
    (-1 for a pair left out), keep bool[n_pairs]: a repeat, inside bool[n_pairs]: a near copy,
    or the left unit has no more distinct shingles than the stored one)."""
    n_pairs = left.size
    rows = np.empty(n_pairs, dtype=np.int64)
    found = np.empty(n_pairs, dtype=np.int64)  # pair indexes whose stored unit is there
    n_found = 0
    for k in range(n_pairs):
        row = np.searchsorted(stored_ids, right_ids[k])
        kind = first_kind if left[k] == 0 else other_kind
        if row < stored_ids.size and stored_ids[row] == right_ids[k] and \
                stored_kinds[row] == kind:
            rows[n_found] = row
            found[n_found] = k
            n_found += 1
    rows, found = rows[:n_found], found[:n_found]
    shared, sizes = overlaps_utf8(raw, raw_offsets, data, data_offsets, left[found], rows, n,
                                  mode, seed)
    jaccard = np.zeros(n_pairs, dtype=np.float64)
    containment = np.zeros(n_pairs, dtype=np.float64)
    left_sizes = np.full(n_pairs, -1, dtype=np.int64)
    keep = np.zeros(n_pairs, dtype=np.bool_)
    inside = np.zeros(n_pairs, dtype=np.bool_)
    for i in range(n_found):
        k, row = found[i], rows[i]
        size_a, size_b = sizes[i], stored_sizes[row]
        left_sizes[k] = size_a
        if size_a > 0 and size_b > 0:
            jaccard[k], containment[k] = set_similarity(shared[i], size_a, size_b)
        shorter = min(norm_offsets[left[k] + 1] - norm_offsets[left[k]], stored_lengths[row])
        keep[k] = is_edge_pair(jaccard[k], containment[k], shorter, threshold,
                               containment_threshold, min_contained_length)
        inside[k] = jaccard[k] >= threshold or size_a <= size_b
    return jaccard, containment, left_sizes, keep, inside


@njit(cache=True)
def store_units(hashes, norm_offsets, exact, next_id, raw, raw_offsets, keys, bucket_counts,
                max_bucket, sizes_known):
    """What the persistent index stores for a text's units (unit 0 the document, 1.. its
    paragraphs), in one call. A unit that normalizes to something gets the stored id of its
    exact copy (exact[u] >= 0), else that of an earlier unit of the text with the same hash
    and kind (a paragraph met twice), else a new id from next_id on, in unit order.
    New units get their distinct shingle counts (sizes_known[u] when >= 0, else counted),
    their verify.shingle_bits rows, and the band keys they join buckets under: all their keys
    when no bucket can fill up (the largest bucket_counts entry plus the text's units at most
    max_bucket) and no unit has a key twice; otherwise placed is None-like (empty, roomy
    False) and the caller places them one by one.
    Returns (ids int64[n_units]: -1 for a unit that normalizes to nothing, new int64[m]: the
    new units in order (their ids next_id, next_id + 1, ...), sizes int64[m], bits
    uint64[m, 8], roomy bool, placed int64[m * bands] (when roomy))."""
    n_units = hashes.size
    n_bands = keys.shape[1]
    ids = np.full(n_units, -1, dtype=np.int64)
    is_new = np.zeros(n_units, dtype=np.bool_)
    n_new = 0
    n_active = 0
    for u in range(n_units):
        if norm_offsets[u + 1] == norm_offsets[u]:
            continue
        n_active += 1
        if exact[u] >= 0:
            ids[u] = exact[u]
            continue
        for v in range(1, u):  # a paragraph met before in this text (never the document)
            if ids[v] >= 0 and hashes[v] == hashes[u]:
                ids[u] = ids[v]
                break
        if ids[u] < 0:
            ids[u] = next_id + n_new
            is_new[u] = True
            n_new += 1
    new = np.flatnonzero(is_new)
    sizes = np.zeros(n_new, dtype=np.int64)
    most = 1
    for k in range(n_new):
        u = new[k]
        most = max(most, raw_offsets[u + 1] - raw_offsets[u])
    table = _table_size(most)
    mask = np.uint64(table - 1)
    slot_key = np.empty(table, dtype=np.uint64)
    slot_stamp = np.zeros(table, dtype=np.int64)
    bits = np.zeros((n_new, BIT_WORDS), dtype=np.uint64)
    for k in range(n_new):
        u = new[k]
        count = 0
        for i in range(raw_offsets[u], raw_offsets[u + 1]):
            h = raw[i]
            mark_part(bits, k, h)
            if sizes_known[u] < 0 and _stamp_insert(slot_key, slot_stamp, mask, h, k + 1):
                count += 1
        sizes[k] = sizes_known[u] if sizes_known[u] >= 0 else count
    largest = 0
    for i in range(bucket_counts.shape[0]):
        for j in range(bucket_counts.shape[1]):
            largest = max(largest, bucket_counts[i, j])
    roomy = largest + n_active <= max_bucket
    for k in range(n_new):
        u = new[k]
        for i in range(n_bands):
            for j in range(i + 1, n_bands):
                if keys[u, i] == keys[u, j]:
                    roomy = False
    placed = np.empty(n_new * n_bands if roomy else 0, dtype=np.int64)
    if roomy:
        for k in range(n_new):
            for b in range(n_bands):
                placed[k * n_bands + b] = keys[new[k], b]
    return ids, new, sizes, bits, roomy, placed


@njit(cache=True, inline="always")
def _utf8_size(c):
    return 1 if c < 0x80 else 2 if c < 0x800 else 3 if c < 0x10000 else 4


@njit(cache=True, inline="always")
def _put_utf8(data, at, c):
    """Write code point c as UTF-8 at data[at:]; returns the position after it."""
    if c < 0x80:
        data[at] = c
        return at + 1
    if c < 0x800:
        data[at] = 0xC0 | (c >> 6)
        data[at + 1] = 0x80 | (c & 0x3F)
        return at + 2
    if c < 0x10000:
        data[at] = 0xE0 | (c >> 12)
        data[at + 1] = 0x80 | ((c >> 6) & 0x3F)
        data[at + 2] = 0x80 | (c & 0x3F)
        return at + 3
    data[at] = 0xF0 | (c >> 18)
    data[at + 1] = 0x80 | ((c >> 12) & 0x3F)
    data[at + 2] = 0x80 | ((c >> 6) & 0x3F)
    data[at + 3] = 0x80 | (c & 0x3F)
    return at + 4


@njit(cache=True, inline="always")
def _find_codepoints(values, lo, hi, needle_lo, needle_hi, start):
    """Where values[needle_lo:needle_hi] first occurs in values[lo:hi] at or after start
    (an index into values), or -1."""
    n = needle_hi - needle_lo
    first = values[needle_lo]
    for i in range(start, hi - n + 1):
        if values[i] == first:
            j = 1
            while j < n and values[i + j] == values[needle_lo + j]:
                j += 1
            if j == n:
                return i
    return -1


@njit(cache=True)
def pack_utf8(values, offsets, units):
    """The UTF-8 text the persistent index compresses for units stored together (code points
    values[offsets[u]:offsets[u + 1]] for u in units, in order; the inverse of
    raw_shingles_utf8's decoding): the first unit's bytes, then each later unit's that the
    first does not contain. A later unit found in the first (a paragraph in its document) is a
    span of it: searched from where the unit before was found (paragraphs come in order), then
    from the start. Returns (data uint8, starts int64[len(units)], ends int64[len(units)]):
    unit k's UTF-8 is data[starts[k]:ends[k]]."""
    n = units.size
    starts = np.zeros(n, dtype=np.int64)
    ends = np.zeros(n, dtype=np.int64)
    if n == 0:
        return np.zeros(0, dtype=np.uint8), starts, ends
    lo, hi = offsets[units[0]], offsets[units[0] + 1]
    inside = np.full(n, -1, dtype=np.int64)  # where each later unit starts in the first
    total = 0
    for i in range(lo, hi):
        total += _utf8_size(values[i])
    cursor = lo
    for k in range(1, n):
        u_lo, u_hi = offsets[units[k]], offsets[units[k] + 1]
        at = -1
        if u_hi > u_lo:
            at = _find_codepoints(values, lo, hi, u_lo, u_hi, cursor)
            if at < 0:
                at = _find_codepoints(values, lo, min(hi, cursor + (u_hi - u_lo) - 1), u_lo,
                                      u_hi, lo)
        if at >= 0:
            inside[k] = at
            cursor = at + (u_hi - u_lo)
        else:
            for i in range(u_lo, u_hi):
                total += _utf8_size(values[i])
    data = np.empty(total, dtype=np.uint8)
    # the first unit, with the byte position of every code point a later unit starts or
    # ends at
    byte_at = np.empty(hi - lo + 1, dtype=np.int64)
    at = 0
    for i in range(lo, hi):
        byte_at[i - lo] = at
        at = _put_utf8(data, at, values[i])
    byte_at[hi - lo] = at
    ends[0] = at
    for k in range(1, n):
        u_lo, u_hi = offsets[units[k]], offsets[units[k] + 1]
        if inside[k] >= 0:
            starts[k] = byte_at[inside[k] - lo]
            ends[k] = byte_at[inside[k] - lo + (u_hi - u_lo)]
        else:
            starts[k] = at
            for i in range(u_lo, u_hi):
                at = _put_utf8(data, at, values[i])
            ends[k] = at
    return data, starts, ends
