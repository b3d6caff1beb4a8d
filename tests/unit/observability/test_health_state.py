"""Worker liveness/readiness judgement and the probes that feed it (fake clock, fake probes)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence

import pytest

from observability.health import (
    HealthState,
    WorkerHealth,
    probe_once,
    run_health_probes,
    stage_lag_probe,
)
from observability.lag import GroupSnapshot, LagSample
from schemas.errors import ErrorCode, RadstreamError
from tests.unit.fake_clock import FakeClock

pytestmark = pytest.mark.requirement("RS-OBS-03")


def ready_state(
    clock: FakeClock, stages: Sequence[str] = ("validation",), *, database: bool = False
) -> HealthState:
    """A state with every fact healthy at ``clock.now``."""
    state = HealthState(
        stages,
        requires_database=database,
        heartbeat_timeout=10.0,
        progress_timeout=60.0,
        clock=clock,
    )
    state.mark_started()
    state.set_broker_up(True)
    if database:
        state.set_database_up(True)
    return state


class TestLiveness:
    def test_fresh_heartbeat_is_live(self) -> None:
        """A loop that beat within the timeout is live."""
        clock = FakeClock()
        state = ready_state(clock)
        clock.now += 5
        assert state.live()[0] is True

    def test_stale_heartbeat_is_not_live(self) -> None:
        """A loop that has not beat for longer than the timeout is not live."""
        clock = FakeClock()
        state = ready_state(clock)
        clock.now += 11
        live, checks = state.live()
        assert (live, checks["event_loop"].detail) == (False, "no heartbeat for 11.0 s")

    def test_beat_renews_liveness(self) -> None:
        """A beat after a long pause makes the worker live again."""
        clock = FakeClock()
        state = ready_state(clock)
        clock.now += 30
        state.beat()
        assert state.live()[0] is True


class TestReadiness:
    def test_all_healthy_is_ready(self) -> None:
        """Started, broker up, no lag: ready."""
        assert ready_state(FakeClock()).evaluate()[0] is True

    def test_not_started_is_not_ready(self) -> None:
        """Before the consumers start the worker takes no traffic."""
        state = HealthState(["validation"], requires_database=False, clock=FakeClock())
        state.set_broker_up(True)
        ready, checks = state.evaluate()
        assert (ready, checks["started"].ok) == (False, False)

    def test_broker_not_checked_is_not_ready(self) -> None:
        """Until the first broker probe the worker is not ready."""
        state = HealthState(["validation"], requires_database=False, clock=FakeClock())
        state.mark_started()
        ready, checks = state.evaluate()
        assert (ready, checks["broker"].detail) == (False, "broker not checked yet")

    def test_broker_down_is_not_ready(self) -> None:
        """An unreachable broker makes the worker unready."""
        state = ready_state(FakeClock())
        state.set_broker_up(False)
        ready, checks = state.evaluate()
        assert (ready, checks["broker"].detail) == (False, "broker unreachable")

    def test_database_down_is_not_ready_when_required(self) -> None:
        """A results worker without its database is not ready."""
        state = ready_state(FakeClock(), ("results",), database=True)
        state.set_database_up(False)
        ready, checks = state.evaluate()
        assert (ready, checks["database"].ok) == (False, False)

    def test_database_not_checked_when_not_required(self) -> None:
        """A validation worker has no database check."""
        assert "database" not in ready_state(FakeClock()).evaluate()[1]

    def test_stale_heartbeat_is_not_ready(self) -> None:
        """A blocked loop is neither live nor ready."""
        clock = FakeClock()
        state = ready_state(clock)
        clock.now += 20
        state.set_broker_up(True)
        assert state.evaluate()[0] is False

    def test_lag_without_progress_beyond_timeout_is_not_ready(self) -> None:
        """Work waiting and no batch for longer than the timeout: not ready."""
        clock = FakeClock()
        state = ready_state(clock)
        state.record_progress("validation")
        clock.now += 61
        state.beat()
        state.set_lag("validation", 4)
        ready, checks = state.evaluate()
        assert (ready, checks["stage:validation"].detail) == (
            False,
            "lag 4 and no progress for 61 s",
        )

    def test_lag_with_recent_progress_is_ready(self) -> None:
        """A busy stage that keeps finishing batches stays ready."""
        clock = FakeClock()
        state = ready_state(clock)
        clock.now += 50
        state.beat()
        state.record_progress("validation")
        state.set_lag("validation", 400)
        clock.now += 30
        state.beat()
        assert state.evaluate()[0] is True

    def test_no_lag_without_progress_is_ready(self) -> None:
        """An idle stage (no work) is ready however long ago it consumed."""
        clock = FakeClock()
        state = ready_state(clock)
        clock.now += 3600
        state.beat()
        state.set_lag("validation", 0)
        assert state.evaluate()[0] is True

    def test_unknown_lag_is_ready(self) -> None:
        """Without a lag reading the stage check does not fail readiness on its own."""
        clock = FakeClock()
        state = ready_state(clock)
        clock.now += 3600
        state.beat()
        assert state.evaluate()[1]["stage:validation"].detail == "lag unknown"

    def test_start_grants_grace_before_first_progress(self) -> None:
        """A worker that just started with a backlog gets the progress timeout as grace."""
        clock = FakeClock()
        state = HealthState(["validation"], requires_database=False, clock=clock)
        clock.now += 500
        state.beat()
        state.mark_started()
        state.set_broker_up(True)
        state.set_lag("validation", 10)
        clock.now += 30
        state.beat()
        assert state.evaluate()[0] is True

    @pytest.mark.parametrize(
        ("committed_later", "ready"),
        [
            pytest.param(103, True, id="advancing count as progress"),
            pytest.param(100, False, id="frozen are not progress"),
        ],
    )
    def test_committed_offsets_renew_progress_only_when_they_advance(
        self, committed_later: int, ready: bool
    ) -> None:
        """A higher committed-offset sum is progress (stages without a batch hook, e.g. audit);
        the same sum is not."""
        clock = FakeClock()
        state = ready_state(clock, ("audit",))
        state.set_lag("audit", 5, committed=100)
        clock.now += 100
        state.beat()
        state.set_lag("audit", 5, committed=committed_later)
        assert state.evaluate()[0] is ready

    def test_unknown_stage_is_refused(self) -> None:
        """Progress for a stage the worker does not run is a wiring bug and raises."""
        with pytest.raises(ValueError, match="not run by this worker"):
            ready_state(FakeClock()).record_progress("inference")

    def test_timeouts_must_be_positive(self) -> None:
        """A zero timeout is refused."""
        with pytest.raises(ValueError, match="positive"):
            HealthState([], requires_database=False, heartbeat_timeout=0)


class FakeSource:
    """Snapshot source returning one fixed list of snapshots."""

    def __init__(self, snapshots: list[GroupSnapshot]) -> None:
        self._snapshots = snapshots
        self.asked: list[Sequence[str] | None] = []

    async def snapshots(self, groups: Sequence[str] | None) -> list[GroupSnapshot]:
        """The fixed snapshots."""
        self.asked.append(groups)
        return self._snapshots


class TestProbes:
    async def test_stage_lag_probe_sums_the_stage_topics(self) -> None:
        """Each stage gets the lag and committed sum of its own input topics in its group."""
        samples = (
            LagSample("w", "p.arrived", 0, 10, 13, 0.0),
            LagSample("w", "p.arrived", 1, 5, 5, 0.0),
            LagSample("w", "p.validated", 0, 7, 9, 0.0),
        )
        source = FakeSource([GroupSnapshot("w", 0.0, samples, 1)])
        probe = stage_lag_probe(
            source,
            {
                "validation": ("w", ("p.arrived",)),
                "inference": ("w", ("p.validated",)),
                "audit": ("w-audit", None),
            },
        )
        assert await probe() == {"validation": (3, 15), "inference": (2, 7), "audit": (0, 0)}
        assert source.asked == [["w", "w-audit"]]

    async def test_stage_lag_probe_all_topics_when_none(self) -> None:
        """Topics None takes every partition the group commits."""
        samples = (LagSample("a", "x", 0, 1, 4, 0.0), LagSample("a", "y", 0, 2, 3, 0.0))
        probe = stage_lag_probe(
            FakeSource([GroupSnapshot("a", 0.0, samples)]), {"audit": ("a", None)}
        )
        assert await probe() == {"audit": (4, 3)}

    async def test_probe_results_reach_the_reachability_listeners(self) -> None:
        """Each probe's verdict is handed on (to the worker's up gauges), failures included."""
        heard: list[tuple[str, bool]] = []
        state = HealthState(
            ["results"],
            requires_database=True,
            clock=FakeClock(),
            on_broker_up=lambda up: heard.append(("broker", up)),
            on_database_up=lambda up: heard.append(("database", up)),
        )

        async def failing_lags() -> Mapping[str, tuple[int, int]]:
            raise OSError

        async def database() -> bool:
            return True

        await probe_once(state, failing_lags, database)
        assert heard == [("broker", False), ("database", True)]

    async def test_probe_once_records_broker_lag_and_database(self) -> None:
        """A successful round marks broker and database up and stores each stage's lag."""
        clock = FakeClock()
        state = HealthState(["results"], requires_database=True, clock=clock)
        state.mark_started()

        async def lags() -> Mapping[str, tuple[int, int]]:
            return {"results": (0, 9)}

        async def database() -> bool:
            return True

        await probe_once(state, lags, database)
        ready, checks = state.evaluate()
        assert (ready, checks["stage:results"].detail) == (True, "no lag")

    async def test_probe_failures_mark_checks_down(self) -> None:
        """A raising lag probe means broker down; a raising database probe, database down."""
        state = HealthState(["results"], requires_database=True, clock=FakeClock())
        state.mark_started()

        async def broken() -> Mapping[str, tuple[int, int]]:
            raise OSError("connection refused")

        async def broken_db() -> bool:
            raise OSError("connection refused")

        await probe_once(state, broken, broken_db)
        checks = state.evaluate()[1]
        assert (checks["broker"].ok, checks["database"].ok) == (False, False)

    async def test_run_health_probes_beats_and_probes_until_stop(self) -> None:
        """The loop beats the heartbeat and probes repeatedly, then returns on stop."""
        clock = FakeClock()
        state = HealthState(["validation"], requires_database=False, clock=clock)
        calls = 0
        stop = asyncio.Event()

        async def lags() -> Mapping[str, tuple[int, int]]:
            nonlocal calls
            calls += 1
            if calls == 3:
                stop.set()
            return {"validation": (0, 0)}

        clock.now += 100  # the heartbeat from construction is stale now
        task = asyncio.create_task(
            run_health_probes(
                state, stop, lag_probe=lags, interval_seconds=0.01, heartbeat_seconds=0.01
            )
        )
        await asyncio.wait_for(task, 5)  # bounded: the loop must stop once stop is set
        assert (calls, state.live()[0], state.evaluate()[1]["broker"].ok) == (3, True, True)


class ManagedFake(FakeSource):
    """A fake source that records its lifecycle."""

    def __init__(self, snapshots: list[GroupSnapshot]) -> None:
        super().__init__(snapshots)
        self.events: list[str] = []

    async def start(self) -> None:
        """Record the start."""
        self.events.append("start")

    async def stop(self) -> None:
        """Record the stop."""
        self.events.append("stop")


class TestWorkerHealth:
    async def test_start_probes_and_close_stops_everything(self) -> None:
        """start() starts the reader and probes the stages; close() ends the loop and the reader."""
        samples = (LagSample("w", "p.arrived", 0, 4, 6, 0.0),)
        source = ManagedFake([GroupSnapshot("w", 0.0, samples, 1)])
        state = HealthState(["validation"], requires_database=False)
        health = WorkerHealth(state, source, {"validation": ("w", None)}, interval_seconds=0.01)
        await health.start()
        for _ in range(100):  # bounded: the first probe round runs at once
            if source.asked:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(health.close(), 5)
        checks = state.evaluate()[1]
        stage_detail = checks["stage:validation"].detail.split(",")[0]  # then "progress N s ago"
        assert (source.events, checks["broker"].ok, stage_detail) == (
            ["start", "stop"],
            True,
            "lag 2",
        )
        assert health.server is None

    async def test_an_address_in_use_is_a_settings_error_and_starts_nothing(self) -> None:
        """A /metrics port another process holds: SETTINGS_INVALID, the reader never started."""
        source = ManagedFake([])
        state = HealthState(["validation"], requires_database=False)
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = int(holder.getsockname()[1])
            health = WorkerHealth(state, source, {}, address=("127.0.0.1", port))
            with pytest.raises(RadstreamError) as refused:
                await health.start()
        assert refused.value.code is ErrorCode.SETTINGS_INVALID
        assert "RADSTREAM_OBSERVABILITY__METRICS_PORT" in refused.value.reason
        assert (source.events, health.server) == ([], None)

    async def test_a_reader_that_fails_to_start_releases_the_port(self) -> None:
        """The server binds first; when the broker then does not answer, the port is freed."""

        class Unreachable(ManagedFake):
            async def start(self) -> None:
                raise RuntimeError("broker down")

        state = HealthState(["validation"], requires_database=False)
        health = WorkerHealth(state, Unreachable([]), {}, address=("127.0.0.1", 0))
        with pytest.raises(RuntimeError, match="broker down"):
            await health.start()
        assert health.server is None
