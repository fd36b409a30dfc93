"""``ui.review_shortcuts``: the script clicks the buttons of the cards on the page, by their id-carrying keys."""

from __future__ import annotations

import pytest

from inspect_app.ui.review_shortcuts import NEXT_PAGE_KEY, PREVIOUS_PAGE_KEY, SHORTCUTS, legend, shortcut_script


def test_script_lists_the_cards_and_clicks_their_keyed_buttons() -> None:
    script = shortcut_script([7, 3, 12])
    assert "const ids = [7, 3, 12];" in script
    for fragment in ('".st-key-card_" + id', '"item_" + id + "_ok"', '"item_" + id + "_ng"',
                     '"item_" + id + "_select"', '"item_" + id + "_zoom"', NEXT_PAGE_KEY, PREVIOUS_PAGE_KEY):
        assert fragment in script
    assert "__" + "IDS__" not in script and "__NEXT__" not in script


@pytest.mark.parametrize("bad", ["1); alert(1", 2.5, True])
def test_script_refuses_ids_that_are_not_integers(bad: object) -> None:
    with pytest.raises(ValueError, match="is not an integer"):
        shortcut_script([1, bad])  # type: ignore[list-item]


def test_legend_names_every_shortcut() -> None:
    text = legend()
    assert text.startswith("Keys: **O** OK for the focused card · **N** NG")
    assert all(what in text for what in SHORTCUTS.values())
