import dataclasses

import pytest

from dedup import Config, ConfigError
from dedup.config import choose_bands, lsh_recall


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": 1.5}, r"threshold must be in \(0, 1\], got 1.5"),
        ({"threshold": 0}, r"threshold must be in \(0, 1\], got 0"),
        ({"threshold": "0.8"}, r"threshold must be a number in \(0, 1\], got '0.8'"),
        ({"containment_threshold": -0.1}, r"containment_threshold must be in \(0, 1\]"),
        ({"lsh_recall": 1.0}, r"lsh_recall must be in \(0, 1\), got 1.0"),
        ({"unit": "line"}, r"unit must be one of 'paragraph', 'sentence', 'document', got 'line'"),
        ({"shingle": "byte"}, r"shingle must be one of 'char', 'word', got 'byte'"),
        ({"keep": "last"}, r"keep must be one of 'first', 'longest', got 'last'"),
        ({"ngram": 0}, r"ngram must be in \[1, 64\], got 0"),
        ({"ngram": 2.5}, r"ngram must be an integer, got 2.5"),
        ({"num_perm": 0}, r"num_perm must be in \[1, 1024\], got 0"),
        ({"num_perm": True}, r"num_perm must be an integer, got True"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*32\), got -1"),
        ({"min_contained_length": -5}, r"min_contained_length must be >= 0, got -5"),
        ({"max_bucket": 1}, r"max_bucket must be >= 2, got 1"),
        ({"exhaustive_pairs": -1}, r"exhaustive_pairs must be >= 0, got -1"),
        ({"bands": 4}, r"bands and rows go together"),
        ({"bands": 20, "rows": 8}, r"bands \* rows must be in \[1, num_perm=128\]"),
        ({"threshold": 0.05, "num_perm": 2, "lsh_recall": 0.99}, r"no banding of num_perm=2"),
    ],
)
def test_bad_values_say_the_rule_and_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Config(**kwargs)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError, match="threshold"):
        Config(threshold=2)


def test_frozen_and_keyword_only():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.threshold = 0.5
    with pytest.raises(TypeError):
        Config("paragraph")
    assert dataclasses.replace(config, threshold=0.9).threshold == 0.9


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_bands_reach_the_stated_recall(threshold, num_perm):
    bands, rows = choose_bands(threshold, num_perm, 0.99)
    assert bands * rows <= num_perm
    assert lsh_recall(threshold, bands, rows) >= 0.99
    # one more row per band would miss the target: no band is wider than needed
    wider = rows + 1
    if wider * 1 <= num_perm:
        assert lsh_recall(threshold, num_perm // wider, wider) < 0.99


def test_default_banding_beats_datasketch_recall_at_threshold():
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(0.8, 128, 0.5, 0.5)
    assert lsh_recall(0.8, b, r) < 0.9  # their equal-weight optimum misses many pairs at 0.8
    assert Config().band_rows == (16, 6)
    assert lsh_recall(0.8, 16, 6) >= 0.99


def test_explicit_bands_and_rows():
    assert Config(bands=8, rows=16).band_rows == (8, 16)
