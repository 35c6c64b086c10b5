"""Fixtures shared across test modules (Redis servers live in tests/redis_fixtures.py)."""

pytest_plugins = ["tests.redis_fixtures"]
