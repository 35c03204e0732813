"""Group "article": single-call latency of dedup.find_repeats, the ingestion case: the
reference article in seeds/ and a generated 50-paragraph article with a doubled title and a
restated paragraph. Compiled (and cached) before measuring; one thread, as a request would.

extra_info: the groups found (lines), so a change of results shows beside a change of speed.
"""

import pytest

import dedup
from bench.corpora import news_article
from bench.prose import seed_article

ARTICLES = {"seed article": seed_article, "50 paragraphs": news_article}


@pytest.mark.parametrize("article", list(ARTICLES))
def test_find_repeats(benchmark, threads, article):
    benchmark.group = "article: find_repeats latency"
    threads(1)
    text = ARTICLES[article]()
    dedup.find_repeats(text)
    groups = benchmark(dedup.find_repeats, text)
    benchmark.extra_info.update(
        article=article, characters=len(text), paragraphs=len(text.split("\n\n")),
        groups=[list(group.lines) for group in groups],
    )
    if article == "seed article":
        assert [list(group.lines) for group in groups] == [[1, 3], [7, 34], [9, 36], [13, 38],
                                                           [25, 26]]
