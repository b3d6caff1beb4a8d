"""The chaos suite (issue #17): real workers under load through kills and outages.

On a private broker and a private PostgreSQL started for the run (never the shared ones), four
``radstream worker`` processes — validation, inference, results, audit — run as operators run
them while a steady load of arrivals (and a few poison messages) is published. Faults, one after
another:

1. SIGKILL of each stage, restarted at once;
2. a forged record (unsigned, claiming the chain's next sequence) published on the audit topic;
3. the broker down for longer than the producers' request timeout (40 s), then back;
4. PostgreSQL down under load, then back.

Then the load stops and the pipeline drains. Asserted: 0 arrivals lost (each has its result
row), 0 duplicate rows, the dead letters exactly the poison messages, progress resuming within
a bound after every fault, the audit trail intact in the table (every genuine record of the
topic copied, the chain and checkpoints verified) with the forged record quarantined, and every
worker leaving on SIGTERM within its bound (none needs SIGKILL). A table is printed and the
numbers written to ``bench/results/chaos-<profile>.json``.

``CHAOS_PROFILE=short`` (the default, part of ``make test``) runs a few minutes;
``make chaos`` runs ``full``: more events and longer outages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import shutil
import signal
import subprocess  # nosec B404 - starts radstream's own command line, as operators do
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from schemas.audit import AuditRecord
from schemas.correlation import CORRELATION_ID_HEADER
from schemas.events import DeadLetter
from schemas.settings import SAMPLES_DIR
from sinks.database import Database
from sinks.repositories import AuditLogRepository
from streams.audit.chain import ChainState, append
from streams.audit.checkpoints import TrustedKeys
from streams.audit.files import checkpoint_file_for, load_public_key
from streams.audit.io import read_audit_topic, verify_table
from streams.kafka import KafkaClientConfig, KafkaPublisher, RawMessage, ensure_topics, read_topic
from streams.retry import RetryPolicy, run_with_retries
from streams.router import arrival_for_file
from streams.topics import TopicNames
from tests.integration.audit_support import publish_log
from tests.reliability.private_kafka import PrivateKafka
from tests.reliability.private_postgres import PrivateCluster
from tests.unit.audit.factories import drafts

pytestmark = pytest.mark.requirement("RS-REL-02", "RS-REL-11", "RS-REL-14", "RS-AUD-06")

REPO = Path(__file__).resolve().parents[2]
PREFIX = "chaos."
STAGES = ("validation", "inference", "results", "audit")


@dataclass(frozen=True)
class Profile:
    """How much load and how long the outages."""

    name: str
    rate_per_second: float  # arrivals published from the first worker's start to the last fault
    poison: int
    broker_outage_seconds: float
    database_outage_seconds: float
    # Bounds that stop a hung run; not expected durations.
    recovery_bound_seconds: float = 180.0
    drain_bound_seconds: float = 300.0
    sigterm_bound_seconds: float = 80.0  # the worker's backstop: 2 x 30 s + 10 s, and margin


PROFILES = {
    "short": Profile(
        "short",
        rate_per_second=1.0,
        poison=4,
        broker_outage_seconds=45.0,
        database_outage_seconds=15.0,
    ),
    "full": Profile(
        "full",
        rate_per_second=5.0,
        poison=10,
        broker_outage_seconds=60.0,
        database_outage_seconds=30.0,
    ),
}


@dataclass
class Fault:
    """One fault's row of the table."""

    name: str
    seconds: float = 0.0
    recovered_after_seconds: float | None = None


@dataclass
class Run:
    """Everything the table and the record hold."""

    profile: Profile
    faults: list[Fault] = field(default_factory=list)
    numbers: dict[str, object] = field(default_factory=dict)


class Workers:
    """The worker processes, one per stage, with their logs under ``logs``."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, stage: str) -> None:
        log = (self.logs / f"{stage}.log").open("ab")
        self.procs[stage] = subprocess.Popen(  # nosec B603 - fixed argv
            [sys.executable, "-m", "cli", "worker", "--stages", stage],
            env=self.env | {"RADSTREAM_CONSUMER_GROUP_PREFIX": "chaos"},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def kill(self, stage: str) -> None:
        proc = self.procs[stage]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def terminate_all(self, bound: float) -> dict[str, tuple[int | None, float, bool]]:
        """SIGTERM each; (exit status, seconds, needed SIGKILL) per stage."""
        started = time.monotonic()
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        outcome = {}
        for stage, proc in self.procs.items():
            remaining = max(bound - (time.monotonic() - started), 0.1)
            try:
                status = proc.wait(timeout=remaining)
                outcome[stage] = (status, time.monotonic() - started, False)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                outcome[stage] = (proc.wait(timeout=30), time.monotonic() - started, True)
        return outcome

    def stop_quietly(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def error_lines(self) -> dict[str, int]:
        """ERROR lines each stage logged over the run."""
        return {
            stage: sum(
                1
                for line in (self.logs / f"{stage}.log").read_text(errors="replace").splitlines()
                if '"error"' in line or " error " in line.lower()
            )
            for stage in self.procs
        }


@pytest.fixture
def profile() -> Profile:
    return PROFILES[os.environ.get("CHAOS_PROFILE", "short")]


async def counts(url: str, query: str) -> tuple[int, ...] | None:
    """The counts ``query`` selects (one row); ``None`` while the database is down."""
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        row = await conn.fetchrow(query)
    finally:
        await conn.close()
    assert row is not None
    return tuple(int(value) for value in row)


async def stored(url: str) -> tuple[int, int]:
    """(rows, distinct arrivals) in inference_results; (-1, -1) while the database is down."""
    found = await counts(url, "SELECT count(*), count(DISTINCT event_id) FROM inference_results")
    return (found[0], found[1]) if found else (-1, -1)


async def quarantine_rows(url: str) -> int:
    """Rows in audit_quarantine; -1 while the database is down."""
    found = await counts(url, "SELECT count(*) FROM audit_quarantine")
    return found[0] if found else -1


async def audit_rows(url: str) -> int:
    """Rows in audit_log; -1 while the database is down."""
    found = await counts(url, "SELECT count(*) FROM audit_log")
    return found[0] if found else -1


async def result_rows(url: str) -> int:
    """Rows in inference_results; -1 while the database is down."""
    return (await stored(url))[0]


async def progress_after(
    url: str,
    since_rows: int,
    bound: float,
    count: Callable[[str], Awaitable[int]] = result_rows,
    evidence: Callable[[], str] = str,
) -> float:
    """Seconds until ``count`` exceeds ``since_rows`` (fails past ``bound``, with ``evidence``)."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        rows = await count(url)
        if rows > since_rows:
            return time.monotonic() - started
        await asyncio.sleep(1.0)
    pytest.fail(f"no progress within {bound:g} s after a fault\n{evidence()}")


def original_key(value: bytes | None) -> bytes | None:
    """The key of the message a dead letter keeps."""
    letter = DeadLetter.model_validate_json(value or b"")
    return None if letter.key_b64 is None else base64.b64decode(letter.key_b64)


async def rows_now(url: str, count: Callable[[str], Awaitable[int]] = result_rows) -> int:
    return max(await count(url), 0)


async def forge_audit_record(kafka: KafkaClientConfig, topic: str, trusted: TrustedKeys) -> int:
    """Publish an unsigned record claiming the chain's next sequence; the sequence it claims."""
    content = await read_audit_topic(kafka, topic, trusted)
    genuine = [r for r in content[0].records if isinstance(r, AuditRecord)]
    state = ChainState.after(genuine[-1]) if genuine else ChainState.genesis(0)
    forged, _ = append(state, drafts(1)[0])
    await publish_log(kafka.bootstrap, topic, [forged])
    return forged.sequence


@dataclass(frozen=True)
class AuditOutcome:
    """The audit trail at the end of the run."""

    records_on_topic: int
    rows: int
    table_intact: bool
    table_summary: str
    quarantined: int

    def numbers(self) -> dict[str, object]:
        return {f"audit_{name}": value for name, value in self.__dict__.items()}


async def audit_trail_after_drain(
    kafka: KafkaClientConfig, url: str, names: TopicNames, audit_dir: Path, bound: float
) -> AuditOutcome:
    """Wait (bounded) until the table holds every genuine record of the topic, then verify it."""
    trusted = TrustedKeys.of(load_public_key(audit_dir / "signing_key.pem"))
    started = time.monotonic()
    on_topic = -1
    while time.monotonic() - started < bound:
        content = await read_audit_topic(kafka, names.audit, trusted)
        on_topic = sum(isinstance(r, AuditRecord) for r in content[0].records)
        # Every genuine record copied, and every foreign one (the forged record) quarantined:
        # the writer may reach the forged message after the table caught up with the genuine.
        foreign = len(content[0].records) - on_topic
        if await audit_rows(url) >= on_topic and await quarantine_rows(url) >= foreign:
            break
        await asyncio.sleep(2.0)
    database = Database(url, pool_size=1)
    try:
        repository = AuditLogRepository(database.sessions)
        # The chain is named by its topic, and so is its checkpoint file (streams.audit.files).
        checkpoints = checkpoint_file_for(audit_dir / "checkpoints.jsonl", names.audit)
        report = await verify_table(repository, names.audit, checkpoints, trusted)
        quarantined = await repository.quarantined()
    finally:
        await database.dispose()
    return AuditOutcome(on_topic, await audit_rows(url), report.ok, report.summary(), quarantined)


async def test_chaos(  # noqa: PLR0915 - one scenario, told in order
    profile: Profile,
    broker: PrivateKafka,
    cluster: PrivateCluster,
    database_url: str,
    tmp_path: Path,
) -> None:
    """Kills, a broker outage and a database outage under load: nothing lost or doubled."""
    run = Run(profile)
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(SAMPLES_DIR / "raster" / "ct_64.png", root / "ct.png")
    names = TopicNames(PREFIX)
    audit_dir = tmp_path / "audit"
    kafka = KafkaClientConfig(broker.bootstrap)
    await ensure_topics(kafka, PREFIX, partitions_override=2)
    env = {
        **os.environ,
        "RADSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "RADSTREAM_DATABASE_URL": database_url,
        "RADSTREAM_TOPIC_PREFIX": PREFIX,
        "RADSTREAM_STORAGE_ROOTS": str(root),
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": "0",
        "RADSTREAM_LOGGING__FORMAT": "json",
        # Faust's bookkeeping of this run only, not the work tree's .state/.
        "RADSTREAM_WORKER_DATA_DIR": str(tmp_path / "faust"),
        "RADSTREAM_AUDIT__SIGNING_KEY_FILE": str(audit_dir / "signing_key.pem"),
        "RADSTREAM_AUDIT__CHECKPOINT_FILE": str(audit_dir / "checkpoints.jsonl"),
    }
    template = arrival_for_file(
        root / "ct.png", source="CHAOS", modality="CT", model_ids=["image-quality"]
    )
    published: list[uuid.UUID] = []
    faults_done = asyncio.Event()
    poison_keys = {f"poison-{n}".encode() for n in range(profile.poison)}
    workers = Workers(env, tmp_path)
    for stage in STAGES:
        workers.start(stage)
    policy = RetryPolicy.until_done(initial_seconds=0.2, max_seconds=2.0)

    async def load(publisher: KafkaPublisher) -> None:
        """Arrivals at the profile's rate until the last fault is over; poison among the first."""
        pending = sorted(poison_keys)
        n = 0
        while not faults_done.is_set():
            arrival = template.model_copy(update={"event_id": uuid.uuid4()})
            message = [
                RawMessage(
                    names.arrived,
                    arrival.message_key(),
                    arrival.model_dump_json().encode(),
                    ((CORRELATION_ID_HEADER, arrival.event_id.hex.encode()),),
                )
            ]
            if pending and n % 10 == 0:
                message.append(RawMessage(names.arrived, pending.pop(), b"\x00not json"))
            await run_with_retries(lambda m=message: publisher.deliver(m), policy)
            published.append(arrival.event_id)
            n += 1
            await asyncio.sleep(1 / profile.rate_per_second)

    started = time.monotonic()
    try:
        async with KafkaPublisher(kafka, names) as publisher:
            loading = asyncio.create_task(load(publisher))
            await progress_after(database_url, 0, profile.recovery_bound_seconds)

            for stage in STAGES:
                fault = Fault(f"SIGKILL {stage}")
                # The audit stage's progress is its table copy; the others' the result rows.
                count = audit_rows if stage == "audit" else result_rows
                before = await rows_now(database_url, count)
                workers.kill(stage)
                workers.start(stage)
                fault.recovered_after_seconds = await progress_after(
                    database_url, before, profile.recovery_bound_seconds, count
                )
                run.faults.append(fault)

            trusted = TrustedKeys.of(load_public_key(audit_dir / "signing_key.pem"))
            forged_sequence = await forge_audit_record(kafka, names.audit, trusted)

            fault = Fault("broker down", profile.broker_outage_seconds)
            await asyncio.to_thread(broker.down)
            await asyncio.sleep(profile.broker_outage_seconds)
            before = await rows_now(database_url)
            await asyncio.to_thread(broker.up)
            fault.recovered_after_seconds = await progress_after(
                database_url, before, profile.recovery_bound_seconds, evidence=broker.evidence
            )
            run.faults.append(fault)

            fault = Fault("PostgreSQL down", profile.database_outage_seconds)
            await asyncio.to_thread(cluster.stop)
            await asyncio.sleep(profile.database_outage_seconds)
            await asyncio.to_thread(cluster.start)
            before = await rows_now(database_url)
            fault.recovered_after_seconds = await progress_after(
                database_url, before, profile.recovery_bound_seconds
            )
            run.faults.append(fault)

            faults_done.set()
            await asyncio.wait_for(loading, profile.drain_bound_seconds)
            publisher_replaced = publisher.producers_replaced

        drain_started = time.monotonic()
        rows, distinct = await rows_now(database_url), 0
        while time.monotonic() - drain_started < profile.drain_bound_seconds:
            rows, distinct = await stored(database_url)
            if distinct >= len(published):
                break
            await asyncio.sleep(2.0)
        drained_seconds = time.monotonic() - drain_started
        await asyncio.sleep(5.0)  # any late duplicate would land now
        rows, distinct = await stored(database_url)
        audit = await audit_trail_after_drain(
            kafka, database_url, names, audit_dir, profile.drain_bound_seconds
        )
    finally:
        exits = workers.terminate_all(profile.sigterm_bound_seconds)
        workers.stop_quietly()

    letters = (await read_topic(kafka, names.deadletter)).all_records()
    # A dead letter's Kafka key is its own id (never the sender's key): the original is kept
    # in key_b64.
    letter_keys = {original_key(record.value) for record in letters}
    run.numbers = {
        "events": len(published),
        "poison": profile.poison,
        "rows": rows,
        "distinct_arrivals_stored": distinct,
        "lost": len(published) - distinct,
        "duplicate_rows": rows - distinct,
        "dead_letters": len(letters),
        "dead_letter_keys_exact": letter_keys == poison_keys,
        "publisher_producers_replaced": publisher_replaced,
        "drain_seconds_after_load": round(drained_seconds, 1),
        "forged_audit_sequence": forged_sequence,
        **audit.numbers(),
        "total_seconds": round(time.monotonic() - started, 1),
        "worker_error_lines": workers.error_lines(),
        "sigterm": {
            stage: {"status": status, "seconds": round(seconds, 1), "needed_sigkill": forced}
            for stage, (status, seconds, forced) in exits.items()
        },
    }
    record(run)

    assert run.numbers["lost"] == 0
    assert run.numbers["duplicate_rows"] == 0
    assert letter_keys == poison_keys
    assert audit.table_intact, audit.table_summary
    # Every genuine record the topic held is in the table (later ones may have joined it).
    assert audit.rows >= audit.records_on_topic
    assert audit.quarantined == 1  # the forged record, and nothing genuine
    assert not any(forced for _status, _seconds, forced in exits.values()), exits


def record(run: Run) -> None:
    """Print the table and write the numbers, with command and machine, under bench/results."""
    lines = [
        f"chaos profile {run.profile.name}",
        f"{'fault':<22}{'seconds':>9}{'recovered after s':>20}",
    ]
    for fault in run.faults:
        recovered = (
            "-" if fault.recovered_after_seconds is None else f"{fault.recovered_after_seconds:.1f}"
        )
        lines.append(f"{fault.name:<22}{fault.seconds:>9.0f}{recovered:>20}")
    for key, value in run.numbers.items():
        lines.append(f"{key:<32}{value}")
    print("\n".join(lines))
    payload = {
        "command": f"CHAOS_PROFILE={run.profile.name} pytest tests/reliability/test_chaos.py",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "faults": [fault.__dict__ for fault in run.faults],
        "numbers": run.numbers,
    }
    target = REPO / "bench" / "results" / f"chaos-{run.profile.name}.json"
    if os.environ.get("CHAOS_RECORD") == "1":
        target.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
