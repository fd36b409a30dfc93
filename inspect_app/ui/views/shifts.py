"""Shift report page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.shifts``."""

from inspect_app.ui.shifts import render

render()
