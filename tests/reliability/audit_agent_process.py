"""Runs an audit agent as a separate process until killed (for the crash and standby tests)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.audit.checkpoints import CheckpointPolicy
from streams.audit.io import AuditAgent
from streams.kafka import KafkaClientConfig
from streams.kafka.loop import run_until_stopped

REPO = Path(__file__).resolve().parents[2]


START_BOUND_SECONDS = 120.0


async def spawn(bootstrap: str, prefix: str, directory: Path) -> asyncio.subprocess.Process:
    """Start this module as a child process: an agent on ``prefix``, its files in ``directory``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.audit_agent_process",
        "--bootstrap",
        bootstrap,
        "--prefix",
        prefix,
        "--directory",
        str(directory),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def wait_for_records(bootstrap: str, topic: str, minimum: int) -> None:
    """Poll the audit topic's committed end offset until it reaches ``minimum``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    # A bound on failure, not a timing assertion: on a loaded 2-core machine the child's imports
    # alone have taken over 30 s, so the bound is generous; a healthy run returns in seconds.
    deadline = asyncio.get_running_loop().time() + START_BOUND_SECONDS
    try:
        while (await consumer.end_offsets([tp]))[tp] < minimum:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"the audit agent process wrote nothing within {START_BOUND_SECONDS:.0f} s"
                )
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()


def main() -> None:
    """Parse the arguments and run the agent until the process is killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--max-batch", type=int, default=5)
    args = parser.parse_args()
    agent = AuditAgent(
        kafka=KafkaClientConfig(args.bootstrap, client_id="radstream-test"),
        prefix=args.prefix,
        group_id=f"{args.prefix}audit",
        signing_key_path=args.directory / "audit-key.pem",
        checkpoint_file=args.directory / "checkpoints.jsonl",
        policy=CheckpointPolicy(every_records=7, every_seconds=3600),
        max_batch=args.max_batch,
    )
    asyncio.run(run_until_stopped(agent, asyncio.Event()))


if __name__ == "__main__":
    main()
