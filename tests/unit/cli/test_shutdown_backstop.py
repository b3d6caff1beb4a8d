"""The process-level backstop: a shutdown that overruns its bound ends the process."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cli.context import ShutdownBackstop, bound_exit, run_until_signalled
from cli.errors import ExitCode

pytestmark = pytest.mark.requirement("RS-REL-14")

REPO_ROOT = Path(__file__).resolve().parents[3]
# Only stops a hung child; the child is expected to end within a second.
HANG_GUARD_SECONDS = 60


class Exits:
    """Records the status the backstop would exit with."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.called = threading.Event()

    def __call__(self, status: int) -> None:
        self.statuses.append(status)
        self.called.set()


class TestShutdownBackstop:
    def test_overrun_exits_with_internal_status_and_one_line(self) -> None:
        """Armed and never disarmed: after its bound the process exits (status 70)."""
        exits = Exits()
        backstop = ShutdownBackstop(0.01, exit_process=exits)
        with capture_logs() as logs:
            backstop.arm()
            assert exits.called.wait(5)
        assert exits.statuses == [ExitCode.INTERNAL]
        assert logs[0]["event"] == "process_exit_forced"
        assert logs[0]["reason"] == "shutdown overran"

    def test_disarmed_in_time_does_nothing(self) -> None:
        """A process that ends within the bound is not forced."""
        exits = Exits()
        backstop = ShutdownBackstop(60.0, exit_process=exits)
        backstop.arm()
        backstop.disarm()
        assert not exits.called.wait(0.05)

    def test_second_signal_exits_at_once(self) -> None:
        """An operator who presses Ctrl-C twice does not wait for the bound."""
        exits = Exits()
        backstop = ShutdownBackstop(60.0, exit_process=exits)
        backstop.arm()
        with capture_logs() as logs:
            backstop.arm()
        backstop.disarm()
        assert exits.statuses == [ExitCode.INTERNAL]
        assert logs[0]["reason"] == "second stop signal"


class TestRunUntilSignalled:
    def test_service_that_ends_arms_and_disarms_the_backstop(self) -> None:
        """Its clean-up is bounded too; a clean end disarms the countdown."""
        exits = Exits()
        backstop = ShutdownBackstop(60.0, exit_process=exits)

        async def service(_stop: object) -> str:
            return "done"

        assert run_until_signalled(service, backstop=backstop) == "done"
        assert backstop.armed
        assert not exits.called.wait(0.05)


class TestBoundExit:
    """After the command returned, leftover threads cannot hold the process for ever."""

    @pytest.mark.parametrize(("status", "forced"), [(7, 7), (0, ExitCode.INTERNAL)])
    def test_forced_exit_keeps_the_commands_status(self, status: int, forced: int) -> None:
        """A failed command's status survives the forced exit; a clean one that hung is 70."""
        exits = Exits()
        with capture_logs() as logs:
            bound_exit(status, 0.01, exit_process=exits)
            assert exits.called.wait(5)
        assert exits.statuses == [forced]
        assert logs[0]["event"] == "process_exit_forced"
        assert logs[0]["reason"] == "threads still running at exit"

    def test_console_script_exits_despite_a_thread_that_never_ends(self) -> None:
        """The real entry point in a child process holding a non-daemon thread that never ends:
        it exits with the command's own status (2, an unknown command) instead of hanging."""
        script = (
            "import threading\n"
            "import cli.context\n"
            "from cli.main import run\n"
            "cli.context.EXIT_BOUND_SECONDS = 0.2\n"
            "threading.Thread(target=threading.Event().wait).start()\n"
            "run()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, "no-such-command"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_SECONDS,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "process_exit_forced" in done.stdout + done.stderr
