import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from dedup.kernels.shingle import (
    CHAR, WORD, compact_sorted_inplace, raw_shingles, shingle_units, unit_hashes,
)

WORDS = st.lists(st.sampled_from(["a", "bb", "ccc", "في", "البيت", "x1"]), max_size=12)


def csr(strings):
    values = np.array([ord(c) for s in strings for c in s], dtype=np.int32)
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in strings], out=offsets[1:])
    return values, offsets


def units_of(shingles, offsets):
    return [shingles[offsets[u]:offsets[u + 1]] for u in range(offsets.size - 1)]


@given(st.lists(st.text(alphabet="abcدهو", max_size=12), max_size=6), st.integers(1, 6))
def test_char_shingles_match_reference(strings, n):
    shingles, offsets = shingle_units(*csr(strings), n, CHAR, np.uint64(0))
    for text, unit in zip(strings, units_of(shingles, offsets)):
        grams = reference.char_shingles(text, n)
        expected = sorted(reference.hash_sequence([ord(c) for c in g]) for g in grams)
        assert unit.tolist() == expected  # sorted, distinct, the documented hash
        assert len(set(unit.tolist())) == len(grams)


@given(st.lists(st.text(alphabet="abcدهو", max_size=12), max_size=6), st.integers(1, 6))
def test_raw_shingles_are_every_gram_in_text_order(strings, n):
    raw, offsets = raw_shingles(*csr(strings), n, CHAR, np.uint64(0))
    for text, unit in zip(strings, units_of(raw, offsets)):
        width = min(n, len(text))
        grams = [text[i:i + width] for i in range(len(text) - width + 1)] if text else []
        assert unit.tolist() == [reference.hash_sequence([ord(c) for c in g]) for g in grams]


@given(st.lists(st.lists(st.integers(0, 5), max_size=10), max_size=6))
def test_compact_sorted_inplace_keeps_the_distinct_values_of_each_segment(segments):
    values = np.array(sorted_concat := [v for seg in segments for v in sorted(seg)],
                      dtype=np.uint64)
    offsets = np.zeros(len(segments) + 1, dtype=np.int64)
    np.cumsum([len(seg) for seg in segments], out=offsets[1:])
    assert values.size == len(sorted_concat)
    n_values, out_offsets = compact_sorted_inplace(values, offsets)
    assert n_values == out_offsets[-1]
    assert [unit.tolist() for unit in units_of(values[:n_values], out_offsets)] == \
        [sorted(set(seg)) for seg in segments]


@given(st.lists(st.text(alphabet="abcدهو ", max_size=30), max_size=6), st.integers(1, 6),
       st.sampled_from([CHAR, WORD]))
def test_raw_then_sorted_and_compacted_equals_shingle_units(strings, n, mode):
    from dedup.pipeline import sort_segments

    raw, raw_offsets = raw_shingles(*csr(strings), n, mode, np.uint64(0))
    sort_segments(raw, raw_offsets)
    n_values, offsets = compact_sorted_inplace(raw, raw_offsets)
    expected = shingle_units(*csr(strings), n, mode, np.uint64(0))
    assert np.array_equal(raw[:n_values], expected[0]) and np.array_equal(offsets, expected[1])


@given(st.lists(WORDS, max_size=5), st.integers(1, 4))
def test_word_shingles_count_distinct_word_ngrams(word_lists, n):
    strings = [" ".join(words) for words in word_lists]
    shingles, offsets = shingle_units(*csr(strings), n, WORD, np.uint64(0))
    for text, unit in zip(strings, units_of(shingles, offsets)):
        assert unit.size == len(reference.word_shingles(text, n))
        assert np.all(np.diff(unit.astype(np.float64)) > 0) or unit.size <= 1


def test_word_shingles_are_shared_exactly_when_word_ngrams_are():
    strings = ["the cat sat on the mat", "a cat sat on the mat today", "dogs run"]
    shingles, offsets = shingle_units(*csr(strings), 3, WORD, np.uint64(0))
    units = [set(u.tolist()) for u in units_of(shingles, offsets)]
    sets = [reference.word_shingles(s, 3) for s in strings]
    assert len(units[0] & units[1]) == len(sets[0] & sets[1]) == 3
    assert not units[2] & (units[0] | units[1])


def test_short_units_are_one_shingle_and_empty_units_none():
    shingles, offsets = shingle_units(*csr(["ab", "", "abcdefg", "ab"]), 5, CHAR, np.uint64(0))
    sizes = np.diff(offsets).tolist()
    assert sizes == [1, 0, 3, 1]
    assert shingles[offsets[0]] == shingles[offsets[3]]
    # a unit as long as n is its own one n-gram, the same shingle inside a longer unit
    both = shingle_units(*csr(["abcde", "abcdefg"]), 5, CHAR, np.uint64(0))[0]
    assert both[0] in both[1:].tolist()


def test_unit_hashes_equal_for_equal_units_only():
    values, offsets = csr(["same", "other", "same", ""])
    hashes = unit_hashes(values, offsets, np.uint64(9)).tolist()
    assert hashes[0] == hashes[2]
    assert len(set(hashes)) == 3


@pytest.mark.parametrize("mode", [CHAR, WORD])
def test_no_units(mode):
    shingles, offsets = shingle_units(np.zeros(0, np.int32), np.zeros(1, np.int64), 5, mode,
                                      np.uint64(0))
    assert shingles.size == 0 and offsets.tolist() == [0]


def test_sort_segments_on_threads_sorts_every_segment(rng):
    import numba

    from dedup.pipeline import sort_segments

    sizes = rng.integers(0, 3000, 400)
    offsets = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = rng.integers(0, 2**64 - 1, offsets[-1], dtype=np.uint64)
    expected = np.concatenate([np.sort(values[lo:hi]) for lo, hi in zip(offsets[:-1], offsets[1:])])
    assert values.size >= 1 << 16  # large enough for the threaded path
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        sort_segments(values, offsets)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(values, expected)
