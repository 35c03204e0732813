import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import reference
from dedup.kernels.unionfind import connected_components


@given(st.integers(1, 40).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.tuples(st.integers(0, n - 1),
                                                        st.integers(0, n - 1)), max_size=60))))
def test_matches_graph_search(case):
    n, edges = case
    left = np.array([a for a, _ in edges], dtype=np.int64)
    right = np.array([b for _, b in edges], dtype=np.int64)
    assert connected_components(n, left, right).tolist() == reference.components(n, edges)


def test_long_chain_and_no_edges():
    n = 100_000
    chain = np.arange(n - 1, dtype=np.int64)
    assert np.all(connected_components(n, chain[::-1].copy(), chain[::-1] + 1) == 0)
    empty = np.zeros(0, dtype=np.int64)
    assert connected_components(5, empty, empty).tolist() == [0, 1, 2, 3, 4]
