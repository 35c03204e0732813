"""kernels.sketch, verify.set_overlaps / pair_overlaps and band.sorted_lookup against the
definitions: reference normalization and Python sets, and the engine's own (separately
tested) kernels for what the one-text path must reproduce bit for bit."""

import numpy as np
import pytest
import xxhash
from hypothesis import example, given, settings
from hypothesis import strategies as st

import reference
from dedup.kernels.band import band_keys, key_directory, sorted_lookup
from dedup.kernels.minhash import minhash_signatures
from dedup.kernels.shingle import CHAR, WORD, raw_shingles
from dedup.kernels.sketch import (
    document_units, overlaps_utf8, pack_utf8, raw_shingles_utf8, sketch_units, store_units,
    verify_utf8,
)
from dedup.kernels.verify import (
    has_repeat_pair, pair_bound, pair_overlaps, pair_similarities, paragraph_repeats,
    set_overlaps, shingle_bits,
)
from dedup.normtable import load_table
from dedup.config import Config
from dedup.pipeline import SHINGLE_SEED, UNIT_HASH_SEED, codepoints, is_edge, permutations
from dedup.units import split_units

# letters, Arabic with tatweel and harakat, digits, a ligature and U+FDFA (expansions: the long
# one outgrows the one-pass buffer), and white space str.isspace() knows (\x1c, \x85, U+2028)
ALPHABET = "abcXYZ ,.!ـفيالبيتَ١٢3ﬁﷺ\t\x1c\x85\u2028"
PARAGRAPHS = st.lists(st.text(alphabet=ALPHABET, max_size=40), min_size=0, max_size=6)
SPACE_TABLE = np.array([chr(c).isspace() for c in range(0x3001)])
BREAKS = st.sampled_from(["\n", "\n\n", "\r\n", "\r", " \n "])


def index_units(texts):
    """(cps, starts, ends, firsts) as the index builds them: per text the whole stripped text,
    then its paragraphs."""
    starts, ends, firsts, offset = [], [], [0], 0
    for text in texts:
        paras = split_units(text, "paragraph")
        end = len(text.rstrip())
        starts += [offset + min(len(text) - len(text.lstrip()), end)]
        ends += [offset + end]
        starts += [offset + s for s in paras.starts.tolist()]
        ends += [offset + e for e in paras.ends.tolist()]
        firsts.append(firsts[-1] + 1 + len(paras))
        offset += len(text)
    return (codepoints("".join(texts)), np.asarray(starts, dtype=np.int64),
            np.asarray(ends, dtype=np.int64), np.asarray(firsts, dtype=np.int64))


def sketch(texts, mode, n, bands=4, rows=3, num_perm=16):
    a, b = permutations(num_perm, 7)
    cps, starts, ends, firsts = index_units(texts)
    result = sketch_units(cps, starts, ends, firsts, *load_table(), mode == WORD, n, mode,
                          SHINGLE_SEED, UNIT_HASH_SEED, a, b, bands, rows)
    return (cps, starts, ends, a, b) + result


@given(st.lists(st.tuples(PARAGRAPHS, BREAKS), min_size=1, max_size=3),
       st.sampled_from([CHAR, WORD]), st.integers(1, 6))
def test_sketch_units_match_the_definitions(documents, mode, n):
    texts = [sep.join(paras) for paras, sep in documents]
    cps, starts, ends, a, b, norm, norm_offsets, hashes, raw, raw_offsets, keys = sketch(
        texts, mode, n)
    text = "".join(texts)
    for unit in range(starts.size):
        values = norm[norm_offsets[unit]:norm_offsets[unit + 1]]
        expected = reference.normalize(text[starts[unit]:ends[unit]], keep_separators=mode == WORD)
        assert "".join(map(chr, values.tolist())) == expected
        assert int(hashes[unit]) == xxhash.xxh64_intdigest(
            values.astype("<u4").tobytes(), int(UNIT_HASH_SEED))
    # every shingle in text order, as raw_shingles makes them from the normalized units
    expected_raw, expected_offsets = raw_shingles(norm, norm_offsets, n, mode, SHINGLE_SEED)
    assert np.array_equal(raw, expected_raw) and np.array_equal(raw_offsets, expected_offsets)
    # band keys of the MinHash of each unit's shingle set
    for unit in range(starts.size):
        shingles = set(raw[raw_offsets[unit]:raw_offsets[unit + 1]].tolist())
        signature = np.asarray([reference.minhash(shingles, a, b)], dtype=np.uint32)
        assert np.array_equal(keys[unit], band_keys(signature, 4, 3)[0])


def test_sketch_units_of_a_long_document_equal_the_engine_kernels(rng):
    words = ["word", "another", "ﬁnal", "في", "البيت", "x"]
    paragraphs = [" ".join(rng.choice(words, int(rng.integers(1, 80)))) for _ in range(30)]
    text = "\n".join(paragraphs[:10]) + "\n\n  \n" + "\r\n".join(paragraphs[10:])
    a, b = permutations(128, 7)  # sketch()'s
    for mode in (CHAR, WORD):
        *_, norm, norm_offsets, hashes, raw, raw_offsets, keys = sketch([text], mode, 5, 16, 6,
                                                                        128)
        signatures = minhash_signatures(raw, raw_offsets, a, b)
        assert np.array_equal(keys, band_keys(signatures, 16, 6))


def test_sketch_units_of_no_units_and_empty_units():
    a, b = permutations(8, 1)
    empty = np.zeros(0, dtype=np.int64)
    norm, norm_offsets, hashes, raw, raw_offsets, keys = sketch_units(
        codepoints(""), empty, empty, np.zeros(1, dtype=np.int64), *load_table(), False, 5, CHAR,
        SHINGLE_SEED, UNIT_HASH_SEED, a, b, 2, 4)
    assert norm.size == 0 and keys.shape == (0, 2) and norm_offsets.tolist() == [0]
    # a text of punctuation: every unit normalizes to nothing, keys are the empty signature's
    *_, norm, norm_offsets, hashes, raw, raw_offsets, keys = sketch(["* * *\n!!"], CHAR, 5, 2, 4,
                                                                    8)
    assert norm.size == 0 and raw.size == 0
    assert np.array_equal(keys[0], keys[1])


@given(st.lists(st.lists(st.integers(0, 40), max_size=30), min_size=1, max_size=7),
       st.integers(0, 3))
def test_set_overlaps_count_shared_distinct_values(units, first):
    raw = np.asarray([v * 0x9E3779B97F4A7C15 % 2**64 for u in units for v in u], dtype=np.uint64)
    offsets = np.zeros(len(units) + 1, dtype=np.int64)
    np.cumsum([len(u) for u in units], out=offsets[1:])
    sizes, shared = set_overlaps(raw, offsets, first)
    sets = [set(raw[offsets[k]:offsets[k + 1]].tolist()) for k in range(len(units))]
    assert sizes.tolist() == [len(s) for s in sets]
    k = max(len(units) - first, 0)
    for i in range(k):
        for j in range(k):
            expected = len(sets[first + i] & sets[first + j]) if i < j else 0
            assert shared[i, j] == expected


@given(st.lists(st.lists(st.integers(0, 30), max_size=25), min_size=1, max_size=5),
       st.lists(st.lists(st.integers(0, 30), max_size=25), min_size=1, max_size=5),
       st.data())
def test_pair_overlaps_count_shared_distinct_values(units_a, units_b, data):
    def csr(units):
        values = np.asarray([v * 0xC2B2AE3D27D4EB4F % 2**64 for u in units for v in u],
                            dtype=np.uint64)
        offsets = np.zeros(len(units) + 1, dtype=np.int64)
        np.cumsum([len(u) for u in units], out=offsets[1:])
        return values, offsets

    raw_a, offsets_a = csr(units_a)
    raw_b, offsets_b = csr(units_b)
    pairs = data.draw(st.lists(st.tuples(st.integers(0, len(units_a) - 1),
                                         st.integers(0, len(units_b) - 1)), max_size=12))
    left = np.asarray([p[0] for p in pairs], dtype=np.int64)
    right = np.asarray([p[1] for p in pairs], dtype=np.int64)
    shared, left_sizes = pair_overlaps(raw_a, offsets_a, raw_b, offsets_b, left, right)
    for k, (i, j) in enumerate(pairs):  # any order of pairs, a left met again later too
        a = set(raw_a[offsets_a[i]:offsets_a[i + 1]].tolist())
        b = set(raw_b[offsets_b[j]:offsets_b[j + 1]].tolist())
        assert shared[k] == len(a & b) and left_sizes[k] == len(a)


@given(st.lists(st.text(alphabet="abcـفيﬁﷺ٣ ", max_size=30), max_size=6),
       st.sampled_from([CHAR, WORD]), st.integers(1, 6))
def test_raw_shingles_utf8_equal_those_of_the_code_points(strings, mode, n):
    encoded = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    raw, raw_offsets = raw_shingles_utf8(np.frombuffer(b"".join(encoded), dtype=np.uint8),
                                         offsets, n, mode, SHINGLE_SEED)
    values = np.asarray([ord(c) for s in strings for c in s], dtype=np.int32)
    value_offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in strings], out=value_offsets[1:])
    expected, expected_offsets = raw_shingles(values, value_offsets, n, mode, SHINGLE_SEED)
    assert np.array_equal(raw, expected) and np.array_equal(raw_offsets, expected_offsets)


@pytest.mark.parametrize("n_keys", [0, 1, 7, 5000])
def test_sorted_lookup_finds_every_equal_key(rng, n_keys):
    keys = rng.integers(0, 2**64 - 1, n_keys, dtype=np.uint64, endpoint=True)
    keys = np.sort(np.concatenate((keys, keys[:n_keys // 3], np.array([0, 2**64 - 1],
                                                                        dtype=np.uint64))))
    directory, shift = key_directory(keys)
    queries = np.concatenate((keys[::3], rng.integers(0, 2**64 - 1, 20, dtype=np.uint64),
                              np.array([0, 2**64 - 1], dtype=np.uint64)))
    query, position = sorted_lookup(keys, directory, shift, queries)
    expected = [(q, p) for q, key in enumerate(queries.tolist())
                for p, stored in enumerate(keys.tolist()) if stored == key]
    assert list(zip(query.tolist(), position.tolist())) == expected


def test_long_expansions_take_the_two_pass_path():
    # U+FDFA expands to 18 characters: the one-pass buffer (two values a code point) overflows
    texts = ["ﷺ" * 30 + "\nabc ﷺ", "x\n" + "ﷺ" * 5]
    cps, starts, ends, a, b, norm, norm_offsets, *_ = sketch(texts, CHAR, 5)
    text = "".join(texts)
    for unit in range(starts.size):
        values = norm[norm_offsets[unit]:norm_offsets[unit + 1]]
        assert "".join(map(chr, values.tolist())) == reference.normalize(
            text[starts[unit]:ends[unit]], keep_separators=False)
    assert norm_offsets[1] - norm_offsets[0] > 2 * len(texts[0])


@given(st.lists(st.tuples(st.sets(st.integers(0, 12), max_size=10), st.integers(0, 60)),
                max_size=6),
       st.sampled_from([Config(), Config(threshold=0.5, containment_threshold=0.6,
                                         min_contained_length=10)]))
def test_has_repeat_pair_is_is_edge_on_some_pair(units, config):
    sets = [s for s, _ in units]
    lengths = np.asarray([length for _, length in units], dtype=np.int64)
    sizes = np.asarray([len(s) for s in sets], dtype=np.int64)
    shared = np.zeros((len(sets), len(sets)), dtype=np.int64)
    expected = False
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            shared[i, j] = len(sets[i] & sets[j])
            jac, cont = reference.jaccard(sets[i], sets[j]), reference.containment(sets[i], sets[j])
            if sets[i] and sets[j]:
                expected |= bool(is_edge(np.array([jac]), np.array([cont]),
                                         np.array([min(lengths[i], lengths[j])]), config)[0])
    assert has_repeat_pair(sizes, shared, lengths, config.threshold,
                           config.containment_threshold, config.min_contained_length) == expected


@given(st.lists(st.sampled_from(["", "ab ab", "abc abd", "the river rose", "the river rose!",
                                  "ﬁ", "the rivers rose fast"]), max_size=7),
       st.sampled_from([CHAR, WORD]), st.sampled_from([0, 3, 100]))
@example(["ﬁ", "ab ab", "ﬁ"], CHAR, 100)  # equal, and shorter than a shingle
def test_paragraph_repeats_is_its_definition(paragraphs, mode, exhaustive_pairs):
    """paragraph_repeats against its parts: no repeat with under two non-empty paragraphs;
    a maybe past exhaustive_pairs; else has_repeat_pair, which equal paragraphs always
    satisfy (the index's fast path relies on it: find_groups would group them)."""
    config = Config(threshold=0.5, containment_threshold=0.7, min_contained_length=4)
    *_, norm, norm_offsets, hashes, raw, raw_offsets, _ = sketch(["\n".join(paragraphs)], mode, 3)
    # sketch keeps only the paragraphs with something in them: put the empty ones back
    units = [0] + [k + 1 for k, p in enumerate(paragraphs) if p]
    lengths = np.zeros(len(paragraphs) + 1, dtype=np.int64)
    shingle_counts = np.zeros(len(paragraphs) + 1, dtype=np.int64)
    all_hashes = np.zeros(len(paragraphs) + 1, dtype=np.uint64)
    for k, unit in enumerate(units):
        lengths[unit] = norm_offsets[k + 1] - norm_offsets[k]
        shingle_counts[unit] = raw_offsets[k + 1] - raw_offsets[k]
        all_hashes[unit] = hashes[k]
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    counts = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(shingle_counts, out=counts[1:])
    may_repeat, sizes, shared = paragraph_repeats(
        raw, counts, offsets, config.threshold, config.containment_threshold,
        config.min_contained_length, exhaustive_pairs)
    n_active = len(units) - 1
    if n_active < 2:
        assert not may_repeat
    elif n_active * (n_active - 1) // 2 > exhaustive_pairs:
        assert may_repeat
    else:
        want_sizes, want_shared = set_overlaps(raw[counts[1]:], counts[1:] - counts[1], 0)
        assert np.array_equal(sizes, want_sizes) and np.array_equal(shared, want_shared)
        same = len({int(all_hashes[u]) for u in units[1:]}) < n_active
        assert may_repeat == has_repeat_pair(
            want_sizes, want_shared, lengths[1:], config.threshold,
            config.containment_threshold, config.min_contained_length)
        assert may_repeat or not same


@given(st.lists(st.text(alphabet="ab \t\r\n\x0b\x1c\x85\u2028\u3000ـ", max_size=30), min_size=1,
                max_size=4))
def test_document_units_are_split_units(texts):
    cps = codepoints("".join(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    starts, ends, lines, firsts = document_units(cps, offsets, SPACE_TABLE)
    for k, text in enumerate(texts):
        doc = split_units(text, "document")
        paras = split_units(text, "paragraph")
        lo, hi, base = firsts[k], firsts[k + 1], offsets[k]
        if len(doc):
            assert (starts[lo] - base, ends[lo] - base) == (doc.starts[0], doc.ends[0])
        else:
            assert starts[lo] == ends[lo]
        assert (starts[lo + 1:hi] - base).tolist() == paras.starts.tolist()
        assert (ends[lo + 1:hi] - base).tolist() == paras.ends.tolist()
        assert lines[lo + 1:hi].tolist() == paras.lines.tolist()


@given(st.lists(st.text(alphabet="abcـفيﬁ ", max_size=30), min_size=1, max_size=4),
       st.lists(st.text(alphabet="abcـفيﬁ ", max_size=30), min_size=1, max_size=4),
       st.sampled_from([CHAR, WORD]))
def test_overlaps_utf8_counts_shared_shingles_with_stored_text(ours, stored, mode):
    *_, raw, raw_offsets, _ = sketch(ours, mode, 3)
    encoded = [s.encode("utf-8") for s in stored]
    offsets = np.zeros(len(stored) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    stored_raw, stored_offsets = raw_shingles_utf8(data, offsets, 3, mode, SHINGLE_SEED)
    left = np.repeat(np.arange(raw_offsets.size - 1), len(stored))
    right = np.tile(np.arange(len(stored)), raw_offsets.size - 1)
    shared, left_sizes = overlaps_utf8(raw, raw_offsets, data, offsets, left, right, 3, mode,
                                       SHINGLE_SEED)
    for k, (i, j) in enumerate(zip(left.tolist(), right.tolist())):
        a = set(raw[raw_offsets[i]:raw_offsets[i + 1]].tolist())
        b = set(stored_raw[stored_offsets[j]:stored_offsets[j + 1]].tolist())
        assert shared[k] == len(a & b) and left_sizes[k] == len(a)


@given(st.lists(st.text(alphabet="abcـفيﬁ ", max_size=30), min_size=1, max_size=4),
       st.lists(st.text(alphabet="abcـفيﬁ ", max_size=30), min_size=1, max_size=4),
       st.sampled_from([CHAR, WORD]), st.sampled_from([0.3, 0.5, 0.8]),
       st.sampled_from([0.5, 0.9]), st.integers(0, 12))
def test_verify_utf8_gives_pair_similarities_and_is_edge(ours, stored, mode, threshold,
                                                         containment_threshold, min_length):
    """The index's one-call verification: the same floats as pair_similarities on sorted
    distinct sets, and the same decisions as is_edge."""
    *_, norm, norm_offsets, _, raw, raw_offsets, _ = sketch(ours, mode, 3)
    encoded = [s.encode("utf-8") for s in stored]
    offsets = np.zeros(len(stored) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    stored_raw, stored_offsets = raw_shingles_utf8(data, offsets, 3, mode, SHINGLE_SEED)
    sets = [sorted(set(raw[raw_offsets[i]:raw_offsets[i + 1]].tolist()))
            for i in range(raw_offsets.size - 1)]
    n_ours = len(sets)
    sets += [sorted(set(stored_raw[stored_offsets[j]:stored_offsets[j + 1]].tolist()))
             for j in range(len(stored))]
    stored_sizes = np.asarray([len(x) for x in sets[n_ours:]], dtype=np.int64)
    stored_lengths = np.asarray([len(x) for x in stored], dtype=np.int64)  # stand-ins
    # stored unit j has id 10 + 2j and kind j % 2; the pairs also name a missing id, 11
    stored_ids = 10 + 2 * np.arange(len(stored))
    stored_kinds = np.arange(len(stored)) % 2
    left = np.repeat(np.arange(n_ours), len(stored) + 1)
    right = np.tile(np.append(np.arange(len(stored)), -1), n_ours)
    right_ids = np.where(right >= 0, 10 + 2 * right, 11)
    config = Config(threshold=threshold, containment_threshold=containment_threshold,
                    min_contained_length=min_length)
    jaccard, containment, left_sizes, keep, inside = verify_utf8(
        raw, raw_offsets, norm_offsets, data, offsets, stored_ids, stored_kinds, stored_sizes,
        stored_lengths, left, right_ids, 1, 0, 3, mode, SHINGLE_SEED, config.threshold,
        config.containment_threshold, config.min_contained_length)
    # left unit 0 pairs with kind 1, the others with kind 0; the missing id with none
    found = (right >= 0) & (stored_kinds[right] == np.where(left == 0, 1, 0))
    set_offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in sets], out=set_offsets[1:])
    values = np.asarray([v for x in sets for v in x], dtype=np.uint64)
    want_jaccard, want_containment = pair_similarities(values, set_offsets, left[found],
                                                       right[found] + n_ours)
    shorter = np.minimum(np.diff(norm_offsets)[left[found]], stored_lengths[right[found]])
    assert np.array_equal(jaccard[found], want_jaccard)
    assert np.array_equal(containment[found], want_containment)
    assert np.array_equal(keep[found], is_edge(want_jaccard, want_containment, shorter, config))
    sizes = np.asarray([len(sets[i]) for i in left[found].tolist()], dtype=np.int64)
    assert left_sizes[found].tolist() == sizes.tolist()
    assert inside[found].tolist() == ((want_jaccard >= threshold)
                                      | (sizes <= stored_sizes[right[found]])).tolist()
    assert not keep[~found].any() and not inside[~found].any()
    assert (left_sizes[~found] == -1).all() and not jaccard[~found].any()


HASHES = st.integers(0, 2**64 - 1)


@given(st.lists(st.lists(HASHES, max_size=12), min_size=1, max_size=4))
def test_shingle_bits_marks_the_top_nine_bits_of_every_hash(units):
    raw = np.asarray([h for unit in units for h in unit], dtype=np.uint64)
    offsets = np.zeros(len(units) + 1, dtype=np.int64)
    np.cumsum([len(unit) for unit in units], out=offsets[1:])
    bits = shingle_bits(raw, offsets)
    for unit, row in zip(units, bits):
        marked = {w * 64 + b for w in range(8) for b in range(64) if int(row[w]) >> b & 1}
        assert marked == {h >> 55 for h in unit}


@given(st.data(), st.sampled_from([(0.8, 0.9), (0.5, 0.6), (0.3, 1.0)]))
def test_pair_bound_never_drops_a_repeat(data, thresholds):
    """pair_bound against the exact overlaps: a pair it drops has Jaccard and containment
    below the thresholds; unit 0 and stored units without a summary are always kept. Hashes
    share top bits often (few parts), so bounds are tight enough to drop pairs."""
    threshold, containment_threshold = thresholds
    part = st.integers(0, 5).map(lambda p: p << 55)
    hashes = st.builds(lambda p, low: p | low, part, st.integers(0, 40))
    ours = data.draw(st.lists(st.lists(hashes, max_size=15), min_size=1, max_size=4))
    stored = data.draw(st.lists(st.sets(hashes, min_size=1, max_size=15), min_size=1,
                                max_size=4))
    raw = np.asarray([h for unit in ours for h in unit], dtype=np.uint64)
    offsets = np.zeros(len(ours) + 1, dtype=np.int64)
    np.cumsum([len(unit) for unit in ours], out=offsets[1:])
    stored_raw = np.asarray([h for unit in stored for h in unit], dtype=np.uint64)
    stored_offsets = np.zeros(len(stored) + 1, dtype=np.int64)
    np.cumsum([len(unit) for unit in stored], out=stored_offsets[1:])
    # stored unit j has id j + 1; id len(stored) + 1 has no summary (size 0)
    sizes = np.asarray([0] + [len(unit) for unit in stored] + [0], dtype=np.int64)
    bits = np.concatenate((np.zeros((1, 8), np.uint64), shingle_bits(stored_raw, stored_offsets),
                           np.zeros((1, 8), np.uint64)))
    left = np.repeat(np.arange(len(ours)), len(stored) + 1)
    right_ids = np.tile(np.arange(1, len(stored) + 2), len(ours))
    keep = pair_bound(raw, offsets, left, right_ids, sizes, bits, threshold,
                      containment_threshold)
    for k, (i, j) in enumerate(zip(left.tolist(), right_ids.tolist())):
        if i == 0 or j == len(stored) + 1:
            assert keep[k]
            continue
        a, b = set(ours[i]), stored[j - 1]
        if not a:
            assert keep[k]
            continue
        jac, cont = reference.jaccard(a, b), reference.containment(a, b)
        if jac >= threshold or cont >= containment_threshold:
            assert keep[k], (a, b)


def test_pair_bound_drops_units_in_other_parts():
    # paragraph 1's shingles lie in part 0, the stored unit's in part 1: nothing can be shared
    raw = np.asarray([5, 1, 2, 3, 4], dtype=np.uint64)
    offsets = np.array([0, 1, 5])
    stored = np.asarray([(1 << 55) | 1, (1 << 55) | 2], dtype=np.uint64)
    bits = np.concatenate((np.zeros((1, 8), np.uint64), shingle_bits(stored, np.array([0, 2]))))
    keep = pair_bound(raw, offsets, np.array([0, 1]), np.array([1, 1]), np.array([0, 2]), bits,
                      0.8, 0.9)
    assert keep.tolist() == [True, False]  # unit 0, the document, is always kept


@settings(max_examples=300)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
                min_size=1, max_size=6), st.data())
def test_pack_utf8_gives_back_every_unit(units, data):
    """Each chosen unit's UTF-8 is a span of the packed text, which holds the first unit's
    bytes and then those of the later units the first does not contain (a paragraph inside
    its document adds nothing)."""
    # some units are cut out of the first, as paragraphs are out of their document
    for k in range(1, len(units)):
        if units[0] and data.draw(st.booleans()):
            lo = data.draw(st.integers(0, len(units[0]) - 1))
            units[k] = units[0][lo:data.draw(st.integers(lo + 1, len(units[0])))]
    values = np.asarray([ord(c) for u in units for c in u], dtype=np.int32)
    offsets = np.zeros(len(units) + 1, dtype=np.int64)
    np.cumsum([len(u) for u in units], out=offsets[1:])
    chosen = data.draw(st.lists(st.integers(0, len(units) - 1), min_size=1, max_size=6))
    packed, starts, ends = pack_utf8(values, offsets, np.asarray(chosen, dtype=np.int64))
    packed = packed.tobytes()
    assert [packed[a:b] for a, b in zip(starts, ends)] == [units[u].encode() for u in chosen]
    first = units[chosen[0]]
    assert len(packed) == len(first.encode()) + sum(
        len(units[u].encode()) for u in chosen[1:] if units[u] not in first)


def test_pack_utf8_finds_paragraphs_in_order_and_out_of_order():
    text = "ab ab ac\u0634\u0644 x"
    units = [text, "ab ac", "ac\u0634", "ab", "zz"]  # "ab" occurs before the cursor too
    values = np.asarray([ord(c) for u in units for c in u], dtype=np.int32)
    offsets = np.cumsum([0] + [len(u) for u in units]).astype(np.int64)
    packed, starts, ends = pack_utf8(values, offsets, np.arange(5, dtype=np.int64))
    packed = packed.tobytes()
    assert packed == (text + "zz").encode()
    assert [packed[a:b].decode() for a, b in zip(starts, ends)] == units
    assert starts[1] == 3 and starts[3] == 0  # after the cursor first, else from the start


@settings(max_examples=300)
@given(st.data())
def test_store_units_decides_what_the_index_stores(data):
    """store_units against a plain reference: ids (an exact copy's, a paragraph met earlier in
    the text, else new in order), distinct sizes (given or counted), shingle_bits rows, and
    whether every new unit joins under all its band keys."""
    n_units = data.draw(st.integers(1, 6))
    n_bands = data.draw(st.integers(1, 3))
    hashes = data.draw(st.lists(st.integers(0, 3), min_size=n_units, max_size=n_units))
    lengths = data.draw(st.lists(st.integers(0, 2), min_size=n_units, max_size=n_units))
    exact = data.draw(st.lists(st.sampled_from([-1, -1, 40, 41]), min_size=n_units,
                               max_size=n_units))
    units_raw = [data.draw(st.lists(st.integers(0, 2**64 - 1) | st.sampled_from([1, 2, 3]),
                                    min_size=1 if n else 0, max_size=6)) for n in lengths]
    keys = np.asarray(data.draw(st.lists(st.lists(st.integers(0, 4), min_size=n_bands,
                                                  max_size=n_bands),
                                         min_size=n_units, max_size=n_units)), dtype=np.int64)
    counts = np.asarray(data.draw(st.lists(st.lists(st.integers(0, 5), min_size=n_bands,
                                                    max_size=n_bands),
                                           min_size=n_units, max_size=n_units)), dtype=np.int64)
    known = np.asarray([data.draw(st.sampled_from([-1, len(set(r))])) for r in units_raw],
                       dtype=np.int64)
    max_bucket = data.draw(st.integers(2, 10))
    norm_offsets = np.cumsum([0] + lengths).astype(np.int64)
    raw = np.asarray([h for r in units_raw for h in r], dtype=np.uint64)
    raw_offsets = np.cumsum([0] + [len(r) for r in units_raw]).astype(np.int64)
    exact = [e if n else -1 for e, n in zip(exact, lengths)]  # probe_units' -1 when inactive
    ids, new, sizes, bits, roomy, placed = store_units(
        np.asarray(hashes, dtype=np.uint64), norm_offsets, np.asarray(exact, dtype=np.int64),
        100, raw, raw_offsets, keys, counts, max_bucket, known)
    want_ids, want_new, given = [], [], {}
    for u in range(n_units):
        kind = 0 if u == 0 else 1
        if not lengths[u]:
            want_ids.append(-1)
        elif exact[u] >= 0:
            want_ids.append(exact[u])
        elif (hashes[u], kind) in given:
            want_ids.append(given[(hashes[u], kind)])
        else:
            want_ids.append(given.setdefault((hashes[u], kind), 100 + len(want_new)))
            want_new.append(u)
        if lengths[u] and exact[u] >= 0:
            given.setdefault((hashes[u], kind), exact[u])
    assert ids.tolist() == want_ids and new.tolist() == want_new
    assert sizes.tolist() == [len(set(units_raw[u])) for u in want_new]
    assert bits.tolist() == shingle_bits(raw, raw_offsets)[want_new].tolist()
    want_roomy = (counts.max() + sum(1 for n in lengths if n) <= max_bucket
                  and all(len(set(keys[u].tolist())) == n_bands for u in want_new))
    assert roomy == want_roomy
    if roomy:
        assert placed.tolist() == keys[want_new].ravel().tolist()

