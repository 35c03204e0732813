"""dedup run --index: a daily crawl deduplicated against the index of earlier days."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

import dedup
from dedup.cli import main
from dedup.config import Config
from dedup.corpus import run_files
from dedup.errors import ConfigError, InputError
from tests import reference


def run(capsys, *argv):
    code = main([str(a) for a in argv] + ["--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


class Words:
    """Seeded prose: sentences from a vocabulary of 5,000 pseudo-words, so that unrelated
    texts share few 5-grams."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        self.vocabulary = ["".join(self.rng.choice(letters, int(n)))
                           for n in self.rng.integers(3, 10, 5000)]

    def paragraph(self, n_words=None):
        n_words = n_words or int(self.rng.integers(25, 60))
        words = self.rng.choice(self.vocabulary, n_words)
        return " ".join(words).capitalize() + "."

    def document(self, n_paragraphs=None):
        n_paragraphs = n_paragraphs or int(self.rng.integers(2, 5))
        return "\n".join(self.paragraph() for _ in range(n_paragraphs))

    def edit(self, text, n_words=2):
        """A near copy: n_words words replaced."""
        words = text.split(" ")
        for k in self.rng.choice(len(words), n_words, replace=False):
            words[int(k)] = "zq" + str(self.rng.choice(self.vocabulary))
        return " ".join(words)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def duplicates(folder):
    return pq.read_table(folder / "duplicates.parquet").to_pylist()


def outputs(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != "summary.json"}


def similarity(a, b, kind):
    """Exact Jaccard (near) or containment of a in b (contained), from the definitions."""
    sa = reference.char_shingles(reference.normalize(a, False), 5)
    sb = reference.char_shingles(reference.normalize(b, False), 5)
    return reference.jaccard(sa, sb) if kind == "near" else len(sa & sb) / len(sa)


@pytest.fixture
def days(tmp_path):
    """Day 1: 60 documents (two of them copies of others). Day 2: 12 exact copies (new ids) and
    10 near copies of day-1 documents, 3 day-1 documents cut to 78% of their length (contained in
    them), 30 new documents, and 4 near copies of new day-2
    documents (repeats within the day)."""
    words = Words(5)
    day1 = [{"id": f"d1-{k}", "text": words.document()} for k in range(60)]
    day1[10]["text"] = day1[3]["text"]  # a repeat within day 1: not stored
    day1[20]["text"] = words.edit(day1[4]["text"])
    day2, seen = [], {}
    for k in range(12):
        source = day1[30 + k]
        day2.append({"id": f"d2-copy-{k}", "text": source["text"]})
        seen[day2[-1]["id"]] = (source["id"], "exact")
    for k in range(10):
        source = day1[45 + k]
        day2.append({"id": f"d2-near-{k}", "text": words.edit(source["text"])})
        seen[day2[-1]["id"]] = (source["id"], "near")
    for k in range(3):
        # LSH proposes a contained pair only when its Jaccard is high enough to share a band
        source = day1[5 + k]
        day2.append({"id": f"d2-part-{k}", "text": source["text"][:int(len(source["text"]) * .78)]})
        seen[day2[-1]["id"]] = (source["id"], "contained")
    fresh = [{"id": f"d2-new-{k}", "text": words.document()} for k in range(30)]
    within = [{"id": f"d2-again-{k}", "text": words.edit(fresh[k]["text"])} for k in range(4)]
    day2 += fresh + within
    order = np.random.default_rng(1).permutation(len(day2))
    day2 = [day2[k] for k in order]
    write_jsonl(tmp_path / "day1.jsonl", day1)
    write_jsonl(tmp_path / "day2.jsonl", day2)
    return tmp_path, day1, day2, seen


@pytest.mark.parametrize("level", ["document", "paragraph"])
def test_an_empty_index_changes_nothing_and_is_seeded_with_the_kept_records(capsys, days,
                                                                             level):
    folder, day1, _, _ = days
    assert run(capsys, "run", folder / "day1.jsonl", "-o", folder / "plain",
               "--id-field", "id", "--level", level)[0] == 0
    code, _, err = run(capsys, "run", folder / "day1.jsonl", "-o", folder / "seeded",
                       "--id-field", "id", "--level", level, "--index", folder / "seen.idx")
    assert code == 0, err
    assert outputs(folder / "seeded") == outputs(folder / "plain")
    kept = read_jsonl(folder / "plain" / "day1.jsonl")
    if level == "document":
        assert len(kept) == 58  # d1-10 and d1-20 removed
    with dedup.Index.open(folder / "seen.idx") as index:
        assert index.keys() == [r["id"] for r in kept]
        assert index.integrity_check() == []
        for record in kept[:5]:  # stored as written: each is its own exact copy
            assert index.check(record["text"]).duplicate_of == record["id"]
    summary = json.loads((folder / "seeded" / "summary.json").read_text())
    assert summary["index"]["added"] == len(kept) and summary["index"]["matched_units"] == 0


def test_day_two_removes_exactly_what_day_one_saw(capsys, days):
    folder, day1, day2, seen = days
    idx = folder / "seen.idx"
    assert run(capsys, "run", folder / "day1.jsonl", "-o", folder / "out1", "--id-field", "id",
               "--index", idx)[0] == 0
    code, _, err = run(capsys, "run", folder / "day2.jsonl", "-o", folder / "out2",
                       "--id-field", "id", "--index", idx)
    assert code == 0, err
    rows = {r["id"]: r for r in duplicates(folder / "out2")}
    day1_ids = {r["id"] for r in day1}
    from_index = {i: r for i, r in rows.items() if r["dup_of"] in day1_ids}
    assert {i: (r["dup_of"], r["kind"]) for i, r in from_index.items()} == seen
    texts = {r["id"]: r["text"] for r in day1 + day2}
    for record_id, row in from_index.items():
        assert row["group"] is None and row["group_size"] is None
        if row["kind"] == "exact":
            assert row["similarity"] == 1.0
        else:  # the similarity reported is the exact one, from the definitions
            expected = similarity(texts[record_id], texts[row["dup_of"]], row["kind"])
            assert row["similarity"] == pytest.approx(expected)
            threshold = 0.8 if row["kind"] == "near" else 0.9
            assert row["similarity"] >= threshold
    # the rest is grouped among itself exactly as a plain run over it
    rest = [r for r in day2 if r["id"] not in seen]
    write_jsonl(folder / "rest.jsonl", rest)
    assert run(capsys, "run", folder / "rest.jsonl", "-o", folder / "plain", "--id-field",
               "id")[0] == 0
    within = {i: r for i, r in rows.items() if i not in from_index}
    assert sorted(sorted((i, r["dup_of"])) for i, r in within.items()) == \
        [[f"d2-again-{k}", f"d2-new-{k}"] for k in range(4)]
    plain = {r["id"]: r for r in duplicates(folder / "plain")}
    strip = lambda r: {k: v for k, v in r.items() if k not in ("file", "line")}  # noqa: E731
    assert {i: strip(r) for i, r in within.items()} == {i: strip(r) for i, r in plain.items()}
    kept = [r["id"] for r in read_jsonl(folder / "out2" / "day2.jsonl")]
    assert kept == [r["id"] for r in read_jsonl(folder / "plain" / "rest.jsonl")]
    # the index now holds both days' kept records, in the order they were written
    with dedup.Index.open(idx) as index:
        kept1 = [r["id"] for r in read_jsonl(folder / "out1" / "day1.jsonl")]
        assert index.keys() == kept1 + kept
    summary = json.loads((folder / "out2" / "summary.json").read_text())
    assert summary["index"]["matched_units"] == len(seen)
    assert summary["index"]["documents_before"] == 58
    assert summary["index"]["added"] == len(kept)


def test_paragraph_level_removes_paragraphs_seen_on_day_one(capsys, tmp_path):
    words = Words(9)
    day1 = [{"id": f"a{k}", "text": words.document(4)} for k in range(20)]
    paragraphs = {r["id"]: r["text"].split("\n") for r in day1}
    new = [words.paragraph() for _ in range(6)]
    day2 = [
        {"id": "b0", "text": "\n".join([new[0], paragraphs["a3"][1], new[1]])},
        {"id": "b1", "text": "\n".join([words.edit(paragraphs["a7"][2]), new[2]])},
        {"id": "b2", "text": "\n".join([paragraphs["a9"][0], paragraphs["a9"][3]])},
        {"id": "b3", "text": "\n".join([new[3], new[4], new[3]])},  # a repeat within day 2
        {"id": "b4", "text": new[5]},
    ]
    write_jsonl(tmp_path / "day1.jsonl", day1)
    write_jsonl(tmp_path / "day2.jsonl", day2)
    idx = tmp_path / "p.idx"
    assert run(capsys, "run", tmp_path / "day1.jsonl", "-o", tmp_path / "o1", "--id-field",
               "id", "--level", "paragraph", "--index", idx)[0] == 0
    code, _, err = run(capsys, "run", tmp_path / "day2.jsonl", "-o", tmp_path / "o2",
                       "--id-field", "id", "--level", "paragraph", "--index", idx)
    assert code == 0, err
    rows = [(r["id"], r["kind"], r["dup_of"], r["start"], r["end"], r["dup_start"],
             r["dup_end"]) for r in duplicates(tmp_path / "o2")]

    def span(record, k):
        text = next(r["text"] for r in day1 + day2 if r["id"] == record)
        start = sum(len(p) + 1 for p in text.split("\n")[:k])
        return start, start + len(text.split("\n")[k])

    assert sorted(rows, key=lambda r: (r[0], r[3] is None, r[3] or 0)) == [
        ("b0", "exact", "a3", *span("b0", 1), *span("a3", 1)),
        ("b1", "near", "a7", *span("b1", 0), *span("a7", 2)),
        ("b2", "exact", "a9", *span("b2", 0), *span("a9", 0)),
        ("b2", "exact", "a9", *span("b2", 1), *span("a9", 3)),
        ("b2", "emptied", None, None, None, None, None),
        ("b3", "exact", "b3", *span("b3", 2), *span("b3", 0)),
    ]
    kept = {r["id"]: r["text"] for r in read_jsonl(tmp_path / "o2" / "day2.jsonl")}
    assert kept == {"b0": new[0] + "\n" + new[1], "b1": new[2],
                    "b3": new[3] + "\n" + new[4], "b4": new[5]}
    with dedup.Index.open(idx) as index:  # day 2 stored as written: its repeats removed
        assert [m and m.key for m in index.match(
            [new[0], new[3], paragraphs["a3"][1]], "paragraph")] == ["b0", "b3", "a3"]
        assert index.integrity_check() == []


def test_flag_mode_keeps_everything_and_names_the_stored_keys(capsys, days):
    folder, _, day2, seen = days
    idx = folder / "seen.idx"
    assert run(capsys, "run", folder / "day1.jsonl", "-o", folder / "out1", "--id-field", "id",
               "--index", idx)[0] == 0
    code, _, err = run(capsys, "run", folder / "day2.jsonl", "-o", folder / "out2",
                       "--id-field", "id", "--index", idx, "--mode", "flag",
                       "--index-read-only")
    assert code == 0, err
    records = read_jsonl(folder / "out2" / "day2.jsonl")
    assert [r["id"] for r in records] == [r["id"] for r in day2]
    flagged = {r["id"]: (r["dedup"][0]["dup_of"], r["dedup"][0]["kind"])
               for r in records if r.get("dedup") and r["dedup"][0]["dup_of"].startswith("d1-")}
    assert flagged == seen
    with dedup.Index.open(idx) as index:  # read only: day 2 not stored
        assert len(index) == 58


def test_a_failed_run_leaves_the_index_as_it_was(tmp_path, days, monkeypatch):
    folder, _, _, _ = days
    idx = folder / "seen.idx"
    config = Config(unit="document")
    run_files([folder / "day1.jsonl"], folder / "out1", config, id_field="id", index=idx)
    before = dedup.Index.open(idx)
    keys = before.keys()
    before.close()

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dedup.corpus._publish", broken)
    with pytest.raises(InputError, match="cannot write the results"):
        run_files([folder / "day2.jsonl"], folder / "out2", config, id_field="id", index=idx)
    with dedup.Index.open(idx) as index:
        assert index.keys() == keys
        assert index.integrity_check() == []
    assert not (folder / "out2" / "summary.json").exists()


def test_a_key_held_with_another_text_is_kept_in_the_output_not_stored(capsys, tmp_path):
    words = Words(3)
    write_jsonl(tmp_path / "d1.jsonl", [{"id": "x", "text": words.document()}])
    other = words.document()
    write_jsonl(tmp_path / "d2.jsonl", [{"id": "x", "text": other}])
    idx = tmp_path / "k.idx"
    for day in ("d1", "d2"):
        assert run(capsys, "run", tmp_path / f"{day}.jsonl", "-o", tmp_path / f"o{day}",
                   "--id-field", "id", "--index", idx)[0] == 0
    assert read_jsonl(tmp_path / "od2" / "d2.jsonl") == [{"id": "x", "text": other}]
    summary = json.loads((tmp_path / "od2" / "summary.json").read_text())
    assert summary["index"]["key_conflicts"] == 1 and summary["index"]["added"] == 0


def test_bad_index_options_are_one_line_errors(capsys, days):
    folder, _, _, _ = days
    day1 = folder / "day1.jsonl"
    code, out, err = run(capsys, "run", day1, "-o", folder / "o", "--index", folder)
    assert code == 2 and err.count("\n") == 1 and "is a directory" in err and str(folder) in err
    assert run(capsys, "run", day1, "-o", folder / "o", "--index", folder / "s.idx")[0] == 0
    code, _, err = run(capsys, "run", day1, "-o", folder / "o2", "--index", folder / "s.idx",
                       "--ngram", "4")
    assert code == 2 and err.count("\n") == 1 and "ngram=4 (index: 5)" in err
    code, _, err = run(capsys, "run", day1, "-o", folder / "o3", "--index", folder / "s.idx",
                       "--threshold", "0.5")
    assert code == 2 and err.count("\n") == 1 and "bands x rows" in err
    code, _, err = run(capsys, "run", day1, "-o", folder / "o4", "--index", folder / "s.idx",
                       "--level", "sentence")
    assert code == 2 and err.count("\n") == 1 and "not 'sentence'" in err
    code, _, err = run(capsys, "run", day1, "-o", folder / "o5", "--index-read-only")
    assert code == 2 and "--index-read-only needs --index" in err
    code, _, err = run(capsys, "run", day1, "-o", folder / "o6", "--index", folder / "no.idx",
                       "--index-read-only")
    assert code == 2 and err.count("\n") == 1 and "no such index" in err
    (folder / "text.idx").write_text("not an index")
    code, _, err = run(capsys, "run", day1, "-o", folder / "o7", "--index", folder / "text.idx")
    assert code == 2 and err.count("\n") == 1 and "not a dedup index" in err
    for name in ("o2", "o3", "o4", "o5", "o6", "o7"):  # nothing written for a refused run
        assert not (folder / name).exists()


def test_match_finds_the_best_stored_unit_of_each_text(tmp_path):
    words = Words(11)
    texts = [words.document(3) for _ in range(30)]
    with dedup.Index.open(tmp_path / "m.idx") as index:
        index.add_many([(f"k{k}", t) for k, t in enumerate(texts)])
        probes = [texts[4], words.edit(texts[9]), texts[12].split("\n")[0], words.document(),
                  "   ", texts[4] + "\n" + words.document(3)]
        found = index.match(probes, "document")
        assert [(m.key, m.kind) if m else None for m in found] == [
            ("k4", "exact"), ("k9", "near"), None, None, None, None]
        # each answer equals check()'s best document match that holds the text
        for probe, m in zip(probes[:4], found):
            verdict = index.check(probe)
            best = next((d for d in verdict.matches if d.is_inside_stored), None)
            assert (best and (best.key, best.kind, best.similarity)) == \
                (m and (m.key, m.kind, m.similarity))
        para = index.match([texts[12].split("\n")[0]], "paragraph")[0]
        assert (para.key, para.kind, para.start, para.line) == ("k12", "exact", 0, 1)
        hit = index.may_match(np.zeros((2, index.config.band_rows[0]), dtype=np.uint64))
        assert hit.tolist() == [False, False]
        with pytest.raises(ConfigError, match="kind must be"):
            index.match(["x"], "sentence")
        with pytest.raises(InputError, match="band_keys must be"):
            index.may_match(np.zeros((2, 3), dtype=np.uint64))


def test_bulk_stores_what_add_many_stores(tmp_path):
    words = Words(13)
    texts = [words.document() for _ in range(40)]
    texts[7] = texts[2]
    texts[9] = words.edit(texts[1])
    items = [(f"k{k}", t) for k, t in enumerate(texts)]
    with dedup.Index.open(tmp_path / "a.idx") as a, dedup.Index.open(tmp_path / "b.idx") as b:
        a.add_many(items)
        with b.bulk() as batch:
            counts = batch.add(items[:20])
            counts2 = batch.add(items[20:] + [("k3", texts[3]), ("k4", "other"), ("e", " \n")])
        assert (counts.added, counts2.added, counts2.unchanged, counts2.conflicts,
                counts2.empty) == (20, 20, 1, 1, 1)
        assert a.stats()["band_rows"] == b.stats()["band_rows"]
        assert a.keys() == b.keys() and b.integrity_check() == []
        probe = words.edit(texts[5])
        assert a.check(probe).to_dict() == b.check(probe).to_dict()
        with pytest.raises(RuntimeError):
            with b.bulk() as batch:
                batch.add([("late", words.document())])
                raise RuntimeError("the caller failed")
        assert "late" not in b and len(b) == 40
        # k2's units (held by its document's unit) stay for k7, its exact copy, and k1's
        # paragraphs for k9: removing the first copies hands their texts over in both files
        for key in ("k2", "k1", "k5"):
            assert a.remove(key) and b.remove(key)
        assert a.integrity_check() == [] and b.integrity_check() == []
        for probe in (words.edit(texts[2]), words.edit(texts[1]), words.edit(texts[9])):
            assert a.check(probe).to_dict() == b.check(probe).to_dict()
            assert a.check(probe).is_duplicate
    assert os.path.getsize(tmp_path / "b.idx") > 0


def test_bulk_leaves_full_buckets_as_add_does(tmp_path):
    words = Words(17)
    base = words.document(2)
    texts = [words.edit(base, 1) for _ in range(12)] + [words.document(2) for _ in range(5)]
    items = [(f"k{k}", t) for k, t in enumerate(texts)]
    config = Config(max_bucket=3)
    with dedup.Index.open(tmp_path / "a.idx", config) as a, \
            dedup.Index.open(tmp_path / "b.idx", config) as b:
        a.add_many(items)
        with b.bulk() as batch:
            batch.add(items[:5])
            batch.add(items[5:])

        def bands(index):
            conn = index._conn()
            return conn.execute("SELECT id, hash, bands FROM units ORDER BY id").fetchall()

        def uses(index):
            return index._conn().execute(
                "SELECT doc, position, unit FROM paragraphs ORDER BY doc, position").fetchall()

        assert bands(a) == bands(b) and uses(a) == uses(b)
        assert any(len(blob) < 8 * config.band_rows[0] for *_, blob in bands(b))  # some full
        assert b.integrity_check() == []


def test_may_match_gives_the_same_answer_in_chunks(tmp_path, monkeypatch):
    from dedup.kernels.band import band_keys
    from dedup.pipeline import signatures

    words = Words(19)
    texts = [words.document(2) for _ in range(25)]
    probes = [words.edit(t) for t in texts[:10]] + [words.document(2) for _ in range(15)]
    with dedup.Index.open(tmp_path / "c.idx") as index:
        index.add_many([(f"k{k}", t) for k, t in enumerate(texts)])
        starts = np.cumsum([0] + [len(t) for t in probes[:-1]])
        ends = starts + [len(t) for t in probes]
        prepared = dedup.pipeline.prepare(dedup.pipeline.codepoints("".join(probes)), starts,
                                          ends, index.config)
        keys = band_keys(signatures(prepared.shingles, prepared.shingle_offsets, index.config),
                         *index.config.band_rows)
        whole = index.may_match(keys)
        monkeypatch.setattr("dedup.index._PROBE_CHUNK", 7)
        assert index.may_match(keys).tolist() == whole.tolist()
        assert whole[:10].all() and not whole[10:].any()
