"""``radstream lag``: each consumer group's lag and status, once or as exported metrics.

Without ``--serve`` the command takes two snapshots ``--interval`` seconds apart (a status needs
a trend) and prints, per group, topic and partition: committed offset, end offset, lag and
estimated seconds, with the group's Burrow-style status. It exits 1 when any group is stalled,
stopped or in error, so scripts can use it as a check.

With ``--serve`` it polls every ``--interval`` seconds until SIGINT/SIGTERM, keeps the window of
``observability.lag_window_seconds``, and serves ``/metrics`` on
``observability.metrics_host:metrics_port``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import click
from prometheus_client import CollectorRegistry

from cli.context import Command, Invocation, metrics_endpoint, pass_invocation, run_until_signalled
from cli.errors import CommandError
from cli.output import emit, emit_json, progress
from cli.params import json_option, seconds_option
from observability.lag import GroupReport, LagMonitor, LagReader, format_reports
from observability.metrics import LagStatus, Metrics
from schemas.errors import ErrorCode
from schemas.settings import Settings
from streams.dlq import client_config as dlq_client_config
from streams.dlq import waiting_count
from streams.topics import TopicNames

ONE_SHOT_INTERVAL: Final = 5.0  # longer than faust's ~2.8 s commit interval
SERVE_INTERVAL: Final = 15.0  # a typical Prometheus scrape interval
FAILING: Final = frozenset({LagStatus.STALLED, LagStatus.STOPPED, LagStatus.ERROR})


def _reader(settings: Settings) -> LagReader:
    return LagReader.from_settings(settings)


async def lag_once(
    settings: Settings, groups: Sequence[str] | None, interval: float
) -> list[GroupReport]:
    """Two snapshots ``interval`` seconds apart, judged as one window.

    Raises:
        CommandError: ``RESOURCE_NOT_FOUND`` when a named group does not exist on the broker
            (checked before the first snapshot).
    """
    async with _reader(settings) as reader:
        unknown = await reader.unknown_groups(groups) if groups else []
        if unknown:
            raise CommandError(
                ErrorCode.RESOURCE_NOT_FOUND,
                f"no consumer group {', '.join(map(repr, unknown))} on the broker "
                f"({settings.kafka_bootstrap})",
                advice="Check the name: 'radstream lag' without --group lists radstream's "
                f"groups ({settings.consumer_group_prefix}-<stages>, "
                "RADSTREAM_CONSUMER_GROUP_PREFIX); a group exists once its worker has started",
            )
        monitor = LagMonitor(reader, settings.observability.lag_window_seconds, groups=groups)
        await monitor.poll()
        await asyncio.sleep(interval)
        return await monitor.poll()


async def run_lag_exporter(
    settings: Settings,
    groups: Sequence[str] | None,
    interval: float,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Poll every ``interval`` seconds and serve the gauges on /metrics until ``stop`` is set.

    ``on_listening`` is told the /metrics port once the first poll succeeded.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    kafka, topics = dlq_client_config(settings), TopicNames(settings.topic_prefix)
    with metrics_endpoint(settings, registry) as port:
        async with _reader(settings) as reader:
            monitor = LagMonitor(
                reader, settings.observability.lag_window_seconds, metrics=metrics, groups=groups
            )
            while not stop.is_set():
                await monitor.poll()
                # The exporter is the one process that reads the dead-letter topic regularly.
                metrics.set_deadletter_depth(await waiting_count(kafka, topics))
                if on_listening is not None:  # serving: the first poll reached the broker
                    on_listening(port)
                    on_listening = None
                try:
                    await asyncio.wait_for(stop.wait(), interval)
                except TimeoutError:
                    continue


def report_data(report: GroupReport) -> dict[str, Any]:
    """One group's report as JSON data (an unbounded estimate is ``null``)."""
    return {
        "group": report.group,
        "status": report.verdict.status.value,
        "reason": report.verdict.reason,
        "members": report.members,
        "lag": report.lag,
        "partitions": [
            {
                "topic": part.sample.topic,
                "partition": part.sample.partition,
                "committed": part.sample.committed,
                "end": part.sample.end,
                "lag": part.sample.lag,
                "estimated_seconds": None
                if math.isinf(part.estimate.seconds)
                else part.estimate.seconds,
                "estimate_method": part.estimate.method.value,
            }
            for part in report.partitions
        ],
    }


@click.command("lag", cls=Command)
@click.option(
    "--serve",
    is_flag=True,
    help="Keep polling and export the lag gauges on /metrics until SIGINT or SIGTERM.",
)
@seconds_option(
    "--interval",
    minimum=0.1,
    help_text=f"Seconds between snapshots (default {ONE_SHOT_INTERVAL:g}; with --serve "
    f"{SERVE_INTERVAL:g}).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    help="A consumer group to judge (repeatable; default: every radstream group). Without "
    "--serve, a group the broker does not know is refused (exit 4).",
)
@json_option
@pass_invocation
def command(
    invocation: Invocation,
    *,
    serve: bool,
    interval: float | None,
    groups: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show each consumer group's lag and status.

    The status is ok, warning, stalled, stopped or error. It needs a trend, so two snapshots are
    taken --interval seconds apart; a group is judged by whether it commits and whether its lag
    grows, not by a threshold. Exits 1 when a group is stalled, stopped or in error, and 4 when
    a --group does not exist on the broker. With --serve a named group that does not exist yet
    is exported with status error until its worker creates it (the exporter may start first).
    """
    selected = list(groups) or None
    if serve:
        settings = invocation.start(service=True)
        run_until_signalled(
            lambda stop: run_lag_exporter(
                settings,
                selected,
                interval or SERVE_INTERVAL,
                stop,
                on_listening=lambda _port: invocation.service_started(),
            )
        )
        return
    settings = invocation.start()
    seconds = interval or ONE_SHOT_INTERVAL
    with progress(f"sampling consumer lag twice, {seconds:g} s apart"):
        reports = asyncio.run(lag_once(settings, selected, seconds))
    if as_json:
        emit_json([report_data(report) for report in reports])
    else:
        emit(format_reports(reports))
    failing = [r.group for r in reports if r.verdict.status in FAILING]
    if failing:
        raise CommandError(
            ErrorCode.CHECK_FAILED,
            f"consumer group(s) stalled, stopped or in error: {', '.join(failing)}",
            advice="See the status column and docs/observability.md, 'Consumer lag'",
        )
