"""The composition root without services: groups, the built worker, supervision of stages."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

import app
from observability.health import HealthState
from observability.metrics import Metrics
from schemas.events import Stage
from schemas.settings import load_settings
from streams.lanes import LANE_HEADER, routine_skips
from streams.pipeline import Incoming, NullObserver
from streams.stages.studies import StudiesStage
from streams.topics import TopicNames


def worker(stages: tuple[str, ...] = ("validation",)) -> app.Worker:
    """A built worker with nothing to consume and a delivery that accepts everything."""

    async def deliver(_messages: object) -> None:
        return None

    return app.Worker(
        settings=load_settings(),
        stages=stages,
        specs=(),
        deliver=deliver,
        observer=NullObserver(),
        health=HealthState(stages, requires_database=False),
        metrics=Metrics(CollectorRegistry(), process_collector=False),
        started=asyncio.Event(),
    )


class TestConsumerGroups:
    def test_one_group_per_stage_set(self) -> None:
        """Each stage set is its own consumer group, independent of the order given."""
        settings = load_settings()
        assert app.consumer_group(settings, ["results", "validation"]) == (
            "radstream-results+validation"
        )
        assert app.consumer_group(settings, ["validation"]) != app.consumer_group(
            settings, ["inference"]
        )

    def test_worker_knows_its_group(self) -> None:
        """The built worker consumes as its stage set's group."""
        assert worker(("validation", "inference")).group_id == "radstream-inference+validation"

    def test_dicom_export_consumes_in_its_own_group(self) -> None:
        """A slow PACS must not hold back the results stage: dicom-export has its own group."""
        built = worker(("results", "dicom-export"))
        assert built.group_of("results") == "radstream-dicom-export+results"
        assert built.group_of("dicom-export") == "radstream-dicom-export"

    def test_studies_stat_agent_consumes_in_its_own_group(self) -> None:
        """The studies stat agent reads shared topics whole: a group of its own, not split."""
        built = worker(("validation", "inference", "results", "studies"))
        assert built.group_of("studies") == "radstream-inference+results+studies+validation"
        assert built.group_of("studies-stat") == "radstream-studies-stat"

    def test_every_stat_agent_consumes_in_its_own_group(self) -> None:
        """No routine backlog in the stage set's consumer stands between a stat image and its
        agent: validation-stat and inference-stat have a consumer (group) of their own too."""
        built = worker(("validation", "inference", "results", "studies"))
        for stage in ("validation", "inference"):
            assert built.group_of(stage) == built.group_id
            assert built.group_of(f"{stage}-stat") == f"radstream-{stage}-stat"


class TestStudiesLanes:
    def test_stat_agent_reads_stat_arrivals_and_the_shared_outcome_topics(self) -> None:
        """Routine: arrivals, signals, results, rejections; stat: its arrivals and the shared."""
        names = TopicNames("p.")
        stage = cast("StudiesStage", SimpleNamespace(stage=Stage.STUDIES))
        routine, stat = app.build_studies_specs(names, load_settings(), stage)
        assert (routine.name, stat.name) == ("studies", "studies-stat")
        assert names.arrived_stat not in routine.topics
        assert set(stat.topics) == {names.arrived_stat, names.results, names.rejected}
        assert stat.batch_wait_seconds == app.STAT_BATCH_WAIT_SECONDS
        # One stage, two lanes: each agent skips the other lane's messages before the stage
        # (and its metrics) see them.
        assert routine.handler is stage
        assert stat.handler is stage
        assert routine.skip is routine_skips
        marked = Incoming(names.results, 0, 0, None, b"", ((LANE_HEADER, b"stat"),))
        unmarked = Incoming(names.results, 0, 1, None, b"", ())
        arrival = Incoming(names.arrived_stat, 0, 0, None, b"", ())
        assert stat.kept([marked, unmarked, arrival]) == [marked, arrival]


class TestDefaultStages:
    def test_without_destinations_no_export(self) -> None:
        """With nothing to send reports to, the default stages leave the export out."""
        assert app.default_stages(load_settings()) == (
            "validation",
            "inference",
            "results",
            "audit",
            "studies",
        )

    def test_with_a_destination_the_export_runs(self) -> None:
        """A configured destination adds dicom-export to the default stages."""
        settings = load_settings(
            dicom={"export_destinations": [{"ae_title": "PACS", "host": "pacs", "port": 104}]}
        )
        assert app.default_stages(settings) == app.ALL_STAGES
        assert "dicom-export" in app.ALL_STAGES


class TestWorker:
    async def test_mark_started_makes_it_ready_and_wakes_waiters(self) -> None:
        """A loop that consumes marks the worker started: health and the started event."""
        built = worker()
        assert built.health.evaluate()[1]["started"].ok is False
        built.mark_started()
        assert built.started.is_set()
        assert built.health.evaluate()[1]["started"].ok is True

    async def test_unknown_stage_is_refused_before_anything_starts(self) -> None:
        """A typo in the stage list fails before a producer or a topic is touched."""
        async with AsyncExitStack() as stack:
            with pytest.raises(ValueError, match="unknown stages"):
                await app.build_worker(stack, load_settings(), ["validaton"])


class TestSupervision:
    async def test_failed_stage_raises(self) -> None:
        """A dead audit stage ends the worker with an error instead of running unaudited."""

        async def dies() -> None:
            raise ConnectionError("broker gone")

        task = asyncio.create_task(dies())
        with pytest.raises(RuntimeError, match="stage failed"):
            await app.wait_for_stop_or_failure(asyncio.Event(), [task])

    async def test_stage_ending_early_raises(self) -> None:
        """A consumer loop that returns although nobody stopped it ends the worker too."""

        async def returns() -> None:
            return None

        task = asyncio.create_task(returns())
        with pytest.raises(RuntimeError, match="ended before the worker was stopped"):
            await app.wait_for_stop_or_failure(asyncio.Event(), [task])

    async def test_stop_returns_normally(self) -> None:
        """Setting stop ends the wait without error while stages still run."""
        stop = asyncio.Event()
        forever = asyncio.create_task(asyncio.sleep(60))
        stop.set()
        await app.wait_for_stop_or_failure(stop, [forever])
        assert not forever.done()
        forever.cancel()


class TestFailureWhileStopping:
    async def test_stage_failing_after_the_stop_is_raised(self) -> None:
        """A stage that fails while it stops makes the worker fail, with its error as cause."""
        stop = asyncio.Event()
        draining = asyncio.Event()

        async def fails_while_draining() -> None:
            await draining.wait()
            raise ConnectionError("audit commit failed")

        task = asyncio.create_task(fails_while_draining())
        stop.set()
        await app.wait_for_stop_or_failure(stop, [task])  # a stop: no failure yet
        draining.set()
        await app.finish_within([task], 5.0)
        with pytest.raises(RuntimeError, match="failed while stopping") as caught:
            app.raise_failure_while_stopping([task])
        assert isinstance(caught.value.__cause__, ConnectionError)

    async def test_stage_cancelled_by_the_stop_is_no_failure(self) -> None:
        """A stage cancelled because it overran the stop, or that returned, did not fail."""

        async def forever() -> None:
            await asyncio.Event().wait()

        overran = asyncio.create_task(forever())
        returned = asyncio.create_task(asyncio.sleep(0))
        await app.finish_within([overran, returned], 0.01)
        assert overran.cancelled()
        app.raise_failure_while_stopping([overran, returned])
