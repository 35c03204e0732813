"""`dedup run --engine ray`: the corpus pipeline of dedup.corpus on a Ray cluster, same answers.

The stages are those of the local engine, split into Ray tasks over *pieces* of the input: a
piece is a whole shard, or a byte span of a large plain JSON Lines shard (split after a line
break, its first line number counted, so ids, line numbers and errors are those of a whole
read). Units are numbered in corpus order (piece order, then as dedup.corpus.sketch numbers them
within a piece: a piece's numbers are offset by the units of the pieces before it), in 64 bits
(pairs travel as two int64 columns), so every decision is the local engine's decision, and the
outputs are the same bytes.

1. sketch, one task per piece (sketch_piece): dedup.io.Reader (same errors, same rejects) and
   dedup.corpus.sketch (the same numba kernels; the numba cache is loaded once per worker).
   The task keeps the units of its piece (its Sketch) in the object store and sends two
   exchanges: (xxh64, unit) hash-partitioned, and (band, key, xxh64, unit) partitioned by band
   key, for active units only: 26 bytes per unit and band shuffled. With
   DEDUP_RAY_SKETCH_ON=data the same function runs on Ray Data instead: a Dataset of piece
   numbers (one per block) mapped by map_batches (sketch_batch), each output block split by a
   task (unbundle) into the same objects.
2. exact classes, one task per hash partition: the first unit of each xxh64 is the head; the
   (copy, head) links of classes with copies go to the component partitions (stage 5).
3. candidates, one task per key partition: a bucket is a (band, key) run; its heads are the
   first unit of each xxh64 in it (copies have the same keys, so they share every bucket),
   and kernels.band.candidate_pairs pairs them per band: all pairs, or a star around the first
   head when the bucket is larger than max_bucket, exactly as the local run. When all pairs of
   heads are few (config.exhaustive_pairs, a few hundred heads), the driver makes every pair.
4. verify: candidate pairs are hash-partitioned by pair (each partition drops duplicates found
   in several bands); each piece re-reads only the records holding a unit some partition needs
   and sends each partition the text of the units it needs (UTF-8); each partition shingles
   them (dedup.corpus.prepare_sets) and verifies its pairs with
   kernels.verify.pair_similarities. The repeats go to the component partitions.
5. groups, distributed; the driver holds counts per task, nothing per unit:
   a. connected components over verified repeats and exact copies, by smallest-label
      propagation: each component partition owns the units that hash to it and their
      adjacency; a round sends (neighbour, label) only from units whose label fell, until no
      label falls (rounds: about the diameter of the largest component, 2 on the benchmark
      corpus);
   b. each component goes whole, with its edges, copies, unit statistics and the candidate
      pairs already verified, to the group partition of its label, where dedup.corpus.decide
      runs on it (renumbered densely in unit order, so every decision is the local one); the
      extra verification rounds build_groups asks for run in the group task (it reads the
      records holding the units from their pieces);
   c. groups are numbered as the local engine numbers them, by their smallest unit: a task
      per block of pieces ranks the groups whose smallest unit it holds, the driver adds up
      the counts per block, and a task per block of pieces looks up the representatives'
      record ids and spans and sends each repeated unit's row to its piece's block.
   Memory per task: the largest component partition's units and edges (a component is never
   split: one boilerplate unit repeated a million times is one task's component).
6. write, one task per piece: the rows of its repeated units, dedup.corpus.outcome and the
   same writers (JsonlWriter, ParquetWriter, TextWriter) into the run's hidden folder; the
   spans of a split shard are written as parts and joined in order. duplicates.parquet is assembled on the driver from
   each piece's rows in the row groups of the local report (65,536 rows each), and published
   with dedup.corpus._publish: summary.json last.

Ray Data and Ray tasks: every stage must reproduce the local engine byte for byte. Reading stays
ours either way (Ray Data's JSON readers have no file and line for a bad record and no
rejects); on Ray Data a bad record is returned as a value and the driver raises the first in
corpus order. Stage 1 on Ray Data works (tests/test_ray.py runs it, a worker killed in it
included) but is not the default: on the 2-core development machine (08:41-08:52 UTC, load
2.1-3.2, two interleaved rounds) its sketch stage took 12.8-17.0 s against 4.9-7.3 s as tasks
for the 200 MB corpus at paragraph level, 8.4-9.9 against 4.3-5.9 s at document level and
5.9-7.2 against 2.3-2.6 s for 20 MB (a fixed 3.5-5 s for Ray Data's executor and imports, the
rest growing with the output, which crosses an Arrow object column and is unpickled again to
be split), and the process tree peaked 0.4-0.8 GB higher (2.25-2.33 GB against 1.53-1.55 GB at
paragraph level). Most of the time is the first call: in one Ray session the same stage took
9.2-15.7 s on Ray Data and 6.5-6.6 s as tasks the first time, 5.2-6.5 against 5.0-5.9 s
when run again. The exchanges stay Ray tasks exchanging numpy arrays through the object
store, one sort per partition: Ray Data's hash shuffle (Dataset.repartition(keys=...),
shuffle strategies hash_shuffle and shuffle_v2 of Ray 2.60) took 15.8-16.5 s to move 7.8 M
rows of (partition, key, unit) between 4 partitions on 2 CPUs, the size of the band-key
exchange at paragraph level, whose bucket stage takes 0.1-0.2 s after the sketch tasks split
their rows; its groupby calls Python once per group (a million buckets per band). The write
stage must use our writers.

Cluster use: every node must read the inputs and write into the output folder at the same
paths (a shared file system), as with any Ray job over files. Tasks are retried by Ray when a
worker dies (max_retries): each one only reads its inputs and rewrites its own files, so a
retry gives the same bytes.
"""

import logging
import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dedup.config import Config
from dedup.errors import ConfigError, DedupError, InputError
from dedup.kernels.band import distinct_sorted

PARTITIONS_PER_CPU = 2
MAX_PARTITIONS = 256
MIN_PIECE_BYTES = 8 << 20
MAX_PIECE_BYTES = 128 << 20
# stage 1 on plain Ray tasks ("tasks", the default: faster and smaller here, see the module
# docstring) or on Ray Data ("data")
SKETCH_ON = os.environ.get("DEDUP_RAY_SKETCH_ON", "tasks")
CONNECT_WAIT_S = 15  # how long --ray-address may take to answer before the run gives up
INSTALL_HINT = "--engine ray needs Ray: pip install 'dedup[ray]' (or pip install 'ray')"
DATA_INSTALL_HINT = ("--ray-sketch data needs Ray Data: pip install 'dedup[ray]' "
                     "(or pip install 'ray[data]')")


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class Piece:
    """Part of the input read by one task: shard index and span (start byte, end byte, number
    of the line at start), None for the whole shard; part and n_parts number the spans of a
    split shard."""

    shard: int
    span: tuple | None
    part: int
    n_parts: int


# --- helpers run inside tasks -------------------------------------------------------------------


def _task_setup():
    import numba

    numba.set_num_threads(1)  # a task holds one CPU; more pieces, not more threads


def _maybe_die(stage, kill):
    """Test hook (tests/test_ray.py): kill this worker process once, in the given stage.
    kill: (stage, marker path) or None; the marker is created atomically so only one task dies."""
    if kill is None or kill[0] != stage:
        return
    try:
        os.close(os.open(kill[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _reader_again(shard, span, text_field, id_field, rejected_lines, is_skip):
    """A Reader for a later pass over a piece whose first pass ran in another task: records not
    wanted are left unparsed, and the lines rejected by the first pass are known."""
    from dedup.io import Reader

    reader = Reader([shard], text_field, id_field, (lambda reject: None) if is_skip else None,
                    span=span)
    reader._checked = True  # the first full pass was the sketch task's
    reader._rejected_lines = {(0, line) for line in rejected_lines}
    return reader


def _partition_of(values: np.ndarray, n: int) -> np.ndarray:
    """A partition in [0, n) per uint64 value (a multiplicative hash: keys, xxh64 and packed
    pairs are spread evenly)."""
    mixed = (values * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(33)
    return (mixed % np.uint64(n)).astype(np.int64)


def _returns(values):
    """A task's values as Ray returns them: num_returns=1 takes the one value itself."""
    values = tuple(values)
    return values[0] if len(values) == 1 else values


_REMOTE = {}


def _remote(name):
    """The Ray remote function of one of this module's stage functions (made once per
    process)."""
    if name not in _REMOTE:
        import ray

        _REMOTE[name] = ray.remote(globals()[name])
    return _REMOTE[name]


def _split_by(partition: np.ndarray, n: int, *columns):
    """Rows of the columns grouped by partition: a list of n tuples of arrays."""
    order = np.argsort(partition, kind="stable")
    bounds = np.searchsorted(partition[order], np.arange(n + 1))
    sorted_columns = [c[order] for c in columns]
    return [tuple(c[bounds[p]:bounds[p + 1]] for c in sorted_columns) for p in range(n)]




# --- stage tasks --------------------------------------------------------------------------------


def split_shard(path, size, piece_bytes):
    """[(start, end, first line)] of a plain file cut after a line break about every
    piece_bytes bytes (one span for a small file). Reads the file once."""
    spans = []
    start, first_line = 0, 1
    target = piece_bytes
    newlines = 0  # line breaks before pos
    pos = 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(1 << 24)
            if not block:
                break
            while target < pos + len(block):
                cut = block.find(b"\n", max(target - pos, 0))
                if cut < 0:
                    break
                end = pos + cut + 1
                if end < size:
                    spans.append((start, end, first_line))
                    first_line = newlines + block.count(b"\n", 0, cut + 1) + 1
                    start = end
                target = end + piece_bytes
            newlines += block.count(b"\n")
            pos += len(block)
    spans.append((start, size, first_line))
    return spans


def sketch_piece(shard, span, config, text_field, id_field, is_skip, batch_chars, n_parts,
                 kill):
    """Pass 1 over a piece. Returns (meta, units, hash parts..., band parts...): meta for the
    driver (counts, rejects), units (the piece's Sketch without band keys) for later stages."""
    from dedup.corpus import batched, sketch
    from dedup.io import Reader

    _task_setup()
    _maybe_die("sketch", kill)
    rejects = []
    reader = Reader([shard], text_field, id_field, rejects.append if is_skip else None, span=span)
    sk = sketch(batched(reader.records(), batch_chars), config)
    keys = sk.keys
    sk.keys = None
    active = np.flatnonzero(sk.is_active)
    hashes = sk.hashes[active]
    hash_parts = _split_by(_partition_of(hashes, n_parts), n_parts, hashes, active)
    n_bands = keys.shape[1]
    band_key = keys[active].ravel()
    band = np.tile(np.arange(n_bands, dtype=np.uint16), active.size)
    band_parts = _split_by(_partition_of(band_key, n_parts), n_parts, band, band_key,
                           np.repeat(hashes, n_bands), np.repeat(active, n_bands))
    meta = {
        "n_records": sk.n_records, "n_units": sk.n_units, "n_chars": sk.n_chars,
        "rejects": b"".join(r.to_json() for r in rejects),
        "rejected_lines": sorted({r.line for r in rejects if not r.is_whole_file}),
        "n_rejected": sum(not r.is_whole_file for r in rejects),
        "is_rejected_whole": any(r.is_whole_file for r in rejects),
        "hash_bytes": sum(c.nbytes for part in hash_parts for c in part),
        "band_bytes": sum(c.nbytes for part in band_parts for c in part),
    }
    return (meta, sk, *hash_parts, *band_parts)


def sketch_batch(batch, pieces, config, text_field, id_field, is_skip, batch_chars, n_parts,
                 kill):
    """Ray Data map_batches over piece descriptors (a batch holds piece numbers): sketch_piece
    on each; one row per piece with its number and its values as one object. A DedupError
    (a bad record) is returned, not raised, so that the driver reports the first one in corpus
    order, as the local engine does, whatever task fails first."""
    numbers = batch["piece"].tolist()
    results = np.empty(len(numbers), dtype=object)
    for row, k in enumerate(numbers):
        shard, span = pieces[k]
        try:
            results[row] = sketch_piece(shard, span, config, text_field, id_field, is_skip,
                                        batch_chars, n_parts, kill)
        except DedupError as err:
            results[row] = err
    return {"piece": np.asarray(numbers, dtype=np.int64), "result": results}


def unbundle(n_values, block):
    """The values of the one piece in a block of sketch_batch's output, as separate objects
    (each later task fetches only what it needs): (piece number, meta or the DedupError,
    then the Sketch and exchanges of sketch_piece, None after an error)."""
    from ray.data.block import BlockAccessor

    columns = BlockAccessor.for_block(block).to_numpy()
    if columns["piece"].size != 1:
        raise RuntimeError(f"a block of the sketch stage holds {columns['piece'].size} pieces")
    result = columns["result"][0]
    if isinstance(result, DedupError):
        return (int(columns["piece"][0]), result, *([None] * (n_values - 1)))
    return (int(columns["piece"][0]), *result)


def _pair_partition_of(left: np.ndarray, right: np.ndarray, n: int) -> np.ndarray:
    """A partition in [0, n) per pair of 64-bit unit ids."""
    mixed = left.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F) + right.astype(np.uint64)
    return _partition_of(mixed, n)


def _distinct_pairs(left: np.ndarray, right: np.ndarray):
    """The distinct pairs, sorted by (left, right): two int64 columns, so unit ids may use all
    64 bits (band.pack_pairs packs two 32-bit ids)."""
    order = np.lexsort((right, left))
    left, right = left[order], right[order]
    if left.size > 1:
        keep = np.ones(left.size, dtype=bool)
        keep[1:] = (left[1:] != left[:-1]) | (right[1:] != right[:-1])
        left, right = left[keep], right[keep]
    return left, right


def _concat(parts, key, n_columns):
    """The columns under key of the parts (dicts of column tuples) that have it, concatenated."""
    found = [p[key] for p in parts if key in p]
    if not found:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(n_columns))
    return tuple(np.concatenate([f[c] for f in found]) for c in range(n_columns))


def _take(columns, rows):
    return tuple(c[rows] for c in columns)


def exact_partition(n_parts, unit_offsets, *parts):
    """Exact classes of one hash partition. parts: (hashes, local units) per piece.
    Returns (number of classes, heads, then per component partition a dict: "copies" (copy,
    head) of the copies it owns, "adj" (head, copy) of the heads it owns)."""
    hashes = np.concatenate([p[0] for p in parts])
    units = np.concatenate([p[1] + unit_offsets[k] for k, p in enumerate(parts)])
    order = np.lexsort((units, hashes))
    hashes, units = hashes[order], units[order]
    is_new = np.ones(units.size, dtype=bool)
    is_new[1:] = hashes[1:] != hashes[:-1]
    head_of = units[is_new][np.cumsum(is_new) - 1]
    copies = ~is_new
    copy, head = units[copies], head_of[copies]
    by_copy = _split_by(_partition_of(copy.astype(np.uint64), n_parts), n_parts, copy, head)
    by_head = _split_by(_partition_of(head.astype(np.uint64), n_parts), n_parts, head, copy)
    out = [{"copies": by_copy[j], "adj": by_head[j]} for j in range(n_parts)]
    return (int(is_new.sum()), np.sort(units[is_new]), *out)


def band_partition(unit_offsets, n_bands, max_bucket, n_parts, *parts):
    """Candidate pairs of the buckets of one key partition, split by pair partition.
    parts: (band, key, xxh64, local unit) per piece."""
    from dedup.kernels.band import candidate_pairs

    _task_setup()
    band = np.concatenate([p[0] for p in parts])
    key = np.concatenate([p[1] for p in parts])
    hashes = np.concatenate([p[2] for p in parts])
    units = np.concatenate([p[3] + unit_offsets[k] for k, p in enumerate(parts)])
    # the heads of a bucket: the first unit of each xxh64 in it (a class shares all its buckets)
    order = np.lexsort((units, hashes, key, band))
    band, key, hashes, units = band[order], key[order], hashes[order], units[order]
    is_head = np.ones(units.size, dtype=bool)
    is_head[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1]) | (hashes[1:] != hashes[:-1])
    band, key, units = band[is_head], key[is_head], units[is_head]
    lefts, rights = [], []
    for b in range(n_bands):
        rows = np.flatnonzero(band == b)
        if rows.size < 2:
            continue
        rows = rows[np.argsort(units[rows], kind="stable")]  # heads in unit order, as locally
        left, right = candidate_pairs(np.ascontiguousarray(key[rows].reshape(-1, 1)), max_bucket)
        lefts.append(units[rows][left])
        rights.append(units[rows][right])
    left = np.concatenate(lefts) if lefts else np.zeros(0, dtype=np.int64)
    right = np.concatenate(rights) if rights else np.zeros(0, dtype=np.int64)
    return _returns(_split_by(_pair_partition_of(left, right, n_parts), n_parts, left, right))


def pair_partition(block_bounds, n_parts, *parts):
    """Distinct pairs of one pair partition. parts: (left, right) arrays.
    Returns (number of pairs, (left, right), needed units per block of pieces..., then the
    pairs per component partition of their left unit: grouping never asks for them again)."""
    left = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    right = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    left, right = _distinct_pairs(left, right)
    needed = distinct_sorted(np.sort(np.concatenate([left, right])))
    cuts = np.searchsorted(needed, block_bounds)
    blocks = [needed[cuts[b]:cuts[b + 1]] for b in range(len(block_bounds) - 1)]
    tried = _split_by(_partition_of(left.astype(np.uint64), n_parts), n_parts, left, right)
    return (int(left.size), (left, right), *blocks, *tried)


def texts_piece(shard, span, units, unit_offset, config, text_field, id_field, rejected_lines,
                is_skip, batch_chars, kill, *needs):
    """Pass 2 over a piece: the text of the units the pair partitions need (their shingle sets
    are made where they are verified: UTF-8 text is about an eighth of the 8 bytes per
    shingle, nearly one shingle per character, that sets would take).
    needs: per pair partition, the sorted global units it needs in this piece's block.
    Returns per pair partition (units, their texts as one UTF-8 blob, their lengths in
    characters)."""
    from dedup.corpus import batched

    _task_setup()
    _maybe_die("verify", kill)
    n_units = units.n_units
    local_needs = []
    for need in needs:
        lo, hi = np.searchsorted(need, [unit_offset, unit_offset + n_units])
        local_needs.append(need[lo:hi] - unit_offset)
    is_needed = np.zeros(n_units, dtype=bool)
    for need in local_needs:
        is_needed[need] = True
    empty = (np.zeros(0, np.int64), b"", np.zeros(0, np.int64))
    if not is_needed.any():
        return tuple(empty for _ in needs) if len(needs) > 1 else empty
    wanted = np.zeros(units.n_records, dtype=bool)
    wanted[units.unit_record[is_needed]] = True
    reader = _reader_again(shard, span, text_field, id_field, rejected_lines, is_skip)
    texts = {}
    next_record = 0
    for batch in batched(reader.records(wanted), batch_chars):
        r0, r1 = next_record, next_record + len(batch)
        next_record = r1
        u0, u1 = int(units.record_units[r0]), int(units.record_units[r1])
        batch_units = np.flatnonzero(is_needed[u0:u1]) + u0
        for unit, record, start, end in zip(
                batch_units.tolist(), units.unit_record[batch_units].tolist(),
                units.unit_start[batch_units].tolist(), units.unit_end[batch_units].tolist()):
            texts[unit] = batch[record - r0].text[start:end]
    if next_record != units.n_records:
        raise InputError(f"{shard.name}: the input changed between passes: {units.n_records} "
                         f"records read first, {next_record} then")
    out = []
    for need in local_needs:
        pieces = [texts[u] for u in need.tolist()]
        out.append((need + unit_offset, "".join(pieces).encode("utf-8", "surrogatepass"),
                    np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))))
    return tuple(out) if len(out) > 1 else out[0]


def _joined_texts(parts):
    """(units, text, lengths) of what texts_piece sent (parts: per piece, in piece order), as
    dedup.corpus.verify_unit_texts takes them."""
    units = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    text = b"".join(p[1] for p in parts).decode("utf-8", "surrogatepass")
    lengths = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    return units, text, lengths


def verify_partition(pairs, config, n_parts, *parts):
    """Exact verification of one pair partition. pairs: (left, right); parts: per piece, what
    texts_piece sent; the shingle sets are made here by dedup.corpus.verify_unit_texts, as the
    local engine's extra verification round makes them.

    Returns ((shingles held, bytes received, repeats), then per component partition a dict:
    "edges" (left, right, jaccard, containment) of the repeats whose left unit it owns, "adj"
    (right, left) of those whose right unit it owns, "stats" (units, normalized lengths,
    shingle counts, normalized xxh64) of the units it owns)."""
    from dedup.corpus import verify_unit_texts

    _task_setup()
    units, text, lengths = _joined_texts(parts)
    left, right = pairs
    edges, prepared = verify_unit_texts(units, text, lengths, left, right, config)
    columns = (edges.left, edges.right, edges.jaccard, edges.containment)
    rows = np.searchsorted(units, np.unique(np.concatenate([edges.left, edges.right])))
    stats = (units[rows], prepared.norm_lengths[rows], prepared.sizes[rows],
             prepared.hashes[rows])
    by_left = _split_by(_partition_of(edges.left.astype(np.uint64), n_parts), n_parts, *columns)
    by_right = _split_by(_partition_of(edges.right.astype(np.uint64), n_parts), n_parts,
                         edges.right, edges.left)
    by_unit = _split_by(_partition_of(stats[0].astype(np.uint64), n_parts), n_parts, *stats)
    info = (int(prepared.shingles.size),
            sum(p[0].nbytes + len(p[1]) + p[2].nbytes for p in parts), int(edges.left.size))
    return (info, *({"edges": by_left[j], "adj": by_right[j], "stats": by_unit[j]}
                    for j in range(n_parts)))


# --- grouping, distributed: connected components, then decide() per component -----------------


def _labels_sent(state, rows, n_parts):
    """Messages (neighbour, label) from the units at the adjacency rows, split by the
    partition owning the neighbour; only labels smaller than the neighbour itself can
    lower its label."""
    dst = state["dst"][rows]
    label = state["labels"][state["src"][rows]]
    useful = label < dst
    dst, label = dst[useful], label[useful]
    return int(dst.size), _split_by(_partition_of(dst.astype(np.uint64), n_parts), n_parts,
                                    dst, label)


def cc_start(n_parts, *parts):
    """One component partition: the units it owns (by _partition_of of the unit), with their
    adjacency (verified edges and exact copies, both ways), each labelled with the smallest
    unit among itself and its neighbours. parts: the dicts exact_partition and
    verify_partition made for it. Returns (state, messages sent, messages per partition...)."""
    edges = _concat(parts, "edges", 4)
    adj = _concat(parts, "adj", 2)
    copies = _concat(parts, "copies", 2)
    src = np.concatenate([edges[0], adj[0], copies[0]])
    dst = np.concatenate([edges[1], adj[1], copies[1]])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    units = distinct_sorted(src)
    src = np.searchsorted(units, src)
    labels = units.copy()
    np.minimum.at(labels, src, dst)
    state = {"units": units, "labels": labels, "src": src, "dst": dst, "edges": edges,
             "copies": copies, "stats": _concat(parts, "stats", 4)}
    n_sent, messages = _labels_sent(state, np.arange(src.size), n_parts)
    return (state, n_sent, *messages)


def cc_round(n_parts, state, *messages):
    """One round of smallest-label propagation: the labels received lower the units' labels,
    and the units whose label fell tell their neighbours. Returns as cc_start."""
    dst = np.concatenate([m[0] for m in messages])
    if dst.size == 0:
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        return (state, 0, *(empty for _ in range(n_parts)))
    label = np.concatenate([m[1] for m in messages])
    labels = state["labels"].copy()
    np.minimum.at(labels, np.searchsorted(state["units"], dst), label)
    fell = labels < state["labels"]
    state = dict(state, labels=labels)
    n_sent, sent = _labels_sent(state, np.flatnonzero(fell[state["src"]]), n_parts)
    return (state, n_sent, *sent)


def cc_finish(n_parts, state, *tried):
    """What each group partition needs of this component partition, by the partition of the
    component's label (its smallest unit): the units, their verified edges (by left unit),
    copies (by copy), unit statistics, and the candidate pairs already verified (by left unit;
    tried: (left, right) from each pair partition)."""
    units, labels = state["units"], state["labels"]
    part_of = _partition_of(labels.astype(np.uint64), n_parts)

    def route(columns, by):
        where = np.minimum(np.searchsorted(units, by), max(units.size - 1, 0))
        found = units[where] == by if units.size else np.zeros(by.size, dtype=bool)
        columns = _take(columns, found)
        return _split_by(part_of[where[found]], n_parts, *columns)

    left = np.concatenate([t[0] for t in tried]) if tried else np.zeros(0, dtype=np.int64)
    right = np.concatenate([t[1] for t in tried]) if tried else np.zeros(0, dtype=np.int64)
    by_part = {
        "units": _split_by(part_of, n_parts, units),
        "edges": route(state["edges"], state["edges"][0]),
        "copies": route(state["copies"], state["copies"][0]),
        "stats": route(state["stats"], state["stats"][0]),
        "tried": route((left, right), left),
    }
    return _returns({key: value[g] for key, value in by_part.items()} for g in range(n_parts))


@dataclass(frozen=True)
class _Context:
    """What a task needs to verify more pairs or look up units: the pieces and how to read
    them. units: per piece, the ref to its Sketch (resolved by the task when needed)."""

    shards: list
    spans: list
    units: list
    unit_offsets: np.ndarray
    rejected_lines: list
    config: Config
    text_field: str
    id_field: str | None
    is_skip: bool
    batch_chars: int
    kill: tuple | None


def _verify_pairs(ctx: _Context, left, right):
    """Exact verification of pairs of units (global, left < right) inside a group task: the
    task reads the records holding them from their pieces (texts_piece) and verifies them
    itself (dedup.corpus.verify_unit_texts). Grouping asks for few pairs (88 on the 200 MB
    corpus); nested tasks would block this one and make Ray start workers, each loading the
    numba cache. Returns Edges."""
    import ray

    from dedup.corpus import verify_unit_texts

    needed = distinct_sorted(np.sort(np.concatenate([left, right])))
    piece_of = np.searchsorted(ctx.unit_offsets, needed, side="right") - 1
    texts = []
    for k in np.unique(piece_of).tolist():
        texts.append(texts_piece(
            ctx.shards[k], ctx.spans[k], ray.get(ctx.units[k]), int(ctx.unit_offsets[k]),
            ctx.config, ctx.text_field, ctx.id_field, ctx.rejected_lines[k], ctx.is_skip,
            ctx.batch_chars, ctx.kill, needed[piece_of == k]))
    return verify_unit_texts(*_joined_texts(texts), left, right, ctx.config)[0]


def group_partition(ctx: _Context, n_blocks, block_bounds, *parts):
    """dedup.corpus.decide over the whole components of one group partition (parts: what
    cc_finish sent it), renumbered densely in unit order so that every decision is the local
    engine's; the extra verification rounds build_groups asks for run in this task
    (_verify_pairs). Returns ((repeated units, passes, pairs verified again, bytes received),
    then per block of pieces the rows of the repeated units whose group's smallest unit is in
    that block: unit, kind, similarity, representative, group's smallest unit, size and
    lowest similarity)."""
    from dedup import corpus
    from dedup.kernels.band import pack_pairs
    from dedup.pipeline import Edges

    _task_setup()
    _maybe_die("group", ctx.kill)
    involved = np.sort(np.concatenate([p["units"][0] for p in parts]))
    if involved.size == 0:
        empty = tuple(np.zeros(0, dtype=t) for t in
                      (np.int64, np.int8, np.float64, np.int64, np.int64, np.int64, np.float64))
        return ((0, 0, 0, 0), *(empty for _ in range(n_blocks)))
    edges = _concat(parts, "edges", 4)
    order = np.lexsort((edges[1], edges[0]))
    edges = _take(edges, order)
    copies = _concat(parts, "copies", 2)
    stats = _concat(parts, "stats", 4)
    tried = _concat(parts, "tried", 2)
    n_involved = involved.size
    if n_involved >= 1 << 32:
        raise ConfigError(f"{n_involved:,} units in one group partition: at most 2^32 "
                          f"(more partitions)")
    compact = lambda units: np.searchsorted(involved, units)  # noqa: E731 - order kept
    norm_lengths = np.zeros(n_involved, dtype=np.int64)
    sizes = np.zeros(n_involved, dtype=np.int64)
    norm_hashes = np.zeros(n_involved, dtype=np.uint64)
    at = compact(stats[0])
    norm_lengths[at], sizes[at], norm_hashes[at] = stats[1], stats[2], stats[3]
    head_of = np.arange(n_involved, dtype=np.int64)
    head_of[compact(copies[0])] = compact(copies[1])
    heads = np.flatnonzero(head_of == np.arange(n_involved))
    view = corpus.Sketch(np.zeros(n_involved, dtype=np.int64), None, None,
                         np.zeros(n_involved, dtype=np.uint64), None, norm_lengths, sizes,
                         norm_hashes, None, np.zeros(1, dtype=np.int64), b"",
                         np.zeros(1, dtype=np.int64), 0)
    compact_edges = Edges(compact(edges[0]), compact(edges[1]), edges[2], edges[3])
    # candidate pairs between two units of this partition, as pack_pairs of positions
    li = np.minimum(compact(tried[0]), n_involved - 1)
    ri = np.minimum(compact(tried[1]), n_involved - 1)
    is_here = (involved[li] == tried[0]) & (involved[ri] == tried[1])
    tried = np.sort(pack_pairs(li[is_here], ri[is_here]))
    extra = {"passes": 0, "pairs": 0}

    def verify_more(left, right):
        extra["passes"] += 1
        extra["pairs"] += left.size
        more = _verify_pairs(ctx, involved[left], involved[right])
        return Edges(compact(more.left), compact(more.right), more.jaccard, more.containment)

    decisions = corpus.decide(view, heads, head_of, compact_edges, ctx.config, verify_more,
                              tried)
    n_groups = decisions.group_size.size
    members = np.flatnonzero(decisions.group >= 0)
    smallest = np.full(n_groups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, decisions.group[members], involved[members])
    repeated = np.flatnonzero(decisions.kind)
    group = decisions.group[repeated]
    rows = (involved[repeated], decisions.kind[repeated], decisions.similarity[repeated],
            involved[decisions.rep[repeated]], smallest[group], decisions.group_size[group],
            decisions.group_min_similarity[group])
    block = np.searchsorted(block_bounds, rows[4], side="right") - 1
    received = sum(c.nbytes for p in parts for columns in p.values() for c in columns)
    info = (int(repeated.size), extra["passes"], extra["pairs"], int(received))
    return (info, *_split_by(block, n_blocks, *rows))


def rank_block(n_blocks, block_bounds, *parts):
    """The groups whose smallest unit is in one block of pieces, numbered in unit order (the
    local engine numbers groups by their smallest unit). parts: rows from group_partition.
    Returns (number of groups, then per block of the representative the rows with the
    group's rank in this block appended)."""
    rows = tuple(np.concatenate([p[c] for p in parts]) for c in range(7))
    smallest = distinct_sorted(np.sort(rows[4]))
    rank = np.searchsorted(smallest, rows[4])
    block = np.searchsorted(block_bounds, rows[3], side="right") - 1
    return (int(smallest.size), *_split_by(block, n_blocks, *rows, rank))


def lookup_block(ctx: _Context, n_blocks, block_bounds, group_offsets, pieces, *parts):
    """Record id, start and end of the representatives in one block of pieces (pieces: their
    indices), and the groups' final numbers. parts: rows from rank_block. Returns per block
    of the repeated unit: (unit, kind, similarity, group, group size, lowest similarity,
    representative, its record id list, start, end)."""
    import ray

    rows = tuple(np.concatenate([p[c] for p in parts]) for c in range(8))
    unit, kind, similarity, rep, smallest, size, lowest, rank = rows
    group = group_offsets[np.searchsorted(block_bounds, smallest, side="right") - 1] + rank
    rep_piece = np.searchsorted(ctx.unit_offsets, rep, side="right") - 1
    rep_ids = [None] * rep.size
    rep_start = np.zeros(rep.size, dtype=np.int64)
    rep_end = np.zeros(rep.size, dtype=np.int64)
    for k in pieces:
        at = np.flatnonzero(rep_piece == k)
        if at.size == 0:
            continue
        sk = ray.get(ctx.units[k])
        local = rep[at] - ctx.unit_offsets[k]
        rep_start[at] = sk.unit_start[local]
        rep_end[at] = sk.unit_end[local]
        for i, record in zip(at.tolist(), sk.unit_record[local].tolist()):
            rep_ids[i] = sk.record_id(record)
    block = np.searchsorted(block_bounds, unit, side="right") - 1
    return _returns((*columns, [rep_ids[i] for i in at.tolist()])
                    for *columns, at in _split_by(block, n_blocks, unit, kind, similarity,
                                                  group, size, lowest, rep, rep_start, rep_end,
                                                  np.arange(unit.size)))


class _ByGroup:
    """Values of some groups, indexed by group id (an int or an array of them) as the local
    engine's arrays over all groups are: a write task holds only its piece's groups."""

    def __init__(self, group_ids: np.ndarray, values, dtype):
        self.group_ids = group_ids
        self.values = np.asarray(values, dtype=dtype)

    def __getitem__(self, group):
        return self.values[np.searchsorted(self.group_ids, group)]


def write_piece(shard, span, units, unit_offset, config, mode, text_field, id_field,
                flag_field, rejected_lines, is_skip, batch_chars, path, is_whole_rejected,
                with_jsonl, kill, *parts):
    """Pass 3 over a piece: each record kept, edited or removed (dedup.corpus.outcome), kept
    records written to path with the shard's writer; returns (counts, report table, report
    JSON Lines bytes).

    parts: rows from lookup_block for this piece's block (unit, kind, similarity, group, group
    size, lowest similarity, representative, its start, end, record ids). They make a Plan over
    this piece plus its representatives (appended after its own units, each in a record of its
    own), which is all outcome() reads."""
    import pyarrow as pa

    from dedup.corpus import (
        Decisions, Outcome, Plan, Sketch, _flag_type, _report_schema, _write_record, batched,
        outcome, tally,
    )
    from dedup.io import JsonlWriter, ParquetWriter, TextWriter

    _task_setup()
    _maybe_die("write", kill)
    n_local, n_records = units.n_units, units.n_records
    columns = [np.concatenate([p[c] for p in parts]) for c in range(9)]
    is_mine = (columns[0] >= unit_offset) & (columns[0] < unit_offset + n_local)
    unit, kind, similarity, group, size, lowest, rep, rep_start, rep_end = \
        (c[is_mine] for c in columns)
    ids = [i for p in parts for i in p[9]]
    ids = [ids[i] for i in np.flatnonzero(is_mine).tolist()]
    local = unit - unit_offset
    _, first, rep_slot = np.unique(rep, return_index=True, return_inverse=True)
    rep_ids = [ids[i] for i in first.tolist()]
    rep_starts, rep_ends = rep_start[first], rep_end[first]
    groups = {g: (int(n), float(low)) for g, n, low in zip(group.tolist(), size.tolist(),
                                                           lowest.tolist())}
    n_reps = len(rep_ids)
    id_ends = np.cumsum([len(i.encode("utf-8", "surrogatepass")) for i in rep_ids],
                        dtype=np.int64)
    view = Sketch(
        np.concatenate([units.unit_record, n_records + np.arange(n_reps)]),
        np.concatenate([units.unit_start, np.asarray(rep_starts, dtype=np.int64)]),
        np.concatenate([units.unit_end, np.asarray(rep_ends, dtype=np.int64)]),
        np.zeros(n_local + n_reps, dtype=np.uint64), None, None, None, None, None,
        units.record_units,
        units.id_blob + "".join(rep_ids).encode("utf-8", "surrogatepass"),
        np.concatenate([units.id_offsets, units.id_offsets[-1] + id_ends]), 0)
    kinds = np.zeros(n_local + n_reps, dtype=np.int8)
    kinds[local] = kind
    sims = np.zeros(n_local + n_reps, dtype=np.float64)
    sims[local] = similarity
    rep = np.full(n_local + n_reps, -1, dtype=np.int64)
    rep[local] = n_local + rep_slot
    group_of = np.full(n_local + n_reps, -1, dtype=np.int64)
    group_of[local] = group
    # this piece's groups only, indexed like the local engine's per-group arrays
    group_ids = np.array(sorted(groups), dtype=np.int64)
    sizes = _ByGroup(group_ids, [groups[g][0] for g in group_ids.tolist()], np.int64)
    lowest = _ByGroup(group_ids, [groups[g][1] for g in group_ids.tolist()], np.float64)
    plan = Plan(view, Decisions(kinds, sims, rep, group_of, sizes, lowest), {}, {})
    wanted = np.zeros(n_records, dtype=bool)
    wanted[units.unit_record[local]] = True
    reader = _reader_again(shard, span, text_field, id_field, rejected_lines, is_skip)
    is_flag = mode == "flag"
    writer = None
    if not is_whole_rejected:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if shard.format == "jsonl":
            writer = JsonlWriter(Path(path), shard)
        elif shard.format == "parquet":
            writer = ParquetWriter(Path(path), shard, text_field, flag_field if is_flag else None,
                                   _flag_type() if is_flag else None)
        else:
            writer = TextWriter(Path(path), shard)
    schema = _report_schema()
    columns = {name: [] for name in schema.names}
    counts = {"kept": 0, "modified": 0, "removed": 0, "flagged": 0, "records": 0}
    unchanged = Outcome("kept", None, [])  # what outcome() says of a record nothing repeats
    index = 0
    for batch in batched(reader.records(wanted), batch_chars):
        for record in batch:
            if index >= n_records:
                raise InputError(f"{shard.name}: the input changed between passes: "
                                 f"{n_records} records read first, more then")
            result = outcome(plan, index, record, config, mode) if wanted[index] else unchanged
            index += 1
            for row in result.rows:  # the columns of corpus._Report.add
                columns["file"].append(shard.name)
                columns["line"].append(record.line)
                for name in ("start", "end", "kind", "similarity", "dup_of", "dup_start",
                             "dup_end", "group", "id", "group_size", "group_min_similarity"):
                    columns[name].append(getattr(row, name))
            if not tally(counts, result, is_flag):
                continue
            _write_record(writer, shard, record, result, text_field,
                          flag_field if is_flag else None)
    if writer is not None:
        writer.close()
    if index != n_records:
        raise InputError(f"{shard.name}: the input changed between passes: {n_records} "
                         f"records read first, {index} then")
    counts["records"] = index
    counts["units_repeated"] = int(np.count_nonzero(kind))
    table = pa.table(columns, schema=schema)
    jsonl = b""
    if with_jsonl:  # as corpus._Report._flush writes duplicates.jsonl
        import json

        names = schema.names
        jsonl = b"".join(
            json.dumps(dict(zip(names, values)), ensure_ascii=False).encode("utf-8") + b"\n"
            for values in zip(*(columns[name] for name in names)))
    return counts, table, jsonl


# --- the driver ---------------------------------------------------------------------------------


def _unwrap(err):
    """The DedupError a task raised (its one-line message), else err itself."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, DedupError):
        return cause
    return err


@contextmanager
def _stderr_held():
    """File descriptor 2 sent to /dev/null: Ray's C++ client logs every failed connection
    attempt there (once a second), where the user should get our one line."""
    saved, quiet = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(quiet, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(quiet)


def _cannot_connect(address: str, reason) -> InputError:
    """The one-line error for an address where no Ray cluster could be reached; reason: the
    exception (its first line is shown) or the words themselves."""
    if isinstance(reason, BaseException):
        text = str(reason).strip()
        reason = text.splitlines()[0] if text else type(reason).__name__
    return InputError(f"--ray-address {address}: cannot connect to a Ray cluster ({reason})")


def _check_reachable(address: str, wait_s: float | None = None):
    """Raise InputError (one line) when nothing answers at address within wait_s seconds
    (CONNECT_WAIT_S): ray.init retries an address that does not answer for minutes. An answer
    of any kind lets ray.init go on (it connects or raises). A Ray Client address (ray://) is
    left to ray.init, which fails at once."""
    import threading

    wait_s = CONNECT_WAIT_S if wait_s is None else wait_s
    if address.startswith("ray://"):
        return
    try:  # Ray internals: when they move, ray.init's own (slower) failure remains
        from ray._private.services import canonicalize_bootstrap_address
        from ray._raylet import GcsClient
    except ImportError:
        return
    try:
        resolved = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as err:
        raise _cannot_connect(address, err) from None
    def probe():
        try:
            GcsClient(address=resolved).cluster_id  # noqa: B018 - any answer will do
        except Exception:  # noqa: BLE001 - a refusal is an answer too (see below)
            pass

    thread = threading.Thread(target=probe, daemon=True)  # a hung probe must not block exit
    with _stderr_held():
        thread.start()
        thread.join(wait_s)
    if thread.is_alive():
        raise _cannot_connect(address, f"no Ray cluster answered within {wait_s:g} s")
    # an answer, even a refusal (a cluster that wants the token ray.init knows how to find),
    # means ray.init will not hang: it connects, or fails with its own error


class _Cluster:
    """The Ray session of one run: connects (or starts a local Ray) and makes the remote
    functions once."""

    def __init__(self, address, num_cpus):
        ray = _ray()
        self.ray = ray
        self.is_owner = not ray.is_initialized()
        if self.is_owner:
            options = {"include_dashboard": False, "logging_level": logging.ERROR,
                       "log_to_driver": False}
            if address:
                _check_reachable(address)
                try:
                    with _stderr_held():
                        ray.init(address=address, **options)
                except (ConnectionError, ValueError, RuntimeError) as err:
                    raise _cannot_connect(address, err) from None
            else:
                # Ray runs its workers at nice 15 (they yield to everything else); the local
                # engine runs at normal priority, and on a machine shared with other work the
                # niced workers made the same run 3-5 times slower (2-core machine, load 3-5)
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
                         _system_config={"worker_niceness": 0}, **options)
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def call(self, name, *args, num_returns=1):
        return _remote(name).options(num_returns=num_returns).remote(*args)

    def calls(self, name, num_returns, *args):
        """The refs of a task's num_returns values, as a list (one ref too)."""
        refs = self.call(name, *args, num_returns=num_returns)
        return [refs] if num_returns == 1 else refs

    def get(self, refs):
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as err:
            cause = _unwrap(err)
            if cause is not err:
                raise cause from None
            raise

    def close(self):
        if self.is_owner:
            self.ray.shutdown()


def _pieces(cluster, shards, piece_bytes):
    """The pieces of the input: plain JSON Lines shards larger than piece_bytes are split."""
    total = sum(s.size for s in shards)
    if piece_bytes is None:
        piece_bytes = min(MAX_PIECE_BYTES, max(MIN_PIECE_BYTES, total // (3 * cluster.cpus) + 1))
    splits = {index: cluster.call("split_shard", str(shard.path), shard.size, piece_bytes)
              for index, shard in enumerate(shards)
              if shard.format == "jsonl" and shard.compression is None
              and shard.size > piece_bytes}
    spans = dict(zip(splits, cluster.get(list(splits.values()))))
    pieces = []
    for index in range(len(shards)):
        if index in spans and len(spans[index]) > 1:
            parts = spans[index]
            pieces += [Piece(index, tuple(span), k, len(parts)) for k, span in enumerate(parts)]
        else:
            pieces.append(Piece(index, None, 0, 1))
    return pieces


def _sketch_on_ray_data(cluster, pieces, shards, config, text_field, id_field, is_skip,
                        batch_chars, n_parts, kill):
    """Stage 1 on Ray Data: a Dataset of piece numbers, one per block, mapped by sketch_batch
    (dedup.io.Reader and the numba kernels, in Ray Data's map tasks, retried as they are);
    each output block is then split by unbundle into the refs sketch_piece's task returns.
    Returns those refs per piece, in corpus order."""
    import ray.data
    from ray.data.context import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # block k holds piece k
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    n_values = 2 + 2 * n_parts
    dataset = ray.data.from_items([{"piece": k} for k in range(len(pieces))],
                                  override_num_blocks=len(pieces))
    dataset = dataset.map_batches(
        sketch_batch, batch_size=1, batch_format="numpy", zero_copy_batch=True,
        fn_kwargs={"pieces": [(shards[p.shard], p.span) for p in pieces], "config": config,
                   "text_field": text_field, "id_field": id_field, "is_skip": is_skip,
                   "batch_chars": batch_chars, "n_parts": n_parts, "kill": kill})
    sketched = []
    try:
        # each block is split as soon as it is made; the block itself is freed once its
        # unbundle task has run (no reference is kept here), so the object store holds two
        # copies of a piece's output only while it is being split
        for bundle in dataset.iter_internal_ref_bundles():
            sketched += [cluster.calls("unbundle", 1 + n_values, n_values, block)
                         for block in bundle.block_refs]
            del bundle
    except Exception as err:  # noqa: BLE001 - a DedupError inside Ray Data's wrappers
        cause = err
        while cause is not None and not isinstance(cause, DedupError):
            cause = getattr(cause, "cause", None) or cause.__cause__
        if cause is not None:
            raise cause from None
        raise
    order = cluster.get([refs[0] for refs in sketched])
    if sorted(order) != list(range(len(pieces))):
        raise RuntimeError(f"the sketch stage gave blocks for pieces {order}")
    by_piece = {k: refs[1:] for k, refs in zip(order, sketched)}
    return [by_piece[k] for k in range(len(pieces))]


def run_ray(inputs, outdir, config: Config, mode: str = "collapse", *, text_field="text",
            id_field=None, on_error="fail", flag_field="dedup", duplicates_jsonl=False,
            overwrite=False, batch_chars=None, ray_address=None, num_cpus=None,
            piece_bytes=None, partitions=None, quiet=True, stream=None, _kill=None,
            sketch_on=None) -> dict:
    """dedup.corpus.run_files on Ray: the same outputs, byte for byte (summary.json apart from
    timings and the engine fields).

    ray_address: an existing cluster ("ray://host:10001", "host:6379", "auto"); None starts a
    local Ray on this machine's cores (num_cpus), unless this process is connected already.
    piece_bytes: size of the spans large plain JSON Lines files are split into (default: the
    input over three times the cluster's CPUs, within 8-128 MB); partitions: of each exchange
    (default: two per CPU). Neither changes the results. sketch_on: "tasks" (default, or the
    environment's DEDUP_RAY_SKETCH_ON) or "data" (Ray Data map_batches), the same results.
    Raises InputError and ConfigError as the local engine does; ConfigError with the install
    command when Ray (or, for sketch_on "data", Ray Data) is missing.
    """
    from dedup import corpus
    from dedup.io import discover

    clock = time.perf_counter()
    sketch_on = sketch_on or SKETCH_ON
    if sketch_on not in ("data", "tasks"):
        raise ConfigError(f"the sketch stage runs on 'data' or 'tasks', got {sketch_on!r}")
    if mode not in corpus.MODES:
        raise ConfigError(f"mode must be one of 'collapse', 'flag', got {mode!r}")
    if on_error not in corpus.ON_ERRORS:
        raise ConfigError(f"on_error must be one of 'fail', 'skip', got {on_error!r}")
    batch_chars = corpus.DEFAULT_BATCH_CHARS if batch_chars is None else batch_chars
    if isinstance(batch_chars, bool) or not isinstance(batch_chars, int) or batch_chars < 1:
        raise ConfigError(f"batch_chars must be a positive integer, got {batch_chars!r}")
    _ray()
    if sketch_on == "data":
        try:
            import ray.data  # noqa: F401  (Ray Data needs pandas, which plain 'ray' lacks)
        except ImportError:
            raise ConfigError(DATA_INSTALL_HINT) from None
    shards = discover(list(inputs))
    out = Path(outdir)
    work = corpus._prepare_outdir(out, shards, overwrite)
    cluster = None
    try:
        cluster = _Cluster(ray_address, num_cpus)
        summary, names = _run(cluster, shards, work, config, mode, text_field, id_field,
                              on_error, flag_field, duplicates_jsonl, batch_chars, piece_bytes,
                              partitions, _kill, quiet, stream or sys.stderr, sketch_on)
        summary["timings"]["total"] = time.perf_counter() - clock
        total = summary["timings"]["total"]
        summary["mb_per_s"] = round(summary["bytes_read"] / 1e6 / total, 3) if total else None
        summary["records_per_s"] = round(summary["counts"]["read"] / total, 1) if total else None
        summary["outputs"] = names
        corpus._publish(work, out, names, summary)
    except BaseException as err:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in corpus._WRITE_ERRNOS:
            raise InputError(f"{out}: cannot write the results ({err.strerror or err})") \
                from None
        raise
    finally:
        if cluster is not None:
            cluster.close()
    return summary


def _shows(quiet, stream) -> bool:
    return not quiet and getattr(stream, "isatty", lambda: False)()


def _count_done(cluster, refs, quiet, stream, text):
    """On a terminal, "text k/n" rewritten as each of the tasks (refs) ends; then a new line."""
    if not _shows(quiet, stream) or not refs:
        return
    pending, total = list(refs), len(refs)
    while pending:
        ready, pending = cluster.ray.wait(pending, num_returns=1)
        stream.write(f"\rdedup run (ray): {text} {total - len(pending)}/{total}")
        stream.flush()
    stream.write("\n")
    stream.flush()


def _stage(quiet, stream, text):
    if _shows(quiet, stream):
        stream.write(f"dedup run (ray): {text}\n")
        stream.flush()


def _run(cluster, shards, work, config, mode, text_field, id_field, on_error, flag_field,
         duplicates_jsonl, batch_chars, piece_bytes, partitions, kill, quiet, stream,
         sketch_on):
    from dedup import corpus

    is_skip = on_error == "skip"
    timings = {}
    n_parts = partitions or min(MAX_PARTITIONS, PARTITIONS_PER_CPU * cluster.cpus)
    n_bands, _ = config.band_rows

    # 1. sketch
    clock = time.perf_counter()
    _stage(quiet, stream, f"sketch ({cluster.cpus} CPUs)")
    pieces = _pieces(cluster, shards, piece_bytes)
    n_values = 2 + 2 * n_parts  # meta, Sketch, exact and band exchanges
    if sketch_on == "data":
        sketched = _sketch_on_ray_data(cluster, pieces, shards, config, text_field, id_field,
                                       is_skip, batch_chars, n_parts, kill)
    else:
        sketched = [cluster.call("sketch_piece", shards[p.shard], p.span, config, text_field,
                                 id_field, is_skip, batch_chars, n_parts, kill,
                                 num_returns=n_values) for p in pieces]
    _count_done(cluster, [refs[0] for refs in sketched], quiet, stream, "pieces sketched")
    metas = []
    for refs in sketched:  # in corpus order: the first bad record of the corpus is the error
        meta = cluster.get(refs[0])
        if isinstance(meta, DedupError):
            raise meta
        metas.append(meta)
    unit_refs = [refs[1] for refs in sketched]
    unit_offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([m["n_units"] for m in metas], out=unit_offsets[1:])
    n_units = int(unit_offsets[-1])
    rejected_shards = set()
    rejects_data = []
    n_rejected = 0
    for piece, meta in zip(pieces, metas):
        rejects_data.append(meta["rejects"])
        n_rejected += meta["n_rejected"]
        if meta["is_rejected_whole"]:
            rejected_shards.add(shards[piece.shard].name)
    if is_skip:
        with open(work / corpus.REJECTS, "wb") as handle:
            handle.write(b"".join(rejects_data))
    del rejects_data
    timings["sketch"] = time.perf_counter() - clock

    # 2 and 3. exact classes and candidate pairs
    clock = time.perf_counter()
    _stage(quiet, stream, "candidates")
    exact = [cluster.calls("exact_partition", 2 + n_parts, n_parts, unit_offsets,
                           *[refs[2 + j] for refs in sketched]) for j in range(n_parts)]
    n_heads = sum(cluster.get([refs[0] for refs in exact]))
    if n_heads * (n_heads - 1) // 2 <= config.exhaustive_pairs:
        # at most exhaustive_pairs pairs: a few hundred heads on the driver
        heads = np.sort(np.concatenate(cluster.get([refs[1] for refs in exact])))
        left, right = np.triu_indices(heads.size, 1)
        left, right = heads[left].astype(np.int64), heads[right].astype(np.int64)
        pair_sources = [[cluster.ray.put(part)] for part in _split_by(
            _pair_partition_of(left, right, n_parts), n_parts, left, right)]
    else:
        banded = [cluster.calls("band_partition", n_parts, unit_offsets, n_bands,
                                config.max_bucket, n_parts,
                                *[refs[2 + n_parts + j] for refs in sketched])
                  for j in range(n_parts)]
        pair_sources = [[refs[j] for refs in banded] for j in range(n_parts)]
    del sketched
    n_blocks = min(len(pieces), n_parts)
    block_of = [k * n_blocks // len(pieces) for k in range(len(pieces))]
    first_piece = [block_of.index(b) for b in range(n_blocks)] + [len(pieces)]
    block_bounds = unit_offsets[first_piece]
    timings["candidates"] = time.perf_counter() - clock

    # 4. verify: pairs partitioned by pair, unit text sent by the pieces holding the units
    clock = time.perf_counter()
    _stage(quiet, stream, "verify")
    paired = [cluster.calls("pair_partition", 2 + n_blocks + n_parts, block_bounds, n_parts,
                            *pair_sources[j]) for j in range(n_parts)]
    del pair_sources
    n_candidates = sum(cluster.get([refs[0] for refs in paired]))
    texts = []
    for k, piece in enumerate(pieces):
        texts.append(cluster.calls(
            "texts_piece", n_parts, shards[piece.shard], piece.span, unit_refs[k],
            int(unit_offsets[k]), config, text_field, id_field, metas[k]["rejected_lines"],
            is_skip, batch_chars, kill, *[refs[2 + block_of[k]] for refs in paired]))
    verified = [cluster.calls("verify_partition", 1 + n_parts, paired[j][1], config, n_parts,
                              *[refs[j] for refs in texts]) for j in range(n_parts)]
    del texts
    infos = cluster.get([refs[0] for refs in verified])
    peak_held = max((i[0] for i in infos), default=0)
    n_verified = sum(i[2] for i in infos)
    shuffled = {"exact_hashes": sum(m["hash_bytes"] for m in metas),
                "band_keys": sum(m["band_bytes"] for m in metas),
                "candidate_pairs": 16 * n_candidates, "unit_texts": sum(i[1] for i in infos)}
    timings["verify"] = time.perf_counter() - clock

    # 5. groups: connected components by smallest-label propagation over component
    # partitions, then decide() per group partition (whole components), group numbers and the
    # representatives' records in blocks of pieces; the driver holds per-task counts only
    clock = time.perf_counter()
    _stage(quiet, stream, "group")
    states = [cluster.calls("cc_start", 2 + n_parts, n_parts,
                            *[refs[2 + j] for refs in exact], *[refs[1 + j] for refs in verified])
              for j in range(n_parts)]
    del exact, verified
    rounds = 0
    n_messages = 0
    while True:
        sent = sum(cluster.get([refs[1] for refs in states]))
        n_messages += sent
        if not sent:
            break
        rounds += 1
        states = [cluster.calls("cc_round", 2 + n_parts, n_parts, states[j][0],
                                *[refs[2 + j] for refs in states]) for j in range(n_parts)]
    finished = [cluster.calls("cc_finish", n_parts, n_parts, states[j][0],
                              *[refs[2 + n_blocks + j] for refs in paired])
                for j in range(n_parts)]
    del states, paired
    ctx = _Context([shards[p.shard] for p in pieces], [p.span for p in pieces], unit_refs,
                   unit_offsets, [m["rejected_lines"] for m in metas], config, text_field,
                   id_field, is_skip, batch_chars, kill)
    grouped = [cluster.calls("group_partition", 1 + n_blocks, ctx, n_blocks, block_bounds,
                             *[refs[g] for refs in finished]) for g in range(n_parts)]
    del finished
    group_infos = cluster.get([refs[0] for refs in grouped])
    shuffled["component_labels"] = 16 * n_messages
    shuffled["components"] = sum(i[3] for i in group_infos)
    ranked = [cluster.calls("rank_block", 1 + n_blocks, n_blocks, block_bounds,
                            *[refs[1 + b] for refs in grouped]) for b in range(n_blocks)]
    del grouped
    group_counts = cluster.get([refs[0] for refs in ranked])
    group_offsets = np.zeros(n_blocks, dtype=np.int64)
    np.cumsum(group_counts[:-1], out=group_offsets[1:])
    looked = [cluster.calls("lookup_block", n_blocks, ctx, n_blocks, block_bounds, group_offsets,
                            [k for k in range(len(pieces)) if block_of[k] == b],
                            *[refs[1 + b] for refs in ranked]) for b in range(n_blocks)]
    del ranked
    cluster.ray.wait([refs[0] for refs in looked], num_returns=len(looked))
    timings["group"] = time.perf_counter() - clock

    # 6. write: one task per piece, with the rows of its block
    clock = time.perf_counter()
    _stage(quiet, stream, "write")
    part_paths = {}
    writes = []
    for k, piece in enumerate(pieces):
        shard = shards[piece.shard]
        if piece.n_parts > 1:
            path = work / f".part-{piece.shard}-{piece.part}"
            part_paths.setdefault(piece.shard, []).append(path)
        else:
            path = work / shard.name
        writes.append(cluster.call(
            "write_piece", shard, piece.span, unit_refs[k], int(unit_offsets[k]), config, mode,
            text_field, id_field, flag_field, metas[k]["rejected_lines"], is_skip, batch_chars,
            str(path), shard.name in rejected_shards, duplicates_jsonl, kill,
            *[refs[block_of[k]] for refs in looked]))
    del looked
    report = _ReportWriter(work, duplicates_jsonl)
    counts = {"read": 0, "kept": 0, "modified": 0, "removed": 0, "flagged": 0,
              "rejected": n_rejected, "rejected_files": len(rejected_shards)}
    n_read = 0
    _count_done(cluster, writes, quiet, stream, "pieces written")
    for ref in writes:  # in corpus order: the report's rows are in the local order
        piece_counts, table, jsonl = cluster.get(ref)
        for name in ("kept", "modified", "removed", "flagged"):
            counts[name] += piece_counts[name]
        n_read += piece_counts["records"]
        report.add(table, jsonl)
    report.close()
    for index, paths in part_paths.items():
        _join(paths, work / shards[index].name)
    counts["read"] = n_read + n_rejected
    counts["units_repeated"] = sum(i[0] for i in group_infos)
    counts.update({
        "units": n_units,
        "distinct_units": int(n_heads),
        "candidate_pairs": int(n_candidates),
        "verified_pairs": int(n_verified),
        "regroup_passes": max((i[1] for i in group_infos), default=0),
        "regroup_pairs": sum(i[2] for i in group_infos),
        "groups": int(sum(group_counts)),
        "peak_cached_shingles": int(peak_held),
    })
    timings["write"] = time.perf_counter() - clock
    summary, names = corpus.run_summary(shards, work, rejected_shards, report, config, mode,
                                        text_field, id_field, on_error, flag_field, counts,
                                        timings)
    summary["engine"] = {"name": "ray", "cpus": cluster.cpus, "pieces": len(pieces),
                         "partitions": n_parts, "component_rounds": rounds,
                         "sketch_on": sketch_on,
                         "driver_peak_rss_mb": _peak_rss_mb(),
                         "shuffled_mb": {k: round(v / 1e6, 1) for k, v in shuffled.items()}}
    return summary, names


def _peak_rss_mb() -> int:
    """Peak resident memory of this (driver) process so far, in MB."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _join(paths, target: Path):
    """The parts of a split shard, concatenated in order into target (plain JSON Lines)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for path in paths:
            with open(path, "rb") as part:
                shutil.copyfileobj(part, out, 1 << 22)
            path.unlink()
        out.flush()
        os.fsync(out.fileno())


class _ReportWriter:
    """duplicates.parquet (and .jsonl) from the pieces' report tables, in the row groups the
    local engine's corpus._Report writes (slices of _REPORT_ROWS rows), so the same bytes."""

    def __init__(self, folder: Path, with_jsonl: bool):
        from dedup.corpus import _REPORT_ROWS, DUPLICATES, _report_schema
        from dedup.io import parquet_writer

        self.schema = _report_schema()
        self.rows = _REPORT_ROWS
        self.paths = [folder / f"{DUPLICATES}.parquet"]
        self._parquet = parquet_writer(self.paths[0], self.schema, compression="zstd")
        self._jsonl = None
        if with_jsonl:
            self.paths.append(folder / f"{DUPLICATES}.jsonl")
            self._jsonl = open(self.paths[1], "wb")
        self._pending = []
        self._n_pending = 0
        self.n_rows = 0

    def add(self, table, jsonl: bytes):
        if self._jsonl is not None:
            self._jsonl.write(jsonl)
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._n_pending += table.num_rows
        self.n_rows += table.num_rows
        while self._n_pending >= self.rows:
            self._write(self.rows)

    def _write(self, n):
        import pyarrow as pa

        table = pa.concat_tables(self._pending)
        self._parquet.write_table(table.slice(0, n).combine_chunks())
        rest = table.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._n_pending = rest.num_rows

    def close(self):
        if self._n_pending:
            self._write(self._n_pending)
        self._parquet.close()
        if self._jsonl is not None:
            self._jsonl.close()
