"""Worker liveness and readiness (``/livez``, ``/readyz``) and ``/metrics``, on one port.

- :class:`HealthState` holds the facts (heartbeat, broker and database reachability, each
  stage's lag and last progress) and judges them; it does no I/O and takes an injectable clock.
- :func:`serve_health` answers HTTP from a daemon thread (stdlib ``ThreadingHTTPServer``, like
  prometheus_client's own server). Off the event loop on purpose: a blocked loop cannot answer
  for itself, but this thread still can, and says 503 because the heartbeat went stale.
- :func:`run_health_probes` runs on the worker's event loop: it beats the heartbeat every
  second and probes the broker (the worker's own consumer lag), and the database, every
  ``interval_seconds``.

Liveness: the event loop beat within ``heartbeat_timeout`` seconds and, with a
``stall_timeout``, no stage is stalled: lag > 0, the broker (and the database it needs)
reachable, and no progress for ``stall_timeout`` seconds (a stuck producer, a hung consumer;
restarting helps, waiting does not). During an outage a stage is waiting, not stalled: the
worker stays live. Readiness: live, started,
broker reachable, database reachable (when the worker runs the results stage), and every stage
with lag > 0 made progress within ``progress_timeout`` seconds ("consumed recently when there is
work": faust consumers can stop fetching silently, see faust-streaming #175/#640).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Protocol

from prometheus_client import CollectorRegistry

from observability.lag import SnapshotSource
from observability.metrics import render_metrics
from schemas.errors import address_unusable

DEFAULT_HEARTBEAT_TIMEOUT: Final = 10.0
DEFAULT_PROGRESS_TIMEOUT: Final = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    """One health check's outcome and a short, data-free explanation."""

    ok: bool
    detail: str


@dataclass(slots=True)
class _StageFacts:
    lag: int | None = None
    committed: int | None = None
    last_progress: float | None = None


class HealthState:
    """What the worker knows about its own health, and the liveness/readiness verdicts.

    Written from the event loop, read from the HTTP thread: every access holds a lock.

    Args:
        stages: the stages this worker runs (``record_progress``/``set_lag`` accept only these).
        requires_database: readiness includes the database (the results stage writes to it).
        heartbeat_timeout: seconds without a heartbeat after which the worker is not live.
        progress_timeout: seconds a stage with lag > 0 may go without progress and stay ready.
        stall_timeout: seconds a stage with lag > 0 and its dependencies reachable may go
            without progress and stay live (``None``: never judged; see the module docstring).
        clock: monotonic seconds (tests pass a fake).
        on_broker_up: told each broker probe's result (the worker's ``radstream_broker_up``).
        on_database_up: told each database probe's result (``radstream_database_up``).
    """

    def __init__(
        self,
        stages: Sequence[str],
        *,
        requires_database: bool,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        progress_timeout: float = DEFAULT_PROGRESS_TIMEOUT,
        stall_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_broker_up: Callable[[bool], None] | None = None,
        on_database_up: Callable[[bool], None] | None = None,
    ) -> None:
        bounds = (heartbeat_timeout, progress_timeout, stall_timeout or heartbeat_timeout)
        if min(bounds) <= 0 or stall_timeout == 0:
            raise ValueError("timeouts must be positive")
        self.requires_database = requires_database
        self.heartbeat_timeout = heartbeat_timeout
        self.progress_timeout = progress_timeout
        self.stall_timeout = stall_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._created = clock()
        self._heartbeat = self._created
        self._started_at: float | None = None
        self._broker_up: bool | None = None
        self._database_up: bool | None = None
        self._stages = {stage: _StageFacts() for stage in stages}
        self._on_broker_up = on_broker_up
        self._on_database_up = on_database_up

    # ------------------------------------------------------------------------ facts
    def beat(self) -> None:
        """The event loop is responsive (called every second by :func:`run_health_probes`)."""
        with self._lock:
            self._heartbeat = self._clock()

    def mark_started(self) -> None:
        """The worker's consumers are started (the grace for progress starts now)."""
        with self._lock:
            self._started_at = self._clock()

    def record_progress(self, stage: str) -> None:
        """``stage`` finished a batch (or its committed offsets advanced)."""
        with self._lock:
            self._facts(stage).last_progress = self._clock()

    def set_lag(self, stage: str, messages: int | None, committed: int | None = None) -> None:
        """``stage``'s consumer lag (``None``: unknown); a higher ``committed`` sum is progress."""
        with self._lock:
            facts = self._facts(stage)
            if (
                committed is not None
                and facts.committed is not None
                and committed > facts.committed
            ):
                facts.last_progress = self._clock()
            facts.lag = messages
            if committed is not None:
                facts.committed = committed

    def set_broker_up(self, up: bool) -> None:
        """Whether the last broker probe succeeded."""
        with self._lock:
            self._broker_up = up
        if self._on_broker_up is not None:
            self._on_broker_up(up)

    def set_database_up(self, up: bool) -> None:
        """Whether the last database probe succeeded."""
        with self._lock:
            self._database_up = up
        if self._on_database_up is not None:
            self._on_database_up(up)

    def _facts(self, stage: str) -> _StageFacts:
        try:
            return self._stages[stage]
        except KeyError:
            raise ValueError(f"stage {stage!r} is not run by this worker") from None

    # ------------------------------------------------------------------------ verdicts
    def live(self, now: float | None = None) -> tuple[bool, dict[str, Check]]:
        """Liveness: the event loop beats and no stage is stalled (module docstring)."""
        with self._lock:
            at = self._now(now)
            checks = {"event_loop": self._loop_check(at)}
            if self.stall_timeout is not None:
                for stage, facts in sorted(self._stages.items()):
                    checks[f"stage:{stage}"] = self._stall_check(facts, at, self.stall_timeout)
        return all(check.ok for check in checks.values()), checks

    def stalled(self, now: float | None = None) -> str | None:
        """Why the worker is not live because a stage stalled (``None``: no stage stalled)."""
        _ok, checks = self.live(now)
        reasons = [
            f"{name}: {check.detail}"
            for name, check in checks.items()
            if name.startswith("stage:") and not check.ok
        ]
        return "; ".join(reasons) or None

    def evaluate(self, now: float | None = None) -> tuple[bool, dict[str, Check]]:
        """Readiness and every check behind it."""
        with self._lock:
            at = self._now(now)
            checks = {"event_loop": self._loop_check(at), "started": self._started_check()}
            checks["broker"] = _reachable("broker", self._broker_up)
            if self.requires_database:
                checks["database"] = _reachable("database", self._database_up)
            for stage, facts in sorted(self._stages.items()):
                checks[f"stage:{stage}"] = self._stage_check(facts, at)
        return all(check.ok for check in checks.values()), checks

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _loop_check(self, now: float) -> Check:
        age = now - self._heartbeat
        if age > self.heartbeat_timeout:
            return Check(False, f"no heartbeat for {age:.1f} s")
        return Check(True, f"heartbeat {age:.1f} s ago")

    def _started_check(self) -> Check:
        if self._started_at is None:
            return Check(False, "consumers not started")
        return Check(True, "started")

    def _stage_check(self, facts: _StageFacts, now: float) -> Check:
        return self._progress_check(facts, now, self.progress_timeout)

    def _stall_check(self, facts: _StageFacts, now: float, bound: float) -> Check:
        waiting = [
            name
            for name, up in (("broker", self._broker_up), ("database", self._database_up))
            if up is False and (name == "broker" or self.requires_database)
        ]
        if waiting and facts.lag:
            return Check(True, f"waiting for the {' and the '.join(waiting)}")
        return self._progress_check(facts, now, bound)

    def _progress_check(self, facts: _StageFacts, now: float, bound: float) -> Check:
        if facts.lag is None:
            return Check(True, "lag unknown")
        if facts.lag == 0:
            return Check(True, "no lag")
        # A fresh worker gets the bound as grace from its start.
        baseline = max(facts.last_progress or self._created, self._started_at or self._created)
        idle = now - baseline
        if idle > bound:
            return Check(False, f"lag {facts.lag} and no progress for {idle:.0f} s")
        return Check(True, f"lag {facts.lag}, progress {idle:.0f} s ago")


def _reachable(name: str, up: bool | None) -> Check:
    if up is None:
        return Check(False, f"{name} not checked yet")
    return Check(up, f"{name} reachable" if up else f"{name} unreachable")


# ------------------------------------------------------------------------------------ HTTP
def _body(ok: bool, checks: Mapping[str, Check]) -> bytes:
    payload = {
        "status": "ok" if ok else "failing",
        "checks": {k: asdict(v) for k, v in checks.items()},
    }
    return json.dumps(payload, sort_keys=True).encode()


def _handler(
    state: HealthState, registry: CollectorRegistry | None
) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``state`` and ``registry``."""

    class HealthHandler(BaseHTTPRequestHandler):
        """GET /livez, /readyz and /metrics; everything else is 404."""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/livez":
                self._json(*state.live())
            elif path == "/readyz":
                self._json(*state.evaluate())
            elif path == "/metrics" and registry is not None:
                body, content_type = render_metrics(registry)
                self._send(HTTPStatus.OK, body, content_type)
            else:
                self._send(HTTPStatus.NOT_FOUND, b'{"status": "not found"}', "application/json")

        def _json(self, ok: bool, checks: Mapping[str, Check]) -> None:
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, _body(ok, checks), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would flood the log; access logs stay off."""

    return HealthHandler


def serve_health(
    state: HealthState, registry: CollectorRegistry | None, host: str, port: int
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``/livez``, ``/readyz`` and ``/metrics`` on ``host:port`` from a daemon thread.

    Port 0 picks a free port (``server.server_port``); stop with ``server.shutdown()`` and
    ``server.server_close()``.
    """
    server = ThreadingHTTPServer((host, port), _handler(state, registry))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="radstream-health", daemon=True)
    thread.start()
    return server, thread


# ------------------------------------------------------------------------------------ probes
StageLagProbe = Callable[[], Awaitable[Mapping[str, tuple[int, int]]]]


def stage_lag_probe(
    source: SnapshotSource, inputs: Mapping[str, tuple[str, Sequence[str] | None]]
) -> StageLagProbe:
    """A probe of each stage's (lag, committed-offset sum) from its consumer group.

    Args:
        source: a started :class:`observability.lag.LagReader` (or a fake).
        inputs: stage -> (consumer group, input topics; ``None`` for all of the group's topics).
    """
    groups = sorted({group for group, _topics in inputs.values()})

    async def probe() -> dict[str, tuple[int, int]]:
        snapshots = {s.group: s for s in await source.snapshots(groups)}
        result: dict[str, tuple[int, int]] = {}
        for stage, (group, topics) in inputs.items():
            snapshot = snapshots.get(group)
            samples = [] if snapshot is None else snapshot.samples
            chosen = [s for s in samples if topics is None or s.topic in topics]
            result[stage] = (sum(s.lag for s in chosen), sum(s.committed for s in chosen))
        return result

    return probe


async def run_health_probes(
    state: HealthState,
    stop: asyncio.Event,
    *,
    lag_probe: StageLagProbe,
    database_probe: Callable[[], Awaitable[bool]] | None = None,
    interval_seconds: float = 5.0,
    heartbeat_seconds: float = 1.0,
) -> None:
    """Beat the heartbeat and probe broker (via the lag probe) and database until ``stop``.

    A probe that raises counts as a failed check; nothing escapes (a health loop that crashes
    would make a healthy worker look dead).
    """

    async def heartbeat() -> None:
        while not stop.is_set():
            state.beat()
            await _sleep_or_stop(stop, heartbeat_seconds)

    beating = asyncio.create_task(heartbeat())
    try:
        while not stop.is_set():
            await probe_once(state, lag_probe, database_probe)
            await _sleep_or_stop(stop, interval_seconds)
    finally:
        await beating


async def probe_once(
    state: HealthState,
    lag_probe: StageLagProbe,
    database_probe: Callable[[], Awaitable[bool]] | None,
) -> None:
    """One round of probes, recorded into ``state``."""
    try:
        lags = await lag_probe()
    except Exception:  # noqa: BLE001 - any failure to read offsets means the broker is not usable
        state.set_broker_up(False)
    else:
        state.set_broker_up(True)
        for stage, (lag, committed) in lags.items():
            state.set_lag(stage, lag, committed)
    if database_probe is not None:
        try:
            up = await database_probe()
        except Exception:  # noqa: BLE001 - a probe that fails is a database that is not usable
            up = False
        state.set_database_up(up)


class ManagedSource(SnapshotSource, Protocol):
    """A snapshot source with a lifecycle (a :class:`observability.lag.LagReader`)."""

    async def start(self) -> None:
        """Connect."""
        ...

    async def stop(self) -> None:
        """Disconnect."""
        ...


class WorkerHealth:
    """A worker's health probes and HTTP server, started and closed as one resource.

    Owns its stop event, so closing it never depends on the worker's own stop having been set
    (a worker whose start failed still closes cleanly).

    Args:
        state: the worker's :class:`HealthState` (the agents call ``record_progress`` on it).
        reader: a :class:`observability.lag.LagReader` (not started: :meth:`start` starts it
            and :meth:`close` stops it).
        inputs: stage -> (consumer group, input topics or ``None``), see :func:`stage_lag_probe`.
        database_probe: ``Database.ping`` when the worker runs the results stage.
        registry: served on ``/metrics`` next to the probes.
        address: ``(host, port)`` to serve on; ``None`` serves nothing (tests, the demo).
        interval_seconds: seconds between probe rounds.
    """

    def __init__(
        self,
        state: HealthState,
        reader: ManagedSource,
        inputs: Mapping[str, tuple[str, Sequence[str] | None]],
        *,
        database_probe: Callable[[], Awaitable[bool]] | None = None,
        registry: CollectorRegistry | None = None,
        address: tuple[str, int] | None = None,
        interval_seconds: float = 5.0,
    ) -> None:
        self.state = state
        self.reader = reader
        self.inputs = dict(inputs)
        self.database_probe = database_probe
        self.registry = registry
        self.address = address
        self.interval_seconds = interval_seconds
        self.server: ThreadingHTTPServer | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the HTTP server (with an address), then the reader and the probe loop.

        The server binds first, so an address that cannot be served leaves nothing running.

        Raises:
            RadstreamError: ``SETTINGS_INVALID`` when the address cannot be listened on (in use
                by another process, not an address of this host, a privileged port).
        """
        if self.address is not None:
            host, port = self.address
            try:
                self.server, _thread = serve_health(self.state, self.registry, host, port)
            except OSError as exc:
                raise address_unusable(
                    "serve /livez, /readyz and /metrics",
                    host,
                    port,
                    exc,
                    "RADSTREAM_OBSERVABILITY__METRICS_HOST and "
                    "RADSTREAM_OBSERVABILITY__METRICS_PORT",
                ) from exc
        try:
            await self.reader.start()
        except BaseException:
            self._close_server()
            raise
        self._task = asyncio.create_task(
            run_health_probes(
                self.state,
                self._stop,
                lag_probe=stage_lag_probe(self.reader, self.inputs),
                database_probe=self.database_probe,
                interval_seconds=self.interval_seconds,
            )
        )

    async def close(self) -> None:
        """Stop serving, end the probe loop and stop the reader."""
        self._stop.set()
        self._close_server()
        if self._task is not None:
            await self._task
        await self.reader.stop()

    def _close_server(self) -> None:
        """Stop serving and release the port (a no-op when nothing is served)."""
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever is first."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return


__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_PROGRESS_TIMEOUT",
    "Check",
    "HealthState",
    "ManagedSource",
    "StageLagProbe",
    "WorkerHealth",
    "probe_once",
    "run_health_probes",
    "serve_health",
    "stage_lag_probe",
]
