"""Helpers of the fault-injection tests: run `dedup run` and check where every input record went.

reconcile() is the one assertion every case makes: each record of an input file (a non-blank
line) is in exactly one output (kept in the mirrored shard, removed in duplicates.parquet, or
in rejects.jsonl), and each kept record is its input line byte for byte unless the report lists
a removed paragraph of it, in which case only its text field changed.
"""

import gzip
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import zstandard

from dedup.cli import main
from dedup.io import BOM


def run(capsys, *argv):
    """(exit code, stderr) of `dedup run ...` through the CLI entry point."""
    code = main(["run", *map(str, argv)])
    _, err = capsys.readouterr()
    return code, err


def lines_of(data: bytes) -> list[bytes]:
    """The lines as the JSON Lines reader splits them: at b"\\n" only."""
    return io.BytesIO(data).readlines()


def is_blank(line: bytes, number: int) -> bool:
    body = line[len(BOM):] if number == 1 and line.startswith(BOM) else line
    return not body.strip()


def decompress(path: Path, data: bytes) -> bytes:
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def report_rows(out: Path) -> list[dict]:
    return pq.read_table(out / "duplicates.parquet").to_pylist()


def rejects(out: Path) -> list[dict]:
    path = out / "rejects.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def reconcile(out: Path, name: str, data: bytes, text_field="text", read_lines=None):
    """Check where every record of the input shard `name` (uncompressed content `data`) went.

    read_lines: for a shard whose stream broke, the number of lines before the break (the
    reject names the line after it); None when the whole file was readable.
    Returns (kept line numbers, removed line numbers, rejected line numbers).
    """
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["complete"] is True
    lines = lines_of(data)
    if read_lines is not None:
        lines = lines[:read_lines]
    records = [k for k, line in enumerate(lines, 1) if not is_blank(line, k)]
    rejected = {r["line"] for r in rejects(out) if r["file"] == name}
    rows = [r for r in report_rows(out) if r["file"] == name]
    removed = {r["line"] for r in rows if r["start"] is None}  # whole records (or emptied)
    edited = {r["line"] for r in rows if r["start"] is not None} - removed
    assert not rejected & removed, "a record both rejected and removed"
    expected = [k for k in records if k not in rejected and k not in removed]
    kept_path = out / name
    kept_lines = lines_of(decompress(kept_path, kept_path.read_bytes())) \
        if kept_path.exists() else []
    assert len(kept_lines) == len(expected), (name, len(kept_lines), len(expected))
    for number, got in zip(expected, kept_lines):
        original = lines[number - 1]
        if number in edited and got != original:
            before = json.loads(original.decode("utf-8", "surrogatepass").lstrip("\ufeff"))
            after = json.loads(got.decode("utf-8").lstrip("\ufeff"))
            assert before.pop(text_field) != after.pop(text_field)
            assert before == after  # only the text field changed
        else:
            assert got == original, (name, number)  # byte for byte
    # every reject and removal names a record of the file (or the whole file: line 0, or the
    # line after the last one read when the stream broke)
    allowed = set(records) | {0} | ({read_lines + 1} if read_lines is not None else set())
    assert removed <= set(records) and rejected <= allowed, (removed, rejected)
    assert all(r["dup_of"] is not None for r in rows if r["kind"] != "emptied")
    return expected, sorted(removed), sorted(rejected)


def outputs(folder: Path) -> dict:
    """Every file under folder (summary.json aside: it holds timings), by relative name."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "summary.json"}
