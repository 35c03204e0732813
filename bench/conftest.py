"""Shared fixtures of the benchmark suite: seeded corpora (cached under bench/.cache/) and
numba's thread count.

Sizes: DEDUP_BENCH_DOCS (documents of the signature and index groups, default 10,000); the
corpus and index-store benchmarks read DEDUP_BENCH_CORPUS_MB and DEDUP_BENCH_INDEX_SIZES. CI
runs the suite with a few hundred documents and --benchmark-disable so that it cannot rot.
"""

import pytest

from bench import contenders  # sets RAYON_NUM_THREADS before rensa starts its pool
from bench.corpora import bench_docs, news_documents


@pytest.fixture(scope="session")
def news():
    """Documents of 2-5 KB, 10% of them lightly edited copies of an earlier one."""
    return news_documents(bench_docs())


@pytest.fixture
def threads():
    """Call threads(n) to run numba kernels on n threads; restored afterwards."""
    import numba

    before = numba.get_num_threads()
    yield contenders.set_threads
    numba.set_num_threads(before)
