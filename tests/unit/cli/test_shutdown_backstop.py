"""The process-level backstop: a shutdown that overruns its bound ends the process."""

from __future__ import annotations

import threading

import pytest
from structlog.testing import capture_logs

from cli.context import ShutdownBackstop, run_until_signalled
from cli.errors import ExitCode

pytestmark = pytest.mark.requirement("RS-REL-14")


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
