"""Group "index": build an LSH index over the signatures of every document and query every
document (all candidate pairs), at threshold 0.8 and 128 permutations.

dedup: band keys sorted in kernels (kernels.band), all pairs in one call; datasketch:
MinHashLSH with the same bands and rows, over LeanMinHash objects of the same signatures (built
outside the timed call); rensa: RMinHashLSH with the same number of bands over its own
RMinHash objects (it uses num_perm / bands rows per band, so its candidates differ).

extra_info: candidate pairs, recall of the labelled near-duplicate pairs, and for dedup whether
its candidates are exactly datasketch's.
"""

import pytest

from bench import contenders

RUNS = [("dedup", 1, 5), ("dedup", 2, 5), ("rensa", 1, 3), ("datasketch", 1, 3)]


@pytest.fixture(scope="session")
def news_signatures(news):
    return contenders.sketch_dedup(news.texts, "char")


@pytest.fixture(scope="session")
def datasketch_pairs(news, news_signatures):
    return contenders.index_datasketch(contenders.prepare_index("datasketch", news_signatures))


@pytest.mark.parametrize("name, n_threads, rounds", RUNS,
                         ids=[f"{name}-{n}core" for name, n, _ in RUNS])
def test_index(benchmark, news, news_signatures, datasketch_pairs, threads, name, n_threads,
               rounds):
    benchmark.group = f"index: build + query, {len(news.texts)} docs"
    threads(n_threads)
    prepared = contenders.prepare_index(name, news_signatures, news.texts, "char")
    index = contenders.INDEXES[name]
    pairs = contenders.pair_set(index(prepared))  # warm up (and compile) outside the timing
    benchmark.pedantic(index, args=(prepared,), rounds=rounds, iterations=1)
    labelled = {(orig, i) for i, orig in enumerate(news.duplicate_of) if orig >= 0}
    bands, rows = contenders.band_rows()
    benchmark.extra_info.update(
        contender=name, threads=n_threads, docs=len(news.texts), candidate_pairs=len(pairs),
        labelled_recall=round(len(pairs & labelled) / max(1, len(labelled)), 4),
        bands=bands, rows=rows if name != "rensa" else contenders.NUM_PERM // bands,
    )
    if name == "dedup":
        benchmark.extra_info["same_pairs_as_datasketch"] = pairs == datasketch_pairs
        assert pairs == datasketch_pairs
