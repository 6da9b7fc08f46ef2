"""One rich progress bar helper for every long loop (cropping, calibration, sweeps)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(items: Iterable[T], label: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    """Yield from `items` with a transient bar on stderr (count, ETA); a plain loop when disabled."""
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    seq = items if total is not None else list(items)
    n = total if total is not None else len(seq)  # type: ignore[arg-type]
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=n)
        for x in seq:
            yield x
            bar.advance(task)
