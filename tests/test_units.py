"""dedup.units: lines and paragraphs against a character-by-character reference."""

from hypothesis import given
from hypothesis import strategies as st

from dedup.units import line_spans, paragraph_spans

# line breaks, white space that is not a line break here, and letters
TEXTS = st.text(alphabet=st.sampled_from(
    "ab ي\n\r\t\x0b\x0c\x1c\x1d\x85\xa0\u2028\u2029\u3000\u200b\ufeff"), max_size=40)


def reference_lines(text):
    """Lines broken at \r\n, \n or \r, one character at a time."""
    starts, ends = [0], []
    i = 0
    while i < len(text):
        if text[i] == "\r" and text[i + 1:i + 2] == "\n":
            ends.append(i)
            starts.append(i + 2)
            i += 2
            continue
        if text[i] in "\r\n":
            ends.append(i)
            starts.append(i + 1)
        i += 1
    ends.append(len(text))
    return starts, ends


def reference_paragraphs(text):
    """Each line with at least one character that is not str.isspace(), stripped of it."""
    starts, ends = [], []
    for start, end in zip(*reference_lines(text)):
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            starts.append(start)
            ends.append(end)
    return starts, ends


@given(TEXTS)
def test_line_spans_match_the_reference(text):
    assert line_spans(text) == reference_lines(text)


@given(TEXTS)
def test_paragraph_spans_match_the_reference(text):
    assert paragraph_spans(text) == reference_paragraphs(text)


def test_paragraphs_with_and_without_carriage_returns():
    text = " one \n\n\u3000two\u2028half\u3000\n  \nthree"
    starts, ends = paragraph_spans(text)
    assert [text[s:e] for s, e in zip(starts, ends)] == ["one", "two\u2028half", "three"]
    crlf = text.replace("\n", "\r\n")
    starts, ends = paragraph_spans(crlf)
    assert [crlf[s:e] for s, e in zip(starts, ends)] == ["one", "two\u2028half", "three"]
