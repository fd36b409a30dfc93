"""Fixtures for the dashboard tests: Streamlit's caches emptied around every test (``fresh_caches``)."""

from __future__ import annotations

from tests.streamlit_caches import fresh_caches  # noqa: F401 - an autouse fixture for every test in this folder
