"""The stat lane on shared topics: outcomes marked by the stat lanes, consumers split by the mark.

No clock and no broker: a stat result's place in the studies stage's work is shown by what each
agent's handler is given, in order, when a routine backlog sits before it on the shared topic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.correlation import CORRELATION_ID_HEADER
from schemas.events import Stage
from streams.agents import AgentSpec, register_agent
from streams.kafka import Outgoing
from streams.lanes import (
    LANE_HEADER,
    MarkLane,
    is_stat_lane,
    routine_skips,
    stat_skips,
)
from streams.pipeline import Incoming, NullObserver
from streams.topics import TopicKey, TopicNames
from tests.unit.streams.test_agents_shutdown import FakeApp

pytestmark = pytest.mark.requirement("RS-CDS-02")

NAMES = TopicNames("t.")
CORRELATION = (CORRELATION_ID_HEADER, b"0" * 32)


class Echo:
    """A stage handler that produces one result per message and records each batch it got."""

    stage = Stage.INFERENCE

    def __init__(self) -> None:
        self.batches: list[list[Incoming]] = []

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        self.batches.append(list(batch))
        return [
            Outgoing(TopicKey.INFERENCE_RESULTS, message.key, message.value, (CORRELATION,))
            for message in batch
        ]


def consumed(out: Outgoing, offset: int) -> Incoming:
    """``out`` as the next stage's consumer receives it."""
    return Incoming(NAMES[out.topic], 0, offset, out.key, out.value_bytes(), out.headers)


def validated(value: bytes, *, stat: bool) -> Incoming:
    topic = NAMES.validated_stat if stat else NAMES.validated
    return Incoming(topic, 0, 0, b"study", value, (CORRELATION,))


class TestMarkLane:
    async def test_every_outcome_of_a_stat_lane_carries_the_mark(self) -> None:
        """The stat lane's outcomes keep their headers and gain the lane header."""
        inner = Echo()
        marked = MarkLane(inner)
        out = await marked.handle([validated(b"a", stat=True), validated(b"b", stat=True)])
        assert marked.stage is Stage.INFERENCE
        assert [o.headers for o in out] == [(CORRELATION, (LANE_HEADER, b"stat"))] * 2
        assert all(is_stat_lane(consumed(o, i)) for i, o in enumerate(out))

    async def test_routine_outcomes_are_not_marked(self) -> None:
        """Without the wrapper nothing is marked: routine stays routine downstream."""
        out = await Echo().handle([validated(b"a", stat=False)])
        assert not is_stat_lane(consumed(out[0], 0))

    def test_a_forged_or_other_lane_value_is_not_stat(self) -> None:
        """Only the exact value marks the stat lane."""
        other = Incoming(NAMES.results, 0, 0, None, b"", ((LANE_HEADER, b"routine"),))
        assert not is_stat_lane(other)


def agent(name: str, handler: Echo, skip: Callable[[Incoming], bool]) -> AgentSpec:
    """An agent over the shared topics, in batches of 200 as the studies agents take them."""
    return AgentSpec(name, (NAMES.results,), handler, 200, 0.0, skip=skip)


async def run(spec: AgentSpec, batch: Sequence[Incoming]) -> None:
    """What the agent does with one batch: hand the stage what it keeps, if anything."""
    kept = spec.kept(batch)
    if kept:
        await spec.handler.handle(kept)


class TestSplitConsumers:
    async def test_stat_result_is_first_work_of_the_stat_agent_behind_a_routine_backlog(
        self,
    ) -> None:
        """1000 routine results then one stat result on the shared topic: the stat agent's
        stage gets the stat result alone, the routine agent's stage gets the 1000 only."""
        routine_inference, stat_inference = Echo(), MarkLane(Echo())
        backlog = await routine_inference.handle(
            [validated(str(i).encode(), stat=False) for i in range(1000)]
        )
        urgent = await stat_inference.handle([validated(b"stat", stat=True)])
        shared_topic = [consumed(o, i) for i, o in enumerate([*backlog, *urgent])]

        studies_routine, studies_stat = Echo(), Echo()
        routine_agent = agent("studies", studies_routine, routine_skips)
        stat_agent = agent(
            "studies-stat", studies_stat, stat_skips(NAMES.of((TopicKey.IMAGES_ARRIVED_STAT,)))
        )
        # Each agent consumes the whole topic (the stat agent in a group of its own).
        for start in range(0, len(shared_topic), 200):
            await run(stat_agent, shared_topic[start : start + 200])
            await run(routine_agent, shared_topic[start : start + 200])

        assert [[m.value for m in batch] for batch in studies_stat.batches] == [[b"stat"]]
        handled = [m.value for batch in studies_routine.batches for m in batch]
        assert len(handled) == 1000
        assert b"stat" not in handled

    def test_stat_agent_takes_its_own_topics_whole(self) -> None:
        """A stat arrival (its own topic, unmarked: routers publish it) reaches the stat agent."""
        arrival = Incoming(NAMES.arrived_stat, 0, 0, b"s", b"arrival", (CORRELATION,))
        routine_result = Incoming(NAMES.results, 0, 0, b"s", b"routine", (CORRELATION,))
        stat_agent = agent("studies-stat", Echo(), stat_skips({NAMES.arrived_stat}))
        assert stat_agent.kept([arrival, routine_result]) == [arrival]

    async def test_the_routine_agent_skips_only_the_marked_messages(self) -> None:
        """A stat-marked result is the stat agent's; an unmarked one and an arrival are kept."""
        marked = consumed((await MarkLane(Echo()).handle([validated(b"x", stat=True)]))[0], 0)
        unmarked = consumed((await Echo().handle([validated(b"y", stat=False)]))[0], 1)
        arrival = Incoming(NAMES.arrived, 0, 0, b"s", b"arrival", (CORRELATION,))
        routine_agent = agent("studies", Echo(), routine_skips)
        assert routine_agent.kept([marked, unmarked, arrival]) == [unmarked, arrival]


class _CountingObserver(NullObserver):
    """Records the size of every batch the agent hands ``process_batch``."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def batch_processed(
        self, stage: Stage, size: int, seconds: float, outcomes: Sequence[tuple[str, str | None]]
    ) -> None:
        self.sizes.append(size)


class TestThroughTheAgent:
    async def test_skipped_messages_reach_neither_the_stage_nor_its_metrics(self) -> None:
        """The routine studies agent (register_agent, as the worker runs it) over an all-stat
        batch and a mixed one: the stage and the metrics see the routine message only, and
        both batches are finished (acknowledged), the all-skipped one too."""
        marked = consumed((await MarkLane(Echo()).handle([validated(b"s", stat=True)]))[0], 0)
        unmarked = consumed((await Echo().handle([validated(b"r", stat=False)]))[0], 1)
        batches = [[marked], [marked, unmarked]]

        async def take(
            stream: Any, _size: int, _within: float, _deferral: object
        ) -> AsyncIterator[list[SimpleNamespace]]:
            # An Incoming has every field agents read from a Faust event's message.
            for batch in stream:
                yield [SimpleNamespace(message=message) for message in batch]

        async def deliver(_messages: Sequence[Outgoing]) -> None:
            return None

        stage, observer, finished = Echo(), _CountingObserver(), []
        app = FakeApp()
        register_agent(
            app,  # type: ignore[arg-type]
            agent("studies", stage, routine_skips),
            deliver,
            observer,
            on_batch_done=lambda name, _out: finished.append(name),
            take=take,
        )
        assert app.agent_fn is not None
        async for _ in app.agent_fn(batches):
            pass
        assert [[m.value for m in batch] for batch in stage.batches] == [[b"r"]]
        assert observer.sizes == [1]
        assert finished == ["studies", "studies"]
