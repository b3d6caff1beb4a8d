"""What a command prints: results on stdout (a table with headers, or JSON), progress on stderr.

Tables are plain aligned text with a header row and no trailing blanks, so they read well in a
terminal and ``grep``/``awk`` well in a pipe; ``--json`` prints one JSON document instead.
Progress (rich) is drawn only when stderr is a terminal and vanishes when done, so a pipe or a
log never receives it and a failure is still one line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from observability.logging import escape_control_characters


def emit(text: str = "") -> None:
    """One line (or block) of command output on stdout."""
    click.echo(text)


def emit_json(data: Any) -> None:
    """``data`` as one indented JSON document on stdout (dates and UUIDs as strings)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``rows`` under upper-case ``headers``, columns aligned, two spaces apart.

    Cells are shown with control characters escaped, so a value cannot forge a line.
    """
    cells = [[escape_control_characters("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [[h.upper() for h in headers], *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def emit_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print :func:`table` on stdout."""
    click.echo(table(headers, rows))


def _stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False, markup=False, emoji=False)


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar (``total`` steps) or spinner on stderr; yields ``advance_to(done)``.

    Drawn only on a terminal, and removed when the block ends.
    """
    console = _stderr_console()
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    bar = Progress(
        *columns,
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task(description, total=total)
    with bar:
        yield lambda done: bar.update(task, completed=done)
