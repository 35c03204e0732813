import numpy as np
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from dedup.kernels.hashing import xxh64_codepoints


@given(st.lists(st.integers(0, 0x10FFFF), max_size=70), st.integers(0, 2**64 - 1))
def test_xxh64_equals_the_xxhash_library(codes, seed):
    cps = np.array(codes, dtype=np.uint32)
    expected = xxhash.xxh64(cps.astype("<u4").tobytes(), seed).intdigest()
    assert int(xxh64_codepoints(cps, 0, cps.size, np.uint64(seed))) == expected


def test_xxh64_of_a_slice():
    cps = np.arange(100, dtype=np.uint32)
    expected = xxhash.xxh64(cps[17:61].astype("<u4").tobytes(), 3).intdigest()
    assert int(xxh64_codepoints(cps, 17, 61, np.uint64(3))) == expected
