"""Near-duplicate and repetition detection for text.

>>> import dedup
>>> [g.lines for g in dedup.find_repeats("Title\\n\\nBody text here\\n\\nTitle")]
[(1, 5)]
"""

from pathlib import Path

if not (Path(__file__).parent / "kernels").is_dir():
    # A source checkout: the package's kernels live in the top-level kernels/ folder (an
    # installed wheel has them at dedup/kernels, see pyproject.toml).
    __path__.append(str(Path(__file__).resolve().parent.parent))

from dedup.api import collapse, explain, find_repeats, flag, sketch, to_lean_minhash  # noqa: E402
from dedup.config import Config  # noqa: E402
from dedup.corpus import Deduplicated, Duplicate, KeptRecord, deduplicate  # noqa: E402
from dedup.errors import ConfigError, DedupError, InputError  # noqa: E402
from dedup.index import Index  # noqa: E402
from dedup.results import (  # noqa: E402
    DocumentMatch, Explanation, Flag, Member, ParagraphRepeat, Passage, RepeatGroup, Verdict,
)

__version__ = "0.1.0"
__all__ = [
    "Config", "ConfigError", "DedupError", "Deduplicated", "DocumentMatch", "Duplicate",
    "Explanation", "Flag", "Index", "InputError", "KeptRecord", "Member", "ParagraphRepeat",
    "Passage", "RepeatGroup", "Verdict", "collapse", "deduplicate", "explain", "find_repeats",
    "flag", "sketch", "to_lean_minhash", "__version__",
]
