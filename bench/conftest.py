"""Shared fixtures of the benchmark suite: seeded corpora (cached under bench/.cache/) and
numba's thread count.

Sizes: DEDUP_BENCH_DOCS (documents of the signature and index groups, default 10,000) and
DEDUP_BENCH_CORPUS_DOCS (the corpus group, default 2,000). CI runs the suite with a few
hundred and --benchmark-disable so that it cannot rot.
"""

import os

import pytest

from bench import contenders  # sets RAYON_NUM_THREADS before rensa starts its pool
from bench.corpora import bench_docs, news_documents


@pytest.fixture(scope="session")
def news():
    """Documents of 2-5 KB, 10% of them lightly edited copies of an earlier one."""
    return news_documents(bench_docs())


@pytest.fixture(scope="session")
def corpus_docs():
    return news_documents(int(os.environ.get("DEDUP_BENCH_CORPUS_DOCS", 2000)), seed=11)


@pytest.fixture
def threads():
    """Call threads(n) to run numba kernels on n threads; restored afterwards."""
    import numba

    before = numba.get_num_threads()
    yield contenders.set_threads
    numba.set_num_threads(before)
