"""Slow, obviously-correct twins of the kernels, written from the definitions.

Sets are Python sets, union-find is a graph search, normalization works on whole strings with
unicodedata. Each kernel test compares a kernel with its twin here.
"""

import itertools
import unicodedata

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1

FOLDS = {
    "\u0622": "\u0627", "\u0623": "\u0627", "\u0625": "\u0627", "\u0671": "\u0627",
    "\u0672": "\u0627", "\u0673": "\u0627", "\u0649": "\u064a", "\u06cc": "\u064a",
    "\u06a9": "\u0643", "\u0629": "\u0647", "\u0640": "",
}


def _compat_caseless(text):
    # Unicode's compatibility caseless form, twice over to reach a fixed point
    for _ in range(2):
        text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return text


def normalize(text: str, keep_separators: bool) -> str:
    """The normalized form of a whole string, from the definition in DESIGN.md.

    Separators (white space, punctuation, symbols) become one space between words when
    keep_separators, else vanish. Not defined for Hangul (kept whole by the engine).
    """
    out = []
    pending = False
    for char in _compat_caseless(text):
        category = unicodedata.category(char)
        if char.isspace() or category[0] in "ZPS":
            pending = keep_separators and bool(out)
            continue
        if category in ("Mn", "Me", "Cf", "Cs", "Cc"):
            continue
        char = FOLDS.get(char, char)
        digit = unicodedata.decimal(char, None) if char else None
        char = str(digit) if digit is not None else char
        if not char:
            continue
        if pending:
            out.append(" ")
            pending = False
        out.append(char)
    return "".join(out)


def rotl64(x, r):
    return ((x << r) | (x >> (64 - r))) & MASK64


def fmix64(h):
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F


def hash_sequence(items, seed=0):
    """The engine's documented n-gram hash of a sequence of integers (its definition)."""
    h = seed
    for item in items:
        h = rotl64(((h ^ item) * P1) & MASK64, 29)
    return fmix64(h ^ ((len(items) * P2) & MASK64) ^ seed)


def char_shingles(norm: str, n: int) -> set:
    """Set of character n-grams (strings); a non-empty string shorter than n is one shingle."""
    if not norm:
        return set()
    width = min(n, len(norm))
    return {norm[i:i + width] for i in range(len(norm) - width + 1)}


def word_shingles(norm: str, n: int) -> set:
    """Set of word n-grams (tuples of words)."""
    words = norm.split(" ") if norm else []
    if not words:
        return set()
    width = min(n, len(words))
    return {tuple(words[i:i + width]) for i in range(len(words) - width + 1)}


def jaccard(a: set, b: set) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def containment(a: set, b: set) -> float:
    """Share of the smaller set found in the larger."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    return h ^ (h >> 16)


def minhash(hashes, perm_a, perm_b):
    """min over the set of (a * fmix32(h) + b) mod 2^32 per permutation, h's low 32 bits."""
    signature = []
    for a, b in zip(perm_a, perm_b):
        values = [(int(a) * fmix32(int(h) & MASK32) + int(b)) & MASK32 for h in hashes]
        signature.append(min(values) if values else MASK32)
    return signature


def lsh_candidates(signatures, bands, rows, max_bucket):
    """Pairs sharing a band (a dict of buckets); buckets over max_bucket link as a star."""
    pairs = set()
    for band in range(bands):
        buckets = {}
        for unit, signature in enumerate(signatures):
            key = tuple(signature[band * rows:(band + 1) * rows])
            buckets.setdefault(key, []).append(unit)
        for members in buckets.values():
            if len(members) > max_bucket:
                pairs.update((members[0], other) for other in members[1:])
            else:
                pairs.update(itertools.combinations(members, 2))
    return pairs


def components(n, edges):
    """Connected components by graph search: label = smallest member."""
    adjacency = {u: set() for u in range(n)}
    for a, b in edges:
        adjacency[a].add(b)
        adjacency[b].add(a)
    labels = [None] * n
    for start in range(n):
        if labels[start] is not None:
            continue
        stack, seen = [start], {start}
        while stack:
            node = stack.pop()
            for other in adjacency[node]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        for node in seen:
            labels[node] = min(seen)
    return labels
