"""Union-find connected components."""

import numpy as np
from numba import njit


@njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        parent[x], x = root, parent[x]
    return root


@njit(cache=True)
def connected_components(n_units, left, right):
    """Component label of each unit: the smallest unit index in its component.

    left, right: int64[n_pairs] edges. Returns int64[n_units].
    """
    parent = np.arange(n_units, dtype=np.int64)
    for k in range(left.size):
        a = _find(parent, left[k])
        b = _find(parent, right[k])
        if a < b:  # the smaller index is the root, so labels need no second pass to be canonical
            parent[b] = a
        elif b < a:
            parent[a] = b
    labels = np.empty(n_units, dtype=np.int64)
    for unit in range(n_units):
        labels[unit] = _find(parent, unit)
    return labels
