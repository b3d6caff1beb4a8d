"""``radstream lag``: print each consumer group's lag and status, or export it (``--serve``).

Without ``--serve`` the command takes two snapshots ``--interval`` seconds apart (a status needs
a trend) and prints, per group, topic and partition: committed offset, end offset, lag and
estimated seconds, with the group's Burrow-style status. It exits 1 when any group is stalled,
stopped or in error, so scripts can use it as a check.

With ``--serve`` it polls every ``--interval`` seconds until SIGINT/SIGTERM, keeps the window of
``observability.lag_window_seconds``, and serves ``/metrics`` on
``observability.metrics_host:metrics_port``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from typing import Final

from prometheus_client import CollectorRegistry

from observability.lag import GroupReport, LagMonitor, LagReader, format_reports
from observability.metrics import LagStatus, Metrics, serve_metrics
from schemas.settings import Settings

ONE_SHOT_INTERVAL: Final = 5.0  # longer than faust's ~2.8 s commit interval
SERVE_INTERVAL: Final = 15.0  # a typical Prometheus scrape interval
FAILING: Final = frozenset({LagStatus.STALLED, LagStatus.STOPPED, LagStatus.ERROR})


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``radstream lag`` to the command line."""
    lag = sub.add_parser("lag", help="consumer lag per group/topic/partition and group status")
    lag.add_argument("--serve", action="store_true", help="export gauges on /metrics until stopped")
    lag.add_argument(
        "--interval",
        type=float,
        default=None,
        help=f"seconds between snapshots (default {ONE_SHOT_INTERVAL:g}, "
        f"with --serve {SERVE_INTERVAL:g})",
    )
    lag.add_argument(
        "--group", action="append", default=None, help="consumer group (repeatable; default all)"
    )
    lag.set_defaults(func=cmd_lag)


def _reader(settings: Settings) -> LagReader:
    return LagReader.from_settings(settings)


async def lag_once(
    settings: Settings, groups: Sequence[str] | None, interval: float
) -> list[GroupReport]:
    """Two snapshots ``interval`` seconds apart, judged as one window."""
    async with _reader(settings) as reader:
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
    """Poll every ``interval`` seconds and serve the gauges on /metrics until ``stop`` is set."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    server, _thread = serve_metrics(
        registry, settings.observability.metrics_host, settings.observability.metrics_port
    )
    if on_listening is not None:
        on_listening(server.server_port)
    try:
        async with _reader(settings) as reader:
            monitor = LagMonitor(
                reader, settings.observability.lag_window_seconds, metrics=metrics, groups=groups
            )
            while not stop.is_set():
                await monitor.poll()
                try:
                    await asyncio.wait_for(stop.wait(), interval)
                except TimeoutError:
                    continue
    finally:
        server.shutdown()
        server.server_close()


def cmd_lag(settings: Settings, args: argparse.Namespace) -> int:
    """Print the lag table once, or export it until SIGINT/SIGTERM with ``--serve``."""
    groups = args.group or None
    if args.serve:
        import signal  # noqa: PLC0415

        async def serve() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await run_lag_exporter(settings, groups, args.interval or SERVE_INTERVAL, stop)

        asyncio.run(serve())
        return 0
    reports = asyncio.run(lag_once(settings, groups, args.interval or ONE_SHOT_INTERVAL))
    print(format_reports(reports))
    return 1 if any(r.verdict.status in FAILING for r in reports) else 0


__all__ = ["cmd_lag", "lag_once", "register", "run_lag_exporter"]
