"""The README documents the command line as it is: every command, and the exit codes."""

from __future__ import annotations

import re
from pathlib import Path

from cli.errors import EXIT_CODE_MEANINGS
from cli.main import runnable_commands

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def readme_commands() -> set[str]:
    """The commands the README's table names (``dlq list\\|show`` counts as two)."""
    table = README.split("\n## Commands\n")[1].split("\n## ")[0]
    names = set()
    for cell in re.findall(r"^\| `radstream ([^`]+)`", table, re.MULTILINE):
        words = []
        for token in cell.split():
            if not re.fullmatch(r"[a-z][a-z-]*(\\\|[a-z][a-z-]*)*", token):
                break
            words.append(token.split("\\|"))
        group, *rest = words
        subs = rest[0] if rest else [""]
        names |= {f"{group[0]} {sub}".strip() for sub in subs}
    return names


def test_command_table_matches_the_parser() -> None:
    """Each command in the README exists, and each command is in the README."""
    assert readme_commands() == set(runnable_commands())


def test_exit_code_table_matches_the_code() -> None:
    """The README's exit-code table is the one the command line uses."""
    table = README.split("<!-- exit-codes:start -->")[1].split("<!-- exit-codes:end -->")[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", table, re.MULTILINE))
    assert rows == {str(int(code)): meaning for code, meaning in EXIT_CODE_MEANINGS.items()}
