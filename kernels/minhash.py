"""MinHash signatures, in datasketch's default ("affine32") scheme, bit for bit.

For each shingle hash h (its low 32 bits) and each permutation p:
    value = a[p] * fmix32(h) + b[p]  (mod 2^32)
and a unit's signature is the minimum per permutation. Multiplication in 32-bit lanes is the
fast path measured in PERFORMANCE.md, and it is what datasketch >= 2.0 computes by default, so
our signatures can be handed to datasketch as they are.
"""

import numpy as np
from numba import njit, prange

from .hashing import fmix32

EMPTY_SLOT = np.uint32(0xFFFFFFFF)


@njit(cache=True, parallel=True)
def minhash_signatures(shingles, offsets, perm_a, perm_b):
    """MinHash of each unit.

    shingles: uint64[m] (only the low 32 bits are used), offsets: int64[n_units + 1];
    perm_a (odd), perm_b: uint32[num_perm].
    Returns uint32[n_units, num_perm]; empty units keep EMPTY_SLOT.
    """
    n_units = offsets.size - 1
    num_perm = perm_a.size
    signatures = np.empty((n_units, num_perm), dtype=np.uint32)
    for unit in prange(n_units):  # each iteration writes only its own row
        best = np.full(num_perm, EMPTY_SLOT, dtype=np.uint32)
        for i in range(offsets[unit], offsets[unit + 1]):
            hv = fmix32(np.uint32(shingles[i] & np.uint64(0xFFFFFFFF)))
            for perm in range(num_perm):
                value = np.uint32(perm_a[perm] * hv + perm_b[perm])
                if value < best[perm]:
                    best[perm] = value
        signatures[unit, :] = best
    return signatures
