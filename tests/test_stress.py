"""The full-size load runs of ``make stress`` (ASESS_STRESS=full); deselected by default.

Without ASESS_STRESS=full they run at the CI size, so ``pytest -m slow`` stays
quick when only checking that they work.
"""

from __future__ import annotations

import os

import pytest

from .load_suite import LoadSuite

FULL = os.environ.get("ASESS_STRESS") == "full"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


class TestStress(LoadSuite):
    HOT = 1000 if FULL else 200
    REQUESTS = 10_000 if FULL else 2000
    SESSIONS = 1000 if FULL else 200
    CONCURRENCY = 128 if FULL else 64
