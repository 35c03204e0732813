"""Corpus deduplication: the batch pipeline behind `dedup.deduplicate` and `dedup run`.

Memory is bounded by the number of units, not by the text: the records are streamed three times
and only small arrays per unit are held between passes.

1. sketch: stream records in batches; per unit keep the xxh64 of its text, its LSH band keys,
   span and record (about 160 bytes with 16 bands; the 128 of band keys are freed after
   step 2).
2. candidates: classes of identical units by hash (their first unit is the head); LSH pairs
   among the heads (units equal only after normalization have equal band keys, so they pair).
3. verify: stream again; re-shingle only the units in a candidate pair and verify each pair
   exactly as soon as both sides have been seen; a unit's shingles are dropped once its last
   pair is verified. A verified pair with the same normalized text is reported as exact.
4. groups: pipeline.build_groups (every removed unit verified directly against the kept one).
5. decide and write: stream a third time; each record is kept as it was, kept with repeated
   paragraphs removed or flagged, or removed, with a report row for every removal or flag.

Units are numbered in corpus order (record order, then position in the record), so the result
depends on neither batch size nor thread count.
"""

import errno
import json
import os
import shutil
import sys
import time
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from xxhash import xxh64_intdigest

from dedup.api import removal_ranges
from dedup.config import Config
from dedup.errors import ConfigError, InputError
from dedup.io import (
    JsonlWriter, ParquetWriter, Reader, Record, TextWriter, discover, edit_jsonl, parquet_writer,
)
from dedup.kernels.band import band_keys, candidate_pairs, pack_pairs
from dedup.kernels.minhash import EMPTY_SLOT
from dedup.kernels.normalize import normalize_units
from dedup.kernels.shingle import unit_hashes
from dedup.kernels.unionfind import connected_components
from dedup.kernels.verify import pair_similarities
from dedup.normtable import load_table
from dedup.pipeline import (
    CONTAINED, EXACT, NEAR, UNIT_HASH_SEED, Edges, Prepared, build_groups, codepoints,
    exact_classes, is_edge, repeats_among, shingle_sets, utf8_signatures,
)
from dedup.units import Units, line_spans, paragraph_spans, split_units

MODES = ("collapse", "flag")
LEVELS = ("document", "paragraph", "sentence")
DEFAULT_BATCH_CHARS = 4_000_000
EMPTIED = "emptied"  # a record whose every paragraph was removed as a repeat
KINDS = (None, EXACT, NEAR, CONTAINED)
_KIND_CODE = {kind: code for code, kind in enumerate(KINDS)}
RAW_HASH_SEED = 0x5EED  # of each unit's UTF-8 text as written: pass 1's exact classes


@dataclass(frozen=True)
class Duplicate:
    """One removed record, or one removed or flagged unit (start and end set, in characters).

    kind: "exact", "near", "contained", or "emptied" (a record with nothing left after its
    repeats were removed: then dup_of and the group fields are None). dup_of: the id of the
    record holding the kept copy, dup_start/dup_end its span there (paragraphs). group: index
    of the group in corpus order, group_size its members, group_min_similarity the lowest
    similarity of a member to the kept copy."""

    id: str
    start: int | None
    end: int | None
    kind: str
    similarity: float | None
    dup_of: str | None
    dup_start: int | None
    dup_end: int | None
    group: int | None
    group_size: int | None
    group_min_similarity: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KeptRecord:
    """A record that is kept: its text (repeats removed in collapse mode) and, in flag mode,
    its flagged units."""

    id: str
    text: str
    is_modified: bool
    flags: tuple[Duplicate, ...] = ()


@dataclass(frozen=True)
class Deduplicated:
    """What dedup.deduplicate decided: the kept records in input order, one Duplicate per
    removed record or removed/flagged unit, and the counts."""

    kept: tuple[KeptRecord, ...]
    duplicates: tuple[Duplicate, ...]
    counts: dict


# --- pass 1: sketch --------------------------------------------------------------------------


def unit_spans(text: str, unit: str) -> tuple[list[int], list[int]]:
    """(starts, ends) of the units of one record, exactly as dedup.units.split_units."""
    if unit == "document":
        start = len(text) - len(text.lstrip())
        end = len(text.rstrip())
        return ([start], [end]) if start < end else ([], [])
    if unit == "paragraph":
        return paragraph_spans(text)
    units = split_units(text, unit)
    return units.starts.tolist(), units.ends.tolist()


def batched(records: Iterable[Record], batch_chars: int):
    """Lists of records holding about batch_chars characters each (at least one record)."""
    batch = []
    size = 0
    for record in records:
        batch.append(record)
        size += len(record.text) if record.text is not None else len(record.raw)
        if size >= batch_chars:
            yield batch
            batch = []
            size = 0
    if batch:
        yield batch


class _Column:
    """A growing numpy column made of chunks."""

    def __init__(self, dtype, width=None):
        self.dtype = dtype
        self.width = width
        self.chunks = []

    def add(self, values):
        self.chunks.append(np.asarray(values, dtype=self.dtype))

    def array(self):
        if not self.chunks:
            shape = (0,) if self.width is None else (0, self.width)
            return np.zeros(shape, dtype=self.dtype)
        out = np.concatenate(self.chunks)
        self.chunks = []
        return out


@dataclass
class Sketch:
    """Per unit (corpus order): record, span, xxh64 of its text (as written: the exact classes
    of pass 1), whether it has any normalized text, band keys; and, set in pass 2 for the units
    in a candidate pair only (all that grouping reads): normalized length, shingle count and
    xxh64 of the normalized text. Per record: its first unit (record_units, n_records + 1) and
    its id."""

    unit_record: np.ndarray
    unit_start: np.ndarray
    unit_end: np.ndarray
    hashes: np.ndarray
    is_active: np.ndarray
    norm_lengths: np.ndarray
    sizes: np.ndarray
    norm_hashes: np.ndarray
    keys: np.ndarray | None
    record_units: np.ndarray
    id_blob: bytes
    id_offsets: np.ndarray
    n_chars: int

    @property
    def n_units(self) -> int:
        return self.hashes.size

    @property
    def n_records(self) -> int:
        return self.record_units.size - 1

    def record_id(self, record: int) -> str:
        lo, hi = self.id_offsets[record], self.id_offsets[record + 1]
        return self.id_blob[lo:hi].decode("utf-8", "surrogatepass")

    def prepared(self) -> Prepared:
        """A Prepared without shingles: what exact_classes and build_groups read."""
        offsets = np.zeros(self.n_units + 1, dtype=np.int64)
        np.cumsum(self.sizes, out=offsets[1:])
        return Prepared(self.norm_lengths, np.zeros(0, dtype=np.uint64), offsets, self.hashes)


def _batch_units(batch, unit):
    """(texts, units per record, starts and ends of the units within their record)."""
    texts = [record.text for record in batch]
    counts, local_starts, local_ends = [], [], []
    for text in texts:
        s, e = unit_spans(text, unit)
        counts.append(len(s))
        local_starts.extend(s)
        local_ends.extend(e)
    return texts, counts, local_starts, local_ends


def unit_sketches(texts, counts, local_starts, local_ends, config: Config):
    """(xxh64 of each unit's UTF-8 text, MinHash signatures) of the units of a batch.

    The signatures equal signatures(prepare(...)) but come straight from UTF-8 through
    pipeline.utf8_signatures, without sorted shingle sets. Units are classed by their text as written, not
    normalized (normalizing twice was a third of this pass): units equal only after
    normalization have equal signatures, so they meet as candidates and pass 2 finds them
    exact. An all-empty signature row means no normalized text.
    """
    owners = np.repeat(np.arange(len(texts)), counts).tolist()
    encoded = [texts[r][s:e].encode("utf-8", "surrogatepass")
               for r, s, e in zip(owners, local_starts, local_ends)]
    hashes = np.fromiter((xxh64_intdigest(piece, RAW_HASH_SEED) for piece in encoded),
                         dtype=np.uint64, count=len(encoded))
    return hashes, utf8_signatures(encoded, config)


def sketch(batches, config: Config, progress=None) -> Sketch:
    """Pass 1 over an iterable of record batches."""
    n_bands, rows = config.band_rows
    unit_record = _Column(np.int64)
    unit_start, unit_end = _Column(np.int64), _Column(np.int64)
    hashes, is_active = _Column(np.uint64), _Column(bool)
    keys = _Column(np.uint64, n_bands)
    record_counts = array("q")
    id_blob = bytearray()
    id_ends = array("q")
    n_records = 0
    n_chars = 0
    for batch in batches:
        texts, counts, local_starts, local_ends = _batch_units(batch, config.unit)
        for record in batch:
            id_blob += record.id.encode("utf-8", "surrogatepass")
            id_ends.append(len(id_blob))
        record_counts.extend(counts)
        unit_record.add(np.repeat(np.arange(n_records, n_records + len(batch)), counts))
        unit_start.add(local_starts)
        unit_end.add(local_ends)
        n_records += len(batch)
        n_chars += sum(map(len, texts))
        if local_starts:
            unit_hash, sigs = unit_sketches(texts, counts, local_starts, local_ends, config)
            hashes.add(unit_hash)
            is_active.add((sigs != EMPTY_SLOT).any(axis=1))
            keys.add(band_keys(sigs, n_bands, rows))
            del sigs
        if progress is not None:
            progress(batch)
    record_units = np.zeros(n_records + 1, dtype=np.int64)
    id_offsets = np.zeros(n_records + 1, dtype=np.int64)
    if n_records:
        np.cumsum(np.frombuffer(record_counts, dtype=np.int64), out=record_units[1:])
        id_offsets[1:] = np.frombuffer(id_ends, dtype=np.int64)
    hashes = hashes.array()
    n_units = hashes.size
    return Sketch(unit_record.array(), unit_start.array(), unit_end.array(), hashes,
                  is_active.array(), np.zeros(n_units, dtype=np.int64),
                  np.zeros(n_units, dtype=np.int64), np.zeros(n_units, dtype=np.uint64),
                  keys.array(), record_units, bytes(id_blob), id_offsets, n_chars)


# --- candidates --------------------------------------------------------------------------------


def candidates(sk: Sketch, heads: np.ndarray, config: Config):
    """Candidate pairs (left < right, unit indices) among the heads: every pair when that is at
    most config.exhaustive_pairs, else the pairs sharing an LSH band (stars for large buckets)."""
    n_heads = heads.size
    if n_heads * (n_heads - 1) // 2 <= config.exhaustive_pairs:
        left, right = np.triu_indices(n_heads, 1)
    else:
        left, right = candidate_pairs(np.ascontiguousarray(sk.keys[heads]), config.max_bucket)
    return heads[left].astype(np.int64), heads[right].astype(np.int64)


# --- pass 2: verify ------------------------------------------------------------------------------


def prepare_sets(cps, starts, ends, config: Config) -> Prepared:
    """The same Prepared as pipeline.prepare (lengths, sorted distinct shingles, hashes) of the
    units cps[starts[u]:ends[u]], holding less memory at once: cps should be a temporary of
    the caller (prepare_sets(codepoints(text), ...)), released as soon as it is normalized,
    and the normalized text is released once shingled. One 50M-character record plus one other
    (every pair verified): peak RSS 1.00 GB with both held and a second buffer for the
    distinct shingles, 0.81 GB without. tests/test_corpus.py checks it against prepare().
    """
    table, exp_offsets, exp_values = load_table()
    norm, norm_offsets, _ = normalize_units(cps, np.asarray(starts, dtype=np.int64),
                                            np.asarray(ends, dtype=np.int64), table,
                                            exp_offsets, exp_values, config.shingle == "word",
                                            False)
    del cps
    hashes = unit_hashes(norm, norm_offsets, UNIT_HASH_SEED)
    lengths = np.diff(norm_offsets)
    shingles, offsets = shingle_sets(norm, norm_offsets, config)
    return Prepared(lengths, shingles, offsets, hashes)


def verify(batches, sk: Sketch, left, right, config: Config, progress=None, retain=None,
           retained=None):
    """Pass 2: exact Jaccard and containment of every candidate pair; only repeats are kept.

    Shingles are recomputed batch by batch for the units in some pair; those of a unit whose
    pairs are not all verified yet stay in a cache until its last partner has been seen.
    retain (bool per unit) and retained (a dict): the text of each unit marked is put in
    retained (unit -> str), for the grouping's extra verification (Plan.verify_more).
    Returns (Edges, the largest number of shingles cached at once).
    """
    order = np.lexsort((left, right))
    left, right = left[order], right[order]
    n_units = sk.n_units
    is_needed = np.zeros(n_units, dtype=bool)
    is_needed[left] = True
    is_needed[right] = True
    last_use = np.full(n_units, -1, dtype=np.int64)
    np.maximum.at(last_use, left, right)
    cache = {}
    cached = 0
    peak_cached = 0
    out = [[], [], [], []]
    next_record = 0
    for batch in batches:
        r0, r1 = next_record, next_record + len(batch)
        next_record = r1
        u0, u1 = int(sk.record_units[r0]), int(sk.record_units[r1])
        if progress is not None:
            progress(batch)
        units = np.flatnonzero(is_needed[u0:u1]) + u0
        if units.size == 0:
            continue
        # code points of the records that hold a needed unit, and the units' spans in them
        records = np.unique(sk.unit_record[units])
        texts = [batch[r - r0].text for r in records.tolist()]
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        base = np.zeros(records.size, dtype=np.int64)
        np.cumsum(lengths[:-1], out=base[1:])
        where = np.searchsorted(records, sk.unit_record[units])
        starts = sk.unit_start[units] + base[where]
        ends = sk.unit_end[units] + base[where]
        joined = "".join(texts)
        if retain is not None:
            for k in np.flatnonzero(retain[units]).tolist():
                retained[int(units[k])] = joined[starts[k]:ends[k]]
        prepared = prepare_sets(codepoints(joined), starts, ends, config)
        sk.sizes[units] = prepared.sizes
        sk.norm_lengths[units] = prepared.norm_lengths
        sk.norm_hashes[units] = prepared.hashes
        p0, p1 = np.searchsorted(right, u0), np.searchsorted(right, u1)
        pair_left, pair_right = left[p0:p1], right[p0:p1]
        old = np.unique(pair_left[pair_left < u0])
        values = [cache[u] for u in old.tolist()] + [prepared.shingles]
        sizes = np.concatenate([np.fromiter((cache[u].size for u in old.tolist()),
                                            dtype=np.int64, count=old.size), prepared.sizes])
        offsets = np.zeros(sizes.size + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        rows = np.concatenate([old, units])  # sorted: cached units all come before u0
        jac, cont = pair_similarities(np.concatenate(values), offsets,
                                      np.searchsorted(rows, pair_left),
                                      np.searchsorted(rows, pair_right))
        shorter = np.minimum(sk.norm_lengths[pair_left], sk.norm_lengths[pair_right])
        keep = is_edge(jac, cont, shorter, config)
        for column, values_kept in zip(out, (pair_left, pair_right, jac, cont)):
            column.append(values_kept[keep])
        for u in [u for u in cache if last_use[u] < u1]:
            cached -= cache.pop(u).size
        shingles, shingle_offsets = prepared.shingles, prepared.shingle_offsets
        for k in np.flatnonzero(last_use[units] >= u1).tolist():
            unit_shingles = shingles[shingle_offsets[k]:shingle_offsets[k + 1]].copy()
            cache[int(units[k])] = unit_shingles
            cached += unit_shingles.size
        peak_cached = max(peak_cached, cached)
    if next_record != sk.n_records:
        raise InputError(f"the input changed between passes: {sk.n_records} records read "
                         f"first, {next_record} then")
    columns = [np.concatenate(c) if c else np.zeros(0, dtype=d)
               for c, d in zip(out, (np.int64, np.int64, np.float64, np.float64))]
    order = np.lexsort((columns[1], columns[0]))
    return Edges(*(c[order] for c in columns)), peak_cached


# Characters of unit text pass 2 may hold for the grouping's extra verification: at most 4
# bytes each (Python str), so at most 256 MB. Beyond it the extra pairs are verified in another
# streamed pass instead.
RETAIN_CHARS = 64_000_000


def _may_regroup(sk: Sketch, left, right):
    """Units (bool per unit) the grouping may verify again: those in a connected component of
    three or more units in the candidate graph (a lone pair is verified directly). None when
    their text is over RETAIN_CHARS."""
    if left.size == 0:
        return None
    labels = connected_components(sk.n_units, left, right)
    paired = np.unique(np.concatenate([left, right]))
    component_sizes = np.bincount(labels[paired], minlength=sk.n_units)
    retain = np.zeros(sk.n_units, dtype=bool)
    retain[paired] = component_sizes[labels[paired]] >= 3
    if int((sk.unit_end - sk.unit_start)[retain].sum()) > RETAIN_CHARS:
        return None
    return retain


def _verify_retained(retained: dict, units, left, right, config: Config) -> Edges:
    """verify() of the pairs (left < right) over units whose text pass 2 retained."""
    texts = [retained[u] for u in units.tolist()]
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    return verify_unit_texts(units, "".join(texts), lengths, left, right, config)[0]


def verify_unit_texts(units, text: str, lengths, left, right, config: Config):
    """Pairs (left < right) of units verified exactly from the units' own texts: units sorted,
    text their texts joined in that order, lengths the length of each. Returns (the repeats,
    numbered as units, the Prepared of units). Normalization sees one unit at a time, so a
    unit's text alone gives its shingle set."""
    ends = np.cumsum(lengths)
    prepared = prepare_sets(codepoints(text), ends - lengths, ends, config)
    edges = repeats_among(prepared, np.searchsorted(units, left), np.searchsorted(units, right),
                          config, left, right)
    return edges, prepared


# --- groups ----------------------------------------------------------------------------------


class _Singletons(dict):
    """Exact classes: only those with copies are stored; any other head is alone in its class."""

    def __missing__(self, head):
        return [head]


@dataclass
class Decisions:
    """Per unit: kind code (0 kept or not repeated, else index in KINDS), similarity to the kept
    copy, the kept unit (-1) and the group (-1); per group: size and lowest similarity."""

    kind: np.ndarray
    similarity: np.ndarray
    rep: np.ndarray
    group: np.ndarray
    group_size: np.ndarray
    group_min_similarity: np.ndarray


def decide(sk: Sketch, heads, head_of, edges: Edges, config: Config,
           verify_more=None, tried=None) -> Decisions:
    """Groups from exact classes and verified edges; no member is attached by transitivity.
    verify_more, tried: as in pipeline.build_groups (a further streamed pass of
    verification, and the candidate pairs verified already)."""
    n_units = sk.n_units
    class_members = _Singletons()
    has_copies = np.flatnonzero((head_of >= 0) & (head_of != np.arange(n_units)))
    for unit, head in zip(has_copies.tolist(), head_of[has_copies].tolist()):
        members = class_members.get(head)
        if members is None:
            class_members[head] = members = [head]
        members.append(unit)
    # only heads with a copy or a verified edge can be in a group: leave the others out of
    # build_groups' Python loops (most units of a corpus repeat nothing)
    is_linked = np.zeros(n_units, dtype=bool)
    is_linked[edges.left] = True
    is_linked[edges.right] = True
    is_linked[head_of[has_copies]] = True
    groups = build_groups(sk.prepared(), heads[is_linked[heads]], class_members,
                          edges, config, verify_more, tried)
    kind = np.zeros(n_units, dtype=np.int8)
    similarity = np.zeros(n_units, dtype=np.float64)
    rep = np.full(n_units, -1, dtype=np.int64)
    group_of = np.full(n_units, -1, dtype=np.int64)
    group_size = np.zeros(len(groups), dtype=np.int64)
    group_min = np.zeros(len(groups), dtype=np.float64)
    for index, group in enumerate(groups):
        representative = group[0].unit
        group_size[index] = len(group)
        group_min[index] = min(a.similarity for a in group[1:])
        for a in group:
            group_of[a.unit] = index
            rep[a.unit] = representative
            if a.kind is not None:
                # same normalized text, different as written: exact, found through LSH
                is_same_text = a.kind == NEAR and a.similarity == 1.0 and \
                    sk.norm_hashes[head_of[a.unit]] == sk.norm_hashes[representative]
                kind[a.unit] = _KIND_CODE[EXACT if is_same_text else a.kind]
                similarity[a.unit] = a.similarity
    return Decisions(kind, similarity, rep, group_of, group_size, group_min)


# --- the plan: passes 1 and 2 and the groups -----------------------------------------------------


@dataclass
class Plan:
    """Everything decided before the write pass."""

    sketch: Sketch
    decisions: Decisions
    stats: dict
    timings: dict
    seen: object = None  # dedup.seen.SeenBefore of a run with --index

    def wanted(self) -> np.ndarray:
        """Per record, whether the write pass needs its text: it has a repeated unit (every
        record when the run stores its kept records in an index)."""
        if self.seen is not None and self.seen.is_updating:
            return np.ones(self.sketch.n_records, dtype=bool)
        return self.repeated()

    def repeated(self) -> np.ndarray:
        """Per record, whether it has a repeated unit (outcome() has something to decide)."""
        return records_holding(self.sketch, np.flatnonzero(self.decisions.kind))


def records_holding(sk: Sketch, *units: np.ndarray) -> np.ndarray:
    """Per record, whether it holds one of the units (arrays of unit indices): what a pass
    must read again."""
    wanted = np.zeros(sk.n_records, dtype=bool)
    for some in units:
        wanted[sk.unit_record[some]] = True
    return wanted


def make_plan(read, config: Config, batch_chars=DEFAULT_BATCH_CHARS, progress=None,
              seen=None) -> Plan:
    """Passes 1 and 2 and the grouping. read(wanted) returns a fresh iterator of the records
    each time it is called (wanted: None, or a bool per record: those it may leave unparsed);
    progress(stage) returns a callback taking each batch, or None; seen: a SeenBefore
    (dedup/seen.py) whose matched units are left out of the groups."""
    timings = {}
    clock = time.perf_counter()
    sk = sketch(batched(read(None), batch_chars), config, progress and progress("sketch"))
    timings["sketch"] = time.perf_counter() - clock
    clock = time.perf_counter()
    active = np.flatnonzero(sk.is_active)
    heads, head_of = exact_classes(sk.prepared(), active)
    if seen is not None:  # units repeating the index's are removed as such, never grouped
        heads = seen.match(sk, heads, head_of, read, batch_chars)
    left, right = candidates(sk, heads, config)
    sk.keys = None  # not needed any more: free them before pass 2
    timings["candidates"] = time.perf_counter() - clock
    clock = time.perf_counter()
    n_candidates = left.size
    wanted = records_holding(sk, left, right)
    retain = _may_regroup(sk, left, right)
    retained = {}
    edges, peak_cached = verify(batched(read(wanted), batch_chars), sk, left, right, config,
                                progress and progress("verify"), retain, retained)
    tried = np.sort(pack_pairs(left, right))
    del left, right
    timings["verify"] = time.perf_counter() - clock
    clock = time.perf_counter()
    extra = {"passes": 0, "pairs": 0}

    def verify_more(left, right):
        # a component's representative lacks verified pairs with some members (a star
        # bucket's hub is seldom the one kept): from the texts kept in pass 2 when they are all
        # there, else one more streamed pass over the records holding the pairs
        extra["pairs"] += left.size
        units = np.unique(np.concatenate([left, right]))
        if all(u in retained for u in units.tolist()):
            return _verify_retained(retained, units, left, right, config)
        extra["passes"] += 1
        more, _ = verify(batched(read(records_holding(sk, units)), batch_chars), sk, left,
                         right, config)
        return more

    decisions = decide(sk, heads, head_of, edges, config, verify_more, tried)
    del tried
    timings["group"] = time.perf_counter() - clock
    stats = {
        "units": int(sk.n_units),
        "distinct_units": int(heads.size),
        "candidate_pairs": int(n_candidates),
        "verified_pairs": int(edges.left.size),
        "regroup_passes": extra["passes"],
        "regroup_pairs": extra["pairs"],
        "groups": int(decisions.group_size.size),
        "peak_cached_shingles": int(peak_cached),
    }
    if seen is not None:
        seen.decide(decisions)
    return Plan(sk, decisions, stats, timings, seen)


# --- pass 3: what happens to each record -------------------------------------------------------


@dataclass
class Outcome:
    """status "kept" (as it was), "modified" (text is the new text) or "removed"; flags lists
    the record's removed or flagged units (or the record itself at document level)."""

    status: str
    text: str | None
    rows: list


def _rows(plan: Plan, record_id, units: np.ndarray, with_span: bool) -> list:
    """The report rows of a record's repeated units (sorted unit indices): a unit the index of
    earlier runs matched is reported against its stored key (SeenBefore.row), the others
    against the kept copy of their group."""
    seen = plan.seen
    if seen is None or not seen.is_matched[units].any():
        return _group_rows(plan, record_id, units, with_span)
    matched = seen.is_matched[units]
    grouped = iter(_group_rows(plan, record_id, units[~matched], with_span))
    return [seen.row(record_id, unit, with_span) if is_matched else next(grouped)
            for unit, is_matched in zip(units.tolist(), matched.tolist())]


def _group_rows(plan: Plan, record_id, units: np.ndarray, with_span: bool) -> list:
    """Rows of units in groups, the numpy lookups done once for all of them."""
    sk, dec = plan.sketch, plan.decisions
    reps = dec.rep[units]
    groups = dec.group[units]
    columns = zip(
        sk.unit_start[units].tolist(), sk.unit_end[units].tolist(), dec.kind[units].tolist(),
        dec.similarity[units].tolist(), sk.unit_record[reps].tolist(),
        sk.unit_start[reps].tolist(), sk.unit_end[reps].tolist(), groups.tolist(),
        dec.group_size[groups].tolist(), dec.group_min_similarity[groups].tolist())
    return [Duplicate(record_id, start if with_span else None, end if with_span else None,
                      KINDS[kind], similarity, sk.record_id(rep_record),
                      rep_start if with_span else None, rep_end if with_span else None,
                      group, size, low)
            for start, end, kind, similarity, rep_record, rep_start, rep_end, group, size, low
            in columns]


_UNCHANGED = Outcome("kept", None, ())  # a record none of whose units repeats


def outcome(plan: Plan, index: int, record: Record, config: Config, mode: str) -> Outcome:
    """What happens to record number `index` (in corpus order)."""
    sk, dec = plan.sketch, plan.decisions
    u0, u1 = int(sk.record_units[index]), int(sk.record_units[index + 1])
    repeats = np.flatnonzero(dec.kind[u0:u1]) if u1 > u0 else ()
    if len(repeats) == 0:
        return Outcome("kept", None, [])
    is_document = config.unit == "document"
    rows = _rows(plan, record.id, repeats + u0, not is_document)
    if mode == "flag":
        return Outcome("kept", None, rows)
    if is_document:
        return Outcome("removed", None, rows)
    text = record.text
    if sk.unit_end[u1 - 1] > len(text):
        raise InputError(f"record {record.id}: the input changed between passes")
    # the spans from pass 1 and the line table: what split_units would give, at a third of its
    # cost (it was the largest part of the write pass at paragraph level)
    units = Units(sk.unit_start[u0:u1], sk.unit_end[u0:u1], *line_spans(text))
    pieces = []
    pos = 0
    for start, end in removal_ranges(text, units, repeats.tolist()):
        pieces.append(text[pos:start])
        pos = end
    pieces.append(text[pos:])
    new_text = "".join(pieces)
    if not new_text.strip():
        rows.append(Duplicate(record.id, None, None, EMPTIED, None, None, None, None, None,
                              None, None))
        return Outcome("removed", None, rows)
    return Outcome("modified", new_text, rows)


# --- the library entry point ---------------------------------------------------------------------


def _as_records(records) -> list[Record]:
    out = []
    for index, item in enumerate(records):
        if isinstance(item, str):
            record_id, text = str(index), item
        elif isinstance(item, dict):
            if "text" not in item:
                raise InputError(f'records[{index}]: field "text" is missing')
            record_id, text = item.get("id", str(index)), item["text"]
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            record_id, text = item
        else:
            raise InputError(f"records[{index}]: expected (id, text), a dict with \"text\" or a "
                             f"str, got {type(item).__name__}")
        if not isinstance(text, str):
            raise InputError(f"records[{index}]: text must be a str, got {type(text).__name__}")
        if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
            raise InputError(f"records[{index}]: id must be a str or int, got "
                             f"{type(record_id).__name__}")
        out.append(Record(str(record_id), text, -1, index + 1, None))
    return out


def deduplicate(records, config: Config | None = None, mode: str = "collapse",
                batch_chars: int = DEFAULT_BATCH_CHARS) -> Deduplicated:
    """Near-duplicate records (config.unit "document") or repeated paragraphs within and across
    records ("paragraph", "sentence") of a corpus.

    records: an iterable of (id, text) pairs, dicts with "text" (and "id"), or strings (their
    index is the id). mode "collapse" removes the repeats (a record left without text is removed
    as "emptied"); "flag" keeps every record and lists its repeats. The first copy in input
    order is kept (config.keep "longest": the longest), never a copy contained in another.

    >>> result = deduplicate([("a", "the same story"), ("b", "The same story!"), ("c", "other")],
    ...                      Config(unit="document"))
    >>> [r.id for r in result.kept], [(d.id, d.kind, d.dup_of) for d in result.duplicates]
    (['a', 'c'], [('b', 'exact', 'a')])
    """
    if config is None:
        config = Config(unit="document")
    if not isinstance(config, Config):
        raise ConfigError(f"config must be a dedup.Config, got {type(config).__name__}")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of 'collapse', 'flag', got {mode!r}")
    if isinstance(batch_chars, bool) or not isinstance(batch_chars, int) or batch_chars < 1:
        raise ConfigError(f"batch_chars must be a positive integer, got {batch_chars!r}")
    items = _as_records(records)
    plan = make_plan(lambda wanted: iter(items), config, batch_chars)
    kept, duplicates = [], []
    counts = {"read": len(items), "kept": 0, "modified": 0, "removed": 0, "flagged": 0}
    for index, record in enumerate(items):
        result = outcome(plan, index, record, config, mode)
        duplicates.extend(result.rows)
        if result.status == "removed":
            counts["removed"] += 1
            continue
        counts["kept"] += 1
        is_modified = result.status == "modified"
        counts["modified"] += is_modified
        flags = tuple(result.rows) if mode == "flag" else ()
        counts["flagged"] += bool(flags)
        kept.append(KeptRecord(record.id, result.text if is_modified else record.text,
                               is_modified, flags))
    counts.update(plan.stats)
    return Deduplicated(tuple(kept), tuple(duplicates), counts)


# --- the file pipeline behind `dedup run` ------------------------------------------------

ON_ERRORS = ("fail", "skip")
SUMMARY = "summary.json"
DUPLICATES = "duplicates"
REJECTS = "rejects.jsonl"
_PARTIAL = ".dedup-partial-"
_REPORT_ROWS = 65_536
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_FLAG_FIELDS = ("start", "end", "kind", "similarity", "dup_of", "dup_start", "dup_end", "group")


def _flag_type():
    import pyarrow as pa

    return pa.list_(pa.struct([
        ("start", pa.int64()), ("end", pa.int64()), ("kind", pa.string()),
        ("similarity", pa.float64()), ("dup_of", pa.string()), ("dup_start", pa.int64()),
        ("dup_end", pa.int64()), ("group", pa.int64()),
    ]))


def _report_schema():
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("file", pa.string()), ("line", pa.int64()),
        ("start", pa.int64()), ("end", pa.int64()), ("kind", pa.string()),
        ("similarity", pa.float64()), ("dup_of", pa.string()), ("dup_start", pa.int64()),
        ("dup_end", pa.int64()), ("group", pa.int64()), ("group_size", pa.int64()),
        ("group_min_similarity", pa.float64()),
    ])


class _Report:
    """duplicates.parquet (and .jsonl) written in slices of rows as the write pass goes."""

    def __init__(self, folder: Path, with_jsonl: bool):
        self.schema = _report_schema()
        self.paths = [folder / f"{DUPLICATES}.parquet"]
        self._parquet = parquet_writer(self.paths[0], self.schema, compression="zstd")
        self._jsonl = None
        if with_jsonl:
            self.paths.append(folder / f"{DUPLICATES}.jsonl")
            self._jsonl = open(self.paths[1], "wb")
        self._rows = {name: [] for name in self.schema.names}
        self.n_rows = 0

    def add(self, row: Duplicate, file: str, line: int):
        data = self._rows
        data["file"].append(file)
        data["line"].append(line)
        for name in _FLAG_FIELDS + ("id", "group_size", "group_min_similarity"):
            data[name].append(getattr(row, name))
        self.n_rows += 1
        if len(data["id"]) >= _REPORT_ROWS:
            self._flush()

    def _flush(self):
        import pyarrow as pa

        if not self._rows["id"]:
            return
        table = pa.table(self._rows, schema=self.schema)
        self._parquet.write_table(table)
        if self._jsonl is not None:
            names = self.schema.names
            columns = [self._rows[name] for name in names]
            self._jsonl.write(b"".join(
                json.dumps(dict(zip(names, values)), ensure_ascii=False).encode("utf-8") + b"\n"
                for values in zip(*columns)))
        self._rows = {name: [] for name in self.schema.names}

    def close(self):
        self._flush()
        self._parquet.close()
        if self._jsonl is not None:
            self._jsonl.close()


def _is_partial(path: Path) -> bool:
    return path.name.startswith(_PARTIAL)


def _partial_pid(path: Path) -> int | None:
    """The process id of a run still writing into this partial folder, or None when that
    process is gone (the folder was left by a killed run)."""
    try:
        pid = int(path.name[len(_PARTIAL):])
        os.kill(pid, 0)
    except ValueError:
        return None
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by another user
        return pid
    return pid


def _prepare_outdir(out: Path, shards, overwrite: bool) -> Path:
    """Check the output folder and make the hidden folder the run writes into."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    out_resolved = out.resolve()
    for shard in shards:
        full = shard.path.resolve()
        if full == out_resolved / shard.name or out_resolved in full.parents:
            raise InputError(f"{shard.path}: input lies inside the output folder {out}; "
                             "choose another -o")
    if out.is_dir():
        for entry in out.iterdir():
            if _is_partial(entry):  # left by an interrupted run: never looked complete
                pid = _partial_pid(entry)
                if pid is None or pid == os.getpid():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    raise InputError(f"{out}: another dedup run (process {pid}) is writing "
                                     "into it; wait for it or choose another -o")
        leftovers = sorted(p.name for p in out.iterdir())
        if leftovers and not overwrite:
            what = SUMMARY if SUMMARY in leftovers else leftovers[0]
            raise InputError(f"{out}: already holds results ({what}); choose an empty folder or "
                             "pass --overwrite")
    work = out / f"{_PARTIAL}{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(exist_ok=True)
    except OSError as err:
        raise InputError(f"{out}: cannot create the output folder ({err.strerror})") from None
    return work


def _publish(work: Path, out: Path, names: list[str], summary: dict):
    """Move the finished files into place; summary.json goes last, so a folder with one holds a
    complete run. Files named by an earlier run's summary and not written now are removed."""
    old = out / SUMMARY
    previous = []
    if old.exists():
        try:
            previous = json.loads(old.read_text(encoding="utf-8")).get("outputs", [])
        except (OSError, ValueError):
            previous = []
        old.unlink()
    for name in previous:
        if name not in names and isinstance(name, str):
            target = (out / name).resolve()
            if out.resolve() in target.parents and target.is_file():
                target.unlink()
    for name in names:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / name, target)
    tmp = work / SUMMARY
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / SUMMARY)
    shutil.rmtree(work, ignore_errors=True)


class _Progress:
    """One tqdm bar per stage on stderr (bytes of records), or nothing when quiet."""

    def __init__(self, total, quiet, stream):
        self.total = total
        self.quiet = quiet or not getattr(stream, "isatty", lambda: False)()
        self.stream = stream
        self.bar = None
        self.stages = {"sketch": "1/3 sketch", "verify": "2/3 verify", "write": "3/3 write"}

    def __call__(self, stage):
        if self.quiet:
            return None
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=self.total, unit="B", unit_scale=True, unit_divisor=1000,
                        desc=self.stages[stage], file=self.stream, leave=False,
                        dynamic_ncols=True, mininterval=0.5)
        bar = self.bar

        def advance(batch):
            bar.update(sum(len(r.raw) if type(r.raw) is bytes else len(r.text) for r in batch))
            bar.set_postfix_str(f"{batch[-1].line:,} lines of shard {batch[-1].shard + 1}",
                                refresh=False)

        return advance

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_files(inputs, outdir, config: Config, mode: str = "collapse", *, text_field="text",
              id_field=None, on_error="fail", flag_field="dedup", duplicates_jsonl=False,
              overwrite=False, batch_chars=DEFAULT_BATCH_CHARS, workers=None, quiet=True,
              stream=None, index=None, index_read_only=False) -> dict:
    """Deduplicate corpus files into outdir; returns the summary (also written to summary.json).

    inputs: files, folders and globs (JSON Lines plain/.gz/.zst, Parquet, .txt). The kept
    records go to files mirroring the inputs (same names, format and compression); removed
    records and removed or flagged units go to duplicates.parquet (and duplicates.jsonl);
    records that cannot be read raise InputError (on_error "fail") or go to rejects.jsonl
    ("skip"). Nothing appears in outdir before the run is complete.
    index: path of a dedup.Index of earlier runs: units repeating its units are removed as
    such, and the kept records are stored in it once the outputs are in place (unless
    index_read_only); see dedup/seen.py.
    """
    clock = time.perf_counter()
    if mode not in MODES:
        raise ConfigError(f"mode must be one of 'collapse', 'flag', got {mode!r}")
    if on_error not in ON_ERRORS:
        raise ConfigError(f"on_error must be one of 'fail', 'skip', got {on_error!r}")
    if isinstance(batch_chars, bool) or not isinstance(batch_chars, int) or batch_chars < 1:
        raise ConfigError(f"batch_chars must be a positive integer, got {batch_chars!r}")
    if workers is not None:
        import numba

        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    shards = discover(list(inputs))
    out = Path(outdir)
    seen = None
    if index is not None:  # before any output: a bad or incompatible index is one line
        from dedup.seen import SeenBefore
        seen = SeenBefore.open(index, config, index_read_only)
    try:
        work = _prepare_outdir(out, shards, overwrite)
    except BaseException:
        if seen is not None:
            seen.close()
        raise
    progress = _Progress(None if any(s.compression for s in shards) else
                         sum(s.size for s in shards), quiet, stream or sys.stderr)
    try:
        summary, names = _run(shards, work, config, mode, text_field, id_field, on_error,
                              flag_field, duplicates_jsonl, batch_chars, progress, seen)
        if seen is not None:
            seen.finish()
            summary["index"] = seen.summary()
        summary["timings"]["total"] = time.perf_counter() - clock
        total = summary["timings"]["total"]
        summary["mb_per_s"] = round(summary["bytes_read"] / 1e6 / total, 3) if total else None
        summary["records_per_s"] = round(summary["counts"]["read"] / total, 1) if total else None
        summary["outputs"] = names
        _publish(work, out, names, summary)
        if seen is not None:
            seen.commit()  # the index changes only once the outputs are in place
    except BaseException as err:
        progress.close()
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:  # full disk, not our bug
            raise InputError(f"{out}: cannot write the results ({err.strerror or err})") \
                from None
        raise
    finally:
        if seen is not None:
            seen.close()  # rolls back what a failed run stored
    progress.close()
    return summary


def _run(shards, work, config, mode, text_field, id_field, on_error, flag_field,
         duplicates_jsonl, batch_chars, progress, seen=None):
    rejects_path = work / REJECTS
    rejects_file = open(rejects_path, "wb") if on_error == "skip" else None
    n_rejected = 0
    rejected_shards = set()

    def on_reject(reject):
        nonlocal n_rejected
        rejects_file.write(reject.to_json())
        if reject.is_whole_file:
            rejected_shards.add(reject.file)
        else:
            n_rejected += 1

    reader = Reader(shards, text_field, id_field, on_reject if rejects_file else None)
    try:
        plan = make_plan(reader.records, config, batch_chars, progress, seen)
    finally:
        if rejects_file is not None:
            rejects_file.close()
    clock = time.perf_counter()
    report = _Report(work, duplicates_jsonl)
    counts = {"read": 0, "kept": 0, "modified": 0, "removed": 0, "flagged": 0,
              "rejected": n_rejected, "rejected_files": len(rejected_shards)}
    flag_type = _flag_type() if mode == "flag" else None
    writers = {}
    advance = progress("write")

    def writer_for(index):
        if index not in writers:
            shard = shards[index]
            path = work / shard.name
            path.parent.mkdir(parents=True, exist_ok=True)
            if shard.format == "jsonl":
                writers[index] = JsonlWriter(path, shard)
            elif shard.format == "parquet":
                writers[index] = ParquetWriter(path, shard, text_field,
                                               flag_field if mode == "flag" else None, flag_type)
            else:
                writers[index] = TextWriter(path, shard)
        return writers[index]

    index = 0
    current = -1
    is_flag = mode == "flag"
    repeated = plan.repeated()  # the others are kept as they are: no outcome() to ask
    for batch in batched(reader.records(plan.wanted()), batch_chars):
        for record in batch:
            if record.shard != current:
                for done in range(max(current, 0), record.shard):  # empty shards too
                    if done == current or shards[done].name not in rejected_shards:
                        writer_for(done)
                        writers.pop(done).close()
                current = record.shard
            result = outcome(plan, index, record, config, mode) if repeated[index] \
                else _UNCHANGED
            index += 1
            shard = shards[record.shard]
            for row in result.rows:
                report.add(row, shard.name, record.line)
            if not tally(counts, result, is_flag):
                continue
            _write_record(writer_for(record.shard), shard, record, result, text_field,
                          flag_field if is_flag else None)
            if seen is not None:
                seen.keep(record.id, result.text if result.status == "modified" else record.text)
        if advance is not None:
            advance(batch)
    for done in range(max(current, 0), len(shards)):
        if done == current or shards[done].name not in rejected_shards:
            writer_for(done)
            writers.pop(done).close()
    report.close()
    if index != plan.sketch.n_records:
        raise InputError(f"the input changed between passes: {plan.sketch.n_records} records "
                         f"read first, {index} then")
    counts["read"] = index + n_rejected
    plan.timings["write"] = time.perf_counter() - clock
    counts["units_repeated"] = int(np.count_nonzero(plan.decisions.kind))
    counts.update(plan.stats)
    return run_summary(shards, work, rejected_shards, report, config, mode, text_field,
                       id_field, on_error, flag_field, counts, plan.timings)


def run_summary(shards, work: Path, rejected_shards, report, config: Config, mode, text_field,
                id_field, on_error, flag_field, counts, timings) -> tuple[dict, list[str]]:
    """(summary.json's content, the names of the output files) of a finished run; shared by
    the local and the Ray engine, whose summaries differ only in what an engine adds."""
    from dedup import __version__

    names = [s.name for s in shards if s.name not in rejected_shards and (work / s.name).exists()]
    names += [p.name for p in report.paths]
    if on_error == "skip":
        names.append(REJECTS)
    summary = {
        "version": __version__,
        "complete": True,
        "inputs": [str(s.path) for s in shards],
        "level": config.unit,
        "mode": mode,
        "settings": {**config.to_dict(), "text_field": text_field, "id_field": id_field,
                     "on_error": on_error, "flag_field": flag_field if mode == "flag" else None,
                     "bands_rows": list(config.band_rows)},
        "counts": counts,
        "duplicate_rows": report.n_rows,
        "bytes_read": sum(s.size for s in shards),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    return summary, names


def tally(counts: dict, result: Outcome, is_flag: bool) -> bool:
    """Count one record's outcome in counts; whether the record is written (not removed)."""
    if result.status == "removed":
        counts["removed"] += 1
        return False
    counts["kept"] += 1
    counts["modified"] += result.status == "modified"
    counts["flagged"] += is_flag and bool(result.rows)
    return True


def _write_record(writer, shard, record, result, text_field, flag_field):
    new_text = result.text if result.status == "modified" else None
    flags = None
    if flag_field is not None:
        flags = [{name: getattr(row, name) for name in _FLAG_FIELDS} for row in result.rows]
    if shard.format == "jsonl":
        if new_text is None and flags is None:
            writer.write(record.raw)
        else:
            writer.write(edit_jsonl(record.raw, text_field, new_text, flag_field, flags))
    elif shard.format == "parquet":
        batch, row = record.raw
        writer.write(batch, row, new_text, flags)
    else:
        writer.write(record.raw if new_text is None else new_text.encode("utf-8", "surrogatepass"))


def format_summary(summary: dict) -> str:
    """The one-screen summary printed at the end of `dedup run`."""
    c = summary["counts"]
    t = summary["timings"]
    lines = [
        f"dedup run: {summary['level']} level, {summary['mode']} mode, "
        f"{len(summary['inputs'])} input file{'s' if len(summary['inputs']) != 1 else ''}",
        f"  records  read {c['read']:,}  kept {c['kept']:,}  (modified {c['modified']:,}, "
        f"flagged {c['flagged']:,})  removed {c['removed']:,}  rejected {c['rejected']:,}"
        + (f" (and {c['rejected_files']:,} whole files)" if c.get("rejected_files") else ""),
        f"  units    {c['units']:,}  distinct {c['distinct_units']:,}  repeated "
        f"{c['units_repeated']:,} in {c['groups']:,} groups",
        f"  pairs    {c['candidate_pairs']:,} candidates, {c['verified_pairs']:,} verified repeats",
        f"  time     {t['total']:.1f} s  (sketch {t['sketch']:.1f}, verify {t['verify']:.1f}, "
        f"group {t['group']:.1f}, write {t['write']:.1f})  "
        f"{summary['mb_per_s'] or 0:.1f} MB/s, {summary['records_per_s'] or 0:,.0f} records/s",
        f"  outputs  {', '.join(summary['outputs'][:6])}"
        f"{' …' if len(summary['outputs']) > 6 else ''} + {SUMMARY}",
    ]
    if "index" in summary:  # dedup run --index
        seen = summary["index"]
        stored = (f"{seen['added']:,} records stored" if seen["updated"] else "read only")
        lines.insert(-1, f"  index    {seen['matched_units']:,} units seen before, {stored}"
                         f" ({seen['key_conflicts']:,} key conflicts)")
    return "\n".join(lines) + "\n"
