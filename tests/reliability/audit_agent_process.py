"""Runs an audit agent as a separate process until killed (for the crash test)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from streams.audit.checkpoints import CheckpointPolicy
from streams.audit.io import AuditAgent
from streams.kafka import KafkaClientConfig
from streams.kafka.loop import run_until_stopped


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
