"""The quality evaluation (bench/quality.py) on a small labelled corpus: our LSH path finds
what exact search finds, reports nothing exact search does not confirm, and does at least as
well as datasketch's MinHashLSH at the same settings."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # bench/ lives beside tests/; appended so dedup stays as installed

pytest.importorskip("datasketch")
quality = pytest.importorskip("bench.quality")


@pytest.fixture(scope="module")
def result():
    return quality.evaluate(copies=4, distractors=20, seed=4)


def test_lsh_recall_against_exact_search(result):
    assert result["lsh"]["pairs_jaccard_ge_0.85"] > 0
    assert result["lsh"]["lsh_recall_vs_exact"] >= 0.98


def test_every_reported_pair_is_confirmed_by_exact_search(result):
    assert result["lsh"]["precision_vs_exact"] == 1.0


def test_precision_one_and_f1_at_least_datasketchs(result):
    ours = result["systems"]["dedup (LSH + exact verification)"]
    theirs = result["systems"]["datasketch MinHashLSH"]
    assert ours["precision"] == 1.0
    assert ours["f1"] >= theirs["f1"]


def test_every_edit_kind_is_in_the_corpus(result):
    assert set(result["per_edit"]) == set(quality.EDITS)


def test_markdown_report(result):
    text = quality.markdown(result)
    assert "| dedup (LSH + exact verification) |" in text and "precision" in text
