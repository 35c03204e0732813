"""Fault injection through `dedup run`: hostile records, broken files, unwritable outputs.

Each case names the file it feeds and asserts where every record went (faults.reconcile: each
input record in exactly one output, kept records byte-identical), or, for a run that must stop,
that the error is one line naming the file and that nothing that looks complete is left.
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from faults import lines_of, reconcile, rejects, report_rows, run

ROOT = Path(__file__).resolve().parent.parent

ARABIC = "قال الرئيس الأمريكي في بيان صدر اليوم إن المحادثات ستستمر الأسبوع المقبل"
HEBREW = "הנשיא אמר היום שהשיחות יימשכו בשבוע הבא בירושלים"
HOSTILE = [
    b'{"text": "A plain first record about rivers and hills and the sea."}\n',
    b'{"text": "unclosed string}\n',                                  # malformed JSON
    b'{"text": "caf\xe9 au lait, not UTF-8"}\n',                     # invalid UTF-8
    b'{"text": "a lone \\ud800 surrogate, escaped in JSON"}\n',      # lone surrogate
    b'{"text": "a lone \\ud800 surrogate, escaped in JSON"}\n',      # ... and its copy
    b'{"text": "a NUL \\u0000 escaped inside the text"}\n',
    b'{"text": "a raw NUL \x00 byte inside the string"}\n',         # control char: bad JSON
    b'\x00\n',                                                       # a NUL line
    b'\xef\xbb\xbf{"text": "a BOM in the middle of the file"}\n',   # BOM not on line 1
    b'{"text": "a CRLF line end"}\r\n',
    b'{"text": "a CRLF line end"}\r\n',
    b'{"text": "one"}\r{"text": "lone CR joins two records"}\n',     # one line: bad JSON
    b'{"text": "para one\\rpara two\\r\\npara one\\npara two"}\n',  # CR and CRLF in the text
    b'{"text": "x"}\n',                                              # one character
    b'{"text": "x"}\n',
    b'{"text": "ab"}\n',                                             # shorter than the n-gram
    b'{"text": "ab"}\n',
    b'{"text": "abcd"}\n',
    b'{"text": ""}\n',
    b'{"text": "   \\t  "}\n',
    b'\n',
    b'   \r\n',
    ("{\"text\": \"" + ARABIC + "\"}\n").encode(),                   # right to left
    ("{\"text\": \"" + ARABIC + "\\u200f\"}\n").encode(),            # ... with an RLM mark
    ("{\"text\": \"" + HEBREW + " and English, 2026 \u202eRLO\u202c\"}\n").encode(),
    "{\"text\": \"👨\u200d👩\u200d👧 family, می\u200cخواهم, ZWJ and ZWNJ\"}\n".encode(),
    "{\"text\": \"👨👩👧 family, میخواهم, ZWJ and ZWNJ\"}\n".encode(),
    "{\"text\": \"caf\u0065\u0301 au lait with a combining acute\"}\n".encode(),
    "{\"text\": \"caf\u00e9 au lait with a combining acute\"}\n".encode(),
    "{\"text\": \"z\u0335\u0336\u0337\u0338\u0321\u0322 zalgo \u0300\u0301\u0302\u0303\"}\n"
    .encode(),
    "{\"text\": \"I \u2764\ufe0f this, \u263a\ufe0e and \u0031\ufe0f\u20e3\"}\n".encode(),
    "{\"text\": \"I \u2764 this, \u263a and \u0031\u20e3\"}\n".encode(),
    b'[1, 2, 3]\n',                                                  # not an object
    b'null\n',
    b'{"text": 5}\n',                                                # not a string
    b'{"body": "no text field"}\n',
    b'{"text": "first value", "text": "the last value of a repeated key"}\n',
    b'{"text": "A plain first record about rivers and hills and the sea."}',  # no final \n
]


@pytest.fixture
def hostile(tmp_path):
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(HOSTILE))  # a BOM on line 1 as well
    return path


@pytest.mark.parametrize("level", ["document", "paragraph", "sentence"])
def test_hostile_records_each_end_in_exactly_one_output(capsys, tmp_path, hostile, level):
    out = tmp_path / "out"
    code, err = run(capsys, hostile, "-o", out, "--level", level, "--on-error", "skip",
                    "--quiet")
    assert code == 0, err
    data = hostile.read_bytes()
    kept, removed, rejected = reconcile(out, "hostile.jsonl", data)
    lines = lines_of(data)
    bad = {2, 3, 7, 8, 9, 12, 33, 34, 35, 36}  # line numbers of the records that cannot be read
    assert set(rejected) == bad
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["counts"]
    n_records = sum(1 for k, line in enumerate(lines, 1) if line.strip(b" \t\r\n\xef\xbb\xbf"))
    assert counts["read"] == n_records == counts["kept"] + counts["removed"] + counts["rejected"]
    for reject in rejects(out):  # the raw line travels to the rejects file
        assert reject["file"] == "hostile.jsonl" and reject["error"]
    if level == "document":
        ids = {r["id"]: r for r in report_rows(out)}
        assert ids["hostile.jsonl:5"]["dup_of"] == "hostile.jsonl:4"  # lone surrogates kept
        assert ids["hostile.jsonl:11"]["dup_of"] == "hostile.jsonl:10"  # CRLF
        assert ids["hostile.jsonl:29"]["kind"] == "exact"  # NFC and NFD of one text
        assert ids["hostile.jsonl:38"]["dup_of"] == "hostile.jsonl:1"  # last line, no \n
        assert 4 in kept and 10 in kept and 16 in kept  # short records are kept, not lost


def test_first_bad_record_stops_the_run_with_one_line(capsys, tmp_path, hostile):
    out = tmp_path / "out"
    code, err = run(capsys, hostile, "-o", out, "--quiet")
    assert code == 2
    assert err == "dedup: error: hostile.jsonl line 2: not valid JSON (unexpected end of " \
        "data: line 1 column 33 (char 32))\n" or (
            err.startswith("dedup: error: hostile.jsonl line 2: not valid JSON")
            and err.count("\n") == 1)
    assert not out.exists() or not list(out.iterdir())


def test_many_identical_records_cost_linear_work(capsys, tmp_path):
    """200,000 copies of one record: one kept, every other removed as a copy of it (a star,
    never all pairs)."""
    n = 200_000
    path = tmp_path / "same.jsonl"
    path.write_bytes(b'{"text": "the same short record, again and again"}\n' * n)
    out = tmp_path / "out"
    code, err = run(capsys, path, "-o", out, "--quiet")
    assert code == 0, err
    kept, removed, _ = reconcile(out, "same.jsonl", path.read_bytes())
    assert kept == [1] and len(removed) == n - 1
    rows = report_rows(out)
    assert {r["dup_of"] for r in rows} == {"same.jsonl:1"} and {r["group_size"] for r in rows} \
        == {n}
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert counts["candidate_pairs"] <= n  # exact classes: no pair per copy, let alone n²


def test_a_large_bucket_of_near_copies_is_a_star(capsys, tmp_path):
    """2,000 records sharing one long text with a different tail (Jaccard about 0.98 with each
    other): the candidates stay linear in the records (star rule), and every copy is removed
    as a copy of a kept record, up to the LSH recall target (0.98).

    The star's hub is record 1, which is contained in the longer copies and so never kept:
    without the extra verification round against the representative, about 1,670 of the 2,000
    were kept (and 20,000 copies took 268 s to group)."""
    n = 2_000
    body = " ".join(f"word{k}" for k in range(120))
    path = tmp_path / "near.jsonl"
    path.write_bytes(b"".join(
        json.dumps({"text": f"{body} tail{k}"}).encode() + b"\n" for k in range(n)))
    out = tmp_path / "out"
    code, err = run(capsys, path, "-o", out, "--quiet")
    assert code == 0, err
    kept, removed, _ = reconcile(out, "near.jsonl", path.read_bytes())
    summary = json.loads((out / "summary.json").read_text())
    bands = summary["settings"]["bands_rows"][0]
    assert summary["counts"]["candidate_pairs"] <= bands * n  # n² / 2 would be 2e6
    kept_ids = {f"near.jsonl:{k}" for k in kept}
    assert all(r["dup_of"] in kept_ids and r["similarity"] >= 0.8 for r in report_rows(out))
    assert len(kept) + len(removed) == n
    assert len(kept) <= 0.02 * n + 1
    # the longest copies (4-digit tails) are the only ones no other copy contains
    assert min(kept) >= 1001
    assert summary["counts"]["regroup_pairs"] <= 3 * n  # linear: a few probes, never all pairs


def test_a_paragraph_repeated_100000_times_in_one_record(capsys, tmp_path):
    paragraph = "The same paragraph, printed again by a broken scraper loop."
    text = "Title of the page\n" + "\n".join([paragraph] * 100_000) + "\nThe end."
    path = tmp_path / "loop.jsonl"
    path.write_bytes(json.dumps({"id": "loop", "text": text}).encode() + b"\n")
    out = tmp_path / "out"
    code, err = run(capsys, path, "-o", out, "--level", "paragraph", "--id-field", "id",
                    "--quiet")
    assert code == 0, err
    kept, removed, _ = reconcile(out, "loop.jsonl", path.read_bytes())
    assert kept == [1]
    record = json.loads((out / "loop.jsonl").read_bytes())
    assert record["text"] == f"Title of the page\n{paragraph}\nThe end."
    rows = report_rows(out)
    assert len(rows) == 99_999
    assert {(r["dup_of"], r["dup_start"], r["kind"]) for r in rows} == {
        ("loop", len("Title of the page\n"), "exact")}


# --- broken files ------------------------------------------------------------------------------


def rows_bytes(n, seed=0):
    return b"".join(json.dumps({"text": f"record {k} of seed {seed}: some words to shingle "
                                        f"{k * 7919 % 1000} {k % 13}"}).encode() + b"\n"
                    for k in range(n))


def broken_files(tmp_path):
    """(file, its uncompressed content, lines readable before the break) of each broken
    compressed file."""
    data = rows_bytes(3000)
    gz = gzip.compress(data, mtime=0)
    # with a checksum: a flipped byte in a frame without one can decode to other text unseen
    zst = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    flipped = bytearray(zst)
    flipped[len(zst) // 2] ^= 0xFF
    cases = {
        "truncated.jsonl.gz": gz[: len(gz) // 2],
        "truncated.jsonl.zst": zst[: len(zst) // 2],
        "corrupt.jsonl.zst": bytes(flipped),
        "not-gzip.jsonl.gz": b"plain text, not gzip\n",
        "not-zstd.jsonl.zst": b"plain text, not zstd\n",
        "empty.jsonl.gz": gzip.compress(b"", mtime=0),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    return data, cases


@pytest.mark.parametrize("name", ["truncated.jsonl.gz", "truncated.jsonl.zst",
                                  "corrupt.jsonl.zst", "not-gzip.jsonl.gz",
                                  "not-zstd.jsonl.zst", "empty.jsonl.gz"])
def test_broken_compressed_files(capsys, tmp_path, name):
    data, _ = broken_files(tmp_path)
    path = tmp_path / name
    out = tmp_path / "out"
    code, err = run(capsys, path, "-o", out, "--quiet")
    assert code == 2 and err.startswith(f"dedup: error: {name}") and err.count("\n") == 1, err
    assert "truncated or corrupt" in err or "truncated" in err or "empty" in err
    assert not out.exists() or not list(out.iterdir())
    code, err = run(capsys, path, "-o", out, "--quiet", "--on-error", "skip")
    assert code == 0, err
    (reject,) = rejects(out)
    assert reject["file"] == name
    read_lines = max(reject["line"] - 1, 0)
    kept, removed, _ = reconcile(out, name, data, read_lines=read_lines)
    if name == "truncated.jsonl.gz":  # gzip yields the records before the cut (zstd may not)
        assert read_lines > 1000 and len(kept) + len(removed) >= read_lines - 1


def test_truncated_zstd_is_never_read_as_a_shorter_file(capsys, tmp_path):
    """zstandard's stream reader ends quietly where a .zst file was cut: without the frame
    check the records after the cut vanished with no reject and no error."""
    data = rows_bytes(5000, seed=1)
    zst = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    for cut in (len(zst) - 1, len(zst) - 5, len(zst) // 3, 7):
        path = tmp_path / f"cut{cut}.jsonl.zst"
        path.write_bytes(zst[:cut])
        out = tmp_path / f"out{cut}"
        code, err = run(capsys, path, "-o", out, "--quiet")
        assert code == 2 and err.startswith(f"dedup: error: {path.name} line ") and \
            err.count("\n") == 1, err  # the cut last line, or the cut stream
        code, err = run(capsys, path, "-o", out, "--quiet", "--on-error", "skip")
        assert code == 0, err
        assert "zstd stream is truncated" in rejects(out)[-1]["error"]


def test_parquet_with_a_wrong_schema(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"text": [1, 2, 3]}), folder / "ints.parquet")
    pq.write_table(pa.table({"body": ["a", "b"]}), folder / "nocol.parquet")
    (folder / "good.jsonl").write_bytes(rows_bytes(50))
    out = tmp_path / "out"
    code, err = run(capsys, folder, "-o", out, "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("dedup: error: ints.parquet: column \"text\" is not a string column")
    code, err = run(capsys, folder, "-o", out, "--quiet", "--on-error", "skip")
    assert code == 0, err
    assert sorted((r["file"], r["line"]) for r in rejects(out)) == [
        ("ints.parquet", 0), ("nocol.parquet", 0)]
    assert not (out / "ints.parquet").exists() and not (out / "nocol.parquet").exists()
    reconcile(out, "good.jsonl", (folder / "good.jsonl").read_bytes())
    (folder / "fake.parquet").write_bytes(b"PAR1 not really parquet")
    code, err = run(capsys, folder / "fake.parquet", "-o", tmp_path / "out2", "--quiet")
    assert code == 2 and "fake.parquet: not a readable Parquet file" in err
    assert err.count("\n") == 1


def test_unreadable_inputs_get_one_line(capsys, tmp_path):
    folder_like = tmp_path / "folder.jsonl"
    folder_like.mkdir()
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)  # reading it would hang: it must not be opened
    mem = tmp_path / "mem.jsonl"
    mem.symlink_to("/proc/self/mem")  # a regular file whose read fails (EIO)
    for path, words in ((folder_like, "holds no"), (fifo, "fifo.jsonl: not a regular file"),
                        (mem, "Input/output error")):
        out = tmp_path / f"out-{path.name}"
        code, err = run(capsys, path, "-o", out, "--quiet")
        assert code == 2 and err.startswith("dedup: error:") and words in err, err
        assert err.count("\n") == 1
        assert not (out / "summary.json").exists()
    out = tmp_path / "out-mem-skip"
    code, err = run(capsys, mem, "-o", out, "--quiet", "--on-error", "skip")
    assert code == 0, err
    assert [r["file"] for r in rejects(out)] == ["mem.jsonl"]  # the link's name, as given


# --- outputs that cannot be written ------------------------------------------------------------


def test_an_output_folder_that_cannot_be_created(capsys, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(rows_bytes(20))
    for out in (path / "out", Path("/proc/dedup-cannot-be-here")):
        code, err = run(capsys, path, "-o", out, "--quiet")
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"dedup: error: {out}: cannot create the output folder"), err


def test_an_output_folder_on_a_read_only_mount(capsys, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(rows_bytes(20))
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        out = mount / "out"
        code, err = run(capsys, path, "-o", out, "--quiet")
        assert code == 2 and err.count("\n") == 1, err
        assert "cannot create the output folder (Read-only file system)" in err
        code, err = run(capsys, path, "-o", mount, "--quiet")  # exists, empty, read-only
        assert code == 2 and err.count("\n") == 1, err
        assert "Read-only file system" in err
    finally:
        subprocess.run(["umount", str(mount)], check=True)


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from dedup.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("limit", [100, 200_000])
def test_a_full_disk_stops_with_one_line_and_leaves_nothing(tmp_path, limit):
    """A file-size limit stands in for a full disk: the write fails with EFBIG (at the report,
    or in the middle of a kept shard)."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(rows_bytes(8000))  # ~0.6 MB: the kept shard passes 200 KB
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(limit), "run", str(path), "-o", str(out),
         "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"dedup: error: {out}: cannot write the results (File too large)\n"
    assert list(out.iterdir()) == []  # no partial folder, no summary
