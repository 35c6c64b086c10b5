"""Fixtures shared across test modules (servers live in tests/redis_fixtures.py and
tests/postgres_fixtures.py, the browser in tests/browser_fixtures.py)."""

pytest_plugins = ["tests.redis_fixtures", "tests.postgres_fixtures", "tests.browser_fixtures"]
