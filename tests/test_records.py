"""Records shared between layers: the spool count that both the sink spool and the database spool report."""

from __future__ import annotations

from pathlib import Path

from inspect_app.records import spooled_count


def test_spooled_count_counts_non_blank_lines_and_is_zero_without_a_file(tmp_path: Path) -> None:
    spool = tmp_path / "CsvSink.jsonl"
    assert spooled_count(spool) == 0
    spool.write_text('{"a": 1}\n\n{"a": 2}\n  \n{"a": 3}', encoding="utf-8")  # blank lines and no final newline
    assert spooled_count(spool) == 3
