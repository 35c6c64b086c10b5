"""Load through a real uvicorn with two workers, at CI size (``make stress`` runs it in full)."""

from __future__ import annotations

import pytest

from .load_suite import LoadSuite

pytestmark = pytest.mark.timeout(180)


class TestLoad(LoadSuite):
    HOT = 200
    REQUESTS = 2000
    SESSIONS = 200
