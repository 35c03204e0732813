"""The code-point table that drives normalization.

Every code point maps to one of: itself or another single code point (value >= 0), nothing
(DROP), a separator (SEPARATOR: white space), punctuation or a symbol (PUNCT), or a short
sequence (EXPANSION_BASE - k, the k-th row of `exp_values`/`exp_offsets`, e.g. "ﬁ" -> "fi").

The mapping, per character (never across characters): NFKC, case folding, compatibility
decomposition with combining marks removed (Arabic harakat, Latin accents), tatweel removed, Arabic letter variants folded (alef
forms, alef maqsura, teh marbuta, Persian kaf and yeh), digits of every script to ASCII,
punctuation and symbols to PUNCT, white space to SEPARATOR, format and control characters
and lone surrogates dropped; applied until it no longer changes, so normalizing twice equals
normalizing once.

Building the table takes about a second, so it is cached on disk per Unicode version.
"""

import os
import tempfile
import unicodedata
from pathlib import Path

import numpy as np

from dedup.kernels.normalize import DROP, EXPANSION_BASE, PUNCT, SEPARATOR

# Bump when the mapping changes: stored indexes record it (their shingles depend on it).
NORMALIZATION_VERSION = 2
N_CODEPOINTS = 0x110000

_LETTER_FOLDS = {
    "\u0622": "\u0627",  # alef with madda above
    "\u0623": "\u0627",  # alef with hamza above
    "\u0625": "\u0627",  # alef with hamza below
    "\u0671": "\u0627",  # alef wasla
    "\u0672": "\u0627",
    "\u0673": "\u0627",
    "\u0649": "\u064a",  # alef maqsura -> yeh
    "\u06cc": "\u064a",  # Farsi yeh -> yeh
    "\u06a9": "\u0643",  # keheh -> kaf
    "\u0629": "\u0647",  # teh marbuta -> heh
    "\u0640": "",  # tatweel
}
_DROPPED_CATEGORIES = {"Mn", "Me", "Cf", "Cs"}
# Hangul syllables stay whole (decomposing them to jamo would make a 5-gram two syllables);
# the price: a text written in conjoining jamo does not equal the same text in syllables.
_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3


def _decompose(text: str) -> str:
    return "".join(
        char if _HANGUL_FIRST <= ord(char) <= _HANGUL_LAST else unicodedata.normalize("NFKD", char)
        for char in text
    )


def _map_string(text: str) -> list:
    """Map a short string to a list of characters and markers (one pass)."""
    out = []
    for char in _decompose(unicodedata.normalize("NFKC", text).casefold()):
        category = unicodedata.category(char)
        if char.isspace() or category.startswith("Z"):
            out.append(SEPARATOR)
        elif category in _DROPPED_CATEGORIES or category == "Cc":
            continue
        elif category[0] in "PS":
            out.append(PUNCT)
        elif char in _LETTER_FOLDS:
            out.extend(_LETTER_FOLDS[char])
        else:
            digit = unicodedata.decimal(char, None)
            out.append(str(digit) if digit is not None else char)
    return out


def _map_char(char: str) -> list:
    mapped = _map_string(char)
    for _ in range(8):  # to a fixed point: the table must be idempotent
        again = []
        for item in mapped:
            again.extend(_map_string(item) if isinstance(item, str) else [item])
        if again == mapped:
            return mapped
        mapped = again
    raise RuntimeError(f"normalization of U+{ord(char):04X} does not converge")


def build_table():
    """Compute (table int32[0x110000], exp_offsets int32[], exp_values int32[])."""
    table = np.arange(N_CODEPOINTS, dtype=np.int32)
    exp_offsets = [0]
    exp_values = []
    for cp in range(N_CODEPOINTS):
        char = chr(cp)
        category = unicodedata.category(char)
        if category in ("Cn", "Co") or _HANGUL_FIRST <= cp <= _HANGUL_LAST:
            continue  # unassigned, private use, Hangul syllables: kept as they are
        if category == "Cc":
            table[cp] = SEPARATOR if char.isspace() else DROP
            continue
        mapped = _map_char(char)
        codes = [item if isinstance(item, int) else ord(item) for item in mapped]
        if len(codes) == 0:
            table[cp] = DROP
        elif len(codes) == 1:
            table[cp] = codes[0]
        else:
            table[cp] = EXPANSION_BASE - (len(exp_offsets) - 1)
            exp_values.extend(codes)
            exp_offsets.append(len(exp_values))
    return table, np.array(exp_offsets, dtype=np.int32), np.array(exp_values, dtype=np.int32)


def _cache_dir() -> Path:
    base = os.environ.get("DEDUP_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "dedup" if base else Path.home() / ".cache" / "dedup"


_TABLE = None


def load_table():
    """The table, from memory, the disk cache, or built (and cached) on first use."""
    global _TABLE
    if _TABLE is not None:
        return _TABLE
    name = f"normtable-v{NORMALIZATION_VERSION}-unicode{unicodedata.unidata_version}.npz"
    path = _cache_dir() / name
    try:
        with np.load(path) as data:
            _TABLE = (data["table"], data["exp_offsets"], data["exp_values"])
            return _TABLE
    except (OSError, KeyError, ValueError):
        pass
    _TABLE = build_table()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, table=_TABLE[0], exp_offsets=_TABLE[1], exp_values=_TABLE[2])
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the table is rebuilt by each process, still correct
    return _TABLE
