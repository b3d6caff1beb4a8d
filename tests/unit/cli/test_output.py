"""Command output: aligned tables with headers, JSON, progress only on a terminal."""

from __future__ import annotations

import json
import uuid

import pytest

from cli.output import emit_json, progress, table


class TestTable:
    def test_header_and_aligned_columns_without_trailing_blanks(self) -> None:
        """Upper-case headers, columns two spaces apart, nothing after the last cell."""
        text = table(["name", "status"], [("lesion-detector", "ready"), ("x", None)])
        assert text.splitlines() == [
            "NAME             STATUS",
            "lesion-detector  ready",
            "x",
        ]

    def test_no_rows_is_the_header(self) -> None:
        """An empty listing still says what it would list."""
        assert table(["id", "state"], []) == "ID  STATE"

    def test_cells_cannot_forge_lines(self) -> None:
        """A cell holding a newline or escape sequence stays on its row."""
        text = table(["value"], [("a\nb\x1b[31m",)])
        assert text.splitlines() == ["VALUE", "a\\nb\\x1b[31m"]


def test_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    """--json output parses as one document; UUIDs become strings."""
    value = uuid.uuid4()
    emit_json([{"id": value}])
    assert json.loads(capsys.readouterr().out) == [{"id": str(value)}]


def test_progress_draws_nothing_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """Piped or logged, a long wait prints no progress: a failure stays one line."""
    with progress("waiting", total=3) as advance:
        advance(2)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")
