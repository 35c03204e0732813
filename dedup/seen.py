"""`dedup run --index`: a corpus deduplicated against everything a dedup.Index holds.

A daily crawl is run against the index of all previous days:

- a unit of the run (a document, or a paragraph at paragraph level) that repeats a stored unit
  of the same kind (exact, near or contained in it: the batch path's thresholds, verified on
  exact shingle sets) is removed (or flagged) with dup_of naming the key of the first stored
  document holding that unit, and dup_start/dup_end its span there for paragraphs; such rows
  have no group (group, group_size and group_min_similarity are None);
- the other units are grouped among themselves exactly as in a run without an index: a unit
  matched in the index never serves as the kept copy of anything, and nothing is removed by
  transitivity through it;
- unless the index is read only, the records written to the output are stored in it, their
  record id as key and their text as written (repeats removed in collapse mode), all in one
  SQLite transaction that commits only once the outputs are in place: a run that fails or is
  interrupted leaves the index as it was (in flag mode every record is written, so stored).
  A run repeated after its records were stored finds each of them seen before (by itself):
  redo a run with the index read only. A record whose id the index already holds with
  another text is not stored (counted as a key conflict); give unique ids with --id-field
  (the default FILE:LINE repeats when every day's file has the same name).

Candidates: the run's band keys (computed in pass 1 anyway) are looked up in the index's
buckets all at once; only the units sharing a bucket with a stored unit are read again, in
one streamed pass over their records, and matched with Index.match.
"""

import time

import numpy as np

from dedup.config import Config
from dedup.errors import ConfigError
from dedup.index import Index

_FLUSH_CHARS = 4_000_000  # text held before it is handed to the index


class SeenBefore:
    """An Index used as the memory of earlier runs by one `dedup run` (see the module)."""

    def __init__(self, index: Index, config: Config, is_updating: bool):
        self.index = index
        self.config = config
        self.is_updating = is_updating
        self.kind = "document" if config.unit == "document" else "paragraph"
        self.head_match = {}  # head unit -> UnitMatch
        self.is_matched = np.zeros(0, dtype=bool)
        self.head_of = None
        self.sketch = None
        self.documents_before = len(index)
        self.counts = {"added": 0, "unchanged": 0, "conflicts": 0, "empty": 0}
        self.timings = {"match": 0.0, "update": 0.0}
        self._pending = []
        self._pending_chars = 0
        self._bulk = None   # the open Index.bulk() context while the write pass stores records
        self._adder = None

    @classmethod
    def open(cls, path, config: Config, read_only: bool = False) -> "SeenBefore":
        """Open (or, unless read_only, create) the index at `path` for a run with `config`.
        Raises ConfigError at sentence level or when the index's settings differ from the
        run's, InputError for a path that is not a usable index."""
        if config.unit not in ("document", "paragraph"):
            raise ConfigError(f"--index works at document or paragraph level, not "
                              f"{config.unit!r}")
        return cls(Index.open(path, config, read_only=read_only), config, not read_only)

    # ---- before grouping ------------------------------------------------------------------

    def match(self, sk, heads, head_of, read, batch_chars) -> np.ndarray:
        """Find the run's units that repeat a stored unit; returns the heads left to group.

        sk: the run's Sketch after pass 1 (band keys still set); heads, head_of: its exact
        classes (units with the same text share their head's answer). read(wanted) streams the
        records again (wanted: bool per record), as make_plan's."""
        clock = time.perf_counter()
        self.sketch, self.head_of = sk, head_of
        n_units = sk.n_units
        matched_heads = np.zeros(n_units, dtype=bool)
        if heads.size and len(self.index):
            hit = self.index.may_match(sk.keys[heads], self.kind)
            asked = heads[hit]
            if asked.size:
                self._match_units(sk, asked, read, batch_chars)
                matched_heads[list(self.head_match)] = True
        self.is_matched = np.zeros(n_units, dtype=bool)
        has_head = head_of >= 0
        self.is_matched[has_head] = matched_heads[head_of[has_head]]
        self.timings["match"] += time.perf_counter() - clock
        return heads[~matched_heads[heads]]

    def _match_units(self, sk, asked, read, batch_chars):
        from dedup.corpus import batched, records_holding

        is_asked = np.zeros(sk.n_units, dtype=bool)
        is_asked[asked] = True
        wanted = records_holding(sk, asked)
        next_record = 0
        for batch in batched(read(wanted), batch_chars):
            r0 = next_record
            next_record += len(batch)
            u0, u1 = int(sk.record_units[r0]), int(sk.record_units[next_record])
            units = np.flatnonzero(is_asked[u0:u1]) + u0
            if not units.size:
                continue
            texts = [batch[r - r0].text[s:e] for r, s, e in zip(
                sk.unit_record[units].tolist(), sk.unit_start[units].tolist(),
                sk.unit_end[units].tolist())]
            for unit, found in zip(units.tolist(), self.index.match(texts, self.kind)):
                if found is not None:
                    self.head_match[unit] = found

    def decide(self, decisions):
        """Mark the matched units in the run's Decisions (kind and similarity; no group)."""
        from dedup.corpus import _KIND_CODE

        units = np.flatnonzero(self.is_matched)
        if not units.size:
            return
        heads = self.head_of[units].tolist()
        decisions.kind[units] = [_KIND_CODE[self.head_match[h].kind] for h in heads]
        decisions.similarity[units] = [self.head_match[h].similarity for h in heads]

    def row(self, record_id: str, unit: int, with_span: bool):
        """The report row of a matched unit: dup_of is the stored key, no group."""
        from dedup.corpus import Duplicate

        found = self.head_match[int(self.head_of[unit])]
        sk = self.sketch
        return Duplicate(
            id=record_id,
            start=int(sk.unit_start[unit]) if with_span else None,
            end=int(sk.unit_end[unit]) if with_span else None,
            kind=found.kind, similarity=found.similarity, dup_of=found.key,
            dup_start=found.start if with_span else None,
            dup_end=found.end if with_span else None,
            group=None, group_size=None, group_min_similarity=None,
        )

    # ---- the write pass and after ---------------------------------------------------------

    def keep(self, record_id: str, text: str):
        """A record written to the output: stored in the index at the end of the run."""
        if not self.is_updating:
            return
        self._pending.append((record_id, text))
        self._pending_chars += len(text)
        if self._pending_chars >= _FLUSH_CHARS:
            self._flush()

    def _flush(self):
        if not self._pending:
            return
        clock = time.perf_counter()
        if self._bulk is None:
            self._bulk = self.index.bulk()
            self._adder = self._bulk.__enter__()
        done = self._adder.add(self._pending)
        for name in self.counts:
            self.counts[name] += getattr(done, name)
        self._pending, self._pending_chars = [], 0
        self.timings["update"] += time.perf_counter() - clock

    def finish(self):
        """Hand the last kept records to the index (still uncommitted)."""
        self._flush()

    def commit(self):
        """Commit what the run stored: called once its outputs are in place."""
        if self._bulk is not None:
            clock = time.perf_counter()
            bulk, self._bulk = self._bulk, None
            bulk.__exit__(None, None, None)
            self.timings["update"] += time.perf_counter() - clock

    def close(self):
        """Roll back whatever was not committed, and close the index."""
        if self._bulk is not None:
            bulk, self._bulk = self._bulk, None
            error = RuntimeError("the run did not complete")
            bulk.__exit__(RuntimeError, error, None)
        self.index.close()

    def summary(self) -> dict:
        n_matched = int(np.count_nonzero(self.is_matched))
        return {
            "path": str(self.index.path),
            "updated": self.is_updating,
            "documents_before": self.documents_before,
            "matched_units": n_matched,
            "added": self.counts["added"],
            "unchanged": self.counts["unchanged"],
            "key_conflicts": self.counts["conflicts"],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }
