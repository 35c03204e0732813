import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from dedup.kernels.normalize import SPACE, normalize_units
from dedup.normtable import load_table
from dedup.pipeline import codepoints

# Hangul is kept whole by the engine and is out of the reference's definition.
TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in range(0x1100, 0x1200)]
        + [chr(c) for c in range(0x3130, 0x3190)] + [chr(c) for c in range(0xAC00, 0xD7A4)]
        + [chr(c) for c in range(0xA960, 0xA980)] + [chr(c) for c in range(0xD7B0, 0xD800)]
        + [chr(c) for c in range(0xFFA0, 0xFFDD)] + [chr(c) for c in range(0x3200, 0x3280)],
    ),
    max_size=60,
)


def normalize(text, keep_separators=False, with_origins=False):
    table, exp_offsets, exp_values = load_table()
    values, offsets, origins = normalize_units(
        codepoints(text), np.array([0]), np.array([len(text)]), table, exp_offsets, exp_values,
        keep_separators, with_origins,
    )
    as_text = values.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
    return (as_text, origins) if with_origins else as_text


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("مُحَمَّد", "محمد"),  # harakat
        ("الحـــرب", "الحرب"),  # tatweel
        ("أحمد إلى آخر ٱلله", "احمدالياخرالله"),  # alef forms, alef maqsura
        ("مدرسة", "مدرسه"),  # teh marbuta
        ("فيالبيت", "فيالبيت"),
        ("في البيت", "فيالبيت"),  # white space dropped for character shingles
        ("Café crème", "cafecreme"),  # Latin accents
        ("ＦＵＬＬ　ｗｉｄｔｈ１２", "fullwidth12"),  # full-width forms
        ("“quoted” «arabic» 'single' \"double\"", "quotedarabicsingledouble"),
        ("٢٠٢٣ ۱۹ १२", "20231912"),  # digits of every script
        ("ﬁne Straße", "finestrasse"),  # expansions
        ("zero\u200bwidth\u200cjoin\u200d", "zerowidthjoin"),  # format characters
        ("\ufeffbom", "bom"),
        ("nul\x00char", "nulchar"),
        ("", ""),
        ("  \t\n ", ""),
    ],
)
def test_normalization_cases(raw, expected):
    assert normalize(raw) == expected


def test_word_mode_keeps_one_space_between_words():
    assert normalize("  Hello,world!  the   END. ", keep_separators=True) == "hello world the end"
    assert normalize("«في» البيت", keep_separators=True) == "في البيت"
    assert normalize("...", keep_separators=True) == ""


def test_origins_point_at_source_characters():
    text = "A-é b"
    norm, origins = normalize(text, with_origins=True)
    assert norm == "aeb"
    assert [text[i] for i in origins] == ["A", "é", "b"]


@given(TEXT)
def test_matches_reference(text):
    assert normalize(text) == reference.normalize(text, keep_separators=False)
    assert normalize(text, keep_separators=True) == reference.normalize(text, keep_separators=True)


@given(st.text(max_size=80))
def test_idempotent(text):
    once = normalize(text, keep_separators=True)
    assert normalize(once, keep_separators=True) == once
    assert normalize(normalize(text)) == normalize(text)


def test_table_is_a_fixed_point():
    table, exp_offsets, exp_values = load_table()
    mapped = table[table >= 0]
    assert np.array_equal(table[mapped], mapped)
    expanded = exp_values[exp_values >= 0]
    assert np.array_equal(table[expanded], expanded)
    assert SPACE not in set(mapped.tolist()) | set(expanded.tolist())


def test_lone_surrogates_and_many_units():
    table, exp_offsets, exp_values = load_table()
    text = "ab\ud800cd\udfffé"
    values, offsets, _ = normalize_units(
        codepoints(text), np.array([0, 2, 0]), np.array([2, 7, 0]), table, exp_offsets,
        exp_values, False, False,
    )
    assert offsets.tolist() == [0, 2, 5, 5]
    assert values.tolist() == [ord(c) for c in "abcde"]
