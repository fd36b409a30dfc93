"""Overview page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.overview``."""

from inspect_app.ui.overview import render

render()
