import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from bench.corpus_gen import Generator, Shape
from dedup.cli import build_parser, main

SHAPE = Shape(paragraphs=(1, 5), words=(15, 50), near_copies=0.2, exact_copies=0.08)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def corpus(n=300, seed=7):
    return list(Generator(seed, SHAPE).documents(n))


def write_jsonl(path, rows, compress=None):
    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)
    if compress == "gz":
        data = gzip.compress(data)
    elif compress == "zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)


def read_jsonl(path):
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data.splitlines(True)


@pytest.fixture
def shards(tmp_path):
    rows = corpus()
    folder = tmp_path / "in"
    (folder / "more").mkdir(parents=True)
    write_jsonl(folder / "a.jsonl", rows[:100])
    write_jsonl(folder / "b.jsonl.gz", rows[100:200], "gz")
    write_jsonl(folder / "more" / "c.jsonl.zst", rows[200:], "zst")
    return folder, rows


def outputs(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "summary.json"}


def test_run_mirrors_shards_and_reconciles(capsys, tmp_path, shards):
    folder, rows = shards
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "run", folder, "-o", out, "--id-field", "id",
                            "--duplicates-jsonl")
    assert code == 0 and stdout == ""
    assert "dedup run: document level" in err and "removed" in err
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["outputs"]) == sorted(
        ["a.jsonl", "b.jsonl.gz", "more/c.jsonl.zst", "duplicates.parquet", "duplicates.jsonl"])
    originals = {}
    for name in ("a.jsonl", "b.jsonl.gz", "more/c.jsonl.zst"):
        for line in read_jsonl(folder / name):
            originals[json.loads(line)["id"]] = line
    kept = []
    for name in ("a.jsonl", "b.jsonl.gz", "more/c.jsonl.zst"):
        for line in read_jsonl(out / name):
            record_id = json.loads(line)["id"]
            assert line == originals[record_id]  # byte for byte
            kept.append(record_id)
    report = pq.read_table(out / "duplicates.parquet").to_pylist()
    removed = [r["id"] for r in report]
    assert sorted(kept + removed) == sorted(r["id"] for r in rows)  # each record exactly once
    counts = summary["counts"]
    assert counts["read"] == len(rows) == counts["kept"] + counts["removed"] + counts["rejected"]
    assert counts["kept"] == len(kept) and counts["removed"] == len(removed) > 0
    assert all(r["dup_of"] in set(kept) for r in report)
    jsonl_lines = (out / "duplicates.jsonl").read_text().splitlines()
    jsonl_report = [json.loads(line) for line in jsonl_lines]
    assert jsonl_report == report
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_outputs_do_not_depend_on_workers_or_batch_size(capsys, tmp_path, shards):
    folder, _ = shards
    results = []
    for k, extra in enumerate([("--workers", "1", "--batch-mb", "0.003"),
                               ("--workers", "2"), ()]):
        for level in ("document", "paragraph"):
            out = tmp_path / f"out{k}{level}"
            code, _, _ = run(capsys, "run", folder, "-o", out, "--level", level, "--quiet",
                             "--duplicates-jsonl", *extra)
            assert code == 0
            results.append((level, outputs(out)))
    for level in ("document", "paragraph"):
        same = [files for lev, files in results if lev == level]
        assert same[0] == same[1] == same[2]


def test_paragraph_collapse_changes_only_the_text_field(capsys, tmp_path):
    footer = "Follow us for more news and stories from around the world, every day."
    rows = [
        {"id": "1", "meta": {"x": 1.50}, "text": f"A first story about rivers.\n{footer}", "z": 0},
        {"id": "2", "meta": {"x": 2}, "text": f"A second story about hills.\n{footer}", "z": 1},
        {"id": "3", "text": footer},
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n"
                              for r in rows))
    out = tmp_path / "out"
    code, _, _ = run(capsys, "run", path, "-o", out, "--level", "paragraph", "--quiet",
                     "--id-field", "id")
    assert code == 0
    lines = read_jsonl(out / "in.jsonl")
    assert lines[0] == path.read_bytes().splitlines(True)[0]
    assert lines[1] == b'{"id":"2","meta":{"x":2},"text":"A second story about hills.","z":1}\n'
    assert len(lines) == 2  # record 3 had nothing of its own
    report = pq.read_table(out / "duplicates.parquet").to_pylist()
    assert [(r["id"], r["kind"], r["dup_of"]) for r in report] == [
        ("2", "exact", "1"), ("3", "exact", "1"), ("3", "emptied", None)]
    assert report[0]["start"] == rows[1]["text"].index(footer)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["modified"] == 1 and summary["counts"]["removed"] == 1


def test_flag_mode_adds_one_field_to_each_record(capsys, tmp_path, shards):
    folder, rows = shards
    out = tmp_path / "out"
    code, _, _ = run(capsys, "run", folder / "a.jsonl", "-o", out, "--mode", "flag", "--quiet",
                     "--level", "paragraph", "--flag-field", "repeats")
    assert code == 0
    lines = read_jsonl(out / "a.jsonl")
    originals = read_jsonl(folder / "a.jsonl")
    assert len(lines) == len(originals)
    for line, original in zip(lines, originals):
        record = json.loads(line)
        flags = record.pop("repeats")
        assert record == json.loads(original)
        assert line.startswith(original.rstrip(b"}\n"))
        for flag in flags:
            assert flag["kind"] in ("exact", "near", "contained")
    assert any(json.loads(line)["repeats"] for line in lines)


def test_parquet_and_text_shards(capsys, tmp_path):
    rows = corpus(60, seed=3)
    folder = tmp_path / "in"
    folder.mkdir()
    table = pa.table({"url": [r["url"] for r in rows], "body": [r["text"] for r in rows],
                      "n": list(range(60))})
    pq.write_table(table, folder / "p.parquet", compression="zstd")
    (folder / "doc.txt").write_text(rows[0]["text"], encoding="utf-8")  # copy of the first
    out = tmp_path / "out"
    code, _, err = run(capsys, "run", folder, "-o", out, "--text-field", "body",
                       "--id-field", "url", "--quiet")
    assert code == 0, err
    kept = pq.read_table(out / "p.parquet")
    assert kept.schema == table.schema
    assert pq.ParquetFile(out / "p.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    report = pq.read_table(out / "duplicates.parquet").to_pylist()
    assert not (out / "doc.txt").exists()
    (doc,) = [r for r in report if r["id"] == "doc.txt"]
    assert doc["kind"] in ("exact", "contained") and doc["line"] == 1
    assert doc["dup_of"] in set(kept.column("url").to_pylist())
    assert kept.num_rows + sum(r["file"] == "p.parquet" for r in report) == 60
    assert set(kept.column("url").to_pylist()).isdisjoint(r["id"] for r in report)


def test_refuses_an_output_folder_with_results(capsys, tmp_path, shards):
    folder, _ = shards
    out = tmp_path / "out"
    assert run(capsys, "run", folder, "-o", out, "--quiet")[0] == 0
    first = outputs(out)
    code, _, err = run(capsys, "run", folder, "-o", out, "--quiet")
    assert code == 2 and "already holds results" in err and "--overwrite" in err
    assert err.count("\n") == 1
    assert outputs(out) == first
    code, _, _ = run(capsys, "run", folder / "a.jsonl", "-o", out, "--quiet", "--overwrite")
    assert code == 0
    assert sorted(outputs(out)) == ["a.jsonl", "duplicates.parquet"]  # old outputs removed


def test_bad_input_fails_with_one_line_and_leaves_nothing(capsys, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": 5}\n{"tex": "x"}\nnot json\n')
    out = tmp_path / "out"
    code, _, err = run(capsys, "run", path, "-o", out, "--quiet")
    assert code == 2
    assert err == 'dedup: error: in.jsonl line 2: field "text" is not a string (got number)\n'
    assert not (out / "summary.json").exists() and not list(out.glob("*"))
    code, _, err = run(capsys, "run", path, "-o", out, "--quiet", "--on-error", "skip")
    assert code == 0
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["raw"]) for r in rejects] == [
        (2, '{"text": 5}'), (3, '{"tex": "x"}'), (4, "not json")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["rejected"] == 3 and summary["counts"]["kept"] == 1
    assert summary["counts"]["read"] == 4
    assert (out / "in.jsonl").read_bytes() == b'{"text": "fine"}\n'


def test_a_rejected_file_is_not_counted_as_a_record(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b'{"text": "one"}\n{"text": 5}\n{"text": "two"}\n')
    (folder / "b.jsonl").write_bytes(b"")
    (folder / "c.parquet").write_bytes(b"not parquet at all")
    out = tmp_path / "out"
    code, _, printed = run(capsys, "run", folder, "-o", out, "--on-error", "skip")
    assert code == 0
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert (counts["read"], counts["kept"], counts["rejected"], counts["rejected_files"]) == (
        3, 2, 1, 2)
    assert counts["read"] == counts["kept"] + counts["removed"] + counts["rejected"]
    assert "rejected 1 (and 2 whole files)" in printed
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert sorted((r["file"], r["line"]) for r in rejects) == [
        ("a.jsonl", 2), ("b.jsonl", 0), ("c.parquet", 0)]


def test_inputs_inside_the_output_folder_are_refused(capsys, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "fine"}\n')
    code, _, err = run(capsys, "run", path, "-o", tmp_path, "--quiet", "--overwrite")
    assert code == 2 and "inside the output folder" in err
    assert path.read_bytes() == b'{"text": "fine"}\n'


def test_run_help_shows_an_example():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["run"]
    assert "example:" in sub.format_help() and "dedup run" in sub.format_help()


def test_parquet_flag_mode_adds_a_column(capsys, tmp_path):
    rows = corpus(40, seed=5)
    table = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
    pq.write_table(table, tmp_path / "p.parquet")
    out = tmp_path / "out"
    code, _, err = run(capsys, "run", tmp_path / "p.parquet", "-o", out, "--mode", "flag",
                       "--level", "paragraph", "--quiet")
    assert code == 0, err
    flagged = pq.read_table(out / "p.parquet")
    assert flagged.column_names == ["id", "text", "dedup"]
    assert flagged.select(["id", "text"]) == table
    report = pq.read_table(out / "duplicates.parquet").to_pylist()
    flags = [f for row in flagged.column("dedup").to_pylist() for f in row]
    assert len(flags) == len(report) > 0
    assert {(f["start"], f["dup_of"]) for f in flags} == {(r["start"], r["dup_of"]) for r in report}
