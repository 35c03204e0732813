import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from dedup.kernels.band import (
    band_keys, candidate_pairs, distinct_sorted, key_directory, pack_pairs,
    probe_units, table_insert, table_insert_units, unpack_pairs,
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


def _probe_map(entries, split):
    """A map tuple for probe_units holding (key, value) entries, each put in the sorted bulk,
    the recent-additions table or the extra part by split (0, 1, 2)."""
    parts = [[(k, v) for (k, v), s in zip(entries, split) if s == part] for part in range(3)]
    bulk = sorted(parts[0])
    keys = np.asarray([k for k, _ in bulk], dtype=np.uint64)
    directory, shift = key_directory(keys)
    size = 16
    while size < 2 * max(len(parts[1]), 1):
        size *= 2
    slot_key, slot_head = np.zeros(size, np.uint64), np.full(size, -1, np.int64)
    entry_key, entry_value, entry_next = (np.zeros(size, np.uint64), np.zeros(size, np.int64),
                                          np.zeros(size, np.int64))
    table_insert(slot_key, slot_head, entry_key, entry_value, entry_next, 0,
                 np.asarray([k for k, _ in parts[1]], dtype=np.uint64),
                 np.asarray([v for _, v in parts[1]], dtype=np.int64))
    extra = sorted(parts[2])
    return (keys, directory, shift, np.asarray([v for _, v in bulk], dtype=np.int64), slot_key,
            slot_head, entry_value, entry_next,
            np.asarray([k for k, _ in extra], dtype=np.uint64),
            np.asarray([v for _, v in extra], dtype=np.int64))


@given(st.lists(st.tuples(st.integers(1, 50), st.lists(st.integers(0, 2**64 - 1), max_size=4)),
                max_size=6))
def test_table_insert_units_is_table_insert_of_repeated_ids(units):
    """A unit's band keys go in with its id, in order: the same table as table_insert of the
    keys with each id repeated (keys as signed int64, as the index holds them)."""
    ids = np.asarray([i for i, _ in units], dtype=np.int64)
    counts = np.asarray([len(k) for _, k in units], dtype=np.int64)
    keys = np.asarray([k for _, ks in units for k in ks], dtype=np.uint64)
    tables = []
    for _ in range(2):
        # room for 24 entries (6 units of 4 keys), twice as many slots
        tables.append((np.zeros(64, np.uint64), np.full(64, -1, np.int64), np.zeros(32, np.uint64),
                       np.zeros(32, np.int64), np.zeros(32, np.int64)))
    n_a = table_insert(*tables[0], 0, keys, np.repeat(ids, counts))
    n_b = table_insert_units(*tables[1], 0, keys.view(np.int64), counts, ids)
    assert n_a == n_b == keys.size
    for a, b in zip(*tables):
        assert a.tolist() == b.tolist()


KEY = st.integers(0, 6).map(lambda k: [0, 1, 5, 2**63, 2**64 - 1, 17, 2**40][k])


@given(st.data())
def test_probe_units_matches_dicts(data):
    """probe_units against dict lookups: exact copies of the unit's kind, bucket members
    counted per searched (unit, band), pairs distinct and sorted, dead units left out."""
    n_units = data.draw(st.integers(1, 5))
    n_bands = data.draw(st.integers(1, 3))
    hashes = data.draw(st.lists(KEY, min_size=n_units, max_size=n_units))
    is_active = data.draw(st.lists(st.booleans(), min_size=n_units, max_size=n_units))
    keys = data.draw(st.lists(st.lists(KEY, min_size=n_bands, max_size=n_bands),
                              min_size=n_units, max_size=n_units))
    unit_ids = st.integers(1, 9)
    exact_entries = data.draw(st.lists(st.tuples(KEY, st.tuples(unit_ids, st.integers(0, 1))),
                                       max_size=8, unique_by=lambda e: (e[0], e[1][1])))
    band_entries = data.draw(st.lists(st.tuples(KEY, unit_ids), max_size=20))
    dead = sorted(data.draw(st.sets(unit_ids, max_size=3)))
    exact_map = _probe_map([(k, i << 1 | kind) for k, (i, kind) in exact_entries],
                           data.draw(st.lists(st.integers(0, 2), min_size=len(exact_entries),
                                              max_size=len(exact_entries))))
    band_map = _probe_map(band_entries,
                          data.draw(st.lists(st.integers(0, 2), min_size=len(band_entries),
                                             max_size=len(band_entries))))
    exact, counts, left, right = probe_units(
        np.asarray(hashes, dtype=np.uint64), np.asarray(is_active),
        np.asarray(keys, dtype=np.uint64).reshape(n_units, n_bands), exact_map, band_map,
        np.asarray(dead, dtype=np.int64))
    want_exact = [-1] * n_units
    for unit in range(n_units):
        kind = 0 if unit == 0 else 1
        for k, (i, entry_kind) in exact_entries:
            if is_active[unit] and k == hashes[unit] and entry_kind == kind and i not in dead:
                want_exact[unit] = i
    want_counts = [[0] * n_bands for _ in range(n_units)]
    want_pairs = set()
    for unit in range(n_units):
        if not is_active[unit] or (unit > 0 and want_exact[unit] >= 0):
            continue
        for band in range(n_bands):
            for k, i in band_entries:
                if k == keys[unit][band] and i not in dead:
                    want_counts[unit][band] += 1
                    if i != want_exact[unit]:
                        want_pairs.add((unit, i))
    assert exact.tolist() == want_exact
    assert counts.tolist() == want_counts
    assert list(zip(left.tolist(), right.tolist())) == sorted(want_pairs)


def test_probe_units_leaves_out_a_documents_own_exact_copy():
    # the document (unit 0) has stored copy 3, also in its bucket: no pair (0, 3) to verify,
    # but the bucket's members are counted; unit 4 in the same bucket is a candidate
    exact_map = _probe_map([(7, 3 << 1 | 0)], [0])
    band_map = _probe_map([(5, 3), (5, 4)], [0, 1])
    exact, counts, left, right = probe_units(
        np.asarray([7], dtype=np.uint64), np.asarray([True]), np.asarray([[5]], dtype=np.uint64),
        exact_map, band_map, np.zeros(0, np.int64))
    assert exact.tolist() == [3] and counts.tolist() == [[2]]
    assert left.tolist() == [0] and right.tolist() == [4]
