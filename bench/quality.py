"""Quality of near-duplicate detection on labelled corpora made from real text.

Base documents are real text shipped with the project: the Arabic reference article (split
into three documents of consecutive paragraphs) and ten English news stories (bench/prose.py).
Each base gets copies with the edits scraping produces (below, EDITS); distractors are
prose generated from the same text (a Markov chain over its words: same vocabulary, different
documents), so precision is tested against hard negatives. Two documents are duplicates when
they come from the same base.

Reported, at the same threshold (0.8) and num_perm (128):
- precision, recall and F1 over pairs (documents in one predicted group form pairs) of
  dedup.deduplicate (its LSH path, and its exhaustive all-pairs path) and of datasketch's
  MinHashLSH over MinHash.bulk of lower-cased character 5-grams;
- recall of our LSH candidates against exact all-pairs search, for pairs whose exact Jaccard is
  at least threshold + 0.05 (target >= 0.98), and the share of the pairs we report that exact
  search confirms (precision against exact search, target 1.0: every pair is verified).

    python -m bench.quality              # full size: prints the tables
    python -m bench.quality --copies 4   # smaller
"""

import argparse
import random
import re
import unicodedata
from dataclasses import dataclass, replace

import numpy as np

import dedup
from bench.corpora import chain, python_shingles
from bench.prose import ENGLISH, seed_article
from dedup.kernels.band import band_keys, candidate_pairs
from dedup.kernels.verify import pair_similarities
from dedup.pipeline import codepoints, prepare

THRESHOLD = 0.8
NUM_PERM = 128
BOILERPLATE_TOP = [
    "Share this article\nFacebook Twitter WhatsApp Email",
    "شارك هذا المقال\nفيسبوك تويتر واتساب",
    "Home > World > Europe\nUpdated 3 hours ago",
]
BOILERPLATE_BOTTOM = [
    "© 2023 All rights reserved. Subscribe to our newsletter for the latest news.",
    "جميع الحقوق محفوظة © 2023. اشترك في نشرتنا الإخبارية.",
    "Read more: the latest stories from our correspondents around the world.",
]
QUOTES = ["“”", "«»", '""', "''", "„“"]
ARABIC_MARKS = ["\u064e", "\u064f", "\u0650", "\u0651", "\u0652"]
LATIN_ACCENTS = {"e": "é", "a": "à", "o": "ô", "u": "ü", "i": "ï", "c": "ç"}


def _paragraphs(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _join(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs)


def _sentences(paragraph: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?؟])\s+", paragraph) if s]


def base_documents() -> list[str]:
    """Three documents from the seed article and ten English stories."""
    article = _paragraphs(seed_article())
    third = len(article) // 3
    bases = [_join(article[i * third:(i + 1) * third if i < 2 else len(article)])
             for i in range(3)]
    english = _paragraphs(ENGLISH)
    bases += [_join(english[i:i + 3]) for i in range(0, len(english), 3)]
    return bases


# Edits: (rng, text, other) -> text; `other` is an unrelated document for edits that add text.
def glue_words(rng, text, other):
    spaces = [m.start() for m in re.finditer(r"(?<=\w) (?=\w)", text)]
    for pos in sorted(rng.sample(spaces, min(4, len(spaces))), reverse=True):
        text = text[:pos] + text[pos + 1:]
    return text


def split_words(rng, text, other):
    words = [m for m in re.finditer(r"\w{6,}", text)]
    for m in sorted(rng.sample(words, min(3, len(words))), key=lambda m: -m.start()):
        cut = m.start() + (m.end() - m.start()) // 2
        text = text[:cut] + " " + text[cut:]
    return text


def punctuation(rng, text, other):
    marks = {",": [";", "", " -"], ".": ["!", ";", "."], ":": [" -", ","], "،": [",", ""]}
    return "".join(rng.choice(marks[c]) if c in marks and rng.random() < 0.5 else c
                   for c in text)


def quotes(rng, text, other):
    opening, closing = rng.choice(QUOTES)
    text = re.sub(r"[“«„]", opening, text)
    return re.sub(r"[”»]", closing, text)


def add_diacritics(rng, text, other):
    out = []
    for c in text:
        if "\u0621" <= c <= "\u064a" and rng.random() < 0.3:
            out.append(c + rng.choice(ARABIC_MARKS))
        elif c in LATIN_ACCENTS and rng.random() < 0.15:
            out.append(LATIN_ACCENTS[c])
        else:
            out.append(c)
    return "".join(out)


def remove_diacritics(rng, text, other):
    decomposed = unicodedata.normalize("NFD", add_diacritics(rng, text, other))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed
                                                if not unicodedata.combining(c)))


def sentence_added(rng, text, other):
    paragraphs = _paragraphs(text)
    k = rng.randrange(len(paragraphs))
    paragraphs[k] += " " + rng.choice(_sentences(_paragraphs(other)[0]))
    return _join(paragraphs)


def sentence_dropped(rng, text, other):
    paragraphs = _paragraphs(text)
    k = max(range(len(paragraphs)), key=lambda i: len(_sentences(paragraphs[i])))
    sentences = _sentences(paragraphs[k])
    if len(sentences) > 1:
        del sentences[rng.randrange(len(sentences))]
        paragraphs[k] = " ".join(sentences)
    return _join(paragraphs)


def sentence_restated(rng, text, other):
    """One sentence told with other words: some dropped, two swapped."""
    paragraphs = _paragraphs(text)
    k = rng.randrange(len(paragraphs))
    sentences = _sentences(paragraphs[k])
    j = rng.randrange(len(sentences))
    words = sentences[j].split()
    if len(words) > 4:
        del words[rng.randrange(len(words))]
        a, b = rng.sample(range(len(words)), 2)
        words[a], words[b] = words[b], words[a]
    sentences[j] = " ".join(words)
    paragraphs[k] = " ".join(sentences)
    return _join(paragraphs)


def paragraphs_reordered(rng, text, other):
    paragraphs = _paragraphs(text)
    rng.shuffle(paragraphs)
    return _join(paragraphs)


def boilerplate_prepended(rng, text, other):
    return rng.choice(BOILERPLATE_TOP) + "\n\n" + text


def boilerplate_appended(rng, text, other):
    return text + "\n\n" + rng.choice(BOILERPLATE_BOTTOM)


def truncated(rng, text, other):
    cut = int(len(text) * rng.uniform(0.8, 0.92))
    return text[:cut].rsplit(" ", 1)[0]


def embedded(rng, text, other):
    """The whole text inside a longer page: other paragraphs before and after it."""
    around = _paragraphs(other)
    return _join(around[:2] + _paragraphs(text) + around[2:4])


EDITS = {f.__name__: f for f in [
    glue_words, split_words, punctuation, quotes, add_diacritics, remove_diacritics,
    sentence_added, sentence_dropped, sentence_restated, paragraphs_reordered,
    boilerplate_prepended, boilerplate_appended, truncated, embedded,
]}
# edits that may change a copy beyond a Jaccard of 0.8: alone, never combined with others
_LARGE = {"truncated", "embedded", "sentence_added"}


@dataclass
class Labelled:
    texts: list[str]
    origin: list[int]  # base document of each text, -1 for a distractor
    edits: list[tuple[str, ...]]


def labelled_corpus(copies: int = 14, distractors: int = 100, seed: int = 4) -> Labelled:
    """Each base document, `copies` edited copies of it (the edit kinds in turn, small edits
    combined with one or two more), and `distractors` unrelated documents."""
    rng = random.Random(seed)
    bases = base_documents()
    names = list(EDITS)
    # text around an embedded copy and sentences added to a copy: generated, never a base, so
    # that a copy never contains a second base document
    others = [_markov_document(rng, "ar" if b < 3 else "en", 4) for b in range(len(bases))]
    texts, origin, edits = [], [], []
    for b, base in enumerate(bases):
        texts.append(base)
        origin.append(b)
        edits.append(())
        for c in range(copies):
            first = names[(b + c) % len(names)]
            applied = [first]
            if first not in _LARGE:
                small = [n for n in names if n not in _LARGE and n != first]
                applied += rng.sample(small, rng.randint(0, 2))
            text = base
            for name in applied:
                text = EDITS[name](rng, text, others[b])
            texts.append(text)
            origin.append(b)
            edits.append(tuple(applied))
    for d in range(distractors):
        texts.append(_markov_document(rng, "ar" if d % 4 == 0 else "en", rng.randint(3, 8)))
        origin.append(-1)
        edits.append(())
    order = list(range(len(texts)))
    rng.shuffle(order)  # copies need not follow their original
    return Labelled([texts[i] for i in order], [origin[i] for i in order],
                    [edits[i] for i in order])


def _markov_document(rng, language, n_paragraphs) -> str:
    source = chain(language)
    return _join([" ".join(source.sentence(rng) for _ in range(rng.randint(2, 4)))
                  for _ in range(n_paragraphs)])


def _pairs_of_groups(labels) -> set:
    """Pairs (i, j), i < j, of items sharing a label (labels < 0 are singletons)."""
    by_label = {}
    for i, label in enumerate(labels):
        if label >= 0:
            by_label.setdefault(label, []).append(i)
    return {(a, b) for members in by_label.values()
            for k, a in enumerate(members) for b in members[k + 1:]}


def _components(n, edges) -> list[int]:
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    roots = [find(i) for i in range(n)]
    sizes = {}
    for r in roots:
        sizes[r] = sizes.get(r, 0) + 1
    return [r if sizes[r] > 1 else -1 for r in roots]


def scores(predicted: set, truth: set) -> dict:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "pairs": len(predicted)}


def dedup_edges(texts, config: dedup.Config) -> list[tuple[int, int]]:
    """(duplicate, kept) pairs reported by dedup.deduplicate."""
    result = dedup.deduplicate([(str(i), t) for i, t in enumerate(texts)], config, mode="flag")
    return [(int(d.id), int(d.dup_of)) for d in result.duplicates if d.dup_of is not None]


def datasketch_edges(texts) -> list[tuple[int, int]]:
    """Candidates of datasketch's MinHashLSH (its documented use: query, treat as duplicate)."""
    from datasketch import MinHash, MinHashLSH

    sets = [[s.encode("utf-8") for s in python_shingles(t, "char")] for t in texts]
    minhashes = MinHash.bulk(sets, num_perm=NUM_PERM, seed=1)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    return [(i, j) for i, m in enumerate(minhashes) for j in lsh.query(m) if j != i]


def exact_all_pairs(texts, config: dedup.Config):
    """Exact Jaccard and containment of every pair of documents (our shingles)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    prepared = prepare(codepoints("".join(texts)), ends - lengths, ends, config)
    left, right = np.triu_indices(len(texts), 1)
    left, right = left.astype(np.int64), right.astype(np.int64)
    jaccard, containment = pair_similarities(prepared.shingles, prepared.shingle_offsets,
                                             left, right)
    return left, right, jaccard, containment, prepared.norm_lengths


def evaluate(copies: int = 14, distractors: int = 100, seed: int = 4) -> dict:
    corpus = labelled_corpus(copies, distractors, seed)
    texts = corpus.texts
    truth = _pairs_of_groups(corpus.origin)
    lsh_config = dedup.Config(unit="document", threshold=THRESHOLD, num_perm=NUM_PERM,
                              exhaustive_pairs=0)
    exact_config = replace(lsh_config, exhaustive_pairs=10**12)
    systems = {
        "dedup (LSH + exact verification)": dedup_edges(texts, lsh_config),
        "dedup (exhaustive all pairs)": dedup_edges(texts, exact_config),
        "datasketch MinHashLSH": datasketch_edges(texts),
    }
    table = {name: scores(_pairs_of_groups(_components(len(texts), edges)), truth)
             for name, edges in systems.items()}

    # our LSH path against exact search on the same shingles
    left, right, jaccard, containment, norm_lengths = exact_all_pairs(texts, lsh_config)
    bands, rows = lsh_config.band_rows
    c_left, c_right = candidate_pairs(band_keys(dedup.sketch(texts, lsh_config), bands, rows),
                                      lsh_config.max_bucket)
    candidates = set(zip(c_left.tolist(), c_right.tolist()))
    high = jaccard >= THRESHOLD + 0.05
    high_pairs = list(zip(left[high].tolist(), right[high].tolist()))
    found = sum(pair in candidates for pair in high_pairs)
    partial = high & (jaccard < 1.0)
    partial_pairs = list(zip(left[partial].tolist(), right[partial].tolist()))
    exact_ok = {}
    for a, b, jac, cont in zip(left.tolist(), right.tolist(), jaccard.tolist(),
                               containment.tolist()):
        shorter = min(norm_lengths[a], norm_lengths[b])
        exact_ok[(a, b)] = jac >= THRESHOLD or (
            cont >= lsh_config.containment_threshold
            and shorter >= lsh_config.min_contained_length)
    reported = {(min(a, b), max(a, b)) for a, b in systems["dedup (LSH + exact verification)"]}
    lsh = {
        "pairs_jaccard_ge_0.85": len(high_pairs),
        "lsh_recall_vs_exact": round(found / len(high_pairs), 4) if high_pairs else 1.0,
        "pairs_0.85_le_jaccard_lt_1": len(partial_pairs),
        "lsh_recall_vs_exact_below_1": round(
            sum(p in candidates for p in partial_pairs) / len(partial_pairs), 4)
        if partial_pairs else 1.0,
        "reported_pairs": len(reported),
        "precision_vs_exact": round(sum(exact_ok[p] for p in reported) / len(reported), 4)
        if reported else 1.0,
        "bands": bands, "rows": rows,
    }
    per_edit = {}
    dedup_pairs = _pairs_of_groups(_components(len(texts), systems[
        "dedup (LSH + exact verification)"]))
    ds_pairs = _pairs_of_groups(_components(len(texts), systems["datasketch MinHashLSH"]))
    originals = {corpus.origin[i]: i for i in range(len(texts))
                 if corpus.origin[i] >= 0 and not corpus.edits[i]}
    for i, applied in enumerate(corpus.edits):
        if not applied:
            continue
        pair = tuple(sorted((i, originals[corpus.origin[i]])))
        row = per_edit.setdefault(applied[0], [0, 0, 0])
        row[0] += 1
        row[1] += pair in dedup_pairs
        row[2] += pair in ds_pairs
    return {"documents": len(texts), "true_pairs": len(truth), "systems": table, "lsh": lsh,
            "per_edit": per_edit}


def markdown(result: dict) -> str:
    lines = [f"{result['documents']} documents, {result['true_pairs']} true duplicate pairs; "
             f"threshold {THRESHOLD}, {NUM_PERM} permutations, character 5-grams.", "",
             "| system | precision | recall | F1 | predicted pairs |",
             "| --- | --- | --- | --- | --- |"]
    for name, s in result["systems"].items():
        lines.append(f"| {name} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} "
                     f"| {s['pairs']} |")
    lsh = result["lsh"]
    lines += ["", "| our LSH path vs exact all-pairs search | value |", "| --- | --- |",
              f"| pairs with Jaccard >= {THRESHOLD + 0.05:.2f} | "
              f"{lsh['pairs_jaccard_ge_0.85']} |",
              f"| recall of LSH candidates on them | {lsh['lsh_recall_vs_exact']:.4f} |",
              f"| ... of which Jaccard < 1 (not normalized-identical) | "
              f"{lsh['pairs_0.85_le_jaccard_lt_1']} |",
              f"| recall of LSH candidates on those | "
              f"{lsh['lsh_recall_vs_exact_below_1']:.4f} |",
              f"| reported pairs confirmed by exact search (precision) | "
              f"{lsh['precision_vs_exact']:.4f} of {lsh['reported_pairs']} |",
              f"| bands x rows | {lsh['bands']} x {lsh['rows']} |",
              "", "| first edit of the copy | copies | found by dedup | by datasketch |",
              "| --- | --- | --- | --- |"]
    for name, (n, ours, theirs) in sorted(result["per_edit"].items()):
        lines.append(f"| {name} | {n} | {ours} | {theirs} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=14, help="edited copies per base")
    parser.add_argument("--distractors", type=int, default=100)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)
    print(markdown(evaluate(args.copies, args.distractors, args.seed)))


if __name__ == "__main__":
    main()
