"""Models page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.models``."""

from inspect_app.ui.models import render

render()
