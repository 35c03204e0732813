"""The public single-text API: find_repeats, flag, collapse, explain, sketch."""

import difflib
from dataclasses import replace
from typing import Sequence

import numpy as np

from dedup.config import Config
from dedup.errors import ConfigError, InputError
from dedup.kernels.band import band_keys
from dedup.kernels.verify import intersection_size
from dedup.pipeline import (
    CONTAINED, EXACT, NEAR, codepoints, find_groups, kernel_threads, prepare, signatures,
    utf8_signatures,
)
from dedup.results import Explanation, Flag, Member, Passage, RepeatGroup
from dedup.units import Units, split_units


def _config(config) -> Config:
    if config is None:
        return Config()
    if not isinstance(config, Config):
        raise ConfigError(f"config must be a dedup.Config, got {type(config).__name__}")
    return config


def _text(text, name="text") -> str:
    if not isinstance(text, str):
        raise InputError(f"{name} must be a str, got {type(text).__name__}")
    return text


def _analyse(text: str, config: Config) -> tuple[Units, list]:
    units = split_units(text, config.unit)
    if len(units) == 0:
        return units, []
    with kernel_threads(len(text)):
        prepared = prepare(codepoints(text), units.starts, units.ends, config)
        return units, find_groups(prepared, config)


def _member(text, units, assignment) -> Member:
    unit = assignment.unit
    start, end = int(units.starts[unit]), int(units.ends[unit])
    return Member(start, end, int(units.lines[unit]), assignment.kind,
                  float(assignment.similarity), text[start:end])


def find_repeats(text: str, config: Config | None = None) -> list[RepeatGroup]:
    """Groups of units of `text` that repeat one another.

    Every non-representative member was verified on exact shingle sets against the
    representative: kind "exact" (same normalized text), "near" (Jaccard >= threshold) or
    "contained" (>= containment_threshold of its shingles in the representative). Groups are in
    the order of their first member; spans are character offsets, lines 1-based.

    >>> [g.lines for g in find_repeats("Hello there, world!\\nsomething else\\nhello there world")]
    [(1, 3)]
    """
    config = _config(config)
    text = _text(text)
    units, groups = _analyse(text, config)
    result = []
    for group in groups:
        members = sorted((_member(text, units, a) for a in group), key=lambda m: m.start)
        result.append(RepeatGroup(tuple(members)))
    return result


def flag(text: str, config: Config | None = None) -> list[Flag]:
    """Every unit of `text` in order, flagged with what it repeats (kind None if nothing).

    >>> [(f.line, f.kind, f.repeats_line) for f in flag("A title here\\nbody text\\nA title here")]
    [(1, None, None), (2, None, None), (3, 'exact', 1)]
    """
    config = _config(config)
    text = _text(text)
    units, groups = _analyse(text, config)
    by_unit = {}
    for index, group in enumerate(groups):
        rep = group[0].unit
        for assignment in group:
            by_unit[assignment.unit] = (index, rep, assignment)
    flags = []
    for unit in range(len(units)):
        start, end, line = int(units.starts[unit]), int(units.ends[unit]), int(units.lines[unit])
        if unit not in by_unit:
            flags.append(Flag(start, end, line, None, None, None, None, None, None))
            continue
        index, rep, assignment = by_unit[unit]
        if assignment.kind is None:
            flags.append(Flag(start, end, line, None, None, None, None, None, index))
        else:
            flags.append(Flag(start, end, line, assignment.kind, float(assignment.similarity),
                              int(units.starts[rep]), int(units.ends[rep]),
                              int(units.lines[rep]), index))
    return flags


def removal_ranges(text: str, units: Units, removed) -> list[tuple[int, int]]:
    """Character ranges to cut so that removed units vanish with one separator each.

    A unit alone on its line goes with its line and the line break(s) before it, so the
    separation after it (a single or a blank line) is what remains between its neighbours; a
    unit sharing its line (a sentence) goes with the white space up to the next unit.
    """
    line_index = (units.lines - 1).tolist()  # lists index faster than numpy scalars
    starts, ends = units.starts.tolist(), units.ends.tolist()
    line_starts, line_ends = units.line_starts, units.line_ends
    n = len(units)
    ranges = []
    for k in sorted(removed):
        start, end, line = starts[k], ends[k], line_index[k]
        if k + 1 < n and line_index[k + 1] == line:
            ranges.append((start, starts[k + 1]))
        elif k > 0 and line_index[k - 1] == line:
            ranges.append((ends[k - 1], end))
        elif k > 0:
            ranges.append((line_ends[line_index[k - 1]], line_ends[line]))
        elif k + 1 < n:
            ranges.append((line_starts[line], line_starts[line_index[k + 1]]))
        else:
            ranges.append((line_starts[line], len(text)))
    merged = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def collapse(text: str, config: Config | None = None, keep: str | None = None) -> str:
    """`text` with every repeat removed and everything else exactly as it was.

    keep ("first" or "longest") overrides config.keep. Whatever it is, a contained copy is the
    one removed and its container kept, so no text found nowhere else is dropped.

    >>> collapse("Breaking news today\\n\\nBody of the story\\n\\nBreaking news today\\n")
    'Breaking news today\\n\\nBody of the story\\n'
    """
    config = _config(config)
    if keep is not None:
        config = replace(config, keep=keep)
    text = _text(text)
    units, groups = _analyse(text, config)
    removed = [a.unit for group in groups for a in group if a.kind is not None]
    if not removed:
        return text
    pieces = []
    pos = 0
    for start, end in removal_ranges(text, units, removed):
        pieces.append(text[pos:start])
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def _normalized_string(prepared, unit) -> str:
    lo, hi = prepared.norm_offsets[unit], prepared.norm_offsets[unit + 1]
    return prepared.norm[lo:hi].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def explain(a: str, b: str, config: Config | None = None, max_passages: int = 5) -> Explanation:
    """Why two texts match or not: exact Jaccard, containment both ways, the MinHash estimate,
    which LSH bands collided, and the longest shared passages as character spans of each.

    The passages come from difflib on the normalized texts: meant for articles, not megabytes.

    >>> e = explain("The quick brown fox jumps", "the quick brown fox, jumps!")
    >>> e.verdict, e.jaccard
    ('exact', 1.0)
    """
    config = _config(config)
    a, b = _text(a, "a"), _text(b, "b")
    text = a + b
    starts = np.array([0, len(a)], dtype=np.int64)
    ends = np.array([len(a), len(text)], dtype=np.int64)
    with kernel_threads(len(text)):
        prepared = prepare(codepoints(text), starts, ends, config, keep_normalized=True)
        sigs = signatures(prepared.shingles, prepared.shingle_offsets, config)
        n_bands, rows = config.band_rows
        keys = band_keys(sigs, n_bands, rows)
    offsets = prepared.shingle_offsets
    size_a, size_b = (int(s) for s in prepared.sizes)
    shared = intersection_size(prepared.shingles, offsets[0], offsets[1], offsets[1], offsets[2])
    is_empty = size_a == 0 or size_b == 0
    collided = () if is_empty else tuple(int(i) for i in np.flatnonzero(keys[0] == keys[1]))
    estimate = 0.0 if is_empty else float(np.mean(sigs[0] == sigs[1]))
    lengths = prepared.norm_lengths
    jac = shared / (size_a + size_b - shared) if size_a and size_b else 0.0
    in_b = shared / size_a if size_a else 0.0
    in_a = shared / size_b if size_b else 0.0
    if is_empty:
        verdict = None
    elif prepared.hashes[0] == prepared.hashes[1]:
        verdict = EXACT
    elif jac >= config.threshold:
        verdict = NEAR
    elif max(in_b, in_a) >= config.containment_threshold \
            and min(lengths) >= config.min_contained_length:
        verdict = CONTAINED
    else:
        verdict = None
    return Explanation(
        verdict=verdict, jaccard=jac, containment_a_in_b=in_b, containment_b_in_a=in_a,
        minhash_estimate=estimate, bands=n_bands, rows=rows, bands_collided=collided,
        shingles_a=size_a, shingles_b=size_b, shingles_shared=shared,
        passages=_passages(prepared, len(a), config.ngram, max_passages),
    )


def _passages(prepared, offset_b, min_length, max_passages) -> tuple[Passage, ...]:
    norm_a, norm_b = _normalized_string(prepared, 0), _normalized_string(prepared, 1)
    origins_a = prepared.origins[prepared.norm_offsets[0]:prepared.norm_offsets[1]]
    origins_b = prepared.origins[prepared.norm_offsets[1]:prepared.norm_offsets[2]] - offset_b
    matcher = difflib.SequenceMatcher(None, norm_a, norm_b, autojunk=False)
    blocks = [blk for blk in matcher.get_matching_blocks() if blk.size >= min_length]
    blocks.sort(key=lambda blk: (-blk.size, blk.a))
    return tuple(
        Passage(int(origins_a[blk.a]), int(origins_a[blk.a + blk.size - 1]) + 1,
                int(origins_b[blk.b]), int(origins_b[blk.b + blk.size - 1]) + 1, blk.size)
        for blk in blocks[:max_passages]
    )


def sketch(texts: Sequence[str], config: Config | None = None) -> np.ndarray:
    """MinHash signatures of whole texts, uint32[len(texts), num_perm].

    The whole batch is encoded once and normalized, shingled and hashed in kernels; the values
    are datasketch's affine32 signatures of our shingle hashes (see to_lean_minhash).
    """
    config = _config(config)
    try:
        # UTF-8 per text: the cheapest way out of Python strings (an ASCII text is a copy)
        encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    except AttributeError:
        for i, t in enumerate(texts):
            _text(t, f"texts[{i}]")
        raise
    return utf8_signatures(encoded, config)


def to_lean_minhash(signature, config: Config | None = None):
    """A datasketch LeanMinHash holding one row of our signatures (datasketch must be installed).

    Comparable with datasketch MinHashes of the same seed and num_perm in scheme "affine32".
    """
    config = _config(config)
    from datasketch import LeanMinHash  # optional: only users who interoperate need it

    return LeanMinHash(seed=config.seed, hashvalues=np.asarray(signature, dtype=np.uint32),
                       scheme="affine32")
