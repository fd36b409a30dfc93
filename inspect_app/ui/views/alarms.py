"""Alarms page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.alarms``."""

from inspect_app.ui.alarms import render

render()
