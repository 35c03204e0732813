"""Every library adapted to one signature, so benchmarks and quality checks call them alike.

Signatures: SIGNATURES[name](texts, shingle) -> uint32[n_texts, NUM_PERM], shingle "char" or
"word" (5-grams, 128 permutations, seed 1). The reference libraries get the cheapest Python
shingling that is still fair: lower-case, white space dropped (characters) or split on
(words); we do more (NFKC, diacritics, Arabic letter forms, punctuation) inside the kernel.

Indexes: INDEXES[name](prepared) -> set of candidate pairs (i, j), i < j, from building an LSH
index over every document and querying every document; `prepare_index` builds each
library's own objects outside the timed call.

>>> sorted(SIGNATURES)
['datasketch', 'dedup', 'rensa']
"""

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # rensa's thread pool: one core, like ours

import numba  # noqa: E402
import numpy as np  # noqa: E402
from datasketch import LeanMinHash, MinHash, MinHashLSH  # noqa: E402
from rensa import RMinHash, RMinHashLSH  # noqa: E402

import dedup  # noqa: E402
from dedup.kernels.band import band_keys, candidate_pairs  # noqa: E402
from dedup.kernels.minhash import minhash_signatures  # noqa: E402
from bench.corpora import python_shingles  # noqa: E402
from dedup.pipeline import codepoints, permutations, prepare  # noqa: E402

NUM_PERM = 128
NGRAM = 5
SEED = 1
THRESHOLD = 0.8


def config(shingle: str, **overrides) -> dedup.Config:
    return dedup.Config(unit="document", shingle=shingle, ngram=NGRAM, num_perm=NUM_PERM,
                        seed=SEED, threshold=THRESHOLD, **overrides)


def sketch_dedup(texts, shingle):
    return dedup.sketch(texts, config(shingle))


def sketch_datasketch(texts, shingle):
    """MinHash.bulk, datasketch's documented fast path (default hash function)."""
    sets = [[s.encode("utf-8") for s in python_shingles(t, shingle)] for t in texts]
    minhashes = MinHash.bulk(sets, num_perm=NUM_PERM, seed=SEED)
    return np.vstack([m.hashvalues for m in minhashes]).astype(np.uint32, copy=False)


def sketch_rensa(texts, shingle):
    """RMinHash.digest_matrix_from_token_sets: rensa's bulk path, hashing in Rust."""
    sets = [list(python_shingles(t, shingle)) for t in texts]
    return RMinHash.digest_matrix_from_token_sets(sets, num_perm=NUM_PERM, seed=SEED)


SIGNATURES = {"dedup": sketch_dedup, "datasketch": sketch_datasketch, "rensa": sketch_rensa}


def as_matrix(result) -> np.ndarray:
    """uint32[n, num_perm] of any contender's result (rensa returns its own matrix type,
    converted only outside the timed call)."""
    if hasattr(result, "to_rows"):
        return np.asarray(result.to_rows(), dtype=np.uint32)
    return np.asarray(result, dtype=np.uint32)


# MinHash alone, on the same shingle hashes (our kernels' uint64 hashes, CSR):
def shingle_hashes(texts, shingle):
    """(values uint64, offsets int64) of each text's distinct shingle hashes."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    prepared = prepare(codepoints("".join(texts)), ends - lengths, ends, config(shingle))
    return prepared.shingles, prepared.shingle_offsets


def minhash_dedup(values, offsets):
    return minhash_signatures(values, offsets, *permutations(NUM_PERM, SEED))


def minhash_rensa(values, offsets):
    return RMinHash.digest_matrix_from_flat_token_hashes(values, offsets, num_perm=NUM_PERM,
                                                         seed=SEED)


MINHASH_ONLY = {"dedup": minhash_dedup, "rensa": minhash_rensa}


# LSH indexes
def band_rows() -> tuple[int, int]:
    return config("char").band_rows


def prepare_index(name, signatures, texts=None, shingle="char"):
    """The library's own objects for an index benchmark, built outside the timed call."""
    if name == "dedup":
        return signatures
    if name == "datasketch":
        return [LeanMinHash(seed=SEED, hashvalues=row, scheme="affine32") for row in signatures]
    if name == "rensa":
        sets = [list(python_shingles(t, shingle)) for t in texts]
        return RMinHash.from_token_sets(sets, num_perm=NUM_PERM, seed=SEED)
    raise KeyError(name)


def index_dedup(signatures):
    bands, rows = band_rows()
    left, right = candidate_pairs(band_keys(signatures, bands, rows), 1 << 30)
    return left, right


def index_datasketch(minhashes):
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=band_rows())
    with lsh.insertion_session(buffer_size=len(minhashes)) as session:
        for key, minhash in enumerate(minhashes):
            session.insert(key, minhash, check_duplication=False)
    pairs = set()
    for key, minhash in enumerate(minhashes):
        for other in lsh.query(minhash):
            if other != key:
                pairs.add((min(key, other), max(key, other)))
    return pairs


def index_rensa(minhashes):
    """RMinHashLSH with the same number of bands (rensa uses num_perm / bands rows each)."""
    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=band_rows()[0])
    lsh.insert_many(minhashes, 0)
    pairs = set()
    for key, found in enumerate(lsh.query_all(minhashes)):
        for other in found:
            if other != key:
                pairs.add((min(key, other), max(key, other)))
    return pairs


INDEXES = {"dedup": index_dedup, "datasketch": index_datasketch, "rensa": index_rensa}


def pair_set(result) -> set:
    """Candidate pairs of any INDEXES result as a set of (i, j), i < j."""
    if isinstance(result, tuple):
        return set(zip(result[0].tolist(), result[1].tolist()))
    return result


def set_threads(n: int) -> None:
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


@numba.njit(parallel=True, cache=True)
def _busy(n_items, n_steps):
    out = np.zeros(n_items)
    for item in numba.prange(n_items):
        acc = 0.0
        for step in range(n_steps):
            acc += np.sqrt(step + item)
        out[item] = acc
    return out


def parallel_headroom(n_threads: int = 2) -> float:
    """Speed-up of a perfectly parallel numba loop on n_threads over one, measured now: on a
    shared machine, what the other cores could give at that moment (2.0 when idle)."""
    import time

    before = numba.get_num_threads()
    _busy(4, 10)
    times = []
    for threads in (1, n_threads):
        set_threads(threads)
        start = time.perf_counter()
        _busy(64, 1_500_000)
        times.append(time.perf_counter() - start)
    numba.set_num_threads(before)
    return round(times[0] / times[1], 2)
