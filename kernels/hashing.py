"""Hash primitives shared by the kernels: XXH64 over code points, mixers.

Code points are hashed as their little-endian uint32 bytes, so
`xxh64_codepoints(cps, 0, n, seed)` equals
`xxhash.xxh64(cps[:n].astype("<u4").tobytes(), seed).intdigest()`.
"""

import numpy as np
from numba import njit

P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)
# MurmurHash3 finalizer constants (the same ones datasketch uses to pre-mix 32-bit hashes)
FMIX32_M1 = np.uint32(0x85EBCA6B)
FMIX32_M2 = np.uint32(0xC2B2AE35)
FMIX64_M1 = np.uint64(0xFF51AFD7ED558CCD)
FMIX64_M2 = np.uint64(0xC4CEB9FE1A85EC53)


@njit(cache=True, inline="always")
def rotl64(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(cache=True, inline="always")
def _round(acc, lane):
    acc = acc + lane * P2
    acc = rotl64(acc, 31)
    return acc * P1


@njit(cache=True, inline="always")
def _merge(acc, val):
    acc = acc ^ _round(np.uint64(0), val)
    return acc * P1 + P4


@njit(cache=True, inline="always")
def _lane(cps, i):
    # two code points make one little-endian 64-bit lane
    return np.uint64(cps[i]) | (np.uint64(cps[i + 1]) << np.uint64(32))


@njit(cache=True)
def xxh64_codepoints(cps, start, end, seed):
    """XXH64 of cps[start:end] read as little-endian uint32 bytes.

    cps: uint32 or int32 array of code points; seed: uint64.
    Returns uint64.
    """
    seed = np.uint64(seed)
    i = start
    n_bytes = np.uint64((end - start) * 4)
    if end - start >= 8:
        v1 = seed + P1 + P2
        v2 = seed + P2
        v3 = seed
        v4 = seed - P1
        while i + 8 <= end:
            v1 = _round(v1, _lane(cps, i))
            v2 = _round(v2, _lane(cps, i + 2))
            v3 = _round(v3, _lane(cps, i + 4))
            v4 = _round(v4, _lane(cps, i + 6))
            i += 8
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = seed + P5
    h = h + n_bytes
    while i + 2 <= end:
        h = h ^ _round(np.uint64(0), _lane(cps, i))
        h = rotl64(h, 27) * P1 + P4
        i += 2
    if i < end:
        h = h ^ (np.uint64(cps[i]) * P1)
        h = rotl64(h, 23) * P2 + P3
    h = h ^ (h >> np.uint64(33))
    h = h * P2
    h = h ^ (h >> np.uint64(29))
    h = h * P3
    h = h ^ (h >> np.uint64(32))
    return h


@njit(cache=True, inline="always")
def fmix64(h):
    h = h ^ (h >> np.uint64(33))
    h = h * FMIX64_M1
    h = h ^ (h >> np.uint64(33))
    h = h * FMIX64_M2
    return h ^ (h >> np.uint64(33))


@njit(cache=True, inline="always")
def fmix32(h):
    h = h ^ (h >> np.uint32(16))
    h = np.uint32(h * FMIX32_M1)
    h = h ^ (h >> np.uint32(13))
    h = np.uint32(h * FMIX32_M2)
    return h ^ (h >> np.uint32(16))
