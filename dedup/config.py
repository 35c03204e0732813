"""The one frozen configuration object, validated once at construction."""

import functools
import math
from dataclasses import dataclass, fields
from typing import Literal, get_args, get_origin, get_type_hints

from dedup.errors import ConfigError

UNITS = ("paragraph", "sentence", "document")
SHINGLES = ("char", "word")
KEEPS = ("first", "longest")


def lsh_recall(threshold: float, bands: int, rows: int) -> float:
    """Probability that a pair of Jaccard `threshold` shares at least one band."""
    return 1.0 - (1.0 - threshold**rows) ** bands


def choose_bands(threshold: float, num_perm: int, recall: float) -> tuple[int, int]:
    """(bands, rows) with recall at the threshold >= `recall`, using as few false candidates as
    that allows: the most rows per band that still reach it, then the fewest bands."""
    for rows in range(num_perm, 0, -1):
        max_bands = num_perm // rows
        if lsh_recall(threshold, max_bands, rows) < recall:
            continue
        p_band = threshold**rows
        if p_band >= 1.0:
            return 1, rows
        bands = math.ceil(math.log(1.0 - recall) / math.log(1.0 - p_band) - 1e-12)
        bands = min(max(bands, 1), max_bands)
        while lsh_recall(threshold, bands, rows) < recall:  # guard the float rounding above
            bands += 1
        return bands, rows
    raise ConfigError(
        f"no banding of num_perm={num_perm} reaches lsh_recall={recall} at threshold={threshold}; "
        f"raise num_perm or lower lsh_recall"
    )


@dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of the engine.

    unit: what is compared ("paragraph": every non-blank line; "sentence"; "document").
    shingle, ngram: character or word n-grams of the normalized text.
    threshold: Jaccard similarity at or above which two units are near-duplicates.
    containment_threshold, min_contained_length: a unit whose shingles are found in a larger
        one at this share or more is a contained copy, if it has at least this many
        normalized characters (shorter phrases are not repeated paragraphs).
    num_perm, seed: MinHash permutations (datasketch's affine32 scheme, same seed meaning).
    lsh_recall: probability that a pair at the threshold becomes a candidate; bands and rows
        are chosen for it unless given.
    max_bucket: a band bucket larger than this is linked as a star, not as all pairs.
    exhaustive_pairs: when the distinct units give at most this many pairs, all of them are
        verified exactly and LSH is skipped (no misses at all).
    keep: which member of a group is kept: the "first", or the "longest".
    """

    unit: Literal["paragraph", "sentence", "document"] = "paragraph"
    shingle: Literal["char", "word"] = "char"
    ngram: int = 5
    threshold: float = 0.8
    containment_threshold: float = 0.9
    min_contained_length: int = 40
    num_perm: int = 128
    seed: int = 1
    lsh_recall: float = 0.99
    bands: int | None = None
    rows: int | None = None
    max_bucket: int = 64
    exhaustive_pairs: int = 100_000
    keep: Literal["first", "longest"] = "first"

    def __post_init__(self):
        hints = get_type_hints(type(self))
        for field in fields(self):
            value = getattr(self, field.name)
            hint = hints[field.name]
            if get_origin(hint) is Literal and value not in get_args(hint):
                choices = ", ".join(repr(c) for c in get_args(hint))
                raise ConfigError(f"{field.name} must be one of {choices}, got {value!r}")
        for name in ("ngram", "min_contained_length", "num_perm", "seed", "max_bucket",
                     "exhaustive_pairs"):
            _require_int(name, getattr(self, name))
        for name in ("bands", "rows"):
            if getattr(self, name) is not None:
                _require_int(name, getattr(self, name))
        for name in ("threshold", "containment_threshold", "lsh_recall"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}")
            if not 0 < value <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
        if self.lsh_recall >= 1:
            raise ConfigError(f"lsh_recall must be in (0, 1), got {self.lsh_recall!r}")
        if not 1 <= self.ngram <= 64:
            raise ConfigError(f"ngram must be in [1, 64], got {self.ngram!r}")
        if not 1 <= self.num_perm <= 1024:
            raise ConfigError(f"num_perm must be in [1, 1024], got {self.num_perm!r}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed!r}")
        if self.min_contained_length < 0:
            raise ConfigError(f"min_contained_length must be >= 0, got {self.min_contained_length!r}")
        if self.max_bucket < 2:
            raise ConfigError(f"max_bucket must be >= 2, got {self.max_bucket!r}")
        if self.exhaustive_pairs < 0:
            raise ConfigError(f"exhaustive_pairs must be >= 0, got {self.exhaustive_pairs!r}")
        if (self.bands is None) != (self.rows is None):
            raise ConfigError(f"bands and rows go together: got bands={self.bands!r}, rows={self.rows!r}")
        if self.bands is not None:
            if self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm:
                raise ConfigError(
                    f"bands * rows must be in [1, num_perm={self.num_perm}], "
                    f"got bands={self.bands} and rows={self.rows}"
                )
        else:
            choose_bands(self.threshold, self.num_perm, self.lsh_recall)  # raises if impossible

    @functools.cached_property  # a frozen instance: computed once, on first use
    def band_rows(self) -> tuple[int, int]:
        """(bands, rows) of the LSH index."""
        if self.bands is not None:
            return self.bands, self.rows
        return choose_bands(self.threshold, self.num_perm, self.lsh_recall)

    def to_dict(self) -> dict:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def _require_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
