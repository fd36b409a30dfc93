"""Training page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.training``."""

from inspect_app.ui.training import render

render()
