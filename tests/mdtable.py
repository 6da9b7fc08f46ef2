"""Read a GitHub markdown table back into rows (tests check cells, not the column padding)."""

from __future__ import annotations

import re

_SPLIT = re.compile(r"(?<!\\)\|")


def _cells(line: str) -> list[str]:
    inner = line.strip()
    assert inner.startswith("|") and inner.endswith("|"), f"not a table line: {line!r}"
    return [c.strip() for c in _SPLIT.split(inner[1:-1])]


def table_rows(text: str) -> list[dict[str, str]]:
    """The first table in `text`: a header line, a `---` rule (GitHub's syntax), then rows of as many cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    header = _cells(lines[start])
    rule = _cells(lines[start + 1])
    assert len(rule) == len(header) and all(re.fullmatch(r":?-{3,}:?", c) for c in rule), lines[start + 1]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(header), f"{len(cells)} cells under {len(header)} columns: {line!r}"
        rows.append(dict(zip(header, cells, strict=True)))
    return rows
