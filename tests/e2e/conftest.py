"""Fixtures for the end-to-end tests: a PostgreSQL schema reached through a relay that a test can cut (an outage)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import make_url

from tests.e2e.pg_relay import PgRelay, RelayedDatabase, through_relay


@pytest.fixture
def relayed_postgres(
    postgres_schema: Callable[[str], contextlib.AbstractContextManager[str]],
) -> Iterator[RelayedDatabase]:
    """A fresh PostgreSQL schema behind a ``PgRelay``; skips without ``INSPECT_TEST_POSTGRES_URL``."""
    with postgres_schema("inspect_relay") as direct:
        target = make_url(direct)
        relay = PgRelay(target.host or "127.0.0.1", target.port or 5432)
        try:
            yield RelayedDatabase(relay, through_relay(direct, relay), direct)
        finally:
            relay.close()
