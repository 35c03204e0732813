"""MinHash signatures, in datasketch's default ("affine32") scheme, bit for bit.

For each shingle hash h (its low 32 bits) and each permutation p:
    value = a[p] * fmix32(h) + b[p]  (mod 2^32)
and a unit's signature is the minimum per permutation. Multiplication in 32-bit lanes is the
fast path measured in PERFORMANCE.md, and it is what datasketch >= 2.0 computes by default, so
our signatures can be handed to datasketch as they are.
"""

import numpy as np
from numba import njit, prange

from .hashing import P2, fmix32, fmix64
from .normalize import _normalize_one, decode_utf8, normalize_utf8_into
from .shingle import CHAR, WORD, _combine, _fill_shingles

EMPTY_SLOT = np.uint32(0xFFFFFFFF)
LOW32 = np.uint64(0xFFFFFFFF)
_UNITS_PER_TASK = 32  # units sharing one set of scratch buffers in minhash_utf8


@njit(cache=True, inline="always")
def _signature_into(mixed, n_mixed, perm_a, perm_b, row):
    """row[p] = min over i of a[p] * mixed[i] + b[p] (mod 2^32), EMPTY_SLOT when n_mixed is 0.

    Permutations outside, shingles inside: the inner loop is a min-reduction over one uint32
    array that LLVM vectorizes (8 lanes with AVX2), ~10x the shingle-outer order; four
    permutations per pass share each load (another ~20%).
    """
    num_perm = perm_a.size
    perm = 0
    while perm + 4 <= num_perm:
        a0, a1, a2, a3 = perm_a[perm], perm_a[perm + 1], perm_a[perm + 2], perm_a[perm + 3]
        b0, b1, b2, b3 = perm_b[perm], perm_b[perm + 1], perm_b[perm + 2], perm_b[perm + 3]
        best0 = best1 = best2 = best3 = EMPTY_SLOT
        for i in range(n_mixed):
            x = mixed[i]
            best0 = min(best0, np.uint32(a0 * x + b0))
            best1 = min(best1, np.uint32(a1 * x + b1))
            best2 = min(best2, np.uint32(a2 * x + b2))
            best3 = min(best3, np.uint32(a3 * x + b3))
        row[perm] = best0
        row[perm + 1] = best1
        row[perm + 2] = best2
        row[perm + 3] = best3
        perm += 4
    while perm < num_perm:
        a = perm_a[perm]
        b = perm_b[perm]
        best = EMPTY_SLOT
        for i in range(n_mixed):
            best = min(best, np.uint32(a * mixed[i] + b))
        row[perm] = best
        perm += 1


@njit(cache=True, parallel=True)
def minhash_signatures(shingles, offsets, perm_a, perm_b):
    """MinHash of each unit.

    shingles: uint64[m] (only the low 32 bits are used), offsets: int64[n_units + 1];
    perm_a (odd), perm_b: uint32[num_perm].
    Returns uint32[n_units, num_perm]; empty units keep EMPTY_SLOT.
    """
    n_units = offsets.size - 1
    signatures = np.empty((n_units, perm_a.size), dtype=np.uint32)
    for unit in prange(n_units):  # each iteration writes only its own row
        lo = offsets[unit]
        mixed = np.empty(offsets[unit + 1] - lo, dtype=np.uint32)
        for i in range(mixed.size):
            mixed[i] = fmix32(np.uint32(shingles[lo + i] & LOW32))
        _signature_into(mixed, mixed.size, perm_a, perm_b, signatures[unit])
    return signatures


_FILTER_SLOTS = 2048  # 16 KB of uint64: stays in L1 next to the scratch buffers
_NOT_SEEN = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True, inline="always")
def _keep_mixed(key, unit, seen, mixed, n_mixed):
    """Append fmix32(key) to mixed unless the filter saw key in this unit; returns n_mixed.

    The filter is direct-mapped (a slot holds the last key that fell in it, tagged with its
    unit) so a repeat is sometimes kept: harmless, a repeated shingle cannot change a minimum.
    Branch-free: the value is always written, and only counted when new.
    """
    entry = (np.uint64(unit) << np.uint64(32)) | np.uint64(key)
    slot = key & np.uint32(_FILTER_SLOTS - 1)
    is_repeat = seen[slot] == entry
    seen[slot] = entry
    mixed[n_mixed] = fmix32(key)
    return n_mixed + (not is_repeat)


@njit(cache=True)
def _char_shingles_mixed(values, count, n, seed, unit, seen, mixed):
    """fmix32 of the low 32 bits of each character shingle hash of values[:count] (as
    shingle_units computes them), repeats mostly skipped; returns how many were written.

    Two loops, not one: the hash loop alone pipelines freely, and the filter then compacts
    mixed in place (it writes slot k only after reading slot k); ~35% faster than fused.
    """
    if count == 0:
        return 0
    width = min(n, count)
    finish = (np.uint64(width) * P2) ^ seed
    n_shingles = count - width + 1
    if width == 5:  # the default n, unrolled: twice as fast as the loop over k
        for s in range(n_shingles):
            h = _combine(seed, values[s])
            h = _combine(h, values[s + 1])
            h = _combine(h, values[s + 2])
            h = _combine(h, values[s + 3])
            h = _combine(h, values[s + 4])
            mixed[s] = np.uint32(fmix64(h ^ finish) & LOW32)
    else:
        for s in range(n_shingles):
            h = seed
            for k in range(width):
                h = _combine(h, values[s + k])
            mixed[s] = np.uint32(fmix64(h ^ finish) & LOW32)
    n_mixed = 0
    for i in range(n_shingles):
        n_mixed = _keep_mixed(mixed[i], unit, seen, mixed, n_mixed)
    return n_mixed


@njit(cache=True)
def _word_shingles_mixed(values, count, n, seed, unit, seen, shingles, mixed):
    """As _char_shingles_mixed, for word shingles (shingles: uint64 scratch of >= count)."""
    n_shingles = _fill_shingles(values, 0, count, n, WORD, seed, shingles)
    n_mixed = 0
    for i in range(n_shingles):
        n_mixed = _keep_mixed(np.uint32(shingles[i] & LOW32), unit, seen, mixed, n_mixed)
    return n_mixed


@njit(cache=True, parallel=True)
def minhash_utf8(data, offsets, table, exp_offsets, exp_values, n, mode, seed, perm_a, perm_b):
    """MinHash of each unit straight from UTF-8: normalize, shingle, hash and sketch in one pass.

    data: uint8 UTF-8 bytes (str.encode("utf-8", "surrogatepass")); offsets: int64[n_units + 1]
    in bytes; table, exp_offsets, exp_values: the normalization table (dedup.normtable);
    n, mode (shingle.CHAR or WORD), seed: as shingle_units.
    Returns uint32[n_units, num_perm], equal to minhash_signatures of shingle_units of
    normalize_units of the same text (character mode drops separators, word mode keeps them).
    Shingles are neither sorted nor stored: a repeated shingle cannot change a minimum, and a
    small direct-mapped filter skips most repeats before the 128 multiplications.
    """
    seed = np.uint64(seed)
    keep_separators = mode == WORD
    n_units = offsets.size - 1
    signatures = np.empty((n_units, perm_a.size), dtype=np.uint32)
    n_tasks = (n_units + _UNITS_PER_TASK - 1) // _UNITS_PER_TASK
    no_values = np.zeros(0, dtype=np.int32)
    no_origins = np.zeros(0, dtype=np.int64)
    for task in prange(n_tasks):  # a task owns its units' rows and its scratch buffers
        first = task * _UNITS_PER_TASK
        last = min(n_units, first + _UNITS_PER_TASK)
        max_bytes = 1
        for unit in range(first, last):
            max_bytes = max(max_bytes, offsets[unit + 1] - offsets[unit])
        norm = np.empty(2 * max_bytes, dtype=np.int32)
        shingles = np.empty(2 * max_bytes if mode == WORD else 0, dtype=np.uint64)
        mixed = np.empty(2 * max_bytes, dtype=np.uint32)
        seen = np.full(_FILTER_SLOTS, _NOT_SEEN, dtype=np.uint64)
        for unit in range(first, last):
            lo = offsets[unit]
            hi = offsets[unit + 1]
            values = norm
            count = normalize_utf8_into(data, lo, hi, table, exp_offsets, exp_values,
                                        keep_separators, norm)
            if count < 0:  # expansions (ligatures and the like) outgrew the scratch buffer
                cps = decode_utf8(data, lo, hi)
                count = _normalize_one(cps, 0, cps.size, table, exp_offsets, exp_values,
                                       keep_separators, no_values, no_origins, False)
                values = np.empty(count, dtype=np.int32)
                _normalize_one(cps, 0, cps.size, table, exp_offsets, exp_values,
                               keep_separators, values, no_origins, True)
            if count > mixed.size:
                mixed = np.empty(count, dtype=np.uint32)
                shingles = np.empty(count if mode == WORD else 0, dtype=np.uint64)
            if mode == CHAR:
                n_mixed = _char_shingles_mixed(values, count, n, seed, unit, seen, mixed)
            else:
                n_mixed = _word_shingles_mixed(values, count, n, seed, unit, seen, shingles, mixed)
            _signature_into(mixed, n_mixed, perm_a, perm_b, signatures[unit])
    return signatures
