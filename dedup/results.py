"""Results: frozen dataclasses with to_dict(). Spans are (start, end) character offsets."""

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Member:
    """One occurrence in a group. kind is None for the representative (the copy kept), else
    "exact", "near" (Jaccard >= threshold) or "contained" (its shingles found in the
    representative); similarity is 1.0, the Jaccard, or the containment accordingly."""

    start: int
    end: int
    line: int
    kind: str | None
    similarity: float
    text: str

    @property
    def is_representative(self) -> bool:
        return self.kind is None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RepeatGroup:
    """Units that repeat one another: members in text order, one of them the representative."""

    members: tuple[Member, ...]

    @property
    def representative(self) -> Member:
        return next(m for m in self.members if m.is_representative)

    @property
    def repeats(self) -> tuple[Member, ...]:
        """The members that are not the representative."""
        return tuple(m for m in self.members if not m.is_representative)

    @property
    def min_similarity(self) -> float:
        return min(m.similarity for m in self.repeats)

    @property
    def lines(self) -> tuple[int, ...]:
        return tuple(m.line for m in self.members)

    def to_dict(self) -> dict:
        return {
            "members": [m.to_dict() for m in self.members],
            "representative": self.members.index(self.representative),
            "min_similarity": self.min_similarity,
        }


@dataclass(frozen=True)
class Flag:
    """A unit of the text with its flag: kind None when it repeats nothing; for a repeat, the
    span and line of the representative it repeats; group indexes find_repeats' list."""

    start: int
    end: int
    line: int
    kind: str | None
    similarity: float | None
    repeats_start: int | None
    repeats_end: int | None
    repeats_line: int | None
    group: int | None

    @property
    def is_repeat(self) -> bool:
        return self.kind is not None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Passage:
    """A passage shared by two texts: its span in each."""

    a_start: int
    a_end: int
    b_start: int
    b_end: int
    length: int  # normalized characters

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Explanation:
    """Why two texts match or not (see dedup.explain)."""

    verdict: str | None  # "exact", "near", "contained" or None
    jaccard: float
    containment_a_in_b: float
    containment_b_in_a: float
    minhash_estimate: float
    bands: int
    rows: int
    bands_collided: tuple[int, ...]
    shingles_a: int
    shingles_b: int
    shingles_shared: int
    passages: tuple[Passage, ...]

    @property
    def is_candidate(self) -> bool:
        """Whether LSH would propose the pair (at least one band collided)."""
        return bool(self.bands_collided)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["bands_collided"] = list(self.bands_collided)
        data["is_candidate"] = self.is_candidate
        return data


@dataclass(frozen=True)
class DocumentMatch:
    """A stored document that a checked text repeats or overlaps (see dedup.Index).

    kind: "exact" (same normalized text), "near" (Jaccard >= threshold) or "contained" (the
    smaller one's shingles found in the larger); similarity is 1.0, the Jaccard, or the
    containment accordingly. is_inside_stored: the checked text is the smaller side (True for
    exact and near too), so it adds nothing the stored one lacks. key is the first stored
    document with that normalized text; copies counts the stored documents that have it.
    """

    key: str
    kind: str
    similarity: float
    jaccard: float
    containment: float
    is_inside_stored: bool
    copies: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ParagraphRepeat:
    """A paragraph of a checked text that repeats a stored paragraph (key set: the first stored
    document holding it, repeats_* its span and line there) or an earlier paragraph of the
    same text (key None, repeats_* in the checked text). kind and similarity as in Member."""

    start: int
    end: int
    line: int
    kind: str
    similarity: float
    key: str | None
    repeats_start: int
    repeats_end: int
    repeats_line: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """What dedup.Index found for one text: the stored documents it matches (best first: exact,
    then near, then contained, each by similarity) and its repeated paragraphs (text order).

    key: the key given to add (None for check); is_added: whether this call stored the text
    (False for check, and for an add whose key already holds this very text).
    """

    key: str | None
    is_added: bool
    matches: tuple[DocumentMatch, ...]
    paragraphs: tuple[ParagraphRepeat, ...]
    n_paragraphs: int

    @property
    def is_duplicate(self) -> bool:
        """Whether a stored document already holds this text (exact, near, or contains it)."""
        return any(m.is_inside_stored for m in self.matches)

    @property
    def duplicate_of(self) -> str | None:
        """Key of the best stored document that holds this text, or None."""
        return next((m.key for m in self.matches if m.is_inside_stored), None)

    @property
    def is_new(self) -> bool:
        """Neither a duplicate nor carrying a repeated paragraph."""
        return not self.is_duplicate and not self.paragraphs

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "is_added": self.is_added,
            "is_duplicate": self.is_duplicate,
            "duplicate_of": self.duplicate_of,
            "matches": [m.to_dict() for m in self.matches],
            "paragraphs": [p.to_dict() for p in self.paragraphs],
            "n_paragraphs": self.n_paragraphs,
        }


@dataclass(frozen=True)
class UnitMatch:
    """The stored unit that a text repeats, as dedup.Index.match finds it: kind "exact", "near"
    or "contained" (the text inside the stored unit), similarity as in Member. key is the first
    stored document holding the unit; start, end and line its span there (None for a document).
    """

    kind: str
    similarity: float
    key: str
    start: int | None
    end: int | None
    line: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def maker(cls):
    """A function making cls(*values) for a frozen dataclass with no __post_init__, without
    its __init__'s object.__setattr__ per field (1.2 against 2.2 us for a ParagraphRepeat):
    for the verdicts dedup.Index builds by the dozen a call. Equal, hashing and printing alike."""
    names = tuple(field.name for field in fields(cls))
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__ that maker would skip")
    new = object.__new__

    def make(*values):
        made = new(cls)
        made.__dict__.update(zip(names, values))
        return made
    return make
