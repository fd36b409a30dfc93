"""The dashboard's database: one open ``Database`` per URL for the whole server process."""

from __future__ import annotations

import streamlit as st

from inspect_app.config import load_settings
from inspect_app.storage import Database

__all__ = ["database", "database_url"]


def database_url() -> str:
    """The database URL in force for this process (environment or settings)."""
    return load_settings().resolved_database_url


@st.cache_resource(show_spinner=False)
def database(url: str) -> Database:
    """One open database per URL for the whole server; migrates a fresh database so an empty one reads cleanly."""
    return Database.open(url, migrate=True)
