import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from dedup.kernels.band import (
    band_keys, candidate_pairs, distinct_sorted, pack_pairs, unpack_pairs,
)


def signatures_with_structure(rng, n_units, num_perm, n_templates):
    """Units copied from a few templates with some slots changed, so bands collide."""
    templates = rng.integers(0, 50, (n_templates, num_perm), dtype=np.uint32)
    rows = templates[rng.integers(0, n_templates, n_units)].copy()
    noise = rng.random(rows.shape) < 0.3
    rows[noise] = rng.integers(0, 50, noise.sum(), dtype=np.uint32)
    return rows


@pytest.mark.parametrize("max_bucket", [2, 4, 1000])
def test_candidates_match_reference(rng, max_bucket):
    signatures = signatures_with_structure(rng, 60, 12, 4)
    keys = band_keys(signatures, 4, 3)
    left, right = candidate_pairs(keys, max_bucket)
    expected = reference.lsh_candidates(signatures.tolist(), 4, 3, max_bucket)
    assert set(zip(left.tolist(), right.tolist())) == expected
    assert np.all(left < right)
    packed = left * 2**32 + right
    assert np.all(np.diff(packed) > 0)  # sorted and distinct


def test_oversized_bucket_is_a_star_not_a_clique():
    n = 10_000
    signatures = np.zeros((n, 8), dtype=np.uint32)  # every unit in one bucket of every band
    left, right = candidate_pairs(band_keys(signatures, 2, 4), 64)
    assert left.size == n - 1
    assert np.all(left == 0)


def test_band_keys_depend_on_band_index():
    signatures = np.zeros((1, 8), dtype=np.uint32)
    keys = band_keys(signatures, 2, 4)
    assert keys[0, 0] != keys[0, 1]


def test_no_units():
    left, right = candidate_pairs(np.zeros((0, 3), dtype=np.uint64), 64)
    assert left.size == 0 and right.size == 0


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=30))
def test_packed_pairs_round_trip_and_sort_as_pairs(pairs):
    left = np.array([a for a, _ in pairs], dtype=np.int64)
    right = np.array([b for _, b in pairs], dtype=np.int64)
    back = unpack_pairs(pack_pairs(left, right))
    assert back[0].tolist() == left.tolist() and back[1].tolist() == right.tolist()
    distinct = unpack_pairs(distinct_sorted(np.sort(pack_pairs(left, right))))
    assert list(zip(*(a.tolist() for a in distinct))) == sorted(set(pairs))
