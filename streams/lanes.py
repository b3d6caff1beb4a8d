"""The stat lane on topics both lanes share: outcomes marked with their lane, consumers split.

Stat arrivals and validated images have topics of their own (``streams/topics.py``) and agents
of their own, each consuming in a consumer group of its own (``app.OWN_GROUP_STAGES``), so
validation and inference take a stat image before a routine backlog: neither the routine
agents' topics nor their consumer's fetches stand in its way. Their outcomes land on
topics both lanes share (``inference.results``, ``images.rejected``), where a stat result would
queue again behind every routine result before it. So the stat lanes' handlers are wrapped in
:class:`MarkLane`: each message they produce carries the header ``radstream-lane: stat``. A
stage that consumes a shared topic runs two agents over one handler (the studies stage): the
routine agent in the stage's consumer group skips the marked messages (:func:`routine_skips`),
the stat agent, in a consumer group of its own
(:attr:`streams.topics.StageTopics.stat_shared`), skips the unmarked ones of the shared topics
(:func:`stat_skips`). Both are :attr:`streams.agents.AgentSpec.skip` predicates, so a skipped
message never reaches the stage or its metrics. The stat agent reads every message of the
shared topics but hands its stage only the marked ones, so a stat result waits for the header
checks of the routine results before it, not for their processing. docs/studies.md
("Priorities") has the design and its limits.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Final

from streams.kafka import Outgoing
from streams.pipeline import Incoming, StageHandler

LANE_HEADER: Final = "radstream-lane"
STAT_LANE: Final = "stat"
_STAT_HEADER: Final = (LANE_HEADER, STAT_LANE.encode())


def is_stat_lane(message: Incoming) -> bool:
    """Whether ``message`` was produced by a stat lane (it carries the lane header)."""
    return message.header(LANE_HEADER) == STAT_LANE


class MarkLane:
    """``handler``, with every message it produces marked as the stat lane's."""

    def __init__(self, handler: StageHandler) -> None:
        self.stage = handler.stage
        self._handler = handler

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """The handler's outcomes, each with the lane header added."""
        return [
            replace(out, headers=(*out.headers, _STAT_HEADER))
            for out in await self._handler.handle(batch)
        ]


def routine_skips(message: Incoming) -> bool:
    """The routine agent's :attr:`~streams.agents.AgentSpec.skip`: what a stat lane marked.

    A skipped message is the other lane's: that lane's agent (a consumer group of its own)
    handles it, so skipping it here loses nothing.
    """
    return is_stat_lane(message)


def stat_skips(stat_topics: Collection[str]) -> Callable[[Incoming], bool]:
    """The stat agent's skip: its own lane's topics are taken whole, shared topics' marked
    messages only (the routine agent handles the rest)."""
    own = frozenset(stat_topics)
    return lambda message: message.topic not in own and not is_stat_lane(message)
