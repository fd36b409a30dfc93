"""Review page script for ``st.navigation``; the page itself lives in ``inspect_app.ui.review``."""

from inspect_app.ui.review import render

render()
