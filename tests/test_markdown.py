"""The one markdown table writer (bench.results.markdown_rows / markdown_table, polars' MARKDOWN layout)."""

from __future__ import annotations

import polars as pl
from mdtable import table_rows

from simplehand_deploy.bench.results import markdown_rows, markdown_table


def test_cells_round_trip_with_pipes_line_breaks_and_empty_cells() -> None:
    text = markdown_rows(("row", "status", "note"), [("a", "error: x | y", None), ("b", "ok", "two\nlines")])
    assert "x \\| y" in text
    assert table_rows(text) == [{"row": "a", "status": "error: x \\| y", "note": ""},
                                {"row": "b", "status": "ok", "note": "two lines"}]


def test_every_row_column_and_character_is_shown() -> None:
    header = [f"col {i}" for i in range(30)]
    long = "x" * 3000
    rows = [[long if (r, c) == (0, 29) else f"{r}.{c}" for c in range(30)] for r in range(60)]
    parsed = table_rows(markdown_rows(header, rows))
    assert len(parsed) == 60 and list(parsed[0]) == header
    assert parsed[0]["col 29"] == long and parsed[59]["col 0"] == "59.0"


def test_frame_of_strings_and_empty_tables() -> None:
    assert table_rows(markdown_table(pl.DataFrame({"a": ["1", None]}))) == [{"a": "1"}, {"a": ""}]
    assert markdown_rows(("a", "b"), []) == "| a | b |\n|---|---|\n"
    assert markdown_table(pl.DataFrame()) == ""
