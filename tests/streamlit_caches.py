"""The ``fresh_caches`` fixture, imported by the conftests of the test folders that run Streamlit in process
(tests/ui, tests/security); kept out of the root conftest, which must not import Streamlit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import streamlit as st


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Streamlit caches live in the process (one Database per URL); start and end every test without them."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
