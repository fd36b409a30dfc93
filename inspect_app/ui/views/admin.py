"""Admin page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.admin``."""

from inspect_app.ui.admin import render

render()
