"""The consumer watch: an error Faust never raises (a refused group) ends the worker.

Faust reads from aiokafka's fetcher directly, so what aiokafka holds for the consumer's group
coordination (``check_errors``) is only seen if someone asks. These doubles have the shape of
Faust's app → consumer → consumer thread → aiokafka consumer → coordinator chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import GroupAuthorizationFailedError
from structlog.testing import capture_logs

from schemas.errors import ErrorCode, RadstreamError
from streams.agents import raise_consumer_error, watch_consumers

pytestmark = pytest.mark.requirement("RS-REL-14")


class Coordinator:
    """aiokafka's group coordinator: ``check_errors`` raises what it holds."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.checks = 0

    def check_errors(self) -> None:
        self.checks += 1
        if self.error is not None:
            raise self.error


class ConsumerThread:
    """Faust's consumer thread: ``call_thread`` runs a coroutine function where the consumer is."""

    def __init__(self, coordinator: Coordinator | None, *, answers: bool = True) -> None:
        self._consumer = SimpleNamespace(_coordinator=coordinator) if coordinator else None
        self.answers = answers

    async def call_thread(self, fun: Callable[[], Awaitable[Any]]) -> Any:
        if not self.answers:
            await asyncio.Event().wait()  # a busy or stopping thread
        return await fun()


def app(thread: ConsumerThread | None, group: str = "rs-validation") -> Any:
    consumer = SimpleNamespace(_thread=thread) if thread is not None else None
    return SimpleNamespace(_consumer=consumer, conf=SimpleNamespace(id=group))


class TestRaiseConsumerError:
    async def test_a_refused_group_is_a_refusal(self) -> None:
        """The group ACL is missing: BROKER_REQUEST_REFUSED, naming the group, not the cause."""
        coordinator = Coordinator(GroupAuthorizationFailedError("rs-validation"))
        with pytest.raises(RadstreamError) as caught:
            await raise_consumer_error(app(ConsumerThread(coordinator)))
        assert caught.value.code is ErrorCode.BROKER_REQUEST_REFUSED
        assert "rs-validation" in str(caught.value)

    async def test_a_healthy_consumer_passes(self) -> None:
        coordinator = Coordinator()
        await raise_consumer_error(app(ConsumerThread(coordinator)))
        assert coordinator.checks == 1

    @pytest.mark.parametrize("thread", [None, ConsumerThread(None)])
    async def test_a_consumer_not_started_is_skipped(self, thread: ConsumerThread | None) -> None:
        """No consumer yet, or no aiokafka consumer on its thread: nothing to ask."""
        await raise_consumer_error(app(thread))

    async def test_a_thread_that_does_not_answer_is_no_verdict(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A busy thread is not an error: the next look decides."""
        monkeypatch.setattr("streams.agents.CONSUMER_CHECK_TIMEOUT_SECONDS", 0.0)
        coordinator = Coordinator(GroupAuthorizationFailedError("g"))
        await raise_consumer_error(app(ConsumerThread(coordinator, answers=False)))
        assert coordinator.checks == 0


class TestWatchConsumers:
    async def test_the_first_error_is_logged_once_and_ends_the_worker(self) -> None:
        """Healthy looks go on; the refused group gives one line and one on_fatal call."""
        healthy = Coordinator()
        refused = Coordinator()
        apps = [app(ConsumerThread(healthy), "rs-a"), app(ConsumerThread(refused), "rs-b")]
        fatal: list[Exception] = []
        looks = 0

        async def tick(_seconds: float) -> None:
            nonlocal looks
            looks += 1
            if looks == 3:  # the group's ACL is withdrawn after two healthy rounds
                refused.error = GroupAuthorizationFailedError("rs-b")

        with capture_logs() as logs:
            await watch_consumers(apps, fatal.append, sleep=tick)
        assert healthy.checks == 3
        assert refused.checks == 3
        assert [type(e) for e in fatal] == [type(fatal[0])]
        assert isinstance(fatal[0], RadstreamError)
        assert fatal[0].code is ErrorCode.BROKER_REQUEST_REFUSED
        failed = [entry for entry in logs if entry["event"] == "consumer_failed"]
        assert failed == [
            {
                "event": "consumer_failed",
                "group": "rs-b",
                "error_code": "BROKER_REQUEST_REFUSED",
                "log_level": "error",
            }
        ]

    async def test_an_unexpected_error_ends_the_worker_too(self) -> None:
        """A coordination task that died of anything else: INTERNAL_ERROR, the worker exits."""
        broken = Coordinator(RuntimeError("coordination task died"))
        fatal: list[Exception] = []

        async def tick(_seconds: float) -> None:
            return None

        with capture_logs() as logs:
            await watch_consumers([app(ConsumerThread(broken))], fatal.append, sleep=tick)
        assert [str(e) for e in fatal] == ["coordination task died"]
        assert [entry["error_code"] for entry in logs] == ["INTERNAL_ERROR"]
