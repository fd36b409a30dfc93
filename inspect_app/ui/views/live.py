"""Live page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.live``."""

from inspect_app.ui.live import render

render()
