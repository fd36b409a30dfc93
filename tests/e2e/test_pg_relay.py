"""The outage relay itself: queries pass through it, ``pause`` cuts live connections and refuses new ones, ``resume``
lets clients in again on the same port."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from inspect_app.storage.db import is_unreachable
from tests.e2e.pg_relay import RelayedDatabase

pytestmark = pytest.mark.postgres


def test_pause_cuts_live_connections_and_refuses_new_ones_until_resume(relayed_postgres: RelayedDatabase) -> None:
    relay, url, _ = relayed_postgres
    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as live:
            assert live.execute(text("SELECT 41 + 1")).scalar() == 42
            assert relay.accepted == 1, "the connection went through the relay"
            relay.pause()
            with pytest.raises(OperationalError) as cut:
                live.execute(text("SELECT 1"))
            assert is_unreachable(cut.value), "the product sees a cut connection as an outage"
        started = time.monotonic()
        with pytest.raises(OperationalError) as refused:
            engine.connect()
        assert "refused" in str(refused.value).lower()
        assert time.monotonic() - started < 2, "refused at once, not timed out"
        port = relay.port
        relay.resume()
        assert relay.port == port
        with engine.connect() as again:
            assert again.execute(text("SELECT 7")).scalar() == 7
        assert relay.accepted == 2
    finally:
        engine.dispose()
