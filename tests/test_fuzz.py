"""Fuzz targets (hypothesis, bounded): the readers and the normalizer on arbitrary input.

A reader given any bytes either yields records or raises InputError (on_reject: hands it
rejects), never another exception; any str goes through normalization and find_repeats
without raising. The examples are few and the deadline off, so this takes seconds in CI;
raise HYPOTHESIS_PROFILE's max_examples to fuzz longer.
"""

import gzip

import numpy as np
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dedup
from dedup.config import Config
from dedup.errors import InputError
from dedup.io import Reader, discover
from dedup.normtable import load_table
from dedup.kernels.normalize import normalize_units
from dedup.pipeline import codepoints

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

LINES = st.lists(st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b'{"text": "a"}', b'{"text": "\\ud800"}', b'{"text": 1}', b"\xef\xbb\xbf",
                     b'{"text": "x", "id": 3}', b"\r", b"\x00", b"[]", b'{"text": "\xff"}']),
    st.text(max_size=20).map(lambda t: ('{"text": %s}' % repr(t)).encode("utf-8",
                                                                       "surrogatepass")),
), max_size=8).map(lambda parts: b"\n".join(parts))


def read_all(tmp_path, name, data, skip):
    path = tmp_path / name
    path.write_bytes(data)
    seen = []
    reader = Reader(discover([str(path)]), id_field="id" if "id" in name else None,
                    on_reject=seen.append if skip else None)
    try:
        for _ in range(2):  # a second pass, as the pipeline does
            records = list(reader.records())
            assert all(isinstance(r.text, str) and isinstance(r.id, str) for r in records)
    except InputError as err:
        assert not skip, err  # skip mode hands every problem to on_reject
        assert str(err) and "\n" not in str(err)
    return seen


@FUZZ
@given(data=LINES, kind=st.sampled_from(["plain", "gz", "zst", "cut-gz", "cut-zst", "txt"]),
       skip=st.booleans(), with_id=st.booleans())
def test_readers_yield_records_or_raise_input_error(tmp_path_factory, data, kind, skip,
                                                    with_id):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    name = "in_id" if with_id else "in"
    if kind == "txt":
        read_all(tmp_path, f"{name}.txt", data, skip)
        return
    if kind in ("gz", "cut-gz"):
        data = gzip.compress(data, mtime=0)
    elif kind in ("zst", "cut-zst"):
        data = zstandard.ZstdCompressor().compress(data)
    if kind.startswith("cut"):
        data = data[: len(data) * 2 // 3]
    suffix = {"plain": "", "gz": ".gz", "cut-gz": ".gz", "zst": ".zst", "cut-zst": ".zst"}[kind]
    read_all(tmp_path, f"{name}.jsonl{suffix}", data, skip)


@FUZZ
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".jsonl.gz", ".jsonl.zst",
                                                              ".parquet"]))
def test_garbage_compressed_and_parquet_files(tmp_path_factory, data, suffix):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    read_all(tmp_path, f"in{suffix}", data, skip=False)
    read_all(tmp_path, f"in{suffix}", data, skip=True)


@settings(FUZZ, max_examples=50)
@given(text=st.text(max_size=300))
def test_normalization_and_find_repeats_never_raise(text):
    table, exp_offsets, exp_values = load_table()
    cps = codepoints(text)
    for is_word in (False, True):
        norm, offsets, _ = normalize_units(cps, np.array([0], dtype=np.int64),
                                           np.array([len(text)], dtype=np.int64), table,
                                           exp_offsets, exp_values, is_word, False)
        assert offsets.size == 2
    doubled = text + "\n" + text
    for unit in ("paragraph", "sentence"):
        groups = dedup.find_repeats(doubled, Config(unit=unit))
        assert all(0 <= m.start <= m.end <= len(doubled) for g in groups for m in g.members)
        dedup.collapse(doubled, Config(unit=unit))


def test_zlib_level_garbage_inside_a_valid_gzip_header(tmp_path):
    """A gzip header followed by deflate garbage: an InputError (or a reject), not zlib.error."""
    data = gzip.compress(b'{"text": "a"}\n' * 100, mtime=0)
    bad = data[:10] + bytes(b ^ 0x5A for b in data[10:-8]) + data[-8:]
    read_all(tmp_path, "bad.jsonl.gz", bad, skip=False)
    assert read_all(tmp_path, "bad2.jsonl.gz", bad, skip=True)
