"""Seeded corpora of JSON Lines for the corpus pipeline (`dedup run`) and its tests.

Documents are paragraphs of words drawn from a synthetic Zipf vocabulary. A share of them are
copies of an earlier document: exact (after normalization: case and punctuation changed) or
near (words replaced, dropped or inserted at a random rate). Paragraph-level repetition comes
from a set of boilerplate paragraphs (footers, bylines) and from wire paragraphs quoted in
several documents. Everything is drawn from np.random.default_rng(seed).

    python bench/corpus_gen.py --mb 200 -o /tmp/corpus.jsonl
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "qu", "sh", "ch"]


@dataclass(frozen=True)
class Shape:
    """How a generated corpus looks. Rates are shares of documents."""

    vocabulary: int = 20_000
    paragraphs: tuple[int, int] = (3, 10)
    words: tuple[int, int] = (20, 90)
    exact_copies: float = 0.04
    near_copies: float = 0.12
    max_edit_rate: float = 0.12  # words edited in a near copy: uniform in [0, this]
    boilerplate: float = 0.3  # documents ending with one of the boilerplate paragraphs
    wire_quotes: float = 0.15  # documents quoting a paragraph of an earlier document


def _vocabulary(rng, size):
    words = set()
    while len(words) < size:
        n = int(rng.integers(1, 4))
        words.add("".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), n)))
    words = sorted(words)
    rng.shuffle(words)
    weights = 1.0 / np.arange(1, size + 1) ** 1.05
    return np.array(words, dtype=object), weights / weights.sum()


class Generator:
    """Documents (dicts with id, url, text, meta) in a seeded, reproducible order."""

    def __init__(self, seed: int = 0, shape: Shape = Shape()):
        self.rng = np.random.default_rng(seed)
        self.shape = shape
        self.words, self.weights = _vocabulary(self.rng, shape.vocabulary)
        self.cumulative = np.cumsum(self.weights)
        self.boilerplate = [self._paragraph() for _ in range(25)]
        self.history = []  # recent originals, as lists of paragraphs (lists of words)
        self.count = 0

    def _sentence_words(self, n):
        index = np.searchsorted(self.cumulative, self.rng.random(n))
        return list(self.words[np.minimum(index, self.words.size - 1)])

    def _paragraph(self):
        lo, hi = self.shape.words
        return self._sentence_words(int(self.rng.integers(lo, hi)))

    @staticmethod
    def _render(paragraph):
        text = " ".join(paragraph)
        return text[:1].upper() + text[1:] + "."

    def _edit(self, paragraphs, rate):
        rng = self.rng
        out = []
        for words in paragraphs:
            words = list(words)
            n_edits = int(rng.binomial(len(words), rate))
            for _ in range(n_edits):
                op = rng.integers(0, 3)
                k = int(rng.integers(0, max(1, len(words))))
                if op == 0 and words:
                    words[k] = self._sentence_words(1)[0]
                elif op == 1 and len(words) > 3:
                    del words[k]
                else:
                    words.insert(k, self._sentence_words(1)[0])
            out.append(words)
        return out

    def document(self) -> dict:
        rng, shape = self.rng, self.shape
        self.count += 1
        draw = rng.random()
        kind = "original"
        if self.history and draw < shape.exact_copies:
            kind = "exact"
            paragraphs = self.history[int(rng.integers(0, len(self.history)))]
        elif self.history and draw < shape.exact_copies + shape.near_copies:
            kind = "near"
            source = self.history[int(rng.integers(0, len(self.history)))]
            paragraphs = self._edit(source, float(rng.uniform(0, shape.max_edit_rate)))
        else:
            lo, hi = shape.paragraphs
            paragraphs = [self._paragraph() for _ in range(int(rng.integers(lo, hi)))]
            if self.history and rng.random() < shape.wire_quotes:
                source = self.history[int(rng.integers(0, len(self.history)))]
                paragraphs.insert(int(rng.integers(0, len(paragraphs) + 1)),
                                  source[int(rng.integers(0, len(source)))])
            self.history.append(paragraphs)
            if len(self.history) > 2000:
                self.history.pop(int(rng.integers(0, len(self.history))))
        text = "\n".join(self._render(p) for p in paragraphs)
        if kind == "exact" and rng.random() < 0.5:
            text = text.upper().replace(".", "!")  # same after normalization
        if rng.random() < shape.boilerplate:
            text += "\n" + self._render(self.boilerplate[int(rng.integers(0, 25))])
        return {
            "id": f"doc-{self.count:08d}",
            "url": f"https://example.org/{self.count}",
            "text": text,
            "meta": {"kind": kind, "paragraphs": len(paragraphs)},
        }

    def documents(self, n: int):
        for _ in range(n):
            yield self.document()


def write_jsonl(path, megabytes: float, seed: int = 0, shape: Shape = Shape()) -> int:
    """Write documents to `path` until it holds `megabytes` MB; returns the document count."""
    gen = Generator(seed, shape)
    limit = int(megabytes * 1e6)
    size = 0
    n = 0
    with open(path, "wb") as handle:
        while size < limit:
            lines = b"".join(json.dumps(gen.document(), ensure_ascii=False).encode() + b"\n"
                             for _ in range(500))
            handle.write(lines)
            size += len(lines)
            n += 500
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200, help="size in MB (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    n = write_jsonl(Path(args.output), args.mb, args.seed)
    print(f"{args.output}: {n} documents", file=sys.stderr)


if __name__ == "__main__":
    main()
