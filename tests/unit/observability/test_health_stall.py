"""The stall watchdog's judgement: a stage with work, dependencies up and no progress is dead."""

from __future__ import annotations

import pytest

from observability.health import HealthState
from tests.unit.fake_clock import FakeClock

pytestmark = pytest.mark.requirement("RS-REL-14")

STALL = 300.0


def watched(clock: FakeClock, *, database: bool = False) -> HealthState:
    """A started results worker with lag 5, everything reachable, beating."""
    state = HealthState(("results",), requires_database=database, stall_timeout=STALL, clock=clock)
    state.mark_started()
    state.set_broker_up(True)
    state.set_database_up(True)
    state.set_lag("results", 5, committed=10)
    return state


def later(state: HealthState, clock: FakeClock, seconds: float) -> None:
    """Time passes; the event loop keeps beating (only the stage is stuck)."""
    clock.now += seconds
    state.beat()


class TestStall:
    def test_lag_without_progress_past_the_bound_is_not_live(self) -> None:
        """A stuck producer: broker up, lag, no commit for longer than the bound."""
        clock = FakeClock()
        state = watched(clock)
        later(state, clock, STALL + 1)
        live, checks = state.live()
        assert not live
        assert not checks["stage:results"].ok
        assert state.stalled() == f"stage:results: lag 5 and no progress for {STALL + 1:.0f} s"

    def test_within_the_bound_is_live(self) -> None:
        """Slower than readiness wants, but not yet stalled."""
        clock = FakeClock()
        state = watched(clock)
        later(state, clock, STALL - 1)
        assert state.live()[0]
        assert state.stalled() is None

    def test_progress_resets_the_bound(self) -> None:
        """A committed offset that advanced is progress."""
        clock = FakeClock()
        state = watched(clock)
        later(state, clock, STALL - 1)
        state.set_lag("results", 5, committed=11)
        later(state, clock, STALL - 1)
        assert state.stalled() is None

    def test_no_lag_is_never_stalled(self) -> None:
        """An idle stage with nothing to do is healthy however long it idles."""
        clock = FakeClock()
        state = watched(clock)
        state.set_lag("results", 0, committed=10)
        later(state, clock, 10 * STALL)
        assert state.stalled() is None

    def test_broker_outage_is_waiting_not_stalled(self) -> None:
        """Restarting cannot bring the broker back: the worker stays live and waits."""
        clock = FakeClock()
        state = watched(clock)
        state.set_broker_up(False)
        later(state, clock, 10 * STALL)
        live, checks = state.live()
        assert live
        assert checks["stage:results"].detail == "waiting for the broker"

    def test_database_outage_is_waiting_when_the_stage_needs_it(self) -> None:
        """The results sink waits out PostgreSQL (backpressure) instead of restarting."""
        clock = FakeClock()
        state = watched(clock, database=True)
        state.set_database_up(False)
        later(state, clock, 10 * STALL)
        assert state.stalled() is None

    def test_database_outage_does_not_excuse_a_stage_without_database(self) -> None:
        """A stage that does not write to PostgreSQL has no reason to wait for it."""
        clock = FakeClock()
        state = watched(clock, database=False)
        state.set_database_up(False)
        later(state, clock, STALL + 1)
        assert state.stalled() is not None

    def test_without_a_bound_stalls_are_not_judged(self) -> None:
        """Liveness is the heartbeat alone unless a stall bound is given."""
        clock = FakeClock()
        state = HealthState(("results",), requires_database=False, clock=clock)
        state.mark_started()
        state.set_lag("results", 5, committed=1)
        later(state, clock, 10 * STALL)
        assert state.live() == (True, {"event_loop": state.live()[1]["event_loop"]})
        assert state.stalled() is None

    def test_bound_must_be_positive(self) -> None:
        """A zero or negative bound is a configuration error."""
        with pytest.raises(ValueError, match="positive"):
            HealthState(("results",), requires_database=False, stall_timeout=0)
