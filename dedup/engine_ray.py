"""`dedup run --engine ray`: the corpus pipeline of dedup.corpus on a Ray cluster, same answers.

The stages are those of the local engine, split into Ray tasks over *pieces* of the input: a
piece is a whole shard, or a byte span of a large plain JSON Lines shard (split after a line
break, its first line number counted, so ids, line numbers and errors are those of a whole
read). Units are numbered in corpus order (piece order, then as dedup.corpus.sketch numbers them
within a piece: a piece's numbers are offset by the units of the pieces before it), so every
decision is the local engine's decision, and the outputs are the same bytes.

1. sketch, one task per piece: dedup.io.Reader (same errors, same rejects) and
   dedup.corpus.sketch (the same numba kernels; the numba cache is loaded once per worker).
   The task keeps the units of its piece in the object store and sends two exchanges:
   (xxh64, unit) hash-partitioned, and (band, key, xxh64, unit) partitioned by band key,
   for active units only: 26 bytes per unit and band shuffled.
2. exact classes, one task per hash partition: the first unit of each xxh64 is the head; the
   members of classes with copies go to the driver (16 bytes per repeated unit).
3. candidates, one task per key partition: a bucket is a (band, key) run; its heads are the
   first unit of each xxh64 in it (copies have the same keys, so they share every bucket),
   and kernels.band.candidate_pairs pairs them per band: all pairs, or a star around the first
   head when the bucket is larger than max_bucket, exactly as the local run. When all pairs of
   heads are few (config.exhaustive_pairs), the driver makes every pair instead.
4. verify: candidate pairs are hash-partitioned by pair (each partition drops duplicates found
   in several bands); each piece re-reads only the records holding a unit some partition needs
   and sends each partition the text of the units it needs (UTF-8); each partition shingles
   them (dedup.corpus.prepare_sets) and verifies its pairs with
   kernels.verify.pair_similarities.
5. groups, on the driver: dedup.corpus.decide over the verified pairs and the exact classes,
   renumbered densely (the order kept, so the groups are the same). It holds the repeated units
   only, never anything per unrepeated unit: measured about 1 KB per repeated unit, verified
   pairs and Python objects of build_groups included (driver peak 418 MB for 103,330 repeated
   units at paragraph level on the 200 MB benchmark corpus, over a ~300 MB base), and it runs
   on one core (18-46 us per repeated unit). Extra verification rounds that grouping asks for
   (pipeline.build_groups' verify_more) run as stage 4 on those pairs.
6. write, one task per piece: dedup.corpus.outcome and the same writers (JsonlWriter,
   ParquetWriter, TextWriter) into the run's hidden folder; the spans of a split shard are
   written as parts and joined in order. duplicates.parquet is assembled on the driver from
   each piece's rows in the row groups of the local report (65,536 rows each), and published
   with dedup.corpus._publish: summary.json last.

Why Ray tasks and not Ray Data's Dataset operators: every stage must reproduce the local
engine byte for byte. Ray Data's JSON readers give other errors than ours (no file and line
for a bad record, no rejects), its groupby calls Python once per group (a million buckets per
band), and the write stage must use our writers. Plain tasks exchanging numpy arrays through
the object store do each stage as one sort per partition.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dedup.config import Config
from dedup.errors import ConfigError, DedupError, InputError
from dedup.kernels.band import distinct_sorted, pack_pairs, unpack_pairs

PARTITIONS_PER_CPU = 2
MAX_PARTITIONS = 256
MIN_PIECE_BYTES = 8 << 20
MAX_PIECE_BYTES = 128 << 20
INSTALL_HINT = "--engine ray needs Ray: pip install 'dedup[ray]' (or pip install 'ray')"


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
        "rejected_lines": sorted({r.line for r in rejects if r.line}),
        "n_rejected": len(rejects), "is_rejected_whole": any(r.line == 0 for r in rejects),
        "hash_bytes": sum(c.nbytes for part in hash_parts for c in part),
        "band_bytes": sum(c.nbytes for part in band_parts for c in part),
    }
    return (meta, sk, *hash_parts, *band_parts)


def exact_partition(unit_offsets, *parts):
    """Exact classes of one hash partition. parts: (hashes, local units) per piece.
    Returns (number of classes, (members, heads) of the classes with copies, heads)."""
    hashes = np.concatenate([p[0] for p in parts])
    units = np.concatenate([p[1] + unit_offsets[k] for k, p in enumerate(parts)])
    order = np.lexsort((units, hashes))
    hashes, units = hashes[order], units[order]
    is_new = np.ones(units.size, dtype=bool)
    is_new[1:] = hashes[1:] != hashes[:-1]
    head_of = units[is_new][np.cumsum(is_new) - 1]
    copies = ~is_new
    return int(is_new.sum()), (units[copies], head_of[copies]), np.sort(units[is_new])


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
    out = _split_by(_partition_of(pack_pairs(left, right), n_parts), n_parts, left, right)
    return tuple(out) if n_parts > 1 else out[0]


def pair_partition(block_bounds, *parts):
    """Distinct pairs of one pair partition. parts: (left, right) arrays.
    Returns (number of pairs, packed sorted pairs, needed units per block of pieces...)."""
    packed = np.concatenate([pack_pairs(p[0], p[1]) for p in parts]) if parts else \
        np.zeros(0, dtype=np.uint64)
    packed = distinct_sorted(np.sort(packed))
    left, right = unpack_pairs(packed)
    needed = distinct_sorted(np.sort(np.concatenate([left, right])))
    cuts = np.searchsorted(needed, block_bounds)
    blocks = [needed[cuts[b]:cuts[b + 1]] for b in range(len(block_bounds) - 1)]
    return (int(packed.size), packed, *blocks)


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


def verify_partition(packed, config, *parts):
    """Exact verification of one pair partition. parts: per piece, what texts_piece sent;
    the shingle sets are made here by dedup.corpus.verify_unit_texts, as the local engine's
    extra verification round makes them.
    Returns ((left, right, jaccard, containment) of the repeats, (units, normalized lengths,
    shingle counts, normalized xxh64) of their units, shingles held, bytes received)."""
    from dedup.corpus import verify_unit_texts

    _task_setup()
    units = np.concatenate([p[0] for p in parts])
    text = b"".join(p[1] for p in parts).decode("utf-8", "surrogatepass")
    left, right = unpack_pairs(packed)
    edges, prepared = verify_unit_texts(units, text, np.concatenate([p[2] for p in parts]),
                                        left, right, config)
    rows = np.searchsorted(units, np.unique(np.concatenate([edges.left, edges.right])))
    return ((edges.left, edges.right, edges.jaccard, edges.containment),
            (units[rows], prepared.norm_lengths[rows], prepared.sizes[rows],
             prepared.hashes[rows]), int(prepared.shingles.size),
            sum(p[0].nbytes + len(p[1]) + p[2].nbytes for p in parts))


def tried_partition(packed, involved):
    """The candidate pairs of a partition whose both units are involved in grouping, as packed
    pairs of their positions in `involved` (sorted global units)."""
    left, right = unpack_pairs(packed)
    li = np.minimum(np.searchsorted(involved, left), max(involved.size - 1, 0))
    ri = np.minimum(np.searchsorted(involved, right), max(involved.size - 1, 0))
    if involved.size == 0:
        return np.zeros(0, dtype=np.uint64)
    keep = (involved[li] == left) & (involved[ri] == right)
    return pack_pairs(li[keep], ri[keep])


def lookup_piece(units, local_units):
    """(record ids, starts, ends) of some units of a piece."""
    records = units.unit_record[local_units]
    return ([units.record_id(int(r)) for r in records.tolist()], units.unit_start[local_units],
            units.unit_end[local_units])


class _ByGroup:
    """Values of some groups, indexed by group id (an int or an array of them) as the local
    engine's arrays over all groups are: a write task holds only its piece's groups."""

    def __init__(self, group_ids: np.ndarray, values, dtype):
        self.group_ids = group_ids
        self.values = np.asarray(values, dtype=dtype)

    def __getitem__(self, group):
        return self.values[np.searchsorted(self.group_ids, group)]


def write_piece(shard, span, units, decided, reps, groups, config, mode, text_field, id_field,
                flag_field, rejected_lines, is_skip, batch_chars, path, is_whole_rejected,
                with_jsonl, kill):
    """Pass 3 over a piece: each record kept, edited or removed (dedup.corpus.outcome), kept
    records written to path with the shard's writer; returns (counts, report table, report
    JSON Lines bytes).

    decided: (local units, kind codes, similarities, rep slots, groups) of the piece's repeated
    units; reps: (record ids, starts, ends) per rep slot; groups: {group: (size, lowest
    similarity)}. They make a Plan over this piece plus its representatives (appended after
    its own units, each in a record of its own), which is all outcome() reads."""
    import pyarrow as pa

    from dedup.corpus import (
        Decisions, Outcome, Plan, Sketch, _flag_type, _report_schema, _write_record, batched,
        outcome, tally,
    )
    from dedup.io import JsonlWriter, ParquetWriter, TextWriter

    _task_setup()
    _maybe_die("write", kill)
    n_local, n_records = units.n_units, units.n_records
    rep_ids, rep_starts, rep_ends = reps
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
    local, kind, similarity, rep_slot, group = decided
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
                try:
                    ray.init(address=address, **options)
                except (ConnectionError, ValueError, RuntimeError) as err:
                    first = str(err).strip().splitlines()[0] if str(err).strip() else \
                        type(err).__name__
                    raise InputError(f"--ray-address {address}: cannot connect to a Ray "
                                     f"cluster ({first})") from None
            else:
                # Ray runs its workers at nice 15 (they yield to everything else); the local
                # engine runs at normal priority, and on a machine shared with other work the
                # niced workers made the same run 3-5 times slower (2-core machine, load 3-5)
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
                         _system_config={"worker_niceness": 0}, **options)
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.remote = {fn.__name__: ray.remote(fn) for fn in (
            split_shard, sketch_piece, exact_partition, band_partition, pair_partition,
            texts_piece, verify_partition, tried_partition, lookup_piece, write_piece)}

    def call(self, name, *args, num_returns=1):
        return self.remote[name].options(num_returns=num_returns).remote(*args)

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


def run_ray(inputs, outdir, config: Config, mode: str = "collapse", *, text_field="text",
            id_field=None, on_error="fail", flag_field="dedup", duplicates_jsonl=False,
            overwrite=False, batch_chars=None, ray_address=None, num_cpus=None,
            piece_bytes=None, partitions=None, quiet=True, stream=None, _kill=None) -> dict:
    """dedup.corpus.run_files on Ray: the same outputs, byte for byte (summary.json apart from
    timings and the engine fields).

    ray_address: an existing cluster ("ray://host:10001", "host:6379", "auto"); None starts a
    local Ray on this machine's cores (num_cpus), unless this process is connected already.
    piece_bytes: size of the spans large plain JSON Lines files are split into (default: the
    input over three times the cluster's CPUs, within 8-128 MB); partitions: of each exchange
    (default: two per CPU). Neither changes the results. Raises InputError and ConfigError as
    the local engine does; ConfigError with the install command when Ray is missing.
    """
    from dedup import corpus
    from dedup.io import discover

    clock = time.perf_counter()
    if mode not in corpus.MODES:
        raise ConfigError(f"mode must be one of 'collapse', 'flag', got {mode!r}")
    if on_error not in corpus.ON_ERRORS:
        raise ConfigError(f"on_error must be one of 'fail', 'skip', got {on_error!r}")
    batch_chars = corpus.DEFAULT_BATCH_CHARS if batch_chars is None else batch_chars
    if isinstance(batch_chars, bool) or not isinstance(batch_chars, int) or batch_chars < 1:
        raise ConfigError(f"batch_chars must be a positive integer, got {batch_chars!r}")
    _ray()
    shards = discover(list(inputs))
    out = Path(outdir)
    work = corpus._prepare_outdir(out, shards, overwrite)
    cluster = None
    try:
        cluster = _Cluster(ray_address, num_cpus)
        summary, names = _run(cluster, shards, work, config, mode, text_field, id_field,
                              on_error, flag_field, duplicates_jsonl, batch_chars, piece_bytes,
                              partitions, _kill, quiet, stream or sys.stderr)
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


def _stage(quiet, stream, text):
    if not quiet and getattr(stream, "isatty", lambda: False)():
        stream.write(f"dedup run (ray): {text}\n")
        stream.flush()


def _run(cluster, shards, work, config, mode, text_field, id_field, on_error, flag_field,
         duplicates_jsonl, batch_chars, piece_bytes, partitions, kill, quiet, stream):
    from dedup import corpus
    from dedup.pipeline import Edges

    is_skip = on_error == "skip"
    timings = {}
    n_parts = partitions or min(MAX_PARTITIONS, PARTITIONS_PER_CPU * cluster.cpus)
    n_bands, _ = config.band_rows

    # 1. sketch
    clock = time.perf_counter()
    _stage(quiet, stream, f"sketch ({cluster.cpus} CPUs)")
    pieces = _pieces(cluster, shards, piece_bytes)
    sketched = [cluster.call("sketch_piece", shards[p.shard], p.span, config, text_field,
                             id_field, is_skip, batch_chars, n_parts, kill,
                             num_returns=2 + 2 * n_parts) for p in pieces]
    metas = []
    for refs in sketched:  # in corpus order: the first bad record of the corpus is the error
        metas.append(cluster.get(refs[0]))
    unit_refs = [refs[1] for refs in sketched]
    unit_offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([m["n_units"] for m in metas], out=unit_offsets[1:])
    n_units = int(unit_offsets[-1])
    if n_units >= 1 << 32:
        raise ConfigError(f"{n_units:,} units: at most 2^32 per run (split the corpus)")
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
    exact = [cluster.call("exact_partition", unit_offsets,
                          *[refs[2 + j] for refs in sketched], num_returns=3)
             for j in range(n_parts)]
    n_heads = sum(cluster.get([refs[0] for refs in exact]))
    class_pairs = cluster.get([refs[1] for refs in exact])
    copies = np.concatenate([c[0] for c in class_pairs])
    copy_heads = np.concatenate([c[1] for c in class_pairs])
    order = np.argsort(copies)
    copies, copy_heads = copies[order], copy_heads[order]
    del class_pairs
    if n_heads * (n_heads - 1) // 2 <= config.exhaustive_pairs:
        heads = np.sort(np.concatenate(cluster.get([refs[2] for refs in exact])))
        left, right = np.triu_indices(heads.size, 1)
        left, right = heads[left].astype(np.int64), heads[right].astype(np.int64)
        pair_sources = [[cluster.ray.put(part)] for part in _split_by(
            _partition_of(pack_pairs(left, right), n_parts), n_parts, left, right)]
    else:
        banded = [cluster.call("band_partition", unit_offsets, n_bands, config.max_bucket,
                               n_parts, *[refs[2 + n_parts + j] for refs in sketched],
                               num_returns=n_parts)
                  for j in range(n_parts)]
        if n_parts == 1:
            banded = [[refs] for refs in banded]
        pair_sources = [[refs[j] for refs in banded] for j in range(n_parts)]
    del exact, sketched
    n_blocks = min(len(pieces), n_parts)
    block_of = [k * n_blocks // len(pieces) for k in range(len(pieces))]
    first_piece = [block_of.index(b) for b in range(n_blocks)] + [len(pieces)]
    block_bounds = unit_offsets[first_piece]
    timings["candidates"] = time.perf_counter() - clock

    def verify_round(sources):
        """Stage 4 over pair sources (per pair partition, refs to (left, right) arrays):
        (pair partition refs, number of distinct pairs, Edges, unit stats, shingles held)."""
        paired = [cluster.call("pair_partition", block_bounds, *sources[j],
                               num_returns=2 + n_blocks) for j in range(n_parts)]
        n_pairs = sum(cluster.get([refs[0] for refs in paired]))
        shingled = []
        for k, piece in enumerate(pieces):
            meta = metas[k]
            shingled.append(cluster.call(
                "texts_piece", shards[piece.shard], piece.span, unit_refs[k],
                int(unit_offsets[k]), config, text_field, id_field, meta["rejected_lines"],
                is_skip, batch_chars, kill, *[refs[2 + block_of[k]] for refs in paired],
                num_returns=n_parts))
        if n_parts == 1:
            shingled = [[refs] for refs in shingled]
        verified = cluster.get([cluster.call("verify_partition", paired[j][1], config,
                                             *[refs[j] for refs in shingled], num_returns=1)
                                for j in range(n_parts)])
        columns = [np.concatenate([v[0][c] for v in verified]) for c in range(4)]
        order = np.lexsort((columns[1], columns[0]))
        edges = Edges(*(c[order] for c in columns))
        stats = [np.concatenate([v[1][c] for v in verified]) for c in range(4)]
        held = max((v[2] for v in verified), default=0)
        shuffled["unit_texts"] += sum(v[3] for v in verified)
        shuffled["candidate_pairs"] += 16 * n_pairs
        return [refs[1] for refs in paired], n_pairs, edges, stats, held

    # 4. verify
    shuffled = {"exact_hashes": sum(m["hash_bytes"] for m in metas),
                "band_keys": sum(m["band_bytes"] for m in metas),
                "candidate_pairs": 0, "unit_texts": 0}
    clock = time.perf_counter()
    _stage(quiet, stream, "verify")
    pair_refs, n_candidates, edges, unit_stats, peak_held = verify_round(pair_sources)
    del pair_sources
    timings["verify"] = time.perf_counter() - clock

    # 5. groups, on the driver, over the units in an edge or an exact class with copies
    clock = time.perf_counter()
    _stage(quiet, stream, "group")
    involved = np.concatenate([edges.left, edges.right, copies, copy_heads])
    involved.sort()
    if involved.size > 1:
        keep = np.ones(involved.size, dtype=bool)
        np.not_equal(involved[1:], involved[:-1], out=keep[1:])
        involved = involved[keep]
    n_involved = involved.size
    compact = lambda units: np.searchsorted(involved, units)  # noqa: E731 - order kept
    norm_lengths = np.zeros(n_involved, dtype=np.int64)
    sizes = np.zeros(n_involved, dtype=np.int64)
    norm_hashes = np.zeros(n_involved, dtype=np.uint64)
    stat_units = compact(unit_stats[0])
    norm_lengths[stat_units], sizes[stat_units], norm_hashes[stat_units] = unit_stats[1:]
    head_of = np.arange(n_involved, dtype=np.int64)
    head_of[compact(copies)] = compact(copy_heads)
    heads = np.flatnonzero(head_of == np.arange(n_involved))
    view = corpus.Sketch(np.zeros(n_involved, dtype=np.int64), None, None,
                         np.zeros(n_involved, dtype=np.uint64), None, norm_lengths, sizes,
                         norm_hashes, None, np.zeros(1, dtype=np.int64), b"",
                         np.zeros(1, dtype=np.int64), 0)
    compact_edges = Edges(compact(edges.left), compact(edges.right), edges.jaccard,
                          edges.containment)
    tried = np.sort(np.concatenate(cluster.get([cluster.call("tried_partition", ref, involved)
                                                for ref in pair_refs])))
    extra = {"passes": 0, "pairs": 0}

    def verify_more(left, right):
        extra["passes"] += 1
        extra["pairs"] += left.size
        left, right = involved[left], involved[right]
        sources = [[cluster.ray.put(part)] for part in _split_by(
            _partition_of(pack_pairs(left, right), n_parts), n_parts, left, right)]
        _, _, more, _, _ = verify_round(sources)
        return Edges(compact(more.left), compact(more.right), more.jaccard, more.containment)

    decisions = corpus.decide(view, heads, head_of, compact_edges, config, verify_more, tried)
    del tried, pair_refs
    repeated = np.flatnonzero(decisions.kind)
    units_repeated = involved[repeated]
    reps = involved[decisions.rep[repeated]]
    timings["group"] = time.perf_counter() - clock

    # 6. write: look up the representatives' ids and spans, then one task per piece
    clock = time.perf_counter()
    _stage(quiet, stream, "write")
    piece_of = np.searchsorted(unit_offsets, units_repeated, side="right") - 1
    rep_units = np.unique(reps)
    rep_piece = np.searchsorted(unit_offsets, rep_units, side="right") - 1
    lookups = {}
    for k in np.unique(rep_piece).tolist():
        mine = rep_units[rep_piece == k]
        lookups[k] = (mine, cluster.call("lookup_piece", unit_refs[k], mine - unit_offsets[k]))
    rep_table = {}
    for k, (mine, ref) in lookups.items():
        ids, starts, ends = cluster.get(ref)
        for unit, rid, start, end in zip(mine.tolist(), ids, starts.tolist(), ends.tolist()):
            rep_table[unit] = (rid, start, end)
    del lookups
    part_paths = {}
    writes = []
    for k, piece in enumerate(pieces):
        shard = shards[piece.shard]
        rows = np.flatnonzero(piece_of == k)
        piece_reps, slots = np.unique(reps[rows], return_inverse=True)
        rep_info = [rep_table[u] for u in piece_reps.tolist()]
        groups = decisions.group[repeated[rows]]
        group_info = {g: (int(decisions.group_size[g]), float(decisions.group_min_similarity[g]))
                      for g in np.unique(groups).tolist()}
        decided = (units_repeated[rows] - unit_offsets[k], decisions.kind[repeated[rows]],
                   decisions.similarity[repeated[rows]], slots.astype(np.int64), groups)
        if piece.n_parts > 1:
            path = work / f".part-{piece.shard}-{piece.part}"
            part_paths.setdefault(piece.shard, []).append(path)
        else:
            path = work / shard.name
        writes.append(cluster.call(
            "write_piece", shard, piece.span, unit_refs[k], decided,
            ([i[0] for i in rep_info], [i[1] for i in rep_info], [i[2] for i in rep_info]),
            group_info, config, mode, text_field, id_field, flag_field,
            metas[k]["rejected_lines"], is_skip, batch_chars, str(path),
            shard.name in rejected_shards, duplicates_jsonl, kill))
    report = _ReportWriter(work, duplicates_jsonl)
    counts = {"read": 0, "kept": 0, "modified": 0, "removed": 0, "flagged": 0,
              "rejected": n_rejected}
    n_read = 0
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
    counts["units_repeated"] = int(repeated.size)
    counts.update({
        "units": n_units,
        "distinct_units": int(n_heads),
        "candidate_pairs": int(n_candidates),
        "verified_pairs": int(edges.left.size),
        "regroup_passes": extra["passes"],
        "regroup_pairs": extra["pairs"],
        "groups": int(decisions.group_size.size),
        "peak_cached_shingles": int(peak_held),
    })
    timings["write"] = time.perf_counter() - clock
    summary, names = corpus.run_summary(shards, work, rejected_shards, report, config, mode,
                                        text_field, id_field, on_error, flag_field, counts,
                                        timings)
    summary["engine"] = {"name": "ray", "cpus": cluster.cpus, "pieces": len(pieces),
                         "partitions": n_parts, "driver_peak_rss_mb": _peak_rss_mb(),
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
