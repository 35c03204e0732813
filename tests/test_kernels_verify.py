import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import reference
from dedup.kernels.verify import pair_similarities

SETS = st.lists(st.sets(st.integers(0, 40), max_size=25), min_size=2, max_size=8)


def csr(sets):
    values = np.concatenate([np.array(sorted(s), dtype=np.uint64) for s in sets])
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    return values, offsets


@given(SETS)
def test_matches_reference_and_is_symmetric(sets):
    values, offsets = csr(sets)
    n = len(sets)
    left, right = (x.astype(np.int64) for x in np.triu_indices(n, 1))
    jac, cont = pair_similarities(values, offsets, left, right)
    jac_rev, cont_rev = pair_similarities(values, offsets, right, left)
    for k, (a, b) in enumerate(zip(left.tolist(), right.tolist())):
        assert jac[k] == reference.jaccard(sets[a], sets[b])
        assert cont[k] == reference.containment(sets[a], sets[b])
        assert 0.0 <= jac[k] <= cont[k] <= 1.0
    assert np.array_equal(jac, jac_rev) and np.array_equal(cont, cont_rev)


def test_identical_and_disjoint_and_empty():
    values, offsets = csr([{1, 2, 3}, {1, 2, 3}, {7, 8}, set()])
    jac, cont = pair_similarities(values, offsets, np.array([0, 0, 0]), np.array([1, 2, 3]))
    assert jac.tolist() == [1.0, 0.0, 0.0]
    assert cont.tolist() == [1.0, 0.0, 0.0]
