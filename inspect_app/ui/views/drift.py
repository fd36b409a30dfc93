"""Drift page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.drift``."""

from inspect_app.ui.drift import render

render()
