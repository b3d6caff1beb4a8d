"""A service freezes what start-up built, so full collections stop walking it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from cli.context import Invocation, freeze_startup_heap


class RecordingCollector:
    """Records the order of the collector calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def collect(self) -> int:
        self.calls.append("collect")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test process's heap is unfrozen again afterwards (the suite runs on)."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_garbage_is_collected_before_the_rest_is_frozen() -> None:
    """Freezing first would keep start-up's garbage for ever: collect, then freeze."""
    collector = RecordingCollector()
    freeze_startup_heap(collector)
    assert collector.calls == ["collect", "freeze"]


@pytest.mark.usefixtures("unfrozen")
def test_a_started_service_has_its_heap_frozen() -> None:
    """After service_started the objects alive then are out of the collector's generations."""
    survivor = [object() for _ in range(100)]
    assert gc.get_freeze_count() == 0
    Invocation().service_started()
    assert gc.get_freeze_count() >= len(survivor)
    tracked = {id(o) for o in gc.get_objects()}
    assert id(survivor) not in tracked  # frozen objects are not in any generation


@pytest.mark.usefixtures("unfrozen")
def test_start_up_garbage_is_not_frozen() -> None:
    """A cycle that start-up dropped is collected, not kept in the permanent generation."""

    class Node:
        other: object = None

    first, second = Node(), Node()
    first.other, second.other = second, first
    dropped = weakref.ref(first)
    del first, second  # unreachable now, but only the cycle collector can free them
    freeze_startup_heap()
    assert dropped() is None
