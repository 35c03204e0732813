import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SEED_DIR = Path(__file__).resolve().parent.parent / "seeds"
SEED_ARTICLE = SEED_DIR / "000_be3ac5dcbeda0709.txt"


@pytest.fixture
def rng():
    return np.random.default_rng(20261129)


@pytest.fixture(scope="session")
def seed_text():
    return SEED_ARTICLE.read_text(encoding="utf-8")
