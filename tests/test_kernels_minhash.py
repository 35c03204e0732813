import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash

import reference
from dedup.kernels.minhash import EMPTY_SLOT, minhash_signatures
from dedup.pipeline import permutations


def random_sets(rng, n_units, max_size):
    sizes = rng.integers(0, max_size, n_units)
    offsets = np.zeros(n_units + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = rng.integers(0, 2**63, offsets[-1], dtype=np.uint64)
    return values, offsets


def test_matches_reference(rng):
    values, offsets = random_sets(rng, 20, 30)
    a, b = permutations(16, 7)
    signatures = minhash_signatures(values, offsets, a, b)
    for unit in range(20):
        expected = reference.minhash(values[offsets[unit]:offsets[unit + 1]].tolist(), a, b)
        assert signatures[unit].tolist() == expected


@pytest.mark.parametrize("seed, num_perm", [(1, 128), (42, 64), (0, 1)])
def test_bit_for_bit_equal_to_datasketch(rng, seed, num_perm):
    values, offsets = random_sets(rng, 10, 200)
    a, b = permutations(num_perm, seed)
    signatures = minhash_signatures(values, offsets, a, b)
    for unit in range(10):
        hashes = [int(h) & 0xFFFFFFFF for h in values[offsets[unit]:offsets[unit + 1]]]
        theirs = MinHash(num_perm=num_perm, seed=seed, hashfunc=lambda h: h)
        theirs.update_batch(hashes)
        assert np.array_equal(signatures[unit], theirs.hashvalues)
        assert signatures[unit].dtype == theirs.hashvalues.dtype


def test_permutations_are_datasketchs():
    ours = permutations(128, 3)
    theirs = MinHash(num_perm=128, seed=3).permutations
    assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])


def test_lean_minhash_export_interoperates(rng):
    import dedup

    values, offsets = random_sets(rng, 2, 300)
    config = dedup.Config()
    a, b = permutations(config.num_perm, config.seed)
    signatures = minhash_signatures(values, offsets, a, b)
    lean = dedup.to_lean_minhash(signatures[0], config)
    assert isinstance(lean, LeanMinHash)
    theirs = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=lambda h: h)
    theirs.update_batch([int(h) & 0xFFFFFFFF for h in values[offsets[0]:offsets[1]]])
    assert lean.jaccard(theirs) == 1.0


def test_empty_units_keep_empty_slot():
    a, b = permutations(8, 1)
    signatures = minhash_signatures(np.zeros(0, np.uint64), np.zeros(3, np.int64), a, b)
    assert signatures.shape == (2, 8)
    assert np.all(signatures == EMPTY_SLOT)


def test_estimate_within_expected_error(rng):
    """Mean absolute error of the estimate near sqrt(J(1-J)/k), and no pair far outside."""
    num_perm = 128
    a, b = permutations(num_perm, 1)
    errors = []
    for _ in range(300):
        universe = rng.integers(0, 2**63, 400, dtype=np.uint64)
        n_shared = int(rng.integers(0, 200))
        left = np.concatenate([universe[:n_shared], universe[200:300]])
        right = np.concatenate([universe[:n_shared], universe[300:400]])
        truth = reference.jaccard(set(left.tolist()), set(right.tolist()))
        values = np.concatenate([left, right])
        offsets = np.array([0, left.size, values.size], dtype=np.int64)
        signatures = minhash_signatures(values, offsets, a, b)
        estimate = np.mean(signatures[0] == signatures[1])
        bound = 5 * np.sqrt(truth * (1 - truth) / num_perm) + 2 / num_perm
        assert abs(estimate - truth) <= bound
        errors.append(abs(estimate - truth))
    assert np.mean(errors) < 0.04
