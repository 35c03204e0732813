"""dedup.Index: answers equal the batch path's fed one document at a time, crash safety,
threads and processes, bad input."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np
import pytest
import zstandard

import dedup
from dedup import Config, ConfigError, Index, InputError
from dedup.pipeline import (
    CONTAINED, EXACT, NEAR, codepoints, exact_classes, prepare, unit_band_keys, verified_edges,
)
from dedup.units import split_units

REPO = Path(__file__).resolve().parent.parent
_RANK = {EXACT: 0, NEAR: 1, CONTAINED: 2}


# ---- a generated corpus with every kind of repeat -------------------------------------------

def _vocabulary(rng, size=4000):
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(size)]


def _paragraph(rng, words, low=8, high=40):
    n = int(rng.integers(low, high))
    # Zipf-like: a few words are frequent, as in prose
    picks = np.minimum(rng.zipf(1.3, n) - 1, len(words) - 1)
    text = " ".join(words[i] for i in picks)
    return text[0].upper() + text[1:] + "."


def _edit(rng, paragraph, words, n_changes):
    tokens = paragraph.split(" ")
    for _ in range(n_changes):
        tokens[int(rng.integers(len(tokens)))] = words[int(rng.integers(len(words)))]
    return " ".join(tokens)


def generate_corpus(rng, n_docs):
    """Documents of 1-6 paragraphs (one per line, sometimes blank lines between): fresh ones,
    exact copies with other case and punctuation, light edits, subsets of paragraphs
    (contained), reused and edited paragraphs, shared footers, titles printed twice."""
    words = _vocabulary(rng)
    footers = [f"All rights reserved, copyright {year} by the news agency of record."
               for year in range(2015, 2020)]
    docs = []
    for _ in range(n_docs):
        roll = rng.random()
        if docs and roll < 0.08:
            source = docs[int(rng.integers(len(docs)))]
            text = source.upper().replace(".", " !")  # same normalized text
        elif docs and roll < 0.22:
            paras = docs[int(rng.integers(len(docs)))].split("\n")
            text = "\n".join(_edit(rng, p, words, int(rng.integers(0, 2))) if p else p
                             for p in paras)
        elif docs and roll < 0.28:
            paras = [p for p in docs[int(rng.integers(len(docs)))].split("\n") if p]
            keep = max(1, len(paras) - 1)
            text = "\n".join(paras[:keep])
        else:
            paras = [_paragraph(rng, words) for _ in range(int(rng.integers(1, 7)))]
            if docs and rng.random() < 0.3:  # a paragraph reused from an earlier document
                other = [p for p in docs[int(rng.integers(len(docs)))].split("\n") if p]
                reused = other[int(rng.integers(len(other)))]
                if rng.random() < 0.5:
                    reused = _edit(rng, reused, words, 1)
                paras.insert(int(rng.integers(len(paras) + 1)), reused)
            if rng.random() < 0.15:
                paras.append(footers[int(rng.integers(len(footers)))])
            if rng.random() < 0.1:
                paras.insert(2 if len(paras) > 2 else len(paras), paras[0])  # title twice
            if rng.random() < 0.05:
                paras.insert(1, "* * *")  # normalizes to nothing
            sep = "\n\n" if rng.random() < 0.3 else "\n"
            text = sep.join(paras)
        docs.append(text)
    return docs


# ---- the batch path, over the whole corpus at once ------------------------------------------

class Batch:
    """Exact classes and LSH-verified edges of the batch path over a list of units."""

    def __init__(self, text, starts, ends, config):
        self.prepared = prepare(codepoints(text), np.asarray(starts), np.asarray(ends), config)
        active = np.flatnonzero(self.prepared.norm_lengths > 0)
        self.heads, self.head_of = exact_classes(self.prepared, active)
        lsh = replace(config, exhaustive_pairs=0)  # the LSH path, with the index's bands
        # star buckets would make the batch path drop pairs the index keeps: keep them away
        keys = unit_band_keys(*self._head_shingles(), config)
        for column in keys.T:
            assert np.unique(column, return_counts=True)[1].max() <= config.max_bucket
        edges = verified_edges(self.prepared, self.heads, lsh)
        self.neighbours = {}
        for a, b, jac, cont in zip(edges.left.tolist(), edges.right.tolist(),
                                   edges.jaccard.tolist(), edges.containment.tolist()):
            self.neighbours.setdefault(a, {})[b] = (jac, cont)
            self.neighbours.setdefault(b, {})[a] = (jac, cont)
        self.members = {}
        for unit in active.tolist():
            self.members.setdefault(int(self.head_of[unit]), []).append(unit)

    def _head_shingles(self):
        from dedup.pipeline import subset_csr
        return subset_csr(self.prepared.shingles, self.prepared.shingle_offsets, self.heads)

    def related(self, unit, config):
        """(head, kind, similarity, is_unit_inside) for every class related to `unit`."""
        head = int(self.head_of[unit])
        if head < 0:
            return []
        sizes = self.prepared.sizes
        found = [(head, EXACT, 1.0, True)]
        for other, (jac, cont) in self.neighbours.get(head, {}).items():
            kind, sim = (NEAR, jac) if jac >= config.threshold else (CONTAINED, cont)
            found.append((other, kind, sim, kind == NEAR or sizes[unit] <= sizes[other]))
        return found


def expected_answers(docs, config):
    """For each document in order, the verdict the index must give when fed the documents one
    at a time: (document matches, paragraph repeats), from the batch path's classes and edges."""
    offsets = np.cumsum([0] + [len(t) for t in docs])
    text = "".join(docs)
    doc_spans = [split_units(t, "document") for t in docs]
    doc_batch = Batch(text, [offsets[d] + int(s.starts[0]) for d, s in enumerate(doc_spans)],
                      [offsets[d] + int(s.ends[0]) for d, s in enumerate(doc_spans)], config)
    para_units = [split_units(t, "paragraph") for t in docs]
    starts, ends, owner, first_unit = [], [], [], []
    for d, units in enumerate(para_units):
        first_unit.append(len(starts))
        for k in range(len(units)):
            starts.append(offsets[d] + int(units.starts[k]))
            ends.append(offsets[d] + int(units.ends[k]))
            owner.append(d)
    para_batch = Batch(text, starts, ends, config)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # a thousand small flag() calls: a thread pool only costs
    try:
        return _answers(docs, config, doc_batch, para_batch, para_units, first_unit, owner)
    finally:
        numba.set_num_threads(threads)


def _answers(docs, config, doc_batch, para_batch, para_units, first_unit, owner):
    answers = []
    for j, doc in enumerate(docs):
        matches = []
        for head, kind, sim, inside in doc_batch.related(j, config):
            earlier = [m for m in doc_batch.members[head] if m < j]
            if earlier:
                matches.append((str(head), kind, sim, inside, len(earlier)))
        repeats = []
        flags = dedup.flag(doc, config)
        for k in range(len(para_units[j])):
            unit = first_unit[j] + k
            best = None
            for head, kind, sim, inside in para_batch.related(unit, config):
                if owner[head] < j and inside:
                    rank = (_RANK[kind], -sim, head)
                    if best is None or rank < best[0]:
                        best = (rank, head, kind, sim)
            span = (int(para_units[j].starts[k]), int(para_units[j].ends[k]),
                    int(para_units[j].lines[k]))
            if best is not None:
                _, head, kind, sim = best
                d = owner[head]
                local = head - first_unit[d]
                units = para_units[d]
                repeats.append((*span, kind, sim, str(d), int(units.starts[local]),
                                int(units.ends[local]), int(units.lines[local])))
            elif flags[k].kind is not None:
                f = flags[k]
                repeats.append((*span, f.kind, f.similarity, None, f.repeats_start,
                                f.repeats_end, f.repeats_line))
        answers.append((sorted(matches), repeats))
    return answers


def as_answer(verdict):
    matches = sorted((m.key, m.kind, m.similarity, m.is_inside_stored, m.copies)
                     for m in verdict.matches)
    repeats = [(p.start, p.end, p.line, p.kind, p.similarity, p.key, p.repeats_start,
                p.repeats_end, p.repeats_line) for p in verdict.paragraphs]
    return matches, repeats


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(np.random.default_rng(20261129), 1500)


@pytest.fixture(scope="module")
def config():
    return Config()


@pytest.fixture(scope="module")
def expected(corpus, config):
    return expected_answers(corpus, config)


@pytest.fixture(scope="module")
def fed(tmp_path_factory, corpus):
    """The corpus added one document at a time, and the verdicts."""
    path = tmp_path_factory.mktemp("fed") / "corpus.idx"
    with Index.open(path) as index:
        verdicts = [index.add(str(i), text) for i, text in enumerate(corpus)]
    return path, verdicts


# ---- answers equal the batch path ------------------------------------------------------------

def test_corpus_has_every_kind_of_repeat(expected):
    doc_kinds = {m[1] for matches, _ in expected for m in matches}
    para_kinds = {(r[3], r[5] is None) for _, repeats in expected for r in repeats}
    assert doc_kinds == {EXACT, NEAR, CONTAINED}
    assert {(EXACT, False), (NEAR, False), (CONTAINED, False), (EXACT, True)} <= para_kinds


def test_answers_equal_the_batch_path_one_document_at_a_time(fed, expected):
    _, verdicts = fed
    mismatches = [(i, as_answer(v), expected[i]) for i, v in enumerate(verdicts)
                  if as_answer(v) != expected[i]]
    assert not mismatches, mismatches[:3]


def test_matches_are_best_first(fed):
    for verdict in fed[1]:
        ranks = [(_RANK[m.kind], -m.similarity) for m in verdict.matches]
        assert ranks == sorted(ranks)


def test_index_never_reports_what_brute_force_rejects(corpus, fed, config):
    """Every reported document pair checked on Python sets, from the definition."""
    sys.path.insert(0, str(Path(__file__).parent))
    import reference

    def shingles(text):
        norm = reference.normalize(split_text(text), keep_separators=False)
        return reference.char_shingles(norm, config.ngram), len(norm)

    def split_text(text):
        units = split_units(text, "document")
        return text[int(units.starts[0]):int(units.ends[0])]

    checked = 0
    for j, verdict in enumerate(fed[1][:600]):
        a, length_a = shingles(corpus[j])
        for match in verdict.matches:
            b, length_b = shingles(corpus[int(match.key)])
            jac = reference.jaccard(a, b)
            assert jac == pytest.approx(match.jaccard)
            assert reference.containment(a, b) == pytest.approx(match.containment)
            assert jac >= config.threshold or (
                match.containment >= config.containment_threshold
                and min(length_a, length_b) >= config.min_contained_length)
            checked += 1
    assert checked > 50


def test_reopened_index_answers_the_same(fed, corpus, expected):
    path, _ = fed
    with Index.open(path) as index:
        assert len(index) == len(corpus)
        assert index.integrity_check() == []
        # a document already stored, checked again: it now matches itself (key = first copy)
        verdict = index.check(corpus[5])
        assert verdict.is_duplicate and verdict.matches[0].kind == EXACT


def test_add_many_equals_one_at_a_time(tmp_path, corpus, fed):
    with Index.open(tmp_path / "many.idx") as index:
        verdicts = []
        for lo in range(0, 300, 64):
            verdicts += index.add_many((str(i), corpus[i]) for i in range(lo, min(lo + 64, 300)))
    assert [as_answer(v) for v in verdicts] == [as_answer(v) for v in fed[1][:300]]


def test_matches_deduplicate_when_present(corpus, fed, config):
    """Every record the batch `dedup.deduplicate` removes as an exact or near copy pairs with
    its kept copy in the index too: the later of the two, when fed, matches the earlier (or the
    first copy of its normalized text) with the same kind and similarity. (The batch may keep
    the later one: a copy contained in a larger one is never kept.)"""
    deduplicate = getattr(dedup, "deduplicate", None)
    if deduplicate is None:
        pytest.skip("dedup.deduplicate (issue 3) is not there yet")
    docs = corpus[:600]
    result = deduplicate(list(enumerate(docs)), replace(config, unit="document"))
    removed = [d for d in result.duplicates if d.start is None and d.kind in (EXACT, NEAR)]
    assert len(removed) > 50
    for row in removed:
        earlier, later = sorted((int(row.id), int(row.dup_of)))
        found = [m for m in fed[1][later].matches
                 if (m.kind, m.similarity) == (row.kind, row.similarity)]
        assert any(m.key == str(earlier) or dedup.explain(docs[int(m.key)], docs[earlier])
                   .verdict == EXACT for m in found), row


# ---- behaviour of add, remove, check --------------------------------------------------------

ARTICLE = "Breaking: the river flooded the old town\nResidents were moved to the school " \
          "on the hill overnight, officials said.\nBreaking: the river flooded the old town"


def test_add_is_idempotent_per_key(tmp_path):
    with Index.open(tmp_path / "a.idx") as index:
        first = index.add("a", ARTICLE)
        again = index.add("a", ARTICLE)
        assert first.is_added and not again.is_added
        assert (first.matches, first.paragraphs) == (again.matches, again.paragraphs)
        assert len(index) == 1 and "a" in index and "b" not in index and 3 not in index
        assert index.stats()["paragraphs"] == 3


def test_same_key_with_another_text_is_an_error_or_a_replacement(tmp_path):
    with Index.open(tmp_path / "a.idx") as index:
        index.add("a", ARTICLE)
        with pytest.raises(InputError, match="already stored with a different text"):
            index.add("a", "Something else entirely, long enough to be a document.")
        assert index.check(ARTICLE).duplicate_of == "a"  # unchanged
        index.add("a", "Something else entirely, long enough to be a document.", replace=True)
        assert len(index) == 1 and not index.check(ARTICLE).is_duplicate
        assert index.integrity_check() == []


def test_replacing_with_a_text_that_keeps_some_paragraphs(tmp_path):
    """The old text's units die inside the replacing transaction: the paragraphs both texts
    hold are stored anew, not matched against (or counted onto) the dead rows."""
    kept = ARTICLE.split("\n")
    edited = "\n".join(kept[:-1] + ["A closing paragraph written for the new version only."])
    with Index.open(tmp_path / "a.idx") as index:
        index.add("a", ARTICLE)
        verdict = index.add("a", edited, replace=True)
        assert verdict.is_added and not verdict.is_duplicate and verdict.paragraphs == ()
        assert index.integrity_check() == []
        assert index.check(edited).duplicate_of == "a"
        repeat = index.check(kept[0] + "\nSomething new and unrelated to the rest.").paragraphs
        assert [(r.key, r.repeats_start) for r in repeat] == [("a", 0)]


@pytest.mark.parametrize("damage, problem", [
    ("DELETE FROM paragraphs WHERE position = 1", "paragraph unit no paragraph uses"),
    ("DELETE FROM units WHERE kind = 1 AND id = (SELECT unit FROM paragraphs "
     "WHERE position = 1)", "paragraph refers to a missing unit"),
    ("UPDATE docs SET unit = NULL", "document unit no document uses"),
    ("UPDATE units SET hash = 7 WHERE kind = 1", "units with the same normalized text"),
    ("UPDATE units SET bands = x'00' WHERE kind = 0", "unit with a malformed band list"),
    ("DELETE FROM docs", "paragraph refers to a missing document"),
    ("UPDATE units SET bits = x'00' WHERE kind = 1", "unit with a malformed shingle summary"),
    ("UPDATE units SET bits = zeroblob(64) WHERE kind = 0", "gives another shingle summary"),
    ("UPDATE units SET norm = NULL WHERE kind = 0", "unit whose holder holds no text"),
    ("UPDATE units SET norm = x'00' WHERE kind = 1", "unit holding a text that is not its"),
    ("UPDATE units SET norm = x'00' WHERE kind = 0", "its text is missing"),
    ("UPDATE units SET end = end + 1000 WHERE kind = 1", "its text is missing"),
    ("UPDATE docs SET paragraphs = x'00'", "document whose paragraphs differ"),
    ("UPDATE paragraphs SET position = 5 WHERE position = 1", "document whose paragraphs differ"),
])
def test_integrity_check_names_what_is_damaged(tmp_path, damage, problem):
    path = tmp_path / "a.idx"
    with Index.open(path) as index:
        index.add("a", "A first paragraph of the story.\nA second paragraph, other words.")
        assert index.integrity_check() == []
    conn = sqlite3.connect(path)
    conn.execute(damage)
    conn.commit()
    conn.close()
    with Index.open(path, read_only=True) as index:
        assert any(problem in line for line in index.integrity_check())


def test_unit_texts_are_spans_of_their_holders_text():
    from dedup.index import _unit_texts
    blob = zstandard.ZstdCompressor().compress(b"the document, its paragraph")
    rows = [(7, 0, 12, blob), (7, 14, 27, blob), (7, 0, 28, blob), (8, 0, 1, None),
            (9, 0, 1, b"not zstd")]
    assert _unit_texts(rows) == [b"the document", b"its paragraph", None, None, None]


SHARED = ["A shared paragraph that both of the stories quote word for word.",
          "Another shared paragraph, the second one that the two stories repeat."]


def test_removing_the_holder_of_a_shared_text_hands_it_over(tmp_path):
    """The units one add stores share one compressed text, held by the first of them (here
    the document's unit). Removing that document leaves its paragraphs that another document
    uses: the first of them takes the text over, and both still verify against it."""
    first = "\n".join(["The first story opens with words of its own."] + SHARED
                      + ["A closing line that only the first story has."])
    second = "\n".join(["The second story begins in another way entirely."] + SHARED)
    with Index.open(tmp_path / "a.idx") as index:
        index.add("a", first)
        index.add("b", second)
        assert index.remove("a")
        assert index.integrity_check() == []
        for shared in SHARED:  # a near copy: verified on the stored text, not exact
            near = shared.replace("the", "those", 1)
            repeats = index.check("Something unrelated to either of the stories.\n" + near)
            assert [(r.key, r.kind) for r in repeats.paragraphs] == [("b", NEAR)]
        assert index.remove("b") and len(index) == 0
        assert index.integrity_check() == []


def test_unit_ids_are_never_given_twice(tmp_path):
    """Removing the newest document frees the largest unit ids; the next add must not take
    them again: another handle still counts them among the removed units."""
    path = tmp_path / "a.idx"
    first, second = "\n".join(SHARED), "\n".join(s.upper() + " Again." for s in SHARED)
    with Index.open(path) as index, Index.open(path) as other:
        index.add("a", first)
        assert other.check(first).duplicate_of == "a"  # loads its buckets, with a's units
        largest = sqlite3.connect(path).execute("SELECT max(id) FROM units").fetchone()[0]
        assert index.remove("a")
        assert other.check(first).duplicate_of is None  # takes in the removal
        index.add("b", second)
        ids = [i for (i,) in sqlite3.connect(path).execute("SELECT id FROM units")]
        assert min(ids) > largest
        assert other.check(second).duplicate_of == "b"
    with Index.open(path) as index:  # a new handle reads the same from the file
        index.remove("b")
        index.add("c", first)
        ids = [i for (i,) in sqlite3.connect(path).execute("SELECT id FROM units")]
        assert min(ids) > largest + len(SHARED) + 1


@pytest.mark.parametrize("damage, text, message", [
    ("UPDATE units SET norm = NULL", SHARED[0].replace("the", "those", 1),
     "damaged: the text of unit"),
    ("UPDATE docs SET paragraphs = x''", "Something else entirely, on a line of its own.\n"
     + SHARED[0], "damaged: document 'a' lacks a paragraph"),
])
def test_a_check_that_meets_damage_says_so(tmp_path, damage, text, message):
    """A stored text that is gone (to verify a near copy against), a paragraph list that
    lacks the row the paragraphs table names (to name an exact copy's place): a clear error."""
    path = tmp_path / "a.idx"
    with Index.open(path) as index:
        index.add("a", "\n".join(SHARED))
    conn = sqlite3.connect(path)
    conn.execute(damage)
    conn.commit()
    conn.close()
    with Index.open(path, read_only=True) as index:
        with pytest.raises(InputError, match=message):
            index.check(text)


def test_remove_leaves_what_a_fresh_index_would_hold(tmp_path, corpus):
    with Index.open(tmp_path / "a.idx") as index, Index.open(tmp_path / "b.idx") as fresh:
        for i in range(80):
            index.add(str(i), corpus[i])
            if i % 3:
                fresh.add(str(i), corpus[i])
        for i in range(0, 80, 3):
            assert index.remove(str(i))
        assert not index.remove("0") and not index.remove("missing")
        assert index.integrity_check() == []
        stats, fresh_stats = index.stats(), fresh.stats()
        for name in ("documents", "paragraphs", "distinct_documents", "distinct_paragraphs",
                     "band_rows"):
            assert stats[name] == fresh_stats[name], name
        for text in corpus[80:140]:
            assert as_answer(index.check(text)) == as_answer(fresh.check(text))


def test_a_second_handle_follows_adds_and_removes_made_through_another(tmp_path, corpus):
    # each Index keeps its LSH buckets in memory: a second handle on the same file (as in
    # another process) must take in what the first one committed, removals included
    path = tmp_path / "a.idx"
    with Index.open(path) as writer, Index.open(path) as other, \
            Index.open(tmp_path / "b.idx") as fresh:
        assert len(other) == 0
        for i in range(60):
            writer.add(str(i), corpus[i])
            if i % 4:
                fresh.add(str(i), corpus[i])
        for i in range(0, 60, 4):
            assert writer.remove(str(i))
        with pytest.raises(InputError, match="different text"):  # rolled back after 10 adds
            writer.add_many([(f"x{i}", corpus[i]) for i in range(60, 70)] + [("1", "other")])
        for text in corpus[60:120]:
            assert as_answer(other.check(text)) == as_answer(fresh.check(text))
            assert as_answer(writer.check(text)) == as_answer(fresh.check(text))
        verdicts = other.add_many((str(i), corpus[i]) for i in range(60, 90))
        assert [as_answer(v) for v in verdicts] == [
            as_answer(fresh.add(str(i), corpus[i])) for i in range(60, 90)]
        assert other.stats()["band_rows"] == fresh.stats()["band_rows"]
        assert writer.integrity_check() == []

def test_verdict_parts_made_without_init_equal_those_made_with_it():
    from dataclasses import FrozenInstanceError

    from dedup.results import DocumentMatch, ParagraphRepeat, maker
    for cls, values in ((ParagraphRepeat, (1, 9, 2, NEAR, 0.91, "k", 0, 8, 1)),
                        (DocumentMatch, ("k", EXACT, 1.0, 1.0, 1.0, True, 3))):
        made, usual = maker(cls)(*values), cls(*values)
        assert made == usual and hash(made) == hash(usual) and repr(made) == repr(usual)
        assert made.to_dict() == usual.to_dict()
        with pytest.raises(FrozenInstanceError):
            made.key = "other"


def test_verdict_to_dict_is_json(tmp_path):
    with Index.open(tmp_path / "a.idx") as index:
        index.add("a", ARTICLE)
        verdict = index.add("b", ARTICLE + "\nA new closing line for the second copy.")
    data = json.loads(json.dumps(verdict.to_dict()))
    assert data["key"] == "b" and data["matches"][0]["key"] == "a"
    assert data["matches"][0]["kind"] == CONTAINED and not data["is_duplicate"]
    assert [p["line"] for p in data["paragraphs"]] == [1, 2, 3]
    assert verdict.paragraphs[2].key == "a" and verdict.paragraphs[2].repeats_line == 1


def test_text_that_normalizes_to_nothing_is_stored_and_matches_nothing(tmp_path):
    with Index.open(tmp_path / "a.idx") as index:
        assert index.add("stars", "* * *\n---").is_new
        assert index.check("* * *").is_new and len(index) == 1
        assert index.integrity_check() == []


def test_settings_other_than_compatibility_may_change(tmp_path):
    path = tmp_path / "a.idx"
    Index.open(path).close()
    bands, rows = Config().band_rows
    with Index.open(path, Config(threshold=0.7, bands=bands, rows=rows)) as index:
        assert index.config.threshold == 0.7
    with Index.open(path) as index:
        assert index.config == Config()


# ---- threads and processes ------------------------------------------------------------------

def test_threads_add_and_check_at_once(tmp_path, corpus):
    path = tmp_path / "threads.idx"
    errors = []
    with Index.open(path) as index:
        def work(part):
            try:
                for i in range(part, 120, 4):
                    index.add(str(i), corpus[i])
                    index.check(corpus[(i * 7) % 120])
                    len(index)
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)
        threads = [threading.Thread(target=work, args=(part,)) for part in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(index) == 120 and index.integrity_check() == []
        assert sorted(index.keys(), key=int) == [str(i) for i in range(120)]


READER = """
import sys
sys.path.insert(0, sys.argv[1])
from dedup import Index
with Index.open(sys.argv[2], read_only=True) as index:
    for line in sys.stdin:
        print(len(index), index.check(line.replace("|", "\\n")).duplicate_of, flush=True)
"""


def test_reader_processes_see_committed_documents(tmp_path, corpus):
    path = tmp_path / "shared.idx"
    with Index.open(path) as writer:
        writer.add("0", corpus[0])
        readers = [subprocess.Popen([sys.executable, "-c", READER, str(REPO), str(path)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                   for _ in range(2)]
        probe = corpus[1].replace("\n", "|") + "\n"
        for reader in readers:
            reader.stdin.write(probe)
            reader.stdin.flush()
            assert reader.stdout.readline().split() == ["1", "None"]
        writer.add("1", corpus[1])
        for reader in readers:
            reader.stdin.write(probe)
            reader.stdin.flush()
            assert reader.stdout.readline().split() == ["2", "1"]
            reader.stdin.close()
            assert reader.wait(timeout=60) == 0
        with pytest.raises(InputError, match="read_only"):
            with Index.open(path, read_only=True) as reader_index:
                reader_index.add("2", corpus[2])


TWO_WRITERS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from dedup import Index
texts = json.load(open(sys.argv[3], encoding="utf-8"))
with Index.open(sys.argv[2]) as index:
    for i in range(int(sys.argv[4]), len(texts), 2):
        index.add(str(i), texts[i])
"""


def test_two_writer_processes_take_turns(tmp_path, corpus):
    """SQLite serializes writers: two processes adding at once lose and corrupt nothing."""
    path = tmp_path / "two.idx"
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(corpus[:120]), encoding="utf-8")
    Index.open(path).close()
    writers = [subprocess.Popen([sys.executable, "-c", TWO_WRITERS, str(REPO), str(path),
                                 str(texts), str(part)]) for part in (0, 1)]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    with Index.open(path) as index:
        assert sorted(index.keys(), key=int) == [str(i) for i in range(120)]
        assert index.integrity_check() == []


# ---- crash safety ---------------------------------------------------------------------------

WRITER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from dedup import Index
texts = json.load(open(sys.argv[3], encoding="utf-8"))
start = int(sys.argv[4])
with Index.open(sys.argv[2]) as index:
    print("ready", flush=True)
    for i in range(start, len(texts)):
        index.add(str(i), texts[i])
        print(i, flush=True)
"""


def test_killed_writer_leaves_exactly_the_returned_documents(tmp_path, corpus, rng):
    path = tmp_path / "crash.idx"
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(corpus[:1500]), encoding="utf-8")
    Index.open(path).close()  # compile and create outside the timed part
    returned = []
    for _ in range(5):
        start = int(returned[-1]) + 1 if returned else 0
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(REPO), str(path), str(texts), str(start)],
            stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        import time
        time.sleep(float(rng.uniform(0.05, 0.6)))  # only to land the kill at a random point
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        returned += [line.strip() for line in child.stdout]
        child.stdout.close()
        with Index.open(path) as index:
            assert index.integrity_check() == []
            stored = index.keys()
        in_flight = str(int(returned[-1]) + 1) if returned else str(start)
        assert set(returned) <= set(stored) <= set(returned) | {in_flight}
        if set(stored) != set(returned):  # committed, killed before it could say so
            returned.append(in_flight)
    assert len(returned) > 5


# ---- bad input ------------------------------------------------------------------------------

def test_a_directory_is_refused(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        Index.open(tmp_path)
    with pytest.raises(InputError, match="is a directory"):
        Index.open(f"{tmp_path}/new/")
    with pytest.raises(InputError, match="path must be a str or os.PathLike, got int"):
        Index.open(3)


def test_a_file_that_is_not_an_index_is_refused_and_kept(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(InputError, match="not a dedup index"):
        Index.open(path)
    assert path.read_text(encoding="utf-8") == "just some notes\n"
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(InputError, match="SQLite database, but not a dedup index"):
        Index.open(other)


def test_a_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "a.idx"
    Index.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(InputError, match="format version 99 was written by a newer dedup"):
        Index.open(path)


def test_an_older_format_version_is_refused(tmp_path):
    path = tmp_path / "a.idx"
    Index.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 1")  # version 1 kept band rows in a table
    with pytest.raises(InputError, match="format version 1 was written by an older dedup"):
        Index.open(path)


@pytest.mark.parametrize("name, value, message", [
    ("normalization_version", "1", "normalization version 1"),
    ("fingerprint", "0123456789abcdef", "hashing differs"),
])
def test_an_index_of_another_engine_is_refused(tmp_path, name, value, message):
    path = tmp_path / "a.idx"
    Index.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))
    with pytest.raises(InputError, match=message):
        Index.open(path)


@pytest.mark.parametrize("change, message", [
    ({"ngram": 4}, "ngram=4 \\(index: 5\\)"),
    ({"shingle": "word"}, "shingle='word'"),
    ({"num_perm": 64}, "num_perm=64"),
    ({"seed": 7}, "seed=7"),
    ({"threshold": 0.6}, "give bands=16, rows=6"),
])
def test_other_compatibility_settings_are_refused(tmp_path, change, message):
    path = tmp_path / "a.idx"
    Index.open(path).close()
    with pytest.raises(ConfigError, match=message):
        Index.open(path, Config(**change))


def test_a_location_that_cannot_be_written(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Index.open(tmp_path / "missing" / "a.idx")
    with pytest.raises(InputError, match="no such index"):
        Index.open(tmp_path / "absent.idx", read_only=True)
    if Path("/proc/version").exists():  # read-only even for root
        with pytest.raises(InputError):
            Index.open("/proc/dedup-test.idx")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot write"):
            Index.open(folder / "a.idx")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("key, text, message", [
    ("a", "", "text of 'a' is empty"),
    ("a", "   \n\t", "is empty"),
    ("a", None, "must be a str, got NoneType"),
    ("a", b"bytes", "must be a str, got bytes"),
    ("", "text", "key must be a non-empty str"),
    (7, "text", "key must be a non-empty str, got 7"),
])
def test_bad_keys_and_texts(tmp_path, key, text, message):
    with Index.open(tmp_path / "a.idx") as index:
        with pytest.raises(InputError, match=message):
            index.add(key, text)
        assert len(index) == 0


def test_check_of_bad_text_and_closed_index(tmp_path):
    index = Index.open(tmp_path / "a.idx")
    with pytest.raises(InputError, match="text must be a str"):
        index.check(3)
    with pytest.raises(InputError, match="text is empty"):
        index.check("")
    index.close()
    index.close()
    with pytest.raises(InputError, match="closed"):
        index.check("hello there")


def test_a_bad_item_in_add_many_stores_nothing(tmp_path):
    with Index.open(tmp_path / "a.idx") as index:
        with pytest.raises(InputError):
            index.add_many([("a", ARTICLE), ("b", "")])
        index.add("a", ARTICLE)
        with pytest.raises(InputError, match="different text"):
            index.add_many([("c", "A third document, new."), ("a", "other text")])
        assert index.keys() == ["a"] and index.integrity_check() == []


# ---- the command line -----------------------------------------------------------------------

def test_cli_add_check_stats(tmp_path, capsys):
    from dedup.cli import main

    (tmp_path / "day1").mkdir()
    (tmp_path / "day1" / "a.txt").write_text(ARTICLE, encoding="utf-8")
    probe = tmp_path / "probe.txt"
    probe.write_text(ARTICLE.upper() + "\n", encoding="utf-8")
    path = str(tmp_path / "news.idx")
    assert main(["index", "add", path, str(tmp_path / "day1")]) == 0
    out = capsys.readouterr().out
    assert "a.txt: new, 1 repeated paragraph" in out and "line    3  exact 1.000 of line 1" in out
    assert main(["index", "check", path, str(probe)]) == 0
    out = capsys.readouterr().out
    assert "probe.txt: duplicate of " in out and "(exact 1.000)" in out
    assert main(["index", "check", path, str(probe), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["duplicate_of"].endswith("a.txt") and not record["is_added"]
    assert main(["index", "stats", path, "--json", "--verify"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 1 and stats["problems"] == []


def test_cli_errors_are_one_line(tmp_path, capsys):
    from dedup.cli import main

    text = tmp_path / "a.txt"
    text.write_text("hello there\n", encoding="utf-8")
    assert main(["index", "check", str(text), str(text)]) == 2
    err = capsys.readouterr().err
    assert "not a dedup index" in err and err.count("\n") == 1
    path = str(tmp_path / "a.idx")
    assert main(["index", "add", path, str(text)]) == 0
    assert main(["index", "add", path, str(text), "--ngram", "4"]) == 2
    assert "ngram=4 (index: 5)" in capsys.readouterr().err


def test_cli_index_help_shows_an_example():
    from dedup.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["index"]
    assert "example:" in sub.format_help() and "dedup index add" in sub.format_help()
    for action in sub._subparsers._group_actions[0].choices.values():
        assert "dedup index check" in action.format_help()


def test_docstring_examples():
    import doctest

    import dedup.index

    result = doctest.testmod(dedup.index, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_no_white_space_past_the_split_table():
    from dedup.index import _IS_SPACE

    assert not any(chr(c).isspace() for c in range(_IS_SPACE.size, sys.maxunicode + 1))
    assert _IS_SPACE.tolist() == [chr(c).isspace() for c in range(_IS_SPACE.size)]
