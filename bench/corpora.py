"""Seeded generators of realistic prose corpora for the benchmarks, cached under bench/.cache/.

`news_documents(n_docs, seed)` gives documents of 2-5 KB of UTF-8 (90% English, 10% Arabic),
paragraphs separated by blank lines, sentences from a Markov chain over real text with 40% of
their content words drawn from a Zipf vocabulary; a share of them are lightly edited copies of
earlier documents, so an LSH index over them has real near-duplicates to find. The same
(n_docs, seed) gives the same corpus on every machine.

>>> corpus = news_documents(20, seed=7)
>>> len(corpus.texts), 2000 <= len(corpus.texts[0].encode()) <= 5200
(20, True)
"""

import bisect
import itertools
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.prose import ENGLISH, seed_article

CACHE = Path(__file__).resolve().parent / ".cache"
VERSION = 2  # bump when a generator changes, so stale caches are not read
_SENTENCE_END = re.compile(r"[.!?؟]$")


def bench_docs(default: int = 10_000) -> int:
    """Corpus size for the benchmarks: DEDUP_BENCH_DOCS, else `default` (CI sets it small)."""
    return int(os.environ.get("DEDUP_BENCH_DOCS", default))


@dataclass
class Corpus:
    texts: list[str]
    duplicate_of: list[int]  # index of the document this one is an edited copy of, or -1
    megabytes: float = field(init=False)

    def __post_init__(self):
        self.megabytes = sum(len(t.encode("utf-8")) for t in self.texts) / 1e6


class MarkovChain:
    """Word-level chain of order 1 over real sentences: prose-like n-gram statistics."""

    def __init__(self, text: str):
        self.starts = []
        self.next = {}
        for line in text.splitlines():
            words = line.split()
            if not words:
                continue
            self.starts.append(words[0])
            for a, b in zip(words, words[1:]):
                self.next.setdefault(a, []).append(b)

    def sentence(self, rng: random.Random, max_words: int = 40) -> str:
        word = rng.choice(self.starts)
        words = [word]
        while len(words) < max_words:
            followers = self.next.get(word)
            if not followers:
                break
            word = rng.choice(followers)
            words.append(word)
            if len(words) >= 6 and _SENTENCE_END.search(word):
                break
        text = " ".join(words)
        return text if _SENTENCE_END.search(text) else text + "."


_CHAINS = {}


def chain(language: str) -> MarkovChain:
    if language not in _CHAINS:
        _CHAINS[language] = MarkovChain(ENGLISH if language == "en" else seed_article())
    return _CHAINS[language]


class Vocabulary:
    """Pseudo-words with Zipf frequencies (s = 1.05, as in prose), built from a seed: the
    content words of generated documents, so that unrelated documents share about as many
    character 5-grams as unrelated news articles do (Jaccard ~0.05), not a few hundred source
    words' worth (~0.26 with the chain alone)."""

    SYLLABLES = {
        "en": [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "sh", "ch", "st"],
        "ar": [c + v for c in "بتثجحخدذرزسشصضطظعغفقكلمنهوي" for v in ("ا", "و", "ي", "")],
    }

    def __init__(self, language: str, size: int = 20_000, seed: int = 3):
        rng = random.Random(seed)
        syllables = self.SYLLABLES[language]
        words = set()
        while len(words) < size:
            words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
        self.words = sorted(words)
        rng.shuffle(self.words)
        weights = [1.0 / rank**1.05 for rank in range(1, size + 1)]
        total = sum(weights)
        self.cumulative = list(itertools.accumulate(w / total for w in weights))

    def draw(self, rng: random.Random) -> str:
        return self.words[min(bisect.bisect(self.cumulative, rng.random()), len(self.words) - 1)]


_VOCABULARIES = {}


def diversify(rng: random.Random, sentence: str, language: str, rate: float = 0.4) -> str:
    """Replace about `rate` of the content words (4+ letters) by Zipf-drawn pseudo-words,
    keeping their punctuation; function words and sentence shape stay those of the source."""
    if language not in _VOCABULARIES:
        _VOCABULARIES[language] = Vocabulary(language)
    vocabulary = _VOCABULARIES[language]
    words = sentence.split(" ")
    for i, word in enumerate(words):
        core = word.strip(".,;:!?؟،\"“”«»()")
        if len(core) >= 4 and core.isalpha() and rng.random() < rate:
            words[i] = word.replace(core, vocabulary.draw(rng), 1)
    return " ".join(words)


def document(rng: random.Random, language: str, n_bytes: int) -> str:
    """Paragraphs of 2-6 sentences, separated by blank lines, about n_bytes of UTF-8."""
    source = chain(language)
    paragraphs = []
    size = 0
    while size < n_bytes:
        paragraph = " ".join(diversify(rng, source.sentence(rng), language)
                             for _ in range(rng.randint(2, 6)))
        paragraphs.append(paragraph)
        size += len(paragraph.encode("utf-8")) + 2
    text = "\n\n".join(paragraphs)
    data = text.encode("utf-8")
    if len(data) > n_bytes + 200:  # trim the last paragraph at a word boundary
        text = data[:n_bytes].decode("utf-8", "ignore").rsplit(" ", 1)[0] + "."
    return text


def light_edit(rng: random.Random, text: str) -> str:
    """A copy as another site would publish it: a few words changed, a sentence dropped or
    a line of boilerplate added."""
    words = text.split(" ")
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(words))
        words[i] = rng.choice(words)
    edited = " ".join(words)
    roll = rng.random()
    if roll < 0.3:
        edited = "Share this article\n\n" + edited
    elif roll < 0.6:
        edited = edited + "\n\nAll rights reserved."
    return edited


def _generate_news(n_docs: int, seed: int, duplicate_rate: float) -> Corpus:
    rng = random.Random(seed)
    texts = []
    duplicate_of = []
    for i in range(n_docs):
        if i > 10 and rng.random() < duplicate_rate:
            original = rng.randrange(i)
            texts.append(light_edit(rng, texts[original]))
            duplicate_of.append(original)
            continue
        language = "ar" if rng.random() < 0.1 else "en"
        texts.append(document(rng, language, rng.randint(2000, 5000)))
        duplicate_of.append(-1)
    return Corpus(texts, duplicate_of)


def news_documents(n_docs: int, seed: int = 20261129, duplicate_rate: float = 0.1) -> Corpus:
    """The signature/index corpus, built once per (n_docs, seed) and cached as JSON."""
    path = CACHE / f"news-v{VERSION}-{n_docs}-{seed}-{duplicate_rate}.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        return Corpus(data["texts"], data["duplicate_of"])
    corpus = _generate_news(n_docs, seed, duplicate_rate)
    CACHE.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"texts": corpus.texts, "duplicate_of": corpus.duplicate_of},
                              ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)  # atomic: a killed run never leaves a half-written cache
    return corpus


def news_article(n_paragraphs: int = 50, seed: int = 5) -> str:
    """One article of n_paragraphs one-line paragraphs, with a few of them repeated (a doubled
    title, a restated paragraph), as a scraper would deliver it."""
    rng = random.Random(seed)
    source = chain("en")
    paragraphs = [" ".join(source.sentence(rng) for _ in range(rng.randint(1, 4)))
                  for _ in range(n_paragraphs)]
    paragraphs[2] = paragraphs[0]  # title printed twice
    paragraphs[-5] = light_edit(rng, paragraphs[10]).replace("\n\n", " ")
    return "\n\n".join(paragraphs) + "\n"


def python_shingles(text: str, shingle: str, n: int = 5) -> set[str]:
    """What a user of datasketch or rensa writes: lower-case n-grams of characters (white space
    dropped) or of words. A text shorter than n items is one shingle, as in the engine."""
    if shingle == "char":
        chars = "".join(text.lower().split())
        if len(chars) <= n:
            return {chars} if chars else set()
        return {chars[i:i + n] for i in range(len(chars) - n + 1)}
    words = text.lower().split()
    if len(words) <= n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
