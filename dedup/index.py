"""dedup.Index: an incremental, persistent index of documents and their paragraphs.

Ingestion code sees one article at a time and must decide at once whether it is new, a
near-duplicate of something stored, or new but carrying repeated paragraphs, and remember it
across restarts. The index answers what the batch path answers on the same stream:

- every document and every paragraph is a unit; units with the same normalized text share one
  stored row (its exact class), so a footer on every page is stored once;
- candidates are the stored units sharing an LSH band key with the new one (the same
  signatures and band keys as the batch path), plus the stored unit with the same normalized
  hash; every candidate is verified on exact shingle sets, re-made from the unit's stored
  normalized text (UTF-8; the units one add stores share one zstd frame, in which a paragraph
  is usually a span of its document's text), never on an estimate; a paragraph candidate that
  cannot be a repeat by an exact bound from in-memory summaries (each stored unit's distinct
  shingle count and the 512 parts of the hash space its shingles fall in) is dropped unread;
- a band bucket holds at most `max_bucket` units: a unit arriving at a full bucket is compared
  with the units in it but not added (the batch path links such a bucket as a star).

Storage is one SQLite file in WAL mode, no pickle anywhere: tables `meta` (format version,
normalization version, settings, engine fingerprint), `docs`, `units` (with their band keys),
`paragraphs`, `dropped`. The band buckets, the exact classes and the units' summaries are
held in memory, loaded from `units` and brought up to date whenever another connection has
committed.
Every add is one transaction: a process killed in the middle leaves the document fully there
or not there. Each thread gets its own connection; one writer and several reader processes
may share a file (SQLite serializes writers; readers see the last committed state).

>>> import tempfile, os
>>> with Index.open(os.path.join(tempfile.mkdtemp(), "news.idx")) as index:
...     _ = index.add("a", "A title here\\nThe body of the first article, long enough.")
...     index.check("A title here!\\nthe body of the first article long enough").duplicate_of
'a'
"""

import functools
import json
import os
import sqlite3
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import xxhash
import zstandard

from dedup.config import Config
from dedup.errors import ConfigError, InputError
from dedup.kernels.band import (
    key_directory, probe_units, sorted_lookup, table_insert, table_insert_units, table_lookup,
)
from dedup.kernels.shingle import CHAR, WORD, compact_sorted_inplace
from dedup.kernels.sketch import (
    document_units, pack_utf8, sketch_units, store_units, verify_utf8,
)
from dedup.kernels.verify import (
    BIT_WORDS, pair_bound, paragraph_repeats, set_overlaps, shingle_bits,
)
from dedup.normtable import NORMALIZATION_VERSION, load_table
from dedup.pipeline import (
    CONTAINED, EXACT, NEAR, SHINGLE_SEED, UNIT_HASH_SEED, Prepared, _fixed_permutations,
    codepoints, find_groups, kernel_threads, prepare, shingle_normalized, sort_segments,
    unit_band_keys,
)
from dedup.results import DocumentMatch, ParagraphRepeat, UnitMatch, Verdict, maker

# 2: band keys in units.bands, buckets in memory; 3: zstd, not zlib, and no index on
# units (hash, kind): exact classes are looked up in memory, and the index's random pages were
# a third of what an add wrote to the WAL; 4: no reference counts in units (remove() asks the
# indexes on docs.unit and paragraphs.unit): an add repeating stored paragraphs updated a row
# at a random page of units for each; 5: units.bits, the summary that lets a check drop most
# false candidates without reading them; 6: the units one add stores share one compressed
# text, each a span of it (units.holder, start, end): one zstd call per add instead of one per
# unit (33 against 126 us for a news-like document and its paragraphs, whose text is mostly
# the document's: 1.6 against 3.7 KB); 7: units and docs without AUTOINCREMENT (meta's
# last_removed_unit keeps unit ids from being given twice), and paragraphs as one B-tree keyed
# by (unit, doc, position) with each document's spans in docs.paragraphs: a table and an
# index before, so each paragraph of an add went into two B-trees (the two: about 50 us an add
# less in a replay of an add's statements)
FORMAT_VERSION = 7
APPLICATION_ID = 0x64447570  # "dDup" in the SQLite header: tells our files from other databases
SQLITE_MAGIC = b"SQLite format 3\x00"
DOCUMENT, PARAGRAPH = 0, 1
# paragraph band keys are salted so that a paragraph never lands in a document's bucket
PARAGRAPH_SALT = np.uint64(0x9E3779B97F4A7C15)
_SALT = np.array(PARAGRAPH_SALT).view(np.int64)[()]  # the same bits, for int64 keys
# str.isspace() of every code point up to U+3000, the last one it holds true of
# (tests/test_index.py checks that for this Python): how the units' spans are stripped
_IS_SPACE = np.array([chr(c).isspace() for c in range(0x3001)])
# settings that decide what is stored: opening with other values would give wrong answers
COMPATIBILITY = ("shingle", "ngram", "num_perm", "seed")
PROBE_TEXT = "Engine fingerprint: the quick brown fox\nنص عربي قصير للتحقق ١٢٣\nÉtape trois"
_RANK = {EXACT: 0, NEAR: 1, CONTAINED: 2}
# the verdicts' parts, made without their __init__ (dedup.results.maker)
_DOCUMENT_MATCH, _PARAGRAPH_REPEAT = maker(DocumentMatch), maker(ParagraphRepeat)
# zstd, one context per thread: on this project's news-like units it measured about half of
# zlib level 1's time to compress (7-8 vs 18 us a paragraph, 34 vs 72 us a document) and to
# decompress, for about the same size (0.70 vs 0.66 of a paragraph, 0.50 vs 0.51 of a document).
# Level 1, not 3: an add's packed text (a document and its new paragraphs, 3.1 KB) took 15.9
# against 20.8 us, for 1,575 against 1,549 bytes
ZSTD_LEVEL = 1
_MATCH_CHUNK = 4096
# where each of a list of document units (first JSON list) and paragraph units (second)
# first occurs (earliest document, then position), in one statement: (0, unit, key, docs id,
# NULL, copies) for a document, (1, unit, key, docs id, its row of docs.paragraphs, NULL) for
# a paragraph: its first (doc, position) in the paragraphs table's key order, two seeks into
# one leaf. The row is cut out in SQL: returning the whole blob made the statement 20 us
# slower for an edited copy's 12 paragraphs (54 against 37 us)
_FIRST_PLACES = (
    "SELECT 0, j.value, d.key, d.id, NULL, "
    "(SELECT count(*) FROM docs WHERE unit = j.value) FROM json_each(?1) j "
    "JOIN docs d ON d.id = (SELECT min(id) FROM docs WHERE unit = j.value) "
    "UNION ALL SELECT 1, j.value, d.key, d.id, substr(d.paragraphs, 32 * (SELECT min(position) "
    "FROM paragraphs WHERE unit = j.value AND doc = d.id) + 1, 32), NULL FROM json_each(?2) j "
    "JOIN docs d ON d.id = (SELECT min(doc) FROM paragraphs WHERE unit = j.value)")
# a row of docs.paragraphs: (unit id or -1, start, end, line) int64 little-endian
_SPAN = struct.Struct("<4q")
_INSERT_UNITS = ("INSERT INTO units (id, kind, hash, norm_length, n_shingles, holder, start, "
                 "end, norm, bands, bits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_PROBE_CHUNK = 1 << 16  # units per bucket lookup in may_match()  # units per kernel call in match(): bounds the shingles held at once
_SQL_CHUNK = 20_000  # values per json_each list
# numba's workqueue threading layer must not be entered by two threads at once
_KERNEL_LOCK = threading.RLock()


_STATE = threading.local()  # depth of _kernels() on this thread


@contextmanager
def _kernels():
    """Kernel calls on one document: one thread. Waking a thread pool costs more than the
    work, and milliseconds on a busy machine (OpenMP threads spin for a free core). Nested
    uses are free: setting numba's thread count costs about 50 us a call."""
    if getattr(_STATE, "depth", 0):
        yield
        return
    with _KERNEL_LOCK, kernel_threads(0):
        _STATE.depth = 1
        try:
            yield
        finally:
            _STATE.depth = 0

SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE units (
    -- given in order and never again: above the largest here and meta's last_removed_unit
    -- (AUTOINCREMENT's bookkeeping measured 27 us an add)
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,         -- 0 document, 1 paragraph
    hash INTEGER NOT NULL,         -- xxh64 of the normalized unit, as in the batch path
    norm_length INTEGER NOT NULL,  -- normalized characters
    n_shingles INTEGER NOT NULL,
    -- the normalized text, re-shingled to verify: UTF-8 bytes start..end of the text that
    -- unit `holder` holds (itself, or the first unit stored with it by the same add: their
    -- ids are consecutive), where a paragraph is usually a span of its document's text
    holder INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    norm BLOB,                     -- the holder's: zstd(the texts of its units), else NULL
    -- the band keys under which it is in a bucket (int64 little-endian): a key is missing
    -- only when its bucket was full. Buckets are kept in memory, loaded from these: 16 rows
    -- per unit inserted at random places of a B-tree cost most of an add.
    bands BLOB NOT NULL,
    -- which of 512 parts of the hash space its shingles fall in (kernels.verify.shingle_bits,
    -- 8 uint64 little-endian): with n_shingles, an upper bound on what a candidate can share
    -- with it, held in memory, so that most false candidates are never read
    bits BLOB NOT NULL
    -- (hash, kind) is unique, kept so by the writer (under the write lock, from the in-memory
    -- exact classes) and checked by integrity_check()
);
CREATE TABLE docs (
    id INTEGER PRIMARY KEY,        -- insertion order: the first copy is the earliest
    key TEXT NOT NULL UNIQUE,
    text_hash INTEGER NOT NULL,    -- xxh64 of the original text: idempotent adds
    unit INTEGER,                  -- NULL when the text normalizes to nothing
    n_chars INTEGER NOT NULL,
    -- its paragraphs by position (the lines that are not blank): (unit id, or -1 when it
    -- normalizes to nothing, character start and end in the original text, line) as int64
    -- little-endian, 32 bytes each
    paragraphs BLOB NOT NULL
);
CREATE INDEX docs_unit ON docs (unit);
-- which documents use each paragraph unit, and where: its first place (the earliest document)
-- and whether it is still used are seeks into this key: one B-tree, not a table and an index
-- (measured 34 us an add less)
CREATE TABLE paragraphs (
    unit INTEGER NOT NULL,
    doc INTEGER NOT NULL,
    position INTEGER NOT NULL,     -- row of docs.paragraphs
    PRIMARY KEY (unit, doc, position)
) WITHOUT ROWID;
-- units removed since the file was created: other processes drop them from their buckets
CREATE TABLE dropped (seq INTEGER PRIMARY KEY AUTOINCREMENT, unit INTEGER NOT NULL);
"""


def _text_hash(text: str) -> int:
    value = xxhash.xxh64_intdigest(text.encode("utf-8", "surrogatepass"))
    return value - (1 << 64) if value >= 1 << 63 else value


_CODECS = threading.local()


def _compressor():
    """This thread's zstd compress function."""
    codec = getattr(_CODECS, "compress", None)
    if codec is None:
        codec = _CODECS.compress = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress
    return codec


def _compress(data: bytes) -> bytes:
    return _compressor()(data)


def _decompressor():
    """This thread's zstd decompress function."""
    codec = getattr(_CODECS, "decompress", None)
    if codec is None:
        codec = _CODECS.decompress = zstandard.ZstdDecompressor().decompress
    return codec


def _decompress(blob: bytes) -> bytes:
    return _decompressor()(blob)


def _decode_norm(data: bytes) -> np.ndarray:
    """Code points (int32) of a unit's normalized text, from its UTF-8."""
    return np.frombuffer(data.decode("utf-8").encode("utf-32-le"),
                         dtype=np.uint32).astype(np.int32)


def _pack(analysis: "_Analysis", units: np.ndarray) -> tuple[bytes, list]:
    """The compressed text of units of an analysis stored together (kernels.sketch.pack_utf8:
    a paragraph inside its document's text is a span of it). Returns (zstd blob, [(start,
    end) of each unit's UTF-8 in the decompressed text])."""
    data, starts, ends = pack_utf8(analysis.norm, analysis.norm_offsets, units)
    return _compress(data.tobytes()), list(zip(starts.tolist(), ends.tolist()))


def _unit_texts(rows) -> list:
    """Each unit's UTF-8 from (holder id, start, end, the holder's blob or None) rows, one
    decompression per holder; None for a unit whose holder, span or frame is missing or
    damaged."""
    decompress = _decompressor()
    held = {}
    out = []
    for holder, start, end, blob in rows:
        text = held.get(holder)
        if text is None and blob is not None:
            try:
                text = held[holder] = decompress(blob)
            except zstandard.ZstdError:
                pass
        out.append(text[start:end] if text is not None and 0 <= start <= end <= len(text)
                   else None)
    return out


def _paragraph_rows(analysis: "_Analysis", ids: np.ndarray) -> bytes:
    """docs.paragraphs of an analysis whose units are stored as ids (int64 per unit, -1 for
    one that normalizes to nothing; unit 0, the document, is not a row)."""
    rows = np.empty((4, len(analysis) - 1), dtype="<i8")
    rows[0], rows[1], rows[2], rows[3] = (ids[1:], analysis.starts[1:], analysis.ends[1:],
                                          analysis.lines[1:])
    return rows.T.tobytes()


def _check_key(key) -> str:
    if not isinstance(key, str) or not key:
        raise InputError(f"key must be a non-empty str, got {key!r}")
    return key


def _check_text(text, name="text") -> str:
    if not isinstance(text, str):
        raise InputError(f"{name} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise InputError(f"{name} is empty (only white space): nothing to index")
    return text


@dataclass
class _Analysis:
    """One text, normalized, hashed, shingled and banded (kernels.sketch.sketch_units): unit 0
    is the whole document, units 1.. its paragraphs. raw holds each unit's shingle hashes in
    text order (neither sorted nor distinct); keys are the units' band keys (paragraph ones
    salted) as signed ints. Distinct sizes and the paragraphs' overlaps are counted when first
    asked for (a check of a document with no candidate never needs the document's)."""

    text: str
    starts: np.ndarray
    ends: np.ndarray
    lines: np.ndarray
    norm: np.ndarray          # int32 normalized code points
    norm_offsets: np.ndarray
    hashes: np.ndarray        # uint64 xxh64 of each normalized unit
    raw: np.ndarray
    raw_offsets: np.ndarray
    keys: np.ndarray          # int64[n_units, n_bands]
    _sizes: np.ndarray | None = None
    _overlaps: tuple | None = None
    document_size: int | None = None  # distinct shingles of unit 0, when counted already

    def __len__(self):
        return self.starts.size

    @property
    def norm_lengths(self) -> np.ndarray:
        return np.diff(self.norm_offsets)

    def active(self) -> list[int]:
        return np.flatnonzero(self.norm_offsets[1:] > self.norm_offsets[:-1]).tolist()

    def paragraph_overlaps(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct sizes int64[n_paragraphs], shared int64[n, n] for i < j)."""
        if self._overlaps is None:
            lo = self.raw_offsets[1]
            self._overlaps = set_overlaps(self.raw[lo:], self.raw_offsets[1:] - lo, 0)
        return self._overlaps

    def sizes(self) -> np.ndarray:
        """Distinct shingles of every unit."""
        if self._sizes is None:
            if self.document_size is None:
                document, _ = set_overlaps(self.raw, self.raw_offsets[:2], 1)
            else:
                document = np.array([self.document_size], dtype=np.int64)
            self._sizes = np.concatenate((document, self.paragraph_overlaps()[0]))
        return self._sizes


@dataclass
class _Found:
    """What a lookup found for an analysis, kept for storing it afterwards."""

    bucket_counts: np.ndarray  # like analysis.keys: stored units in each key's bucket
    exact_ids: np.ndarray  # per unit: the stored unit with the same normalized text, or -1
    verdict_parts: tuple


_NO_KEYS = np.zeros(0, dtype=np.uint64)
_NO_VALUES = np.zeros(0, dtype=np.int64)
_NO_ENTRIES = ((_NO_KEYS, _NO_VALUES), (_NO_KEYS, _NO_VALUES))
_BITS_BYTES = 8 * BIT_WORDS


class _MultiMap:
    """uint64 key -> int64 values (unit ids), in memory: a sorted bulk searched through a
    directory (kernels.band.sorted_lookup: a few cache misses a key at any size), and a hash
    table of recent additions (kernels.band.table_insert), merged into the bulk when it grows
    (a linear merge of sorted arrays, not a sort of everything). Keys are taken as signed or
    unsigned 64-bit ints (SQLite's integers are signed), both meaning the same bits."""

    # entries of the table: the first one, doubled as needed up to the most (56 MB for band
    # keys), then merged into the bulk (a linear merge: 0.5 s at 100,000 documents, once
    # every ~7,300 adds of 144 keys)
    _FIRST = 1 << 10
    _MOST = 1 << 20
    _DEAD = 1 << 17  # removed values kept (and filtered out of answers) before a clean-up

    def __init__(self, code_bits: int = 0):
        self.code_bits = code_bits  # a value is a unit id << code_bits | a code
        self.keys = np.zeros(0, dtype=np.uint64)   # sorted
        self.values = np.zeros(0, dtype=np.int64)
        self.directory, self.shift = key_directory(self.keys)
        self._table(self._FIRST)

    def _table(self, capacity: int, keys=None, values=None):
        """A fresh table for `capacity` entries, holding (keys, values) if given."""
        self.slot_key = np.zeros(2 * capacity, dtype=np.uint64)
        self.slot_head = np.full(2 * capacity, -1, dtype=np.int64)
        self.entry_key = np.zeros(capacity, dtype=np.uint64)
        self.entry_value = np.zeros(capacity, dtype=np.int64)
        self.entry_next = np.zeros(capacity, dtype=np.int64)
        self.n_recent = 0
        if keys is not None and keys.size:
            self.n_recent = table_insert(self.slot_key, self.slot_head, self.entry_key,
                                         self.entry_value, self.entry_next, 0, keys, values)

    def add(self, keys: np.ndarray, values: np.ndarray):
        """Add (key, value) pairs (64-bit int arrays of one size)."""
        keys = np.ascontiguousarray(keys).view(np.uint64)
        values = np.asarray(values, dtype=np.int64)
        if self.n_recent + keys.size > self._MOST:
            self.merge_recent()
            if keys.size > self._MOST:
                self.bulk(keys, values)
                return
        self._room(keys.size)
        self.n_recent = table_insert(self.slot_key, self.slot_head, self.entry_key,
                                     self.entry_value, self.entry_next, self.n_recent, keys,
                                     values)

    def add_units(self, keys: np.ndarray, counts: np.ndarray, ids: np.ndarray):
        """add() of unit ids[k] under its next counts[k] keys (int64 arrays, keys in order),
        in one kernel call (kernels.band.table_insert_units)."""
        if self.n_recent + keys.size > self._MOST:
            self.add(keys, np.repeat(ids, counts))
            return
        self._room(keys.size)
        self.n_recent = table_insert_units(self.slot_key, self.slot_head, self.entry_key,
                                           self.entry_value, self.entry_next, self.n_recent,
                                           keys, counts, ids)

    def _room(self, n: int):
        """A table with room for n more recent entries (doubled as needed)."""
        needed = self.n_recent + n
        if needed > self.entry_key.size:
            capacity = self.entry_key.size
            while capacity < needed:
                capacity *= 2
            n = self.n_recent
            self._table(capacity, self.entry_key[:n].copy(), self.entry_value[:n].copy())

    def bulk(self, keys: np.ndarray, values: np.ndarray):
        """Merge many (key, value) pairs into the sorted bulk."""
        keys = np.ascontiguousarray(keys).view(np.uint64)
        # not stable: the members of a bucket are a set (a stable sort of 14M keys took 3x)
        order = np.argsort(keys)
        keys, values = keys[order], np.asarray(values, dtype=np.int64)[order]
        if self.keys.size:
            # a linear merge: each new key goes after the equal or smaller ones already here,
            # shifted by the new keys before it (np.insert would sort the positions again)
            at = np.searchsorted(self.keys, keys, "right") + np.arange(keys.size)
            is_new = np.zeros(self.keys.size + keys.size, dtype=bool)
            is_new[at] = True
            merged_keys = np.empty(is_new.size, dtype=np.uint64)
            merged_values = np.empty(is_new.size, dtype=np.int64)
            merged_keys[at], merged_values[at] = keys, values
            merged_keys[~is_new], merged_values[~is_new] = self.keys, self.values
            keys, values = merged_keys, merged_values
        self.keys, self.values = keys, values
        self.directory, self.shift = key_directory(self.keys)

    def merge_recent(self):
        """Merge the recent additions into the bulk."""
        if self.n_recent:
            n = self.n_recent
            keys, values = self.entry_key[:n].copy(), self.entry_value[:n].copy()
            self._table(self._FIRST)
            self.bulk(keys, values)

    def drop(self, dead: set):
        """Forget the values in dead."""
        dead = np.fromiter(dead, dtype=np.int64, count=len(dead))
        keep = ~np.isin(self.values >> self.code_bits, dead)
        self.keys, self.values = self.keys[keep], self.values[keep]
        self.directory, self.shift = key_directory(self.keys)
        n = self.n_recent
        keep = ~np.isin(self.entry_value[:n] >> self.code_bits, dead)
        self._table(self.entry_key.size, self.entry_key[:n][keep], self.entry_value[:n][keep])

    def arrays(self, extra_keys=_NO_KEYS, extra_values=_NO_VALUES) -> tuple:
        """The map as kernels.band.probe_units takes it, with a sorted extra part (uint64
        keys, int64 values) searched too."""
        return (self.keys, self.directory, self.shift, self.values, self.slot_key,
                self.slot_head, self.entry_value, self.entry_next, extra_keys, extra_values)

    def lookup(self, queries: np.ndarray, extra=None) -> tuple[np.ndarray, np.ndarray]:
        """(query index, value) of every value under each query (64-bit int array); extra: a
        dict signed key -> values also searched (a transaction's own additions)."""
        queries = np.ascontiguousarray(queries).view(np.uint64)
        query, position = sorted_lookup(self.keys, self.directory, self.shift, queries)
        values = self.values[position]
        parts = [(query, values)]
        if self.n_recent:
            parts.append(table_lookup(self.slot_key, self.slot_head, self.entry_value,
                                      self.entry_next, queries))
        if extra:
            more_query, more_values = [], []
            for k, key in enumerate(queries.view(np.int64).tolist()):
                members = extra.get(key)
                if members:
                    more_query += [k] * len(members)
                    more_values += members
            parts.append((np.asarray(more_query, dtype=np.int64),
                          np.asarray(more_values, dtype=np.int64)))
        if len(parts) == 1:
            return query, values
        return (np.concatenate([q for q, _ in parts]), np.concatenate([v for _, v in parts]))


class _Buckets:
    """The LSH buckets (band key -> unit ids) and the exact classes ((kind, normalized hash) ->
    unit id) of the stored units, in memory, so that check() reads the file only when it finds
    something to verify or to name.

    Loaded from units and brought up to date whenever another connection has committed
    (PRAGMA data_version), from the units added since (ids only grow: none is given twice) and the
    `dropped` log. Changes made inside a write transaction live in a per-thread _Overlay,
    merged only once the transaction commits, so a rollback (or a killed process) leaves
    nothing behind.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.bands = _MultiMap()
        self.exact = _MultiMap(code_bits=1)  # normalized hash -> unit id << 1 | kind
        self.dead = set()  # removed unit ids still in the maps
        # by unit id: distinct shingles (0: no summary) and shingle_bits, for pair_bound
        self.sizes = np.zeros(0, dtype=np.int64)
        self.bits = np.zeros((0, BIT_WORDS), dtype=np.uint64)
        self._dead_array = _NO_VALUES  # dead as a sorted array; None when to be remade
        self.last_unit = 0
        self.last_drop = 0

    def refresh(self, conn):
        """Take in what other connections committed since the last refresh."""
        with self.lock:
            cursor = conn.execute("SELECT id, kind, hash, bands, n_shingles, bits FROM units "
                                  "WHERE id > ? ORDER BY id", (self.last_unit,))
            parts = []  # numpy columns per batch of rows: no Python object per unit stays
            while rows := cursor.fetchmany(1 << 16):
                ids, kinds, hashes, blobs, sizes, bits = zip(*rows)
                lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
                if (lengths % 8).any():  # a damaged file: integrity_check() names the units
                    blobs = [blob[:len(blob) // 8 * 8] for blob in blobs]
                sizes = np.asarray(sizes, dtype=np.int64)
                is_bad = [len(row) != _BITS_BYTES for row in bits]
                if any(is_bad):  # damaged too: no summary, so never a bound
                    sizes[is_bad] = 0
                    bits = [bytes(_BITS_BYTES) if bad else row for row, bad in zip(bits, is_bad)]
                parts.append((np.asarray(ids, dtype=np.int64), np.asarray(kinds, dtype=np.int64),
                              np.asarray(hashes, dtype=np.int64),
                              np.frombuffer(b"".join(blobs), dtype="<i8"), lengths // 8, sizes,
                              np.frombuffer(b"".join(bits), dtype="<u8").reshape(-1, BIT_WORDS)))
                del rows, ids, kinds, hashes, blobs, sizes, bits
            drops = conn.execute("SELECT seq, unit FROM dropped WHERE seq > ? ORDER BY seq",
                                 (self.last_drop,)).fetchall()
            if parts:
                self._take(*(np.concatenate(column) for column in zip(*parts)))
            for seq, unit_id in drops:
                if unit_id <= self.last_unit:  # else it came and went before we looked
                    self.dead.add(unit_id)
                    self._dead_array = None
                self.last_drop = seq
            self._maybe_merge()

    def _take(self, ids, kinds, hashes, keys, counts, sizes, bits):
        """Add units (ids above last_unit, ascending) with their kinds, normalized hashes,
        band keys (keys, counts[k] of them for unit k, in order), distinct shingle counts
        (int64 arrays) and shingle_bits rows (uint64[n, 8])."""
        if not ids.size or ids[-1] <= self.last_unit:
            return
        if ids[-1] >= self.sizes.size:  # the summaries are indexed by unit id
            # room for a quarter more: doubling left 1M unused rows after a 1.2M-unit load
            capacity = max(int(ids[-1] * 1.25), self.sizes.size + 1024)
            self.sizes = np.concatenate((self.sizes, np.zeros(capacity - self.sizes.size,
                                                              dtype=np.int64)))
            self.bits = np.concatenate((self.bits, np.zeros(
                (capacity - self.bits.shape[0], BIT_WORDS), dtype=np.uint64)))
        self.sizes[ids] = sizes
        self.bits[ids] = bits
        coded = ids << 1 | kinds
        if ids[0] > self.last_unit and ids.size <= 4096:  # an add's units: into the table
            self.bands.add_units(keys, counts, ids)
            self.exact.add(hashes, coded)
            self.last_unit = int(ids[-1])
            return
        values = np.repeat(ids, counts)
        if ids[0] <= self.last_unit:  # a unit this handle took in already is skipped
            is_new = ids > self.last_unit
            keys, values = keys[values > self.last_unit], values[values > self.last_unit]
            coded, hashes = coded[is_new], hashes[is_new]
        if ids.size > 4096:  # many: merge sorted arrays rather than fill the table
            self.bands.bulk(keys, values)
            self.exact.bulk(hashes, coded)
        else:
            self.bands.add(keys, values)
            self.exact.add(hashes, coded)
        self.last_unit = int(ids[-1])

    def _maybe_merge(self):
        if len(self.dead) > _MultiMap._DEAD:
            for found in (self.bands, self.exact):
                found.drop(self.dead)
            self.dead = set()
            self._dead_array = None

    def commit(self, overlay: "_Overlay"):
        """Merge a committed transaction's overlay."""
        with self.lock:
            if overlay.n_added:  # ids ascending: given out in order
                self._take(*overlay.columns())
            if overlay.dead:
                self.dead |= overlay.dead
                self._dead_array = None
            self._maybe_merge()

    def probe(self, analysis: "_Analysis", overlay) -> tuple:
        """kernels.band.probe_units of the text's units against the stored ones and the
        overlay's (a write transaction's own additions and removals)."""
        is_active = analysis.norm_offsets[1:] > analysis.norm_offsets[:-1]
        extra_bands = extra_exact = (_NO_KEYS, _NO_VALUES)
        overlay_dead = ()
        if overlay is not None:
            extra_bands, extra_exact = overlay.arrays()
            overlay_dead = overlay.dead
        with self.lock:
            if self._dead_array is None:  # self.dead changed since it was made
                self._dead_array = _sorted_ids(self.dead)
            dead = self._dead_array
            if overlay_dead:
                dead = _sorted_ids(self.dead | overlay_dead)
            return probe_units(analysis.hashes, is_active, analysis.keys.view(np.uint64),
                               self.exact.arrays(*extra_exact), self.bands.arrays(*extra_bands),
                               dead)

    def bound(self, analysis: "_Analysis", left, right_ids, config) -> np.ndarray:
        """kernels.verify.pair_bound of candidate pairs (unit of the text, stored unit id,
        sorted by unit): which may be repeats. A unit this transaction added has no summary
        here yet, and is kept."""
        with self.lock:
            sizes, bits = self.sizes, self.bits
        return pair_bound(analysis.raw, analysis.raw_offsets, left, right_ids, sizes, bits,
                          config.threshold, config.containment_threshold)

    @staticmethod
    def _alive(query, units, dead, overlay):
        """(query, units) without the units removed (dead, or in the overlay's dead)."""
        if overlay is not None and overlay.dead:
            dead = dead | overlay.dead
        if dead and units.size:
            alive = np.fromiter((u not in dead for u in units.tolist()), dtype=bool,
                                count=units.size)
            query, units = query[alive], units[alive]
        return query, units

    def find_exact(self, hashes: np.ndarray, kinds: np.ndarray,
                   overlay) -> tuple[np.ndarray, np.ndarray]:
        """(position in hashes, unit id) of the live stored units with the same normalized
        hash and kind (int64 arrays of one size): at most one each."""
        with self.lock:
            query, coded = self.exact.lookup(np.ascontiguousarray(hashes, dtype=np.int64),
                                             overlay.by_hash if overlay else None)
            dead = self.dead
        is_kind = (coded & 1) == kinds[query]
        return self._alive(query[is_kind], coded[is_kind] >> 1, dead, overlay)

    def members(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, unit id) of every live bucket member under the band keys int64[n, bands] of n
        units, row indexing keys; vectorized (the batch path asks for thousands of units)."""
        n_bands = keys.shape[1] if keys.ndim == 2 else 1
        with self.lock:
            query, units = self.bands.lookup(np.ascontiguousarray(keys, dtype=np.int64).ravel())
            dead = self.dead
        query, units = self._alive(query, units, dead, None)
        return query // n_bands, units


class _Overlay:
    """A write transaction's changes to the buckets, merged into them once it commits. Its
    additions are kept as numpy columns, one batch per stored text (or bulk batch), and
    looked up only by a later text of the same add_many (or bulk), so the lookup forms
    (arrays() for probe_units, by_hash for the bulk path's exact classes) are made when asked
    for, not on every add."""

    def __init__(self):
        # (ids, kinds, hashes, placed band keys, keys per unit, n_shingles, bits): int64
        # columns but bits uint64[n, 8]; ids ascending across batches
        self.batches = []
        self.n_added = 0
        self.dead = set()
        self._by_hash = {}  # hash -> [unit id << 1 | kind]
        self._hashes_indexed = 0  # batches already in _by_hash
        self._arrays = None  # (additions counted, arrays()) when made

    def add(self, ids, kinds, hashes, keys, counts, sizes, bits):
        """Units stored by this transaction, as columns (see batches)."""
        if ids.size:
            self.batches.append((ids, kinds, hashes, keys, counts, sizes, bits))
            self.n_added += ids.size

    def columns(self) -> tuple:
        """All the batches' columns, concatenated."""
        if len(self.batches) == 1:
            return self.batches[0]
        return tuple(np.concatenate(column) for column in zip(*self.batches))

    @property
    def by_hash(self) -> dict:
        for ids, kinds, hashes, *_ in self.batches[self._hashes_indexed:]:
            for coded, unit_hash in zip((ids << 1 | kinds).tolist(), hashes.tolist()):
                self._by_hash.setdefault(unit_hash, []).append(coded)
        self._hashes_indexed = len(self.batches)
        return self._by_hash

    def arrays(self) -> tuple:
        """((band keys, unit ids), (hashes, unit id << 1 | kind)) of the additions, sorted by
        key (uint64 keys, int64 values): the extra parts of probe_units' maps."""
        if not self.n_added:
            return _NO_ENTRIES
        if self._arrays is None or self._arrays[0] != self.n_added:
            ids, kinds, hashes, keys, counts, *_ = self.columns()
            parts = []
            for part_keys, values in ((keys, np.repeat(ids, counts)), (hashes, ids << 1 | kinds)):
                part_keys = part_keys.view(np.uint64)
                order = np.argsort(part_keys, kind="stable")
                parts.append((part_keys[order], values[order]))
            self._arrays = (self.n_added, tuple(parts))
        return self._arrays[1]

    def copy(self) -> "_Overlay":
        other = _Overlay()
        other.batches = list(self.batches)
        other.n_added = self.n_added
        other.dead = set(self.dead)
        return other


class Index:
    """An incremental, persistent near-duplicate index of documents and paragraphs.

    Open with Index.open(path, config=None); use as a context manager or call close().
    Settings that decide what is stored (shingle, ngram, num_perm, seed, bands and rows) are
    fixed when the file is created; thresholds may differ per session (verification is exact,
    only the LSH recall at another threshold changes). Config.unit is not used: documents and
    paragraphs are always both indexed.
    """

    def __init__(self, path: Path, config: Config, read_only: bool, timeout: float):
        self.path = path
        self.config = config
        self._band_rows = config.band_rows
        self.read_only = read_only
        self._timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections = []
        self._closed = False
        self._buckets = _Buckets()

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path, config: Config | None = None, *, read_only: bool = False,
             timeout: float = 60.0) -> "Index":
        """Open the index at `path`, creating it (with `config`, default Config()) if absent.

        An existing index keeps its stored settings: config=None uses them; a config whose
        compatibility settings differ raises ConfigError. Raises InputError for a directory,
        a file that is not a dedup index, an index of a newer format, or a location that
        cannot be written (read_only=True opens an existing index for check only).
        timeout: seconds to wait for another writer before giving up.
        """
        if config is not None and not isinstance(config, Config):
            raise ConfigError(f"config must be a dedup.Config, got {type(config).__name__}")
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        name = os.fspath(path)
        path = Path(name)
        if path.is_dir() or str(name).endswith(("/", os.sep)):
            raise InputError(f"{path}: is a directory (give a file name for the index)")
        try:
            exists = path.exists() and path.stat().st_size > 0
            if exists:
                with open(path, "rb") as handle:
                    header = handle.read(16)
        except OSError as err:
            raise InputError(f"{path}: cannot read ({err.strerror})") from None
        if exists:
            if header != SQLITE_MAGIC:
                raise InputError(f"{path}: not a dedup index (not a SQLite database)")
        elif read_only:
            raise InputError(f"{path}: no such index (read_only cannot create one)")
        elif not path.parent.is_dir():
            raise InputError(f"{path}: folder {path.parent} does not exist")
        index = cls(path, config or Config(), read_only, timeout)
        try:
            if exists:
                index._load(config)
            else:
                index._create(config)
        except BaseException:
            index.close()
            raise
        return index

    def _connect(self) -> sqlite3.Connection:
        mode = "ro" if self.read_only else "rwc"
        uri = f"{self.path.resolve().as_uri()}?mode={mode}"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=self._timeout)
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable against a killed process
            conn.execute("PRAGMA cache_size = -65536")
            # the rows a check reads are at random places: map the file rather than pread them
            conn.execute("PRAGMA mmap_size = 1073741824")
            # an add writes about 55 KB of WAL (format 3, news-like 2-5 KB documents):
            # checkpoint (and fsync) every 16k pages (64 MB), about every 1,200 adds, rather
            # than SQLite's 1k pages (format 1, whose adds wrote more, measured 11.3 -> 8.5 ms
            # per add with 8k)
            conn.execute("PRAGMA wal_autocheckpoint = 16384")
        except sqlite3.Error as err:
            raise self._error(err) from None
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise InputError(f"{self.path}: the index is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _error(self, err: sqlite3.Error) -> InputError:
        text = str(err)
        if "readonly" in text or "unable to open" in text or "read-only" in text:
            return InputError(f"{self.path}: cannot write the index here ({text}); "
                              f"choose a writable location or open with read_only=True")
        if "not a database" in text or "malformed" in text:
            return InputError(f"{self.path}: not a dedup index or damaged ({text})")
        if "locked" in text or "busy" in text:
            return InputError(f"{self.path}: another process holds the index ({text})")
        if "disk" in text and "full" in text:
            return InputError(f"{self.path}: disk full ({text}); nothing was changed")
        return InputError(f"{self.path}: {text}")

    def _create(self, config_given: Config | None):
        from dedup import __version__  # here: dedup/__init__.py imports this module

        conn = self._conn()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                conn.execute("COMMIT")  # another process created it between our look and lock
                self._load(config_given)
                return
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            bands, rows = self.config.band_rows
            meta = {
                "format_version": FORMAT_VERSION,
                "normalization_version": NORMALIZATION_VERSION,
                "config": json.dumps(self.config.to_dict(), sort_keys=True),
                "bands": bands,
                "rows": rows,
                "fingerprint": self._fingerprint(),
                "created_by": f"dedup {__version__}",
            }
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [(k, str(v)) for k, v in meta.items()])
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._error(err) from None

    def _load(self, config: Config | None):
        conn = self._conn()
        try:
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if application_id != APPLICATION_ID:
                raise InputError(f"{self.path}: a SQLite database, but not a dedup index")
            if version > FORMAT_VERSION:
                raise InputError(
                    f"{self.path}: index format version {version} was written by a newer dedup; "
                    f"this one reads up to version {FORMAT_VERSION} (upgrade dedup)")
            if version < FORMAT_VERSION:
                raise InputError(
                    f"{self.path}: index format version {version} was written by an older dedup; "
                    f"this one reads version {FORMAT_VERSION} (rebuild the index)")
            meta = dict(conn.execute("SELECT name, value FROM meta"))
        except sqlite3.Error as err:
            raise self._error(err) from None
        if int(meta["normalization_version"]) != NORMALIZATION_VERSION:
            raise InputError(
                f"{self.path}: built with normalization version {meta['normalization_version']}, "
                f"this dedup normalizes with version {NORMALIZATION_VERSION}: rebuild the index")
        stored = Config(**json.loads(meta["config"]))
        stored_bands = (int(meta["bands"]), int(meta["rows"]))
        if config is None:
            config = stored
        else:
            diffs = [f"{name}={getattr(config, name)!r} (index: {getattr(stored, name)!r})"
                     for name in COMPATIBILITY if getattr(config, name) != getattr(stored, name)]
            if config.band_rows != stored_bands:
                diffs.append(f"bands x rows={config.band_rows} (index: {stored_bands}; give "
                             f"bands={stored_bands[0]}, rows={stored_bands[1]} to keep them)")
            if diffs:
                raise ConfigError(f"{self.path}: settings differ from the index's: "
                                  + "; ".join(diffs))
        self.config = config
        self._band_rows = config.band_rows
        self.__dict__.pop("_sketch_args", None)
        if meta["fingerprint"] != self._fingerprint():
            raise InputError(f"{self.path}: built by a dedup whose hashing differs from this "
                             f"one's (engine fingerprint); rebuild the index")

    def _fingerprint(self) -> str:
        """Hash of the normalized hashes and band keys of a fixed text: changes if any stage
        that stored data depends on (normalization, shingling, MinHash, banding) changes."""
        analysis = self._analyse([PROBE_TEXT])[0]
        data = analysis.hashes.tobytes() + analysis.keys.tobytes()
        return xxhash.xxh64_hexdigest(data)

    # ---- life cycle ----------------------------------------------------------------------

    def close(self):
        """Close every connection this index opened (all threads). Idempotent."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self) -> int:
        return self._read(lambda conn: conn.execute("SELECT count(*) FROM docs").fetchone()[0])

    def __contains__(self, key) -> bool:
        if not isinstance(key, str):
            return False
        return self._read(lambda conn: conn.execute(
            "SELECT 1 FROM docs WHERE key = ?", (key,)).fetchone() is not None)

    def keys(self) -> list[str]:
        """Stored keys in the order they were added."""
        return self._read(lambda conn: [k for (k,) in conn.execute(
            "SELECT key FROM docs ORDER BY id")])

    def __repr__(self):
        return f"Index({str(self.path)!r})"

    @contextmanager
    def _transaction(self, write: bool):
        if write and self.read_only:
            raise InputError(f"{self.path}: opened read_only; cannot change the index")
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                self._sync(conn)
                if write:
                    self._local.overlay = _Overlay()
                    self._local.next_ids = None
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if write:
                self._buckets.commit(self._local.overlay)
                if self._local.next_ids is not None:  # our own commit leaves data_version
                    self._local.committed_ids = (self._local.data_version,
                                                 self._local.next_ids)
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._error(err) from None
        finally:
            if write:
                self._local.overlay = None

    def _sync(self, conn):
        """Bring the buckets up to date if another connection (thread or process) committed
        since this one last looked: PRAGMA data_version tells, for the price of one statement
        (this connection's own commits reach the buckets through their overlay)."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != getattr(self._local, "data_version", None):
            self._buckets.refresh(conn)
            self._local.data_version = version

    def _read(self, action):
        with self._transaction(write=False) as conn:
            return action(conn)

    # ---- analysis (no database) ----------------------------------------------------------

    def _analyse(self, texts: list[str]) -> list[_Analysis]:
        """Split, normalize, hash, shingle and band every text and its paragraphs in two
        kernel calls on the calling thread (kernels.sketch)."""
        cps = codepoints(texts[0] if len(texts) == 1 else "".join(texts))
        if len(texts) == 1:
            offsets = np.array([0, len(texts[0])], dtype=np.int64)
        else:
            offsets = np.zeros(len(texts) + 1, dtype=np.int64)
            np.cumsum([len(text) for text in texts], out=offsets[1:])
        starts, ends, lines, firsts = document_units(cps, offsets, _IS_SPACE)
        norm, norm_offsets, hashes, raw, raw_offsets, keys = sketch_units(
            cps, starts, ends, firsts, *self._sketch_args)
        keys = keys.view(np.int64)
        if len(texts) == 1:
            keys[1:] ^= _SALT
            return [_Analysis(texts[0], starts, ends, lines, norm, norm_offsets, hashes, raw,
                              raw_offsets, keys)]
        result = []
        for text, lo, hi, base in zip(texts, firsts.tolist(), firsts[1:].tolist(),
                                      offsets.tolist()):
            no, ro = norm_offsets[lo:hi + 1], raw_offsets[lo:hi + 1]
            part_keys = keys[lo:hi].copy()
            part_keys[1:] ^= _SALT
            result.append(_Analysis(text, starts[lo:hi] - base, ends[lo:hi] - base,
                                    lines[lo:hi], norm[no[0]:no[-1]], no - no[0], hashes[lo:hi],
                                    raw[ro[0]:ro[-1]], ro - ro[0], part_keys))
        return result

    @functools.cached_property
    def _sketch_args(self) -> tuple:
        """sketch_units' arguments after the units: table, shingling, permutations, banding."""
        config = self.config
        table, exp_offsets, exp_values = load_table()
        a, b = _fixed_permutations(config.num_perm, config.seed)
        mode = WORD if config.shingle == "word" else CHAR
        bands, rows = self._band_rows
        return (table, exp_offsets, exp_values, mode == WORD, config.ngram, mode, SHINGLE_SEED,
                UNIT_HASH_SEED, a, b, bands, rows)

    # ---- lookup and verification ---------------------------------------------------------

    def _fetch_units(self, conn, unit_ids: list) -> dict:
        """Stored units (ascending ids) as arrays: ids, kinds, norm_lengths, n_shingles, and
        their normalized text as UTF-8 (data uint8, data_offsets int64[n + 1] in bytes)."""
        rows = []
        for lo in range(0, len(unit_ids), _SQL_CHUNK):
            # the list drives the join (CROSS JOIN keeps it outer), so rows come in its
            # ascending order: 49 against 90 us for 5 units under `id IN (SELECT ...) ORDER BY`
            rows += conn.execute(
                "SELECT u.id, u.kind, u.norm_length, u.n_shingles, u.holder, u.start, u.end, "
                "h.norm FROM json_each(?) j CROSS JOIN units u ON u.id = j.value "
                "LEFT JOIN units h ON h.id = u.holder",
                (_json_ids(unit_ids[lo:lo + _SQL_CHUNK]),)).fetchall()
        columns = tuple(zip(*rows)) or ((),) * 8
        texts = _unit_texts(zip(*columns[4:]))
        if None in texts:
            unit_id = columns[0][texts.index(None)]
            raise InputError(f"{self.path}: damaged: the text of unit {unit_id} is missing "
                             f"(integrity_check() lists what else is)")
        data_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)),
                  out=data_offsets[1:])
        # one contiguous row per column: the kernels are compiled for one layout
        numbers = np.array(columns[:4], dtype=np.int64).reshape(4, -1)
        return {"ids": numbers[0], "kinds": numbers[1], "norm_lengths": numbers[2],
                "n_shingles": numbers[3], "data_offsets": data_offsets,
                "data": np.frombuffer(b"".join(texts), dtype=np.uint8)}

    def _verify_stored(self, values, offsets, norm_offsets, stored, left, right_ids,
                       kinds) -> tuple:
        """kernels.sketch.verify_utf8 of pairs (unit left[k] of values/offsets, whose
        normalized lengths norm_offsets give; stored unit right_ids[k] of stored, a
        _fetch_units), left ascending, kinds (of unit 0, of the others): (jaccard,
        containment, sizes of the left units (-1: the stored unit is gone or of another
        kind), is a repeat, is inside the stored unit)."""
        config = self.config
        return verify_utf8(values, offsets, norm_offsets, stored["data"],
                           stored["data_offsets"], stored["ids"], stored["kinds"],
                           stored["n_shingles"], stored["norm_lengths"], left, right_ids,
                           *kinds, config.ngram, WORD if config.shingle == "word" else CHAR,
                           SHINGLE_SEED, config.threshold, config.containment_threshold,
                           config.min_contained_length)

    def _lookup(self, conn, analysis: _Analysis) -> _Found:
        """Stored units that repeat the text's units, verified exactly; and the verdict."""
        return self._conclude(conn, analysis, self._candidates(analysis))

    def _candidates(self, analysis: _Analysis) -> tuple:
        """(exact, bucket counts, left, right ids, exact ids) from the in-memory buckets
        alone: the text's units with a stored exact copy (unit -> stored id; exact ids: the
        same as an int64 array, -1 for none), the live members of the
        bucket of each of its band keys (int64 like analysis.keys: 0 for a unit not searched;
        add() places the text by them), and the candidate pairs (unit, stored id) to
        verify (kernels.band.probe_units: a paragraph with an exact stored copy has its best
        match already, and will not be stored anew, so its bands are not searched)."""
        overlay = getattr(self._local, "overlay", None)
        exact, counts, left, right_ids = self._buckets.probe(analysis, overlay)
        if left.size:  # drop the pairs an exact bound from the in-memory summaries rules out
            keep = self._buckets.bound(analysis, left, right_ids, self.config)
            left, right_ids = left[keep], right_ids[keep]
        found = np.flatnonzero(exact >= 0)
        exact_ids, exact = exact, dict(zip(found.tolist(), exact[found].tolist()))
        return exact, counts, left, right_ids, exact_ids

    def _conclude(self, conn, analysis, candidates) -> _Found:
        """Verify the candidates and describe the verdict (conn may be None when there is
        nothing to read: no exact copy and no candidate)."""
        exact, bucket_counts, left, right_ids, exact_ids = candidates
        pairs = self._verify(conn, analysis, left, right_ids) if left.size else []
        return _Found(bucket_counts, exact_ids, self._describe(conn, analysis, exact, pairs))

    def _verify(self, conn, analysis, left, right_ids) -> list[tuple]:
        """Verified repeats: (unit, stored id, kind, similarity, jaccard, containment,
        is_inside_stored) for each candidate pair that is an edge of the batch path (a stored
        unit gone since the buckets were read is not a candidate)."""
        stored = self._fetch_units(conn, sorted(set(right_ids.tolist())))
        jaccard, containment, sizes, keep, inside = self._verify_stored(
            analysis.raw, analysis.raw_offsets, analysis.norm_offsets, stored, left, right_ids,
            (DOCUMENT, PARAGRAPH))
        if left[0] == 0 and sizes[0] >= 0:  # counted on the way: add() stores it
            analysis.document_size = int(sizes[0])
        threshold = self.config.threshold
        pairs = []
        for k in np.flatnonzero(keep).tolist():
            jac, cont = float(jaccard[k]), float(containment[k])
            kind, similarity = (NEAR, jac) if jac >= threshold else (CONTAINED, cont)
            pairs.append((int(left[k]), int(right_ids[k]), kind, similarity, jac, cont,
                          bool(inside[k])))
        return pairs

    def _describe(self, conn, analysis, exact, pairs) -> tuple:
        """(document matches, paragraph repeats) of the verdict."""
        doc_pairs = [(EXACT, 1.0, 1.0, 1.0, True, exact[0])] if 0 in exact else []
        doc_pairs += [(kind, sim, jac, cont, inside, unit_id)
                      for unit, unit_id, kind, sim, jac, cont, inside in pairs if unit == 0]
        # paragraph unit -> (rank, stored id, kind, similarity)
        best = {unit: ((0, -1.0, unit_id), unit_id, EXACT, 1.0)
                for unit, unit_id in exact.items() if unit > 0}
        for unit, unit_id, kind, sim, jac, cont, inside in pairs:
            if unit == 0 or not inside:
                continue
            rank = (_RANK[kind], -sim, unit_id)
            if unit not in best or rank < best[unit][0]:
                best[unit] = (rank, unit_id, kind, sim)
        # where the matched documents and paragraphs first occur
        first, where = self._first_places(conn, {p[5] for p in doc_pairs},
                                          {b[1] for b in best.values()}) \
            if doc_pairs or best else ({}, {})
        matches = []
        if doc_pairs:
            ranked = []
            for kind, sim, jac, cont, inside, unit_id in doc_pairs:
                if unit_id not in first:  # removed since the buckets were read
                    continue
                key, doc_id, copies = first[unit_id]
                ranked.append(((_RANK[kind], -sim, doc_id),
                               _DOCUMENT_MATCH(key, kind, sim, jac, cont, inside, copies)))
            matches = [m for _, m in sorted(ranked, key=lambda r: r[0])]
        within = self._within(analysis)
        repeats = []
        if best or within:
            starts, ends = analysis.starts.tolist(), analysis.ends.tolist()
            lines = analysis.lines.tolist()
            for unit in sorted(best.keys() | within.keys()):
                span = (starts[unit], ends[unit], lines[unit])
                if unit in best and best[unit][1] in where:
                    _, unit_id, kind, sim = best[unit]
                    key, r_start, r_end, r_line = where[unit_id]
                    repeats.append(_PARAGRAPH_REPEAT(*span, kind, sim, key, r_start, r_end,
                                                     r_line))
                elif unit in within:
                    rep, kind, sim = within[unit]
                    repeats.append(_PARAGRAPH_REPEAT(*span, kind, sim, None, starts[rep],
                                                     ends[rep], lines[rep]))
        return tuple(matches), tuple(repeats), len(analysis) - 1

    def _within(self, analysis) -> dict:
        """Paragraphs repeating another paragraph of the same text, as dedup.flag finds them:
        unit -> (representative unit, kind, similarity)."""
        # most texts repeat nothing: when no pair verifies (equal paragraphs would),
        # find_groups (whose groups come only from equal units and verified pairs) finds none;
        # every pair's overlap is counted in one pass over the paragraphs' shingles
        config = self.config
        may_repeat, sizes, shared = paragraph_repeats(
            analysis.raw, analysis.raw_offsets, analysis.norm_offsets, config.threshold,
            config.containment_threshold, config.min_contained_length,
            config.exhaustive_pairs)
        if sizes.size:
            analysis._overlaps = (sizes, shared)
        if not may_repeat:
            return {}
        with _kernels():
            groups = find_groups(_sorted_sets(analysis, 1, len(analysis)), self.config)
        within = {}
        for group in groups:
            rep = group[0].unit + 1
            for assignment in group[1:]:
                within[assignment.unit + 1] = (rep, assignment.kind, float(assignment.similarity))
        return within

    # ---- public operations ---------------------------------------------------------------

    def check(self, text: str) -> Verdict:
        """Whether `text` repeats stored documents, and which of its paragraphs repeat stored
        paragraphs or each other; nothing is stored.

        Raises InputError for a non-str or empty text.
        """
        text = _check_text(text)
        analysis = self._analyse([text])[0]
        conn = self._conn()
        try:
            self._sync(conn)
            candidates = self._candidates(analysis)
            # the file is read only for something to verify or to name, one statement at a
            # time: a unit removed in between is left out, as if removed before the check
            found = self._conclude(conn if candidates[0] or candidates[2].size else None,
                                   analysis, candidates)
        except sqlite3.Error as err:
            raise self._error(err) from None
        return Verdict(None, False, *found.verdict_parts)

    def add(self, key: str, text: str, *, replace: bool = False) -> Verdict:
        """Check `text` against the index, then store it under `key`; returns the check's
        verdict (computed before the text was stored, so it never matches itself).

        Idempotent: adding a key again with the same text stores nothing and returns the
        verdict against everything else (is_added False). The same key with a different text
        raises InputError, unless replace=True, which swaps the text in one transaction.
        Raises InputError for an empty key, a non-str or empty text.
        """
        return self.add_many([(key, text)], replace=replace)[0]

    def add_many(self, items: Iterable[tuple[str, str]], *, replace: bool = False) -> list[Verdict]:
        """add() for each (key, text) in order, in one transaction (all stored or none): each
        text is checked against the index and the texts before it in `items`."""
        items = [(_check_key(key), _check_text(text, f"text of {key!r}")) for key, text in items]
        if not items:
            return []
        analyses = self._analyse([text for _, text in items])
        verdicts = []
        with self._transaction(write=True) as conn:
            for (key, text), analysis in zip(items, analyses):
                verdicts.append(self._add_one(conn, key, text, analysis, replace))
        return verdicts

    def _add_one(self, conn, key, text, analysis, replace) -> Verdict:
        text_hash = _text_hash(text)
        row = conn.execute("SELECT text_hash FROM docs WHERE key = ?", (key,)).fetchone()
        if row is not None:
            if row[0] == text_hash:
                conn.execute("SAVEPOINT again")  # the verdict as if the key were absent
                overlay = self._local.overlay
                self._local.overlay = overlay.copy()
                try:
                    self._remove(conn, key)
                    found = self._lookup(conn, analysis)
                finally:
                    self._local.overlay = overlay
                conn.execute("ROLLBACK TO again")
                conn.execute("RELEASE again")
                return Verdict(key, False, *found.verdict_parts)
            if not replace:
                raise InputError(f"key {key!r} is already stored with a different text "
                                 f"(remove it first, or add with replace=True)")
            self._remove(conn, key)
        found = self._lookup(conn, analysis)
        self._store(conn, key, text_hash, analysis, found)
        return Verdict(key, True, *found.verdict_parts)

    def _store(self, conn, key, text_hash, analysis: _Analysis, found: _Found):
        next_unit, next_doc = self._next_ids(conn)  # ours to give: we hold the write lock
        known = np.full(len(analysis), -1, dtype=np.int64)  # distinct sizes counted already
        if analysis.document_size is not None:
            known[0] = analysis.document_size
        if analysis._overlaps is not None:
            known[1:] = analysis._overlaps[0]
        ids, units, sizes, bits, is_roomy, placed = store_units(
            analysis.hashes, analysis.norm_offsets, found.exact_ids, next_unit, analysis.raw,
            analysis.raw_offsets, analysis.keys, found.bucket_counts, self.config.max_bucket,
            known)
        n_new = units.size
        if n_new:
            keys = analysis.keys
            new_ids = np.arange(next_unit, next_unit + n_new, dtype=np.int64)
            kinds = (units > 0).astype(np.int64)  # DOCUMENT 0, PARAGRAPH 1
            hashes = analysis.hashes.view(np.int64)[units]
            blob, spans = _pack(analysis, units)
            if is_roomy:  # no bucket fills up: each unit joins under all its keys
                counts = np.full(n_new, keys.shape[1], dtype=np.int64)
            else:  # one after the other (a key met twice in a unit is placed once)
                bucket_counts = found.bucket_counts
                hit = bucket_counts > 0
                bucket_sizes = dict(zip(keys[hit].tolist(), bucket_counts[hit].tolist()))
                max_bucket = self.config.max_bucket
                rows = []
                for row in keys[units].tolist():
                    kept = []
                    for band_key in dict.fromkeys(row):
                        size = bucket_sizes.get(band_key, 0)
                        if size < max_bucket:
                            kept.append(band_key)
                            bucket_sizes[band_key] = size + 1
                    rows.append(np.asarray(kept, dtype=np.int64))
                placed = np.concatenate(rows)
                counts = np.fromiter(map(len, rows), dtype=np.int64, count=n_new)
            key_bytes = placed.astype("<i8").tobytes()
            bit_bytes = bits.astype("<u8").tobytes()
            lengths = np.diff(analysis.norm_offsets)[units].tolist()
            key_at = 0
            new_rows = []
            for k, (unit_id, kind, unit_hash, size, count) in enumerate(zip(
                    new_ids.tolist(), kinds.tolist(), hashes.tolist(), sizes.tolist(),
                    counts.tolist())):
                new_rows.append((unit_id, kind, unit_hash, lengths[k], size, next_unit,
                                 *spans[k], blob if k == 0 else None,
                                 key_bytes[key_at:key_at + 8 * count],
                                 bit_bytes[64 * k:64 * k + 64]))
                key_at += 8 * count
            conn.executemany(_INSERT_UNITS, new_rows)
            self._local.overlay.add(new_ids, kinds, hashes, placed, counts, sizes, bits)
        doc_id = next_doc
        self._local.next_ids = (next_unit + n_new, next_doc + 1)
        doc_unit = int(ids[0]) if ids[0] >= 0 else None
        conn.execute(
            "INSERT INTO docs (id, key, text_hash, unit, n_chars, paragraphs) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (doc_id, key, text_hash, doc_unit, len(analysis.text), _paragraph_rows(analysis, ids)))
        used = np.flatnonzero(ids[1:] >= 0)
        conn.executemany("INSERT INTO paragraphs (unit, doc, position) VALUES (?, ?, ?)",
                         zip(ids[1:][used].tolist(), [doc_id] * used.size, used.tolist()))

    # ---- many units at once: the batch command's side (dedup run --index) ----------------

    def may_match(self, band_keys: np.ndarray, kind: str = "document") -> np.ndarray:
        """Whether each unit shares an LSH bucket with a stored unit of its kind: the units
        worth passing to match(). band_keys: uint64[n_units, bands], as the batch path makes
        them (kernels.band.band_keys of the units' signatures). Returns bool[n_units].

        A unit whose every bucket is empty has no stored repeat, save an exact copy whose
        buckets were all full when it was stored and have lost members to remove() since.
        """
        kind_code = _kind_code(kind)
        keys = np.asarray(band_keys, dtype=np.uint64)
        if keys.ndim != 2 or keys.shape[1] != self._band_rows[0]:
            raise InputError(f"band_keys must be uint64[n_units, {self._band_rows[0]}], got "
                             f"shape {keys.shape}")
        if kind_code == PARAGRAPH:
            keys = keys ^ PARAGRAPH_SALT
        hit = np.zeros(keys.shape[0], dtype=bool)
        with self._transaction(write=False):
            for lo in range(0, keys.shape[0], _PROBE_CHUNK):  # bounds the temporary arrays
                rows, _ = self._buckets.members(keys[lo:lo + _PROBE_CHUNK].view(np.int64))
                hit[rows + lo] = True
        return hit

    def match(self, texts: list[str], kind: str = "document") -> list[UnitMatch | None]:
        """The best stored repeat of each text taken as one unit of `kind` ("document" or
        "paragraph"), or None: exact (same normalized text), else the near copy of highest
        Jaccard, else the stored unit of highest containment that holds the text. Candidates
        and verification are those of check(), for many units in a few kernel calls; a text
        that contains a stored unit is not its repeat (it holds text the index lacks).

        >>> import tempfile, os
        >>> with Index.open(os.path.join(tempfile.mkdtemp(), "m.idx")) as index:
        ...     _ = index.add("a", "A first paragraph, long enough to matter here.\\nAnother one.")
        ...     [m and m.key for m in index.match(["a first paragraph long enough to matter here",
        ...                                           "Something new"], "paragraph")]
        ['a', None]
        """
        kind_code = _kind_code(kind)
        texts = list(texts)
        for k, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"texts[{k}] must be a str, got {type(text).__name__}")
        out = [None] * len(texts)
        for lo in range(0, len(texts), _MATCH_CHUNK):
            chunk = texts[lo:lo + _MATCH_CHUNK]
            out[lo:lo + len(chunk)] = self._match_chunk(chunk, kind_code)
        return out

    def _match_chunk(self, texts, kind_code) -> list:
        starts, ends, base = [], [], 0
        for text in texts:
            end = len(text.rstrip())
            starts.append(base + min(len(text) - len(text.lstrip()), end))
            ends.append(base + end)
            base += len(text)
        config = self.config
        with _KERNEL_LOCK, kernel_threads(base):
            prepared = prepare(codepoints("".join(texts)), starts, ends, config)
            keys = unit_band_keys(prepared.shingles, prepared.shingle_offsets, config,
                                  self._band_rows)
        if kind_code == PARAGRAPH:
            keys ^= PARAGRAPH_SALT
        keys = keys.view(np.int64)
        n_units = len(texts)
        active = np.flatnonzero(prepared.norm_lengths > 0)
        hashes = prepared.hashes.view(np.int64)
        with self._transaction(write=False) as conn:
            query, unit_ids = self._buckets.find_exact(
                hashes[active], np.full(active.size, kind_code, dtype=np.int64), None)
            exact = dict(zip(active[query].tolist(), unit_ids.tolist()))
            best = {u: (EXACT, 1.0, unit_id) for u, unit_id in exact.items()}
            searched = np.asarray([u for u in active.tolist() if u not in exact],
                                  dtype=np.int64)
            rows, unit_ids = self._buckets.members(keys[searched])
            left = searched[rows]
            if left.size:
                pairs = np.unique(np.stack((left, unit_ids), axis=1), axis=0)
                best.update(self._verify_pairs(conn, prepared, kind_code,
                                               np.ascontiguousarray(pairs[:, 0]),
                                               np.ascontiguousarray(pairs[:, 1])))
            found = {b[2] for b in best.values()}
            if kind_code == DOCUMENT:
                first, _ = self._first_places(conn, found, ())
                where = {unit_id: (key, None, None, None) for unit_id, (key, *_) in first.items()}
            else:
                _, where = self._first_places(conn, (), found)
        out = [None] * n_units
        for unit, (kind, similarity, unit_id) in best.items():
            key, start, end, line = where[unit_id]
            out[unit] = UnitMatch(kind, similarity, key, start, end, line)
        return out

    def _verify_pairs(self, conn, prepared, kind_code, left, right_ids) -> dict:
        """unit -> (kind, similarity, stored id) of the best verified repeat among the pairs
        (unit of prepared, stored unit id) where the unit is the smaller side or near."""
        config = self.config
        stored = self._fetch_units(conn, np.unique(right_ids).tolist())
        # sorted distinct sets are shingles in some order too: pair_overlaps takes them
        norm_offsets = np.zeros(prepared.norm_lengths.size + 1, dtype=np.int64)
        np.cumsum(prepared.norm_lengths, out=norm_offsets[1:])
        jaccard, containment, sizes, keep, inside = self._verify_stored(
            prepared.shingles, prepared.shingle_offsets, norm_offsets, stored, left, right_ids,
            (kind_code, kind_code))
        is_near = jaccard >= config.threshold
        keep &= inside  # contained: the unit is the smaller
        rank = np.where(is_near, 1, 2)
        similarity = np.where(is_near, jaccard, containment)
        picked = np.flatnonzero(keep)
        # best first: near before contained, then the highest similarity, then the oldest
        picked = picked[np.lexsort((right_ids[picked], -similarity[picked], rank[picked],
                                    left[picked]))]
        best = {}
        for k in picked.tolist():
            unit = int(left[k])
            if unit not in best:
                best[unit] = (NEAR if is_near[k] else CONTAINED, float(similarity[k]),
                              int(right_ids[k]))
        return best

    def _first_places(self, conn, doc_units, paragraph_units) -> tuple[dict, dict]:
        """Where stored units first occur (earliest document, then position), a statement per
        _SQL_CHUNK of each: (document unit id -> (key, docs id, copies), paragraph unit id ->
        (key, start, end, line)). A unit removed meanwhile is left out."""
        first, where = {}, {}
        doc_units, paragraph_units = sorted(doc_units), sorted(paragraph_units)
        for lo in range(0, max(len(doc_units), len(paragraph_units)), _SQL_CHUNK):
            rows = conn.execute(_FIRST_PLACES, (_json_ids(doc_units[lo:lo + _SQL_CHUNK]),
                                                _json_ids(paragraph_units[lo:lo + _SQL_CHUNK])))
            for is_paragraph, unit_id, key, doc_id, span, copies in rows:
                if not is_paragraph:
                    first[unit_id] = (key, doc_id, copies)
                elif span is not None and len(span) == _SPAN.size:
                    _, start, end, line = _SPAN.unpack(span)
                    where[unit_id] = (key, start, end, line)
                else:  # the paragraphs table names a row the document does not have
                    raise InputError(f"{self.path}: damaged: document {key!r} lacks a paragraph "
                                     f"that the paragraphs table names (integrity_check() "
                                     f"lists what else is)")
        return first, where

    @contextmanager
    def bulk(self):
        """One write transaction for storing many documents without verdicts: yields a
        BulkAdd whose add(items) stores (key, text) pairs as add() would; everything is
        committed when the block ends, nothing if it raises (or the process dies first).
        For callers that have already decided what to store (dedup run --index): it skips
        the lookup and verification that add() does, which are most of its cost. Other
        writers wait until the block ends.

        >>> import tempfile, os
        >>> with Index.open(os.path.join(tempfile.mkdtemp(), "b.idx")) as index:
        ...     with index.bulk() as batch:
        ...         batch.add([("a", "One text."), ("b", "Another text.")])
        ...     len(index)
        BulkCounts(added=2, unchanged=0, conflicts=0, empty=0)
        2
        """
        with self._transaction(write=True) as conn:
            self._local.bulk_placed = np.zeros(0, dtype=np.int64)
            try:
                yield BulkAdd(self, conn)
            finally:
                self._local.bulk_placed = None

    def _insert_many(self, conn, todo, analyses) -> dict:
        """Store analysed (key, text) pairs without verdicts, in order, as _store would one by
        one, but with a few statements per batch: inside the write transaction no one else
        inserts, so the new rows' ids are known in advance. Returns the counts of added,
        unchanged (the key holds this text) and conflicts (the key holds another text)."""
        counts = {"added": 0, "unchanged": 0, "conflicts": 0}
        stored = {}  # key -> text hash, of the keys of this batch already in the index
        keys = sorted({key for key, _ in todo})
        for lo in range(0, len(keys), _SQL_CHUNK):
            stored.update(conn.execute(
                "SELECT key, text_hash FROM docs WHERE key IN (SELECT value FROM json_each(?))",
                (json.dumps(keys[lo:lo + _SQL_CHUNK]),)))
        hash_lists = [a.hashes.view(np.int64).tolist() for a in analyses]
        actives = [a.active() for a in analyses]
        ids = {}  # (hash, kind) -> unit id, stored or new
        overlay = self._local.overlay
        wanted = sorted({(h[u], DOCUMENT if u == 0 else PARAGRAPH)
                         for h, act in zip(hash_lists, actives) for u in act})
        query, unit_ids = self._buckets.find_exact(
            np.asarray([w[0] for w in wanted], dtype=np.int64),
            np.asarray([w[1] for w in wanted], dtype=np.int64), overlay)
        ids.update((wanted[q], unit_id) for q, unit_id in zip(query.tolist(), unit_ids.tolist()))
        next_unit, next_doc = self._next_ids(conn)
        # first the rows: which units are new (and their ids), documents
        # unit id -> [kind, hash, norm_length, n_shingles, holder, start, end, blob, bands, bits]
        new_units = {}
        new_where = []  # (analysis index, unit) of each new unit, in id order
        docs, paragraphs = [], []
        for index, ((key, text), analysis, hashes, active) in enumerate(
                zip(todo, analyses, hash_lists, actives)):
            text_hash = _text_hash(text)
            if key in stored:
                counts["unchanged" if stored[key] == text_hash else "conflicts"] += 1
                continue
            stored[key] = text_hash
            counts["added"] += 1
            doc_ids = {}
            doc_new = []  # (unit, unit id) of the text's new units
            for unit in active:
                hash_kind = (hashes[unit], DOCUMENT if unit == 0 else PARAGRAPH)
                unit_id = ids.get(hash_kind)
                if unit_id is None:
                    unit_id = next_unit
                    next_unit += 1
                    doc_new.append((unit, unit_id))
                    new_where.append((index, unit))
                    ids[hash_kind] = unit_id
                doc_ids[unit] = unit_id
            if doc_new:  # their texts packed together, as _store does
                units = np.fromiter((u for u, _ in doc_new), dtype=np.int64, count=len(doc_new))
                blob, spans = _pack(analysis, units)
                lengths = analysis.norm_lengths.tolist()
                sizes = analysis.sizes()
                bits = shingle_bits(analysis.raw, analysis.raw_offsets)
                holder = doc_new[0][1]
                for k, (unit, unit_id) in enumerate(doc_new):
                    new_units[unit_id] = [
                        DOCUMENT if unit == 0 else PARAGRAPH, hashes[unit], lengths[unit],
                        int(sizes[unit]), holder, *spans[k], blob if k == 0 else None, None,
                        bits[unit]]
            doc_id = next_doc
            next_doc += 1
            doc_unit = doc_ids.pop(0, None)  # the rest are paragraphs
            unit_ids = np.full(len(analysis), -1, dtype=np.int64)
            for unit, unit_id in doc_ids.items():
                unit_ids[unit] = unit_id
            docs.append((doc_id, key, text_hash, doc_unit, len(text),
                         _paragraph_rows(analysis, unit_ids)))
            paragraphs += [(unit_id, doc_id, unit - 1) for unit, unit_id in doc_ids.items()]
        self._local.next_ids = (next_unit, next_doc)
        # then the buckets of the new units, in id order as add() would place them
        all_placed = self._place([analyses[index].keys[unit] for index, unit in new_where])
        for row, placed in zip(new_units.values(), all_placed):
            row[8] = placed.astype("<i8").tobytes()
        if new_units:
            rows = list(new_units.values())
            n = len(rows)
            bits = np.stack([row[9] for row in rows])
            overlay.add(np.fromiter(new_units, dtype=np.int64, count=n),
                        np.fromiter((row[0] for row in rows), dtype=np.int64, count=n),
                        np.fromiter((row[1] for row in rows), dtype=np.int64, count=n),
                        np.concatenate(all_placed),
                        np.fromiter(map(len, all_placed), dtype=np.int64, count=n),
                        np.fromiter((row[3] for row in rows), dtype=np.int64, count=n), bits)
            for row, row_bits in zip(rows, bits.astype("<u8")):
                row[9] = row_bits.tobytes()
        conn.executemany(_INSERT_UNITS, [(i, *row) for i, row in new_units.items()])
        conn.executemany("INSERT INTO docs (id, key, text_hash, unit, n_chars, paragraphs) "
                         "VALUES (?, ?, ?, ?, ?, ?)", docs)
        conn.executemany("INSERT INTO paragraphs (unit, doc, position) VALUES (?, ?, ?)",
                         paragraphs)
        return counts

    def _place(self, rows: list) -> list:
        """The band keys (int64 arrays) under which each new unit (its keys, in id order) joins
        a bucket: all its distinct keys, save those whose bucket is full (max_bucket live
        members) when it comes. Vectorized when no bucket fills up, the usual case."""
        if not rows:
            return []
        keys = np.stack(rows).astype(np.int64)
        ordered = np.sort(keys, axis=1)
        is_repeat = np.zeros(keys.shape, dtype=bool)  # a band key met twice in one unit
        is_repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        distinct, counts = np.unique(ordered[~is_repeat], return_counts=True)
        rows_found, _ = self._buckets.members(distinct.reshape(-1, 1))
        sizes = np.bincount(rows_found, minlength=distinct.size)
        pending = self._local.bulk_placed  # keys placed by earlier batches of this transaction
        if pending.size:
            sizes += (np.searchsorted(pending, distinct, "right")
                      - np.searchsorted(pending, distinct, "left"))
        max_bucket = self.config.max_bucket
        if (sizes + counts).max() <= max_bucket:
            placed = [row if not repeat.any() else np.asarray(list(dict.fromkeys(row.tolist())),
                                                              dtype=np.int64)
                      for row, repeat in zip(keys, is_repeat.any(axis=1))]
        else:  # some bucket fills up: one unit after the other
            size_of = dict(zip(distinct.tolist(), sizes.tolist()))
            placed = []
            for row in keys.tolist():
                kept = []
                for band_key in dict.fromkeys(row):
                    if size_of[band_key] < max_bucket:
                        kept.append(band_key)
                        size_of[band_key] += 1
                placed.append(np.asarray(kept, dtype=np.int64))
        self._local.bulk_placed = np.sort(np.concatenate([pending] + placed))
        return placed

    def _next_ids(self, conn) -> tuple[int, int]:
        """The ids of the next units row and docs row (inside a write transaction, where no
        one else inserts): a unit id above every one given before (the largest stored, and
        the largest removed), a docs id above the largest stored. Those this connection left
        after its last write if no other connection has committed since (data_version), else
        read."""
        local = self._local
        if local.next_ids is not None:
            return local.next_ids  # given out earlier in this transaction
        known = getattr(local, "committed_ids", None)
        if known is not None and known[0] == local.data_version:
            return known[1]
        row = conn.execute("SELECT coalesce((SELECT max(id) FROM units), 0), "
                           "coalesce((SELECT max(id) FROM docs), 0)").fetchone()
        return max(row[0], self._last_removed_unit(conn)) + 1, row[1] + 1

    @staticmethod
    def _last_removed_unit(conn) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = 'last_removed_unit'").fetchone()
        return int(row[0]) if row else 0

    def remove(self, key: str) -> bool:
        """Remove the document stored under `key` (and units no other document uses).
        Returns whether it was there."""
        key = _check_key(key)
        with self._transaction(write=True) as conn:
            return self._remove(conn, key)

    def _remove(self, conn, key) -> bool:
        row = conn.execute("SELECT id, unit, paragraphs FROM docs WHERE key = ?",
                           (key,)).fetchone()
        if row is None:
            return False
        doc_id, doc_unit, spans = row
        units = np.frombuffer(spans[:len(spans) // _SPAN.size * _SPAN.size], dtype="<i8")[::4]
        positions = np.flatnonzero(units >= 0)
        paragraph_units = units[positions].tolist()
        conn.executemany("DELETE FROM paragraphs WHERE unit = ? AND doc = ? AND position = ?",
                         [(unit_id, doc_id, position) for unit_id, position in
                          zip(paragraph_units, positions.tolist())])
        conn.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
        used = set(paragraph_units)
        if doc_unit is not None:
            used.add(doc_unit)
        # the units no other document or paragraph uses (through docs_unit, and the
        # paragraphs table's key, which starts with the unit)
        dead = [unit_id for (unit_id,) in conn.execute(
            "SELECT j.value FROM json_each(?) j WHERE NOT EXISTS (SELECT 1 FROM paragraphs "
            "WHERE unit = j.value) AND NOT EXISTS (SELECT 1 FROM docs WHERE unit = j.value)",
            (_json_ids(sorted(used)),))]
        if dead:
            self._hand_over(conn, dead)
            # ids are never given again: the next one is above this too
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_removed_unit', ?)",
                         (str(max(max(dead), self._last_removed_unit(conn))),))
            conn.executemany("DELETE FROM units WHERE id = ?", [(d,) for d in dead])
            conn.executemany("INSERT INTO dropped (unit) VALUES (?)", [(d,) for d in dead])
            self._local.overlay.dead.update(dead)
        return True

    @staticmethod
    def _hand_over(conn, dead: list):
        """Before the units `dead` are deleted: a holder among them hands its compressed text
        (offsets unchanged) to the first of its units that stay. Units stored together have
        consecutive ids, so its units are the rows after it that name it, up to the first
        that does not."""
        gone = set(dead)
        holders = conn.execute(
            "SELECT u.id, u.norm FROM json_each(?) j CROSS JOIN units u ON u.id = j.value "
            "WHERE u.holder = u.id", (_json_ids(sorted(dead)),)).fetchall()
        for holder, blob in holders:
            staying = []
            for unit_id, unit_holder in conn.execute(
                    "SELECT id, holder FROM units WHERE id > ? ORDER BY id", (holder,)):
                if unit_holder != holder:
                    break
                if unit_id not in gone:
                    staying.append(unit_id)
            if staying:
                conn.execute("UPDATE units SET norm = ? WHERE id = ?", (blob, staying[0]))
                conn.executemany("UPDATE units SET holder = ? WHERE id = ?",
                                 [(staying[0], unit_id) for unit_id in staying])

    def _stored_band_keys(self, rows) -> np.ndarray:
        """Band keys int64[n, bands] of stored units (kind, UTF-8 of the normalized text),
        salted by kind."""
        norms = [_decode_norm(data) for _, data in rows]
        offsets = np.zeros(len(norms) + 1, dtype=np.int64)
        np.cumsum([n.size for n in norms], out=offsets[1:])
        with _kernels():
            shingles, shingle_offsets = shingle_normalized(
                np.concatenate(norms) if norms else np.zeros(0, np.int32), offsets, self.config)
            keys = unit_band_keys(shingles, shingle_offsets, self.config, self._band_rows)
        for k, (kind, _) in enumerate(rows):
            if kind == PARAGRAPH:
                keys[k] ^= PARAGRAPH_SALT
        return keys.view(np.int64)

    # ---- inspection ----------------------------------------------------------------------

    def stats(self) -> dict:
        """Counts, settings and file size of the index."""
        def collect(conn):
            count = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            return {
                "documents": count("SELECT count(*) FROM docs"),
                "paragraphs": count("SELECT count(*) FROM paragraphs"),
                "distinct_documents": count("SELECT count(*) FROM units WHERE kind = 0"),
                "distinct_paragraphs": count("SELECT count(*) FROM units WHERE kind = 1"),
                "band_rows": count("SELECT coalesce(sum(length(bands)), 0) / 8 FROM units"),
            }
        stats = self._read(collect)
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal"))
                   if p.exists())
        bands, rows = self.config.band_rows
        stats.update({
            "file_bytes": size,
            "bytes_per_document": size / stats["documents"] if stats["documents"] else None,
            "format_version": FORMAT_VERSION,
            "normalization_version": NORMALIZATION_VERSION,
            "bands": bands, "rows": rows,
            "config": self.config.to_dict(),
        })
        return stats

    def integrity_check(self, deep: bool = True) -> list[str]:
        """Problems found in the file (empty when sound): SQLite's integrity check, then the
        references between tables and that every unit is used; deep also re-makes every unit's
        shingles from its stored text and checks its counts and band rows."""
        def collect(conn):
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")
                        if row[0] != "ok"]
            queries = {
                "document refers to a missing unit": "SELECT d.key FROM docs d WHERE d.unit "
                    "IS NOT NULL AND NOT EXISTS (SELECT 1 FROM units u WHERE u.id = d.unit "
                    "AND u.kind = 0)",
                "paragraph refers to a missing document": "SELECT p.doc FROM paragraphs p "
                    "WHERE NOT EXISTS (SELECT 1 FROM docs d WHERE d.id = p.doc)",
                "paragraph refers to a missing unit": "SELECT p.unit FROM paragraphs p WHERE "
                    "NOT EXISTS (SELECT 1 FROM units u WHERE u.id = p.unit AND u.kind = 1)",
                "unit with a malformed band list": "SELECT id FROM units WHERE "
                    "length(bands) % 8 != 0",
                "unit with a malformed shingle summary": "SELECT id FROM units WHERE "
                    f"length(bits) != {_BITS_BYTES}",
                "unit whose holder holds no text": "SELECT u.id FROM units u WHERE NOT EXISTS "
                    "(SELECT 1 FROM units h WHERE h.id = u.holder AND h.holder = h.id AND "
                    "h.norm IS NOT NULL)",
                "unit holding a text that is not its units'": "SELECT id FROM units WHERE "
                    "norm IS NOT NULL AND holder != id",
                "units with the same normalized text": "SELECT min(id) FROM units "
                    "GROUP BY hash, kind HAVING count(*) > 1",
                "document unit no document uses": "SELECT u.id FROM units u WHERE u.kind = 0 "
                    "AND NOT EXISTS (SELECT 1 FROM docs d WHERE d.unit = u.id)",
                "paragraph unit no paragraph uses": "SELECT u.id FROM units u WHERE u.kind = 1 "
                    "AND NOT EXISTS (SELECT 1 FROM paragraphs p WHERE p.unit = u.id)",
            }
            for what, sql in queries.items():
                bad = [row[0] for row in conn.execute(sql + " LIMIT 5")]
                if bad:
                    problems.append(f"{what}: {bad}")
            bad = self._paragraph_check(conn)
            if bad:
                problems.append(f"document whose paragraphs differ from the paragraphs table: "
                                f"{bad[:5]}")
            if deep:
                problems += self._deep_check(conn)
            return problems
        return self._read(collect)

    @staticmethod
    def _paragraph_check(conn) -> list[str]:
        """Keys of the documents whose paragraphs (docs.paragraphs) are not the paragraphs
        table's rows of that document: compared by count and a sum of hashes, in one pass
        over each table."""
        mask = (1 << 64) - 1
        table = {}  # doc -> [rows, sum of hash((unit, position))]
        for unit_id, doc_id, position in conn.execute("SELECT unit, doc, position FROM paragraphs"):
            entry = table.setdefault(doc_id, [0, 0])
            entry[0] += 1
            entry[1] = (entry[1] + hash((unit_id, position))) & mask
        bad = []
        for doc_id, key, spans in conn.execute("SELECT id, key, paragraphs FROM docs"):
            if len(spans) % _SPAN.size:
                bad.append(key)
                continue
            units = np.frombuffer(spans, dtype="<i8")[::4]
            positions = np.flatnonzero(units >= 0)
            mine = [len(positions), sum(hash(pair) for pair in zip(
                units[positions].tolist(), positions.tolist())) & mask]
            if table.get(doc_id, [0, 0]) != mine:
                bad.append(key)
        return bad

    def _deep_check(self, conn) -> list[str]:
        problems = []
        buckets = {}  # band key -> units, from the stored band lists
        stored_keys = {}
        for unit_id, blob in conn.execute("SELECT id, bands FROM units"):
            # a malformed list (reported above) is read up to its last whole key
            stored_keys[unit_id] = set(np.frombuffer(blob[:len(blob) // 8 * 8],
                                                     dtype="<i8").tolist())
            for band_key in stored_keys[unit_id]:
                buckets.setdefault(band_key, set()).add(unit_id)
        cursor = conn.execute("SELECT u.id, u.kind, u.n_shingles, u.bits, u.holder, u.start, "
                              "u.end, h.norm FROM units u LEFT JOIN units h ON h.id = u.holder "
                              "ORDER BY u.id")
        while len(problems) < 20:
            rows = cursor.fetchmany(512)
            if not rows:
                break
            texts = _unit_texts(row[4:] for row in rows)
            for row, text in zip(rows, texts):
                if text is None:
                    problems.append(f"unit {row[0]}: its text is missing (no holder {row[4]}, "
                                    f"or its span {row[5]}..{row[6]} is outside the holder's)")
            rows = [row[:4] + (text,) for row, text in zip(rows, texts) if text is not None]
            if not rows:
                continue
            keys = self._stored_band_keys([(kind, text) for _, kind, _, _, text in rows])
            norms = [_decode_norm(text) for *_, text in rows]
            offsets = np.zeros(len(norms) + 1, dtype=np.int64)
            np.cumsum([n.size for n in norms], out=offsets[1:])
            with _kernels():
                shingles, shingle_offsets = shingle_normalized(np.concatenate(norms), offsets,
                                                               self.config)
                bits = shingle_bits(shingles, shingle_offsets)
            members = buckets
            for k, (unit_id, _, n_shingles, stored_bits, _) in enumerate(rows):
                if int(shingle_offsets[k + 1] - shingle_offsets[k]) != n_shingles:
                    problems.append(f"unit {unit_id}: its stored text gives another shingle count")
                if bits[k].astype("<u8").tobytes() != stored_bits:
                    problems.append(f"unit {unit_id}: its stored text gives another shingle "
                                    f"summary")
                if not stored_keys[unit_id] <= set(keys[k].tolist()):
                    problems.append(f"unit {unit_id}: a stored band key is not its own")
                for band_key in set(keys[k].tolist()):
                    bucket = members.get(band_key, set())
                    # a unit is left out of a bucket only when the bucket was full
                    if unit_id not in bucket and len(bucket) < self.config.max_bucket:
                        problems.append(f"unit {unit_id}: a band row is missing")
                        break
        return problems


@dataclass(frozen=True)
class BulkCounts:
    """What BulkAdd.add did: documents stored, keys already holding the same text, keys
    holding another text (nothing stored for them), texts with nothing to index."""

    added: int = 0
    unchanged: int = 0
    conflicts: int = 0
    empty: int = 0


class BulkAdd:
    """Stores documents inside Index.bulk()'s transaction (see there)."""

    def __init__(self, index: "Index", conn):
        self._index = index
        self._conn = conn

    def add(self, items: Iterable[tuple[str, str]]) -> BulkCounts:
        """Store (key, text) pairs in order, as add() would but without verdicts. A key
        already holding the same text stores nothing (unchanged); a key holding another text
        is left as it is (conflicts); an empty or blank text is skipped (empty)."""
        counts = {"added": 0, "unchanged": 0, "conflicts": 0, "empty": 0}
        todo = []
        for key, text in items:
            _check_key(key)
            if not isinstance(text, str):
                raise InputError(f"text of {key!r} must be a str, got {type(text).__name__}")
            if text.strip():
                todo.append((key, text))
            else:
                counts["empty"] += 1
        if todo:
            analyses = self._index._analyse([text for _, text in todo])
            counts.update(self._index._insert_many(self._conn, todo, analyses))
        return BulkCounts(**counts)


def _sorted_ids(ids: set) -> np.ndarray:
    return np.sort(np.fromiter(ids, dtype=np.int64, count=len(ids)))


def _kind_code(kind) -> int:
    if kind == "document":
        return DOCUMENT
    if kind == "paragraph":
        return PARAGRAPH
    raise ConfigError(f"kind must be 'document' or 'paragraph', got {kind!r}")


def _json_ids(ids) -> str:
    """A JSON list of ints for json_each: a join of str (3.4 against json.dumps' 4.5 us on 8
    ids)."""
    return "[" + ",".join(map(str, ids)) + "]"


def _sorted_sets(analysis: _Analysis, lo: int, hi: int) -> Prepared:
    """Units lo..hi-1 of an analysis as a Prepared (sorted distinct shingles), for find_groups:
    the rare text whose paragraphs repeat each other."""
    ro = analysis.raw_offsets
    raw = analysis.raw[ro[lo]:ro[hi]].copy()
    raw_offsets = ro[lo:hi + 1] - ro[lo]
    sort_segments(raw, raw_offsets)
    n_values, shingle_offsets = compact_sorted_inplace(raw, raw_offsets)
    return Prepared(analysis.norm_lengths[lo:hi], raw[:n_values], shingle_offsets,
                    analysis.hashes[lo:hi])
