"""Keyboard shortcuts of the Review page.

Streamlit has no key bindings, so a small script (in a one-pixel ``st.iframe`` frame, which shares the page's
origin) listens for keys on the page and clicks the same buttons a mouse would: every verdict still goes through the
button's callback, its role check and its audit row. Keys typed into a text field or a select box are left alone.
The focused card is outlined; after a verdict the next card moves into its place, so O, O, O judges the queue from
the top.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import streamlit as st

# Key (as ``KeyboardEvent.key``, lower case) → what it does; shown on the page as the legend.
SHORTCUTS = {
    "o": "OK for the focused card",
    "n": "NG for the focused card (its defect class)",
    "j / ↓": "next card",
    "k / ↑": "previous card",
    "x": "tick the focused card for a batch verdict",
    "z": "zoom the focused card",
    "→ / ←": "next / previous page",
}
# Widget keys of the paging buttons the script clicks (the page draws them with these keys).
NEXT_PAGE_KEY = "review_next_page"
PREVIOUS_PAGE_KEY = "review_previous_page"

__all__ = ["NEXT_PAGE_KEY", "PREVIOUS_PAGE_KEY", "SHORTCUTS", "legend", "render_shortcuts", "shortcut_script"]

_SCRIPT = """
<script>
(function () {
  const win = window.parent, doc = win.document;
  const ids = __IDS__;
  if (win.__inspectReviewKeys) { doc.removeEventListener("keydown", win.__inspectReviewKeys); }
  const card = (id) => doc.querySelector(".st-key-card_" + id);
  function focus(index) {
    if (!ids.length) { return; }
    const chosen = Math.max(0, Math.min(index, ids.length - 1));
    ids.forEach((id, k) => {
      const element = card(id);
      if (element) { element.style.outline = k === chosen ? "3px solid #f59e0b" : ""; }
    });
    win.__inspectReviewFocus = chosen;
    const element = card(ids[chosen]);
    if (element && index !== undefined) { element.scrollIntoView({block: "nearest"}); }
  }
  function press(key, selector) {
    const target = doc.querySelector(".st-key-" + key + " " + (selector || "button"));
    if (target) { target.click(); }
  }
  function onKey(event) {
    const t = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable
              || t.getAttribute("role") === "slider")) { return; }
    const current = Math.min(win.__inspectReviewFocus || 0, Math.max(ids.length - 1, 0));
    const id = ids[current];
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "j" || key === "ArrowDown") { focus(current + 1); }
    else if (key === "k" || key === "ArrowUp") { focus(current - 1); }
    else if (key === "ArrowRight") { press("__NEXT__"); }
    else if (key === "ArrowLeft") { press("__PREVIOUS__"); }
    else if (id === undefined) { return; }
    else if (key === "o") { press("item_" + id + "_ok"); }
    else if (key === "n") { press("item_" + id + "_ng"); }
    else if (key === "x") { press("item_" + id + "_select", "label"); }
    else if (key === "z") { press("item_" + id + "_zoom"); }
    else { return; }
    event.preventDefault();
  }
  win.__inspectReviewKeys = onKey;
  doc.addEventListener("keydown", onKey);
  focus(win.__inspectReviewFocus || 0);
})();
</script>
"""


def shortcut_script(ids: Sequence[int]) -> str:
    """The script for a page showing the cards of ``ids`` (top to bottom).

    The ids are part of the text, so the frame reloads (and outlines the focused card again) whenever the cards
    change.

    Raises:
        ValueError: an id is not an integer (it is written into the script).
    """
    for value in ids:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"card id {value!r} is not an integer")
    return (_SCRIPT.replace("__IDS__", json.dumps(list(ids)))
            .replace("__NEXT__", NEXT_PAGE_KEY).replace("__PREVIOUS__", PREVIOUS_PAGE_KEY))


def legend() -> str:
    """One line naming every shortcut."""
    return "Keys: " + " · ".join(f"**{key.upper() if len(key) == 1 else key}** {what}"
                                 for key, what in SHORTCUTS.items())


def render_shortcuts(ids: Sequence[int]) -> None:
    """Install the shortcuts for the cards on the page (a frame one pixel high: Streamlit refuses zero)."""
    st.iframe(shortcut_script(ids), height=1)
