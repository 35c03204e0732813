"""The engine: strings in, arrays through the kernels, groups of units out.

The only module that knows both worlds. The data flow is one way:
units -> normalize + shingle -> exact classes (xxh64 of the normalized unit)
-> candidates (all pairs when few, else MinHash + LSH bands) -> exact verification
-> groups (each member verified directly against the kept representative).
"""

import functools
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from dedup.config import Config
from dedup.kernels.band import band_keys, candidate_pairs, pack_pairs
from dedup.kernels.minhash import minhash_signatures, minhash_utf8
from dedup.kernels.normalize import normalize_units
from dedup.kernels.shingle import CHAR, WORD, shingle_units, unit_hashes
from dedup.kernels.unionfind import connected_components
from dedup.kernels.verify import pair_similarities
from dedup.normtable import load_table

SHINGLE_SEED = np.uint64(0)  # fixed: shingle hashes mean the same thing whatever Config.seed
UNIT_HASH_SEED = np.uint64(0x5EED)
EXACT, NEAR, CONTAINED = "exact", "near", "contained"


SMALL_INPUT_CHARS = 100_000


@contextmanager
def kernel_threads(n_chars: int):
    """Run the kernels of an input of n_chars characters on the calling thread alone when it is
    small: waking numba's thread pool costs more than an article's work, and on a busy machine
    it measured 0.7 to 110 ms per call against a steady 0.85 ms on one thread (seed article).
    The setting is per calling thread, so other threads keep theirs."""
    if n_chars >= SMALL_INPUT_CHARS:
        yield
        return
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def codepoints(text: str) -> np.ndarray:
    """The code points of `text` as uint32; index i is text[i] (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


@dataclass
class Prepared:
    """Normalized, shingled units: the arrays every later stage reads.

    norm_lengths: int64 normalized characters per unit; shingles/shingle_offsets: CSR of sorted
    distinct uint64 shingle hashes; hashes: uint64 xxh64 of each normalized unit.
    norm/norm_offsets/origins: the normalized code points (kept only when asked for).
    """

    norm_lengths: np.ndarray
    shingles: np.ndarray
    shingle_offsets: np.ndarray
    hashes: np.ndarray
    norm: np.ndarray | None = None
    norm_offsets: np.ndarray | None = None
    origins: np.ndarray | None = None

    def __len__(self):
        return self.norm_lengths.size

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.shingle_offsets)


def prepare(cps, starts, ends, config: Config, keep_normalized=False) -> Prepared:
    """Normalize and shingle the units cps[starts[u]:ends[u]]."""
    table, exp_offsets, exp_values = load_table()
    is_word = config.shingle == "word"
    norm, norm_offsets, origins = normalize_units(
        cps, np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64),
        table, exp_offsets, exp_values, is_word, keep_normalized,
    )
    hashes = unit_hashes(norm, norm_offsets, UNIT_HASH_SEED)
    shingles, shingle_offsets = shingle_sets(norm, norm_offsets, config)
    prepared = Prepared(np.diff(norm_offsets), shingles, shingle_offsets, hashes)
    if keep_normalized:
        prepared.norm, prepared.norm_offsets, prepared.origins = norm, norm_offsets, origins
    return prepared


SHORT_UNITS = 256  # mean normalized length under which shingle_sets leaves sorting to numba


def shingle_sets(norm, norm_offsets, config: Config):
    """Sorted distinct shingle hashes (CSR) of normalized units (shingle_units).

    numpy sorts each unit's shingles in place (sort_segments): numpy's sort beat numba's 3-4x
    at every size from 150 to 5,000 values, and a 2-5 KB document with its paragraphs takes
    0.21-0.32 ms this way against 0.39-0.47 ms with numba's sort (one thread). Units shorter
    than SHORT_UNITS on average keep numba's sort, where one Python call per unit would cost
    more than the sort.
    """
    mode = WORD if config.shingle == "word" else CHAR
    lengths = np.diff(norm_offsets)
    is_short = lengths.size == 0 or lengths.mean() < SHORT_UNITS
    return shingle_units(norm, norm_offsets, config.ngram, mode, SHINGLE_SEED,
                         None if is_short else sort_segments)


_SORT_POOL = (0, None)  # (threads, ThreadPoolExecutor)


def sort_segments(values: np.ndarray, offsets: np.ndarray):
    """Sort each segment values[offsets[k]:offsets[k + 1]] in place with numpy, split over
    numba's thread count (numba.get_num_threads(), so --workers and kernel_threads hold) in
    contiguous runs of about equal size; numpy releases the GIL while it sorts."""
    global _SORT_POOL

    def sort_run(bounds):
        for lo, hi in bounds:
            values[lo:hi].sort()

    bounds = list(zip(offsets[:-1].tolist(), offsets[1:].tolist()))
    n_threads = min(numba.get_num_threads(), len(bounds))
    if n_threads <= 1 or values.size < 1 << 16:
        sort_run(bounds)
        return
    if _SORT_POOL[0] < n_threads:
        from concurrent.futures import ThreadPoolExecutor

        _SORT_POOL = (n_threads, ThreadPoolExecutor(n_threads, thread_name_prefix="dedup-sort"))
    cuts = np.searchsorted(offsets, np.linspace(0, values.size, n_threads + 1)[1:-1])
    runs = np.split(np.arange(len(bounds)), cuts)
    list(_SORT_POOL[1].map(sort_run, [[bounds[k] for k in run.tolist()] for run in runs]))


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) uint32[num_perm] of datasketch's affine32 scheme for this seed, bit for bit."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


@functools.lru_cache(maxsize=8)
def _fixed_permutations(num_perm: int, seed: int):
    """permutations(), made once per (num_perm, seed) and read-only."""
    a, b = permutations(num_perm, seed)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def signatures(shingles, shingle_offsets, config: Config) -> np.ndarray:
    """MinHash signatures uint32[n_units, num_perm]."""
    a, b = _fixed_permutations(config.num_perm, config.seed)
    return minhash_signatures(shingles, shingle_offsets, a, b)


def utf8_signatures(encoded: list, config: Config) -> np.ndarray:
    """MinHash signatures uint32[len(encoded), num_perm] of UTF-8 encoded units (bytes, as
    str.encode("utf-8", "surrogatepass") gives), equal to signatures() of prepare()'s shingles.

    One join and one kernel pass: decode, normalize, shingle, hash and sketch without sorting
    or storing the shingles (the fast path when only signatures are needed).
    """
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)),
              out=offsets[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    table, exp_offsets, exp_values = load_table()
    a, b = _fixed_permutations(config.num_perm, config.seed)
    mode = WORD if config.shingle == "word" else CHAR
    return minhash_utf8(data, offsets, table, exp_offsets, exp_values, config.ngram, mode,
                        SHINGLE_SEED, a, b)


def subset_csr(values, offsets, rows):
    """CSR of the chosen rows only (int64 row indices)."""
    sizes = offsets[rows + 1] - offsets[rows]
    new_offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=new_offsets[1:])
    if rows.size == 0:
        return values[:0], new_offsets
    pieces = [values[offsets[r]:offsets[r + 1]] for r in rows.tolist()]
    return np.concatenate(pieces), new_offsets


@dataclass
class Edges:
    """Verified pairs between units (left < right) with their exact similarities."""

    left: np.ndarray
    right: np.ndarray
    jaccard: np.ndarray
    containment: np.ndarray


def exact_classes(prepared: Prepared, active: np.ndarray):
    """Units grouped by the hash of their normalized text.

    Returns (heads, head_of): heads are the first unit of each class, in unit order;
    head_of[u] is the head of u's class (-1 for inactive units).
    """
    order = active[np.lexsort((active, prepared.hashes[active]))]
    head_of = np.full(len(prepared), -1, dtype=np.int64)
    if order.size == 0:
        return order, head_of
    sorted_hashes = prepared.hashes[order]
    is_new = np.ones(order.size, dtype=bool)
    is_new[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
    class_index = np.cumsum(is_new) - 1
    class_heads = order[is_new]  # within a class the order is by unit index: first is head
    head_of[order] = class_heads[class_index]
    heads = np.sort(class_heads)
    return heads, head_of


def candidates(prepared: Prepared, heads: np.ndarray, config: Config):
    """Candidate pairs among heads (indices into heads): every pair when that is at most
    config.exhaustive_pairs, else those sharing an LSH band."""
    n_heads = heads.size
    if n_heads * (n_heads - 1) // 2 <= config.exhaustive_pairs:
        left, right = np.triu_indices(n_heads, 1)
        return left.astype(np.int64), right.astype(np.int64)
    shingles, offsets = subset_csr(prepared.shingles, prepared.shingle_offsets, heads)
    bands, rows = config.band_rows
    keys = band_keys(signatures(shingles, offsets, config), bands, rows)
    return candidate_pairs(keys, config.max_bucket)


def is_edge(jaccard, containment, shorter_length, config: Config):
    """Whether a verified pair is a repeat: near-duplicates, or a contained copy long enough."""
    return (jaccard >= config.threshold) | (
        (containment >= config.containment_threshold)
        & (shorter_length >= config.min_contained_length)
    )


def verified_edges(prepared: Prepared, heads: np.ndarray, config: Config) -> Edges:
    """Candidates among heads, verified on the exact shingle sets; only repeats are kept."""
    left, right = candidates(prepared, heads, config)
    return repeats_among(prepared, heads[left], heads[right], config)


def repeats_among(prepared: Prepared, rows_left, rows_right, config: Config, left=None,
                  right=None) -> Edges:
    """The repeats (is_edge) among pairs of units of prepared (int64 rows), verified on their
    exact shingle sets; numbered as the pairs (left, right) when those are given (the units'
    numbers elsewhere), else as the rows."""
    jaccard, containment = pair_similarities(prepared.shingles, prepared.shingle_offsets,
                                             rows_left, rows_right)
    shorter = np.minimum(prepared.norm_lengths[rows_left], prepared.norm_lengths[rows_right])
    keep = is_edge(jaccard, containment, shorter, config)
    left = rows_left if left is None else left
    right = rows_right if right is None else right
    return Edges(left[keep], right[keep], jaccard[keep], containment[keep])


@dataclass(frozen=True)
class Assignment:
    """One unit of a group: its kind relative to the representative and the similarity."""

    unit: int
    kind: str | None  # None for the representative
    similarity: float


def find_groups(prepared: Prepared, config: Config) -> list[list[Assignment]]:
    """Groups of repeated units, each a list whose first entry is the representative and whose
    other entries were each verified directly against it (no chains). Sorted by first unit."""
    active = np.flatnonzero(prepared.norm_lengths > 0)
    heads, head_of = exact_classes(prepared, active)
    edges = verified_edges(prepared, heads, config)
    class_members = {}
    for unit in active.tolist():
        class_members.setdefault(int(head_of[unit]), []).append(unit)
    verify_more = functools.partial(repeats_among, prepared, config=config)
    return build_groups(prepared, heads, class_members, edges, config, verify_more)


# Rounds of extra verification in build_groups. One settles a star bucket whose representative
# verified against every member, a second one where the first round showed the representative
# to be contained in a larger member; more are seldom needed and each costs the corpus path a
# streamed pass over the records holding the pairs.
EXTRA_ROUNDS = 3


def build_groups(prepared, heads, class_members, edges: Edges, config: Config,
                 verify_more=None, tried=None):
    """Turn exact classes and verified edges between their heads into groups.

    A member joins a group only when it was verified directly against the group's
    representative. LSH links the units of an oversized bucket as a star around its first unit,
    which is seldom the one kept, so the component would otherwise fall apart into many groups
    (or singletons) of near copies. verify_more(left, right) -> Edges, when given, verifies
    further pairs of heads (int64 arrays, left < right) and returns the repeats among them: for
    each component whose representative lacks a verified pair with some of its members, those
    pairs are asked for, all components together, in at most EXTRA_ROUNDS rounds. A member
    still not verified against a representative after that starts a group of its own; nothing
    is ever attached by transitivity. tried: the pairs verified already, repeats or not
    (sorted band.pack_pairs keys of the candidates), which are never asked for again.
    """
    neighbours = {}
    _add_neighbours(neighbours, edges)
    labels = connected_components(len(prepared), edges.left, edges.right)
    components = {}
    for head in heads.tolist():
        components.setdefault(int(labels[head]), []).append(head)
    components = [members for members in components.values()
                  if len(members) > 1 or len(class_members[members[0]]) > 1]
    sizes = prepared.sizes
    lengths = prepared.norm_lengths
    pending = {index: None for index, members in enumerate(components) if len(members) > 1}
    checked = set()  # pairs verify_more has answered, repeats or not

    def is_done(pairs: list) -> list:
        """Whether each pair (left < right) was verified already."""
        done = [pair in checked for pair in pairs]
        if tried is not None and tried.size and pairs:
            left, right = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
            in_tried = _contains(tried, pack_pairs(left, right))
            done = [a or b for a, b in zip(done, in_tried.tolist())]
        return done

    for _ in range(EXTRA_ROUNDS if verify_more is not None else 0):
        requests = []
        probes = {}
        for index, hint in pending.items():
            probe, missing = _missing_pairs(components[index], hint, neighbours, sizes, lengths,
                                            config, is_done)
            if missing:
                requests += missing
                probes[index] = probe
        if not requests:
            break
        checked.update(requests)
        pairs = np.array(sorted(requests), dtype=np.int64).reshape(-1, 2)
        _add_neighbours(neighbours, verify_more(pairs[:, 0].copy(), pairs[:, 1].copy()))
        # a probe found to be contained in larger members: probe the largest of those next
        pending = {index: _largest_container(probe, neighbours, sizes, lengths, config)
                   for index, probe in probes.items()}
    groups = []
    for members in components:
        for rep, attached, _ in _split_component(members, neighbours, sizes, lengths, config):
            group = [Assignment(rep, None, 1.0)]
            group += [Assignment(u, EXACT, 1.0) for u in class_members[rep][1:]]
            for head in attached:
                jac, cont = neighbours[rep][head]
                kind, similarity = (NEAR, jac) if jac >= config.threshold else (CONTAINED, cont)
                group += [Assignment(u, kind, similarity) for u in class_members[head]]
            if len(group) > 1:
                groups.append(group)
    groups.sort(key=lambda group: min(a.unit for a in group))
    return groups


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    where = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[where] == keys


def _add_neighbours(neighbours: dict, edges: Edges):
    for a, b, jac, cont in zip(edges.left.tolist(), edges.right.tolist(),
                               edges.jaccard.tolist(), edges.containment.tolist()):
        neighbours.setdefault(a, {})[b] = (jac, cont)
        neighbours.setdefault(b, {})[a] = (jac, cont)


def _missing_pairs(members, hint, neighbours, sizes, lengths, config, is_done):
    """(probe, pairs left < right not yet verified between the probe and other members).

    The probe is hint when given (the largest container of the last probe), else the first
    representative of the split that lacks a verified pair with some remaining member; only
    one per round, as verifying its pairs changes what the split does next. is_done(pairs)
    tells which pairs were verified already."""
    if hint is not None:
        pairs = [(min(hint, x), max(hint, x)) for x in members if x != hint]
        return hint, [pair for pair, done in zip(pairs, is_done(pairs)) if not done]
    for rep, _, others in _split_component(members, neighbours, sizes, lengths, config):
        pairs = [(min(rep, x), max(rep, x)) for x in others]
        missing = [pair for pair, done in zip(pairs, is_done(pairs)) if not done]
        if missing:
            return rep, missing
    return None, []


def _largest_container(unit, neighbours, sizes, lengths, config):
    """The largest member verified to contain unit (the representative the keep policy would
    prefer among equals), or None."""
    containers = [y for y, (_, cont) in neighbours.get(unit, {}).items()
                  if sizes[y] > sizes[unit] and cont >= config.containment_threshold]
    if not containers:
        return None
    if config.keep == "longest":
        return max(containers, key=lambda y: (sizes[y], lengths[y], -y))
    return max(containers, key=lambda y: (sizes[y], -y))


def _split_component(members, neighbours, sizes, lengths, config):
    """Yield (representative, attached heads, heads left over) until the component is used up.

    A head is not eligible as representative while a larger head that contains it remains:
    collapsing then keeps the container and never drops text found nowhere else.
    """
    remaining = sorted(members)
    while remaining:
        pool = set(remaining)
        eligible = [
            x for x in remaining
            if not any(
                y in pool and sizes[x] < sizes[y] and cont >= config.containment_threshold
                for y, (_, cont) in neighbours.get(x, {}).items()
            )
        ]
        if config.keep == "longest":
            rep = max(eligible, key=lambda x: (lengths[x], -x))
        else:
            rep = eligible[0]
        links = neighbours.get(rep, {})
        attached = [x for x in remaining if x != rep and x in links]
        others = [x for x in remaining if x != rep and x not in links]
        yield rep, attached, others
        remaining = others


def shingle_normalized(norm, norm_offsets, config: Config):
    """Shingles (CSR, as in Prepared) of units already normalized by prepare(keep_normalized=True):
    norm int32 code points, norm_offsets int64[n_units + 1]. The persistent index stores the
    normalized text of its units and re-shingles it to verify candidates exactly."""
    is_word = config.shingle == "word"
    return shingle_units(norm, norm_offsets, config.ngram, WORD if is_word else CHAR, SHINGLE_SEED)


def unit_band_keys(shingles, shingle_offsets, config: Config,
                   band_rows: tuple[int, int] | None = None) -> np.ndarray:
    """LSH band keys uint64[n_units, bands] of each unit, exactly as candidates() makes them.
    For callers that call it per document: the permutations are made once per (num_perm, seed),
    and band_rows may be passed in (Config.band_rows recomputes the banding)."""
    bands, rows = band_rows or config.band_rows
    a, b = _fixed_permutations(config.num_perm, config.seed)
    return band_keys(minhash_signatures(shingles, shingle_offsets, a, b), bands, rows)
