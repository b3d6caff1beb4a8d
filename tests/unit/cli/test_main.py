"""The ``radstream`` root: its commands, their help, and the one top-level error handler."""

from __future__ import annotations

import json
import re

import click
import pytest

from cli import main as cli_main
from cli.errors import EXIT_CODE_MEANINGS, ExitCode
from cli.main import COMMANDS, main, root, runnable_commands
from schemas.errors import ErrorCode

LEAVES = runnable_commands()


class TestCommands:
    def test_every_command_is_loadable(self) -> None:
        """Each registered name has its module cli/<name>.py with a ``command``."""
        ctx = click.Context(root)
        assert all(root.get_command(ctx, name) is not None for name in COMMANDS)

    def test_unknown_command_is_none(self) -> None:
        """An unknown name loads nothing (click then reports it as a usage error)."""
        assert root.get_command(click.Context(root), "nope") is None

    @pytest.mark.parametrize("name", list(COMMANDS))
    def test_summary_is_the_commands_first_help_line(self, name: str) -> None:
        """``radstream --help`` lists the summary the command itself starts its help with."""
        command = root.get_command(click.Context(root), name)
        assert command is not None
        assert (command.help or "").splitlines()[0] == COMMANDS[name]

    @pytest.mark.parametrize("name", sorted(LEAVES))
    def test_every_command_and_option_has_help(self, name: str) -> None:
        """Users get help on every command and every option, not a developer's docstring."""
        command = LEAVES[name]
        assert command.help, name
        assert "``" not in command.help, "reStructuredText in user help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"

    def test_help_lists_commands_and_exit_codes(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``radstream --help`` names every command and documents every exit code."""
        assert main(["--help"]) == 0
        out = capsys.readouterr().out
        assert all(re.search(rf"^  {name} +", out, re.MULTILINE) for name in COMMANDS)
        for code, meaning in EXIT_CODE_MEANINGS.items():
            assert f"{int(code):>3}  {meaning}" in out

    def test_bare_radstream_prints_its_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a command, the help goes to stdout and the status is 0."""
        assert main([]) == 0
        assert "Commands:" in capsys.readouterr().out

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints the installed version."""
        assert main(["--version"]) == 0
        assert capsys.readouterr().out.startswith("radstream, version ")


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("argv", "reason"),
        [
            (["nope"], "No such command 'nope'"),
            (["dlq"], "Missing command: choose one of list, purge, replay, show"),
            (["config", "--nope"], "No such option: --nope"),
            (["token", "--subject", "s", "--role", "service", "--ttl", "-5"], "not in the range"),
            (["worker", "--stages", "foo"], "'foo' given; choose from validation"),
            (["audit", "show"], "Missing option '--event-id'"),
        ],
    )
    def test_one_line_naming_the_command_and_its_help(
        self, argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad command line is one REQUEST_INVALID line, exit 2, pointing at --help."""
        assert main(argv) == ExitCode.USAGE
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert reason in captured.err
        assert "REQUEST_INVALID" in captured.err
        assert "--help'." in captured.err

    def test_usage_errors_do_not_reprint_the_error_codes(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Neither the usage line nor an option's help enumerates the catalogue."""
        main(["dlq", "list", "--code"])
        assert main(["dlq", "list", "--help"]) == 0
        text = capsys.readouterr()
        listed = [code for code in ErrorCode if code.value in text.err + text.out]
        assert len(listed) <= 1


def config_raises(
    monkeypatch: pytest.MonkeyPatch, error: BaseException | type[BaseException]
) -> None:
    """Make ``radstream config`` fail inside its work with ``error``."""

    def raising(_settings: object) -> object:
        raise error

    monkeypatch.setattr("cli.config.emit_json", raising)


class TestFailures:
    def test_unexpected_error_is_one_line_without_its_message(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bug ends as INTERNAL_ERROR naming only the exception type; exit 70."""
        config_raises(monkeypatch, KeyError("Doe^John"))
        assert main(["config"]) == ExitCode.INTERNAL
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "radstream config: INTERNAL_ERROR: unexpected KeyError." in err
        assert "Doe^John" not in err

    def test_debug_logs_the_traceback_masked(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--debug adds the traceback, through the masking log pipeline, for a bug report."""
        config_raises(monkeypatch, KeyError("Doe^John"))
        assert main(["--debug", "config"]) == ExitCode.INTERNAL
        err = capsys.readouterr().err
        assert "command_failed" in err
        assert "Traceback" in err
        assert "Doe^John" not in err

    def test_debug_traceback_names_code_frames_by_module_path(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--debug's frames read cli/main.py and click/core.py, not [REDACTED_PATH]."""
        config_raises(monkeypatch, KeyError("k"))
        assert main(["--debug", "config"]) == ExitCode.INTERNAL
        (logged,) = [
            line for line in capsys.readouterr().err.splitlines() if "command_failed" in line
        ]
        exception = json.loads(logged)["exception"]
        assert 'File "cli/main.py", line' in exception
        assert 'File "click/core.py", line' in exception
        assert "[REDACTED_PATH]" not in exception

    def test_ctrl_c_is_interrupted(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Ctrl-C ends the command with 130 and one line (after the newline ending "^C")."""
        config_raises(monkeypatch, KeyboardInterrupt)
        assert main(["config"]) == ExitCode.INTERRUPTED
        assert capsys.readouterr().err == "\nradstream config: interrupted\n"


def test_console_script_exits_with_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """``radstream`` (the console script) exits the process with main's status, its exit
    bounded (the bound's timer is replaced: in this process it would end the test run)."""
    monkeypatch.setattr(cli_main, "main", lambda: 4)
    bounded: list[int] = []
    monkeypatch.setattr(cli_main, "bound_exit", bounded.append)
    with pytest.raises(SystemExit) as exited:
        cli_main.run()
    assert exited.value.code == 4
    assert bounded == [4]
