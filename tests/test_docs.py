"""The examples in public docstrings run and give what they show."""

import doctest

import pytest

import dedup
import dedup.api


@pytest.mark.parametrize("module", [dedup, dedup.api])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
