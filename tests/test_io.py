import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from dedup.errors import InputError
from dedup.io import Reader, discover, edit_jsonl, shard_format

LINES = [
    {"id": "a", "text": "first text", "n": 1},
    {"id": "b", "text": "second text", "n": 2.5e3},
    {"id": 7, "text": "third — ünïcode", "tags": ["x"]},
]


def jsonl_bytes(rows):
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def read_all(paths, **kwargs):
    rejects = []
    skip = kwargs.pop("skip", False)
    reader = Reader(discover([str(p) for p in paths]), on_reject=rejects.append if skip else None,
                    **kwargs)
    return list(reader.records()), rejects


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson"])
def test_jsonl_plain_and_compressed(tmp_path, suffix):
    data = jsonl_bytes(LINES)
    path = tmp_path / f"part{suffix}"
    if suffix.endswith(".gz"):
        data_on_disk = gzip.compress(data)
    elif suffix.endswith(".zst"):
        data_on_disk = zstandard.ZstdCompressor().compress(data)
    else:
        data_on_disk = data
    path.write_bytes(data_on_disk)
    records, _ = read_all([path])
    assert [r.text for r in records] == [r["text"] for r in LINES]
    assert [r.id for r in records] == [f"part{suffix}:{k}" for k in (1, 2, 3)]
    assert b"".join(r.raw for r in records) == data
    records, _ = read_all([path], id_field="id")
    assert [r.id for r in records] == ["a", "b", "7"]


def test_parquet_and_text_files(tmp_path):
    pq.write_table(pa.table({"body": ["one", "two"], "url": ["u1", "u2"]}), tmp_path / "p.parquet")
    (tmp_path / "doc.txt").write_text("a whole document\nwith lines\n", encoding="utf-8")
    records, _ = read_all([tmp_path / "p.parquet"], text_field="body", id_field="url")
    assert [(r.id, r.text, r.line) for r in records] == [("u1", "one", 1), ("u2", "two", 2)]
    records, _ = read_all([tmp_path / "doc.txt"])
    assert [(r.id, r.text) for r in records] == [("doc.txt", "a whole document\nwith lines\n")]


def test_discover_folders_globs_and_names(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jsonl", "a.jsonl.gz", "sub/c.parquet", "notes.md", ".hidden.jsonl"):
        (tmp_path / name).write_bytes(b"")
    shards = discover([str(tmp_path)])
    assert [s.name for s in shards] == ["a.jsonl.gz", "b.jsonl", "sub/c.parquet"]
    assert [(s.format, s.compression) for s in shards] == [
        ("jsonl", "gz"), ("jsonl", None), ("parquet", None)]
    assert [s.name for s in discover([str(tmp_path / "*.jsonl*")])] == ["a.jsonl.gz", "b.jsonl"]
    with pytest.raises(InputError, match="no such file"):
        discover([str(tmp_path / "missing.jsonl")])
    with pytest.raises(InputError, match="unknown format"):
        discover([str(tmp_path / "notes.md")])
    with pytest.raises(InputError, match="matches no corpus files"):
        discover([str(tmp_path / "*.csv")])
    assert shard_format(tmp_path / "x.JSONL.ZST") == ("jsonl", "zst")


def test_a_symbolic_link_is_named_as_given(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "blob-7f3a.jsonl").write_bytes(b'{"text": "one"}\n')
    (tmp_path / "day1.jsonl").symlink_to(tmp_path / "store" / "blob-7f3a.jsonl")
    (tmp_path / "again.jsonl").symlink_to(tmp_path / "day1.jsonl")
    shards = discover([str(tmp_path / "day1.jsonl"), str(tmp_path / "again.jsonl")])
    assert [s.name for s in shards] == ["day1.jsonl"]  # one file, read once, named as given


BAD = [
    (b'{"text": "ok"}\n{"text": "broken\n', 2, "not valid JSON"),
    (b'{"text": "ok"}\n{"body": "x"}\n', 2,
     'field "text" is missing (choose another with --text-field)'),
    (b'{"text": 12}\n', 1, 'field "text" is not a string (got number)'),
    (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', 2, "not UTF-8 (byte 0xe9"),
    (b'["text"]\n', 1, "not a JSON object (got array)"),
]


@pytest.mark.parametrize("data, line, message", BAD)
def test_bad_lines_name_file_line_and_field(tmp_path, data, line, message):
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_all([path])
    assert str(err.value).startswith(f"in.jsonl line {line}: ") and message in str(err.value)
    assert "\n" not in str(err.value)
    records, rejects = read_all([path], skip=True)
    assert [(r.line, r.file) for r in rejects] == [(line, "in.jsonl")]
    assert message in rejects[0].error and rejects[0].raw == data.splitlines(True)[line - 1]
    assert len(records) == len(data.splitlines()) - 1
    json.loads(rejects[0].to_json())  # the rejects file stays valid JSON Lines


def test_empty_and_truncated_files(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(InputError, match="^empty.jsonl: file is empty$"):
        read_all([tmp_path / "empty.jsonl"])
    good = gzip.compress(jsonl_bytes(LINES * 200))
    (tmp_path / "cut.jsonl.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"cut.jsonl.gz line \d+: gzip stream is truncated"):
        read_all([tmp_path / "cut.jsonl.gz"])
    records, rejects = read_all([tmp_path / "cut.jsonl.gz"], skip=True)
    assert 0 < len(records) < 600 and len(rejects) == 1
    assert rejects[0].line == len(records) + 1


def test_parquet_without_the_column_or_with_nulls(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match='p.parquet: column "text" is missing .*--text-field'):
        read_all([tmp_path / "p.parquet"])
    pq.write_table(pa.table({"text": ["x", None]}), tmp_path / "n.parquet")
    with pytest.raises(InputError, match='n.parquet line 2: field "text" is null'):
        read_all([tmp_path / "n.parquet"])
    _, rejects = read_all([tmp_path / "p.parquet", tmp_path / "n.parquet"], skip=True)
    assert [(r.file, r.line) for r in rejects] == [("p.parquet", 0), ("n.parquet", 2)]


def test_id_field_problems(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "a", "id": [1]}\n')
    with pytest.raises(InputError, match='line 1: field "id" is not a string or integer'):
        read_all([path], id_field="id")
    with pytest.raises(InputError, match='line 1: field "url" is missing .*--id-field'):
        read_all([path], id_field="url")


def test_lone_surrogate_escapes_are_read(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "half \\ud800 pair"}\n')
    (record,), _ = read_all([path])
    assert record.text == "half \ud800 pair"


def test_blank_lines_hold_no_record(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n  \n{"text": "b"}\n')
    records, _ = read_all([path])
    assert [(r.text, r.line) for r in records] == [("a", 1), ("b", 4)]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(fields=st.dictionaries(st.text(), JSON_VALUES, max_size=5), text=st.text(),
       new_text=st.text(), spaces=st.sampled_from(["", " ", "  "]), ascii=st.booleans())
def test_edit_keeps_every_other_byte(fields, text, new_text, spaces, ascii):
    fields = {k: v for k, v in fields.items() if k not in ("text", "dedup")}
    record = {**fields, "text": text}
    sep = (f",{spaces}", f":{spaces}")
    raw = json.dumps(record, ensure_ascii=ascii, separators=sep).encode("utf-8",
                                                                         "surrogatepass") + b"\n"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # not valid input to begin with
    edited = edit_jsonl(raw, "text", new_text)
    assert json.loads(edited) == {**fields, "text": new_text}
    assert edited.endswith(b"\n")
    flagged = edit_jsonl(raw, "text", None, "dedup", [{"start": 0}])
    assert json.loads(flagged) == {**record, "dedup": [{"start": 0}]}
    assert flagged.startswith(raw.rstrip(b"\n")[:-1])  # the record up to its closing brace
    if text == new_text:
        return
    before_text = raw[:raw.index(json.dumps("text", ensure_ascii=ascii).encode())]
    assert edited.startswith(before_text)


def test_byte_order_mark_on_the_first_line_is_kept(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a", "k": 1}\n{"text": "b"}\n')
    records, _ = read_all([path])
    assert [r.text for r in records] == ["a", "b"]
    assert records[0].raw.startswith(b"\xef\xbb\xbf")
    edited = edit_jsonl(records[0].raw, "text", "new")
    assert edited == b'\xef\xbb\xbf{"text": "new", "k": 1}\n'
