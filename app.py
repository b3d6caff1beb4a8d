"""radstream's composition root: settings, the Faust app, its agents, and the ``radstream`` command.

Nothing here runs at import time. ``main()`` parses the command line, builds the settings once,
and hands them to the command, which creates the engines, producers and the Faust app it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from schemas.contracts import (
    ASYNCAPI_FILE,
    JSONSCHEMA_DIR,
    ChannelContract,
    asyncapi_document,
    jsonschema_files,
    render,
)
from schemas.events import CORRELATION_ID_HEADER, Priority
from schemas.settings import Settings, load_settings
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames, value_models

ALL_STAGES = ("validation", "inference", "results", "audit")
CHANNEL_KEYS: dict[TopicKey, str] = {
    TopicKey.IMAGES_ARRIVED: "StudyInstanceUID when present, else the event id",
    TopicKey.IMAGES_VALIDATED: "the arrival's key",
    TopicKey.IMAGES_REJECTED: "the arrival's key",
    TopicKey.INFERENCE_RESULTS: "the arrival's key",
    TopicKey.AUDIT_LOG: "the audit chain partition",
    TopicKey.DEADLETTER: "the original message's key",
    TopicKey.API_ACTIONS: "the acting subject",
}


# ------------------------------------------------------------------------------------ contracts
def contract_files(settings: Settings) -> dict[Path, str]:
    """Every generated contract file and its content (JSON Schemas + AsyncAPI)."""
    models = value_models()
    files = {
        JSONSCHEMA_DIR / name: text
        for name, text in jsonschema_files(sorted(set(models.values()), key=lambda m: m.__name__)).items()
    }
    names = TopicNames("radstream.")
    channels = [
        ChannelContract(
            channel_id=key.name.lower(),
            address=names[key],
            model=models[key],
            description=TOPIC_SPECS[key].description,
            key=CHANNEL_KEYS[key],
        )
        for key in TOPIC_SPECS
    ]
    document = asyncapi_document(
        channels, version="1.0.0", servers={"local": settings.kafka_bootstrap.split(",")[0]}
    )
    files[ASYNCAPI_FILE] = render(document)
    return files


def cmd_schemas(settings: Settings, args: argparse.Namespace) -> int:
    """Write (export) or compare (check) the committed contract files."""
    files = contract_files(load_settings(kafka_bootstrap="127.0.0.1:9092"))
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.action == "check":
        for path in stale:
            print(f"stale: {path.relative_to(Path(__file__).parent)}")
        return 1 if stale else 0
    JSONSCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    print(f"wrote {len(files)} contract files ({len(stale)} changed)")
    return 0


# ------------------------------------------------------------------------------------ commands
def cmd_config(settings: Settings, _args: argparse.Namespace) -> int:
    """Print the effective settings with secrets masked."""
    print(json.dumps(settings.masked(), indent=2, sort_keys=True))
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    """Create or check every topic idempotently."""
    from streams.topic_admin import ensure_topics  # noqa: PLC0415 - aiokafka only when needed

    reports = asyncio.run(
        ensure_topics(settings.kafka_bootstrap, settings.topic_prefix,
                      partitions_override=args.partitions)
    )
    for report in reports:
        print(report.line())
    return 1 if any(r.problems for r in reports) else 0


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    """Publish arrival events for local files, as a router would."""
    from streams.kafka_io import KafkaPublisher  # noqa: PLC0415
    from streams.router import arrival_for_file  # noqa: PLC0415

    async def publish() -> None:
        async with KafkaPublisher(settings.kafka_bootstrap, TopicNames(settings.topic_prefix)) as pub:
            for path in args.files:
                event = arrival_for_file(
                    Path(path), source=args.source, model_ids=args.model or (),
                    requested_by=args.requested_by, priority=Priority(args.priority),
                )
                headers = ((CORRELATION_ID_HEADER, event.event_id.hex.encode()),)
                await pub.publish(TopicKey.IMAGES_ARRIVED, event.message_key(), event, headers)
                print(f"published {event.event_id} {Path(path).name}")

    asyncio.run(publish())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``radstream`` command line."""
    parser = argparse.ArgumentParser(prog="radstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("config", help="print the effective settings (secrets masked)").set_defaults(
        func=cmd_config
    )

    topics = sub.add_parser("topics", help="create or check the topics")
    topics.add_argument("action", choices=["ensure"])
    topics.add_argument("--partitions", type=int, default=None, help="override partition counts")
    topics.set_defaults(func=cmd_topics)

    publish = sub.add_parser("publish", help="publish arrival events for local image files")
    publish.add_argument("files", nargs="+")
    publish.add_argument("--source", default="radstream-cli")
    publish.add_argument("--model", action="append", help="model id (repeatable)")
    publish.add_argument("--requested-by", default=None)
    publish.add_argument("--priority", default="routine", choices=[p.value for p in Priority])
    publish.set_defaults(func=cmd_publish)

    schemas = sub.add_parser("schemas", help="export or check the JSON Schema/AsyncAPI files")
    schemas.add_argument("action", choices=["export", "check"])
    schemas.set_defaults(func=cmd_schemas)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``radstream`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"radstream: invalid settings: {exc}", file=sys.stderr)
        return 2
    code: int = args.func(settings, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
