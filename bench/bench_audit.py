"""Benchmark the audit trail: records per second (in memory and through the real broker)
and verification speed, written to bench/results/audit.json.

Run from the repository root with the services up:

    PYTHONPATH=. .venv/bin/python bench/bench_audit.py [--records 20000] [--kafka 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.audit import AuditCheckpoint, AuditRecord, AuditSource
from schemas.events import ImageArrived
from streams.audit.chain import ChainState, append
from streams.audit.checkpoints import CheckpointPolicy, sign_checkpoint
from streams.audit.io import AuditAgent, verify_topic
from streams.audit.records import draft_for_event
from streams.audit.verify import verify_chain
from streams.kafka import KafkaClientConfig, KafkaPublisher, Outgoing, ensure_topics
from streams.topics import TopicKey, TopicNames

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"
STUDY = "1.2.840.113619.2.55.3.1"


def _events(count: int) -> list[ImageArrived]:
    return [
        ImageArrived(
            source="router-1",
            image_uri=f"file:///data/{i}.dcm",
            study_instance_uid=STUDY,
            sop_instance_uid=f"{STUDY}.{i}",
            requested_by="dr.who",
        )
        for i in range(count)
    ]


def bench_chain_in_memory(
    count: int, every: int
) -> tuple[dict[str, float], list[AuditRecord], list[AuditCheckpoint], Ed25519PrivateKey]:
    """Draft + chain + sign checkpoints, no I/O."""
    key = Ed25519PrivateKey.generate()
    events = _events(count)
    state = ChainState.genesis(0)
    records: list[AuditRecord] = []
    checkpoints: list[AuditCheckpoint] = []
    started = time.perf_counter()
    for offset, event in enumerate(events):
        draft = draft_for_event(event, AuditSource(topic="t", partition=0, offset=offset))
        record, state = append(state, draft)
        records.append(record)
        if (record.sequence + 1) % every == 0:
            checkpoints.append(sign_checkpoint(key, state, datetime.now(UTC)))
    elapsed = time.perf_counter() - started
    return (
        {
            "records": count,
            "seconds": round(elapsed, 3),
            "records_per_second": round(count / elapsed),
        },
        records,
        checkpoints,
        key,
    )


def bench_verify_in_memory(
    records: list[AuditRecord], checkpoints: list[AuditCheckpoint], key: Ed25519PrivateKey
) -> dict[str, float]:
    """verify_chain over records already parsed."""
    started = time.perf_counter()
    report = verify_chain(records, checkpoints, key.public_key())
    elapsed = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(report.summary())
    return {
        "records": len(records),
        "seconds": round(elapsed, 3),
        "records_per_second": round(len(records) / elapsed),
    }


async def bench_kafka(
    bootstrap: str, count: int, every: int, batch: int
) -> dict[str, dict[str, float]]:
    """The agent through the real broker (transactional), then verify_topic (read + verify)."""
    prefix = f"rsbench.{uuid.uuid4().hex[:8]}."
    names = TopicNames(prefix)
    kafka = KafkaClientConfig(bootstrap, client_id="radstream-bench")
    await ensure_topics(kafka, prefix, partitions_override=1)
    async with KafkaPublisher(kafka, names) as publisher:
        await publisher.deliver(
            [Outgoing(TopicKey.IMAGES_ARRIVED, None, e) for e in _events(count)]
        )
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        agent = AuditAgent(
            kafka=kafka,
            prefix=prefix,
            group_id=f"{prefix}audit",
            signing_key_path=directory / "key.pem",
            checkpoint_file=directory / "checkpoints.jsonl",
            policy=CheckpointPolicy(every_records=every, every_seconds=3600),
            max_batch=batch,
        )
        await agent.start()
        started = time.perf_counter()
        try:
            while agent.records_written < count:
                await agent.process_batch(timeout_ms=200)
            elapsed = time.perf_counter() - started
        finally:
            await agent.stop()
        started = time.perf_counter()
        report = await verify_topic(
            kafka, names.audit, directory / "checkpoints.jsonl", agent.trusted
        )
        verify_elapsed = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(report.summary())
    return {
        "agent_through_kafka": {
            "records": count,
            "max_batch": batch,
            "seconds": round(elapsed, 3),
            "records_per_second": round(count / elapsed),
        },
        "verify_topic": {
            "records": report.records_checked,
            "seconds": round(verify_elapsed, 3),
            "records_per_second": round(report.records_checked / verify_elapsed),
        },
    }


def main() -> None:
    """Run every benchmark and write the results file."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000, help="in-memory records")
    parser.add_argument("--kafka", type=int, default=5000, help="records through the broker")
    parser.add_argument("--every", type=int, default=100, help="checkpoint every N records")
    parser.add_argument("--batch", type=int, default=500, help="agent max batch")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("RADSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    args = parser.parse_args()

    chain, records, checkpoints, key = bench_chain_in_memory(args.records, args.every)
    results = {
        "command": "PYTHONPATH=. python " + " ".join(["bench/bench_audit.py", *sys.argv[1:]]),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "chain_in_memory": chain,
        "verify_in_memory": bench_verify_in_memory(records, checkpoints, key),
        **asyncio.run(bench_kafka(args.bootstrap, args.kafka, args.every, args.batch)),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
