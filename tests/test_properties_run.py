"""Properties of `dedup run` over generated corpora written as files (hypothesis).

tests/test_corpus.py checks the library (dedup.deduplicate) for batch size and threads; these
check the file pipeline end to end: reconciliation with byte-identical kept lines, removed
paragraphs exactly those reported, every dup_of a kept record verified at the threshold, the
same bytes whatever --batch-mb and --workers, and at document level with ids the same groups
whatever the order of the input files.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.corpus_gen import Generator, Shape
from dedup.api import removal_ranges
from dedup.config import Config
from dedup.units import split_units
from faults import lines_of, outputs, reconcile, report_rows, run
from test_corpus import similarity

PROPS = settings(max_examples=6, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


def write_shards(folder, seed, n, n_shards):
    shape = Shape(paragraphs=(1, 4), words=(10, 40), max_edit_rate=0.05, near_copies=0.25,
                  exact_copies=0.15)
    docs = list(Generator(seed, shape).documents(n))
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(n_shards):
        name = f"s{k}.jsonl"
        (folder / name).write_bytes(b"".join(
            json.dumps(d, ensure_ascii=False).encode() + b"\n" for d in docs[k::n_shards]))
        names.append(name)
    return names, {d["id"]: d["text"] for d in docs}


@PROPS
@given(seed=st.integers(0, 2**16), n=st.integers(5, 120), n_shards=st.integers(1, 3),
       level=st.sampled_from(["document", "paragraph"]))
def test_run_reconciles_verifies_and_ignores_batches_and_workers(capsys, tmp_path_factory,
                                                                 seed, n, n_shards, level):
    base = tmp_path_factory.mktemp("props")
    folder = base / "in"
    names, texts = write_shards(folder, seed, n, n_shards)
    results = []
    for k, extra in enumerate([(), ("--batch-mb", "0.001", "--workers", "1"),
                               ("--workers", "2", "--batch-mb", "0.05")]):
        out = base / f"out{k}"
        code, err = run(capsys, folder, "-o", out, "--level", level, "--id-field", "id",
                        "--quiet", *extra)
        assert code == 0, err
        results.append(outputs(out))
    assert results[0] == results[1] == results[2]  # byte for byte
    out = base / "out0"
    kept_ids = set()
    for name in names:
        data = (folder / name).read_bytes()
        kept, _, _ = reconcile(out, name, data)
        lines = lines_of(data)
        kept_ids |= {json.loads(lines[k - 1])["id"] for k in kept}
    rows = report_rows(out)
    config = Config(unit=level)
    removed_records = {r["id"] for r in rows if r["start"] is None}
    assert removed_records.isdisjoint(kept_ids)
    assert kept_ids | removed_records == set(texts)  # every record in exactly one output
    for r in rows:
        if r["kind"] == "emptied":
            continue
        assert r["dup_of"] in kept_ids  # no chains: the kept copy is not itself removed
        if level == "document":
            mine, theirs = texts[r["id"]], texts[r["dup_of"]]
        else:
            mine = texts[r["id"]][r["start"]:r["end"]]
            theirs = texts[r["dup_of"]][r["dup_start"]:r["dup_end"]]
            assert (r["dup_of"], r["dup_start"]) not in {(x["id"], x["start"]) for x in rows}
        jac, cont = similarity(mine, theirs, config)
        assert jac >= config.threshold or cont >= config.containment_threshold, r
        if r["kind"] == "near":
            assert jac == pytest.approx(r["similarity"])
    if level == "paragraph":  # removed paragraphs are exactly the reported ones
        kept_text = {}
        for name in names:
            for line in lines_of((out / name).read_bytes()):
                record = json.loads(line)
                kept_text[record["id"]] = record["text"]
        for record_id, text in kept_text.items():
            units = split_units(texts[record_id], "paragraph")
            starts = units.starts.tolist()
            removed = [starts.index(r["start"]) for r in rows
                       if r["id"] == record_id and r["start"] is not None]
            expected = texts[record_id]
            for start, end in reversed(removal_ranges(expected, units, sorted(removed))):
                expected = expected[:start] + expected[end:]
            assert text == expected


def write_copies(folder, seed, n, n_shards):
    """Shards of distinct random texts and copies of them equal after normalization (as
    written, upper-cased, re-punctuated): every group is a clique. (The corpus generator also
    embeds documents in others, and a contained copy goes with the first container in order.)"""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocabulary = [f"w{k}x{k * 7 % 13}" for k in range(5000)]
    texts = []
    for k in range(n):
        if texts and rng.random() < 0.4:
            original = texts[int(rng.integers(0, len(texts)))]
            texts.append(original.upper() if rng.random() < 0.5 else original + "!")
        else:
            texts.append(" ".join(vocabulary[i] for i in rng.integers(0, 5000, 30)))
    folder.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(n).tolist()
    names = []
    for k in range(n_shards):
        name = f"s{k}.jsonl"
        (folder / name).write_bytes(b"".join(
            json.dumps({"id": f"r{i}", "text": texts[i]}).encode() + b"\n"
            for i in order[k::n_shards]))
        names.append(name)
    return names


def groups_by_id(out):
    """The groups as sets of ids (the kept copy and its removed copies)."""
    groups = {}
    for r in report_rows(out):
        groups.setdefault(r["dup_of"], {r["dup_of"]}).add(r["id"])
    return {frozenset(g) for g in groups.values()}


@PROPS
@given(seed=st.integers(0, 2**16), n=st.integers(5, 120), n_shards=st.integers(2, 3),
       order=st.randoms(use_true_random=False))
def test_document_groups_do_not_depend_on_the_order_of_files(capsys, tmp_path_factory, seed,
                                                             n, n_shards, order):
    """Copies equal after normalization: a group is a clique, so the same records group
    together whichever file comes first (which copy is kept follows the order, by design)."""
    base = tmp_path_factory.mktemp("order")
    folder = base / "in"
    names = write_copies(folder, seed, n, n_shards)
    shuffled = list(names)
    order.shuffle(shuffled)
    found = []
    for k, listing in enumerate([names, shuffled]):
        out = base / f"out{k}"
        code, err = run(capsys, *[folder / name for name in listing], "-o", out,
                        "--id-field", "id", "--quiet")
        assert code == 0, err
        found.append(groups_by_id(out))
    assert found[0] == found[1]
