"""``radstream dlq list|show|replay|purge``: the operator's view of the dead-letter topic.

Registered into the ``radstream`` parser by app.py (``dlq_cli.register(sub)``). Every command
takes the settings' bootstrap and topic prefix; replay and purge need ``--actor`` (a
pseudonymous id), because both are audited. ``show`` never prints the original message as it
is: the value is masked (JSON by key and pattern, other text by pattern) and binary values are
not printed at all; ``--raw`` prints it unmasked and is refused outside development.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from observability.logging import escape_control_characters
from observability.phi import PhiMasker, mask_text, mask_value, set_default_masker
from schemas.correlation import with_correlation_header
from schemas.errors import ErrorCode, RadstreamError
from schemas.events import Stage
from schemas.settings import Settings
from streams.deadletter import DeadLetterEntry
from streams.topics import TopicNames

T = TypeVar("T")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time for ``--since``/``--until``; a time without offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", action="append", default=[], help="dead letter id (repeatable)")
    parser.add_argument("--code", choices=[c.value for c in ErrorCode], default=None)
    parser.add_argument("--stage", choices=[s.value for s in Stage], default=None)
    parser.add_argument("--since", type=parse_time, default=None, help="last failure >= (ISO)")
    parser.add_argument("--until", type=parse_time, default=None, help="last failure < (ISO)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``radstream dlq`` and its four actions to the ``radstream`` command line."""
    parser = sub.add_parser("dlq", help="list, show, replay or purge dead letters")
    actions = parser.add_subparsers(dest="dlq_action", required=True)

    listing = actions.add_parser("list", help="list dead letters (purged ones hidden)")
    _filters(listing)
    listing.add_argument("--limit", type=int, default=None)
    listing.add_argument("--include-purged", action="store_true")
    listing.set_defaults(func=cmd_dlq_list)

    show = actions.add_parser("show", help="one dead letter, its metadata and masked value")
    show.add_argument("dead_letter_id")
    show.add_argument("--raw", action="store_true", help="unmasked value (development only)")
    show.set_defaults(func=cmd_dlq_show)

    replay = actions.add_parser("replay", help="republish to the original topic (audited)")
    _filters(replay)
    replay.add_argument("--actor", required=True, help="your pseudonymous id, for the audit")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    replay.add_argument("--force", action="store_true", help="replay again what was replayed")
    replay.set_defaults(func=cmd_dlq_replay)

    purge = actions.add_parser("purge", help="remove dead letters (audited)")
    _filters(purge)
    purge.add_argument("--actor", required=True, help="your pseudonymous id, for the audit")
    purge.add_argument("--dry-run", action="store_true", help="say what would be purged")
    purge.set_defaults(func=cmd_dlq_purge)


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    """The dead-letter filters every dlq command takes (--id, --code, --stage, --since, --until)."""
    return {
        "ids": args.id,
        "code": args.code,
        "stage": args.stage,
        "since": args.since,
        "until": args.until,
    }


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T | None, int]:
    """Run one dlq coroutine; bad input exits 2 and broker trouble 1, each with one line."""
    try:
        return asyncio.run(factory()), 0
    except ValueError as exc:
        print(f"radstream dlq: {exc}", file=sys.stderr)
        return None, 2
    except RadstreamError as exc:
        print(f"radstream dlq: {exc.code.value}: {exc.reason}", file=sys.stderr)
        return None, 1


def entry_line(entry: DeadLetterEntry) -> str:
    """One listing line: id, state, stage, code, attempts, last failure and source position."""
    letter = entry.dead_letter
    return (
        f"{letter.dead_letter_id}  {entry.state:<8} {letter.stage.value:<12} "
        f"{letter.error_code.value:<34} attempts={letter.attempts} "
        f"last={letter.last_failure_at.isoformat()} "
        f"src={letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
    )


def cmd_dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    """Print the dead letters matching the filters."""
    from streams import dlq  # noqa: PLC0415 - aiokafka loads only when a dlq command runs

    entries, code = _run(
        lambda: dlq.list_dead_letters(
            dlq.client_config(settings),
            TopicNames(settings.topic_prefix),
            **_selection(args),
            limit=args.limit,
            include_purged=args.include_purged,
        )
    )
    if entries is None:
        return code
    for entry in entries:
        print(entry_line(entry))
    print(f"{len(entries)} dead letter(s)")
    return 0


def render_value(data: bytes) -> str:
    """The original value for an operator's eyes: masked, never raw patient data.

    JSON is masked by key (``patient_name`` and every DICOM PHI attribute) and by pattern; other
    UTF-8 text by pattern; anything else (a DICOM file, say) is not printed at all, because
    pattern masking cannot find an ID or a name in binary data.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, not UTF-8 text: not shown>"
    try:
        parsed = json.loads(text)
    except ValueError:
        return escape_control_characters(mask_text(text))
    return json.dumps(mask_value(parsed), indent=2, sort_keys=True, ensure_ascii=False)


def render_entry(entry: DeadLetterEntry) -> list[str]:
    """``show``'s lines: the dead letter's metadata, masked key and headers, masked value.

    The correlation id shown (as a field and as a header) is the one a replay carries: a refused
    original kept by an older release is never printed.
    """
    letter = entry.dead_letter
    correlation_id = letter.effective_correlation_id()
    key = None if letter.key_b64 is None else base64.b64decode(letter.key_b64)
    lines = [
        f"dead_letter_id: {letter.dead_letter_id}",
        f"state:          {entry.state}"
        + (f" by {entry.mark.actor} at {entry.mark.marked_at.isoformat()}" if entry.mark else ""),
        f"stage:          {letter.stage.value}",
        f"error_code:     {letter.error_code.value}",
        f"reason:         {escape_control_characters(mask_text(letter.reason))}",
        f"attempts:       {letter.attempts}",
        f"first_failure:  {letter.first_failure_at.isoformat()}",
        f"last_failure:   {letter.last_failure_at.isoformat()}",
        f"source:         {letter.source_topic}[{letter.source_partition}]@{letter.source_offset}",
        f"deadletter_at:  partition {entry.partition} offset {entry.offset}",
        f"correlation_id: {correlation_id}",
        f"event_id:       {letter.event_id or '-'}",
        f"key:            {'-' if key is None else render_value(key)}",
        "headers:",
    ]
    headers = [(h.key, base64.b64decode(h.value_b64)) for h in letter.headers]
    for name, data in with_correlation_header(headers, correlation_id):
        lines.append(f"  {escape_control_characters(mask_text(name))}: {render_value(data)}")
    lines += ["value:", render_value(base64.b64decode(letter.value_b64))]
    return lines


def cmd_dlq_show(settings: Settings, args: argparse.Namespace) -> int:
    """Print one dead letter; ``--raw`` (development only) prints the value unmasked."""
    from streams import dlq  # noqa: PLC0415 - aiokafka loads only when a dlq command runs

    if args.raw and settings.environment != "development":
        print("radstream dlq: --raw is refused outside development", file=sys.stderr)
        return 2
    set_default_masker(PhiMasker.from_settings(settings.logging))
    entry, code = _run(
        lambda: dlq.get_dead_letter(
            dlq.client_config(settings), TopicNames(settings.topic_prefix), args.dead_letter_id
        )
    )
    if code:
        return code
    if entry is None:
        print(f"radstream dlq: no dead letter {args.dead_letter_id}", file=sys.stderr)
        return 1
    for line in render_entry(entry):
        print(line)
    if args.raw:
        raw = base64.b64decode(entry.dead_letter.value_b64)
        print("raw value (unmasked, development only):")
        print(raw.decode("utf-8", errors="replace"))
    return 0


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Replay the selected dead letters; exit 1 when any was refused or nothing matched."""
    from streams import dlq  # noqa: PLC0415 - aiokafka loads only when a dlq command runs

    report, code = _run(
        lambda: dlq.replay(
            dlq.client_config(settings),
            TopicNames(settings.topic_prefix),
            actor=args.actor,
            **_selection(args),
            force=args.force,
            dry_run=args.dry_run,
        )
    )
    if report is None:
        return code
    verb = "would replay" if report.dry_run else "replayed"
    for entry in report.replayed:
        print(f"{verb} {entry.dead_letter.dead_letter_id} -> {entry.dead_letter.source_topic}")
    for entry, reason in report.refused:
        print(f"refused {entry.dead_letter.dead_letter_id}: {reason}")
    print(f"{len(report.replayed)} {verb}, {len(report.refused)} refused")
    return 1 if report.refused or not report.replayed else 0


def cmd_dlq_purge(settings: Settings, args: argparse.Namespace) -> int:
    """Purge the selected dead letters; exit 1 when nothing matched."""
    from streams import dlq  # noqa: PLC0415 - aiokafka loads only when a dlq command runs

    report, code = _run(
        lambda: dlq.purge(
            dlq.client_config(settings),
            TopicNames(settings.topic_prefix),
            actor=args.actor,
            **_selection(args),
            dry_run=args.dry_run,
        )
    )
    if report is None:
        return code
    prefix = "would purge" if report.dry_run else "purged"
    deleted = {(e.partition, e.offset) for e in report.deleted}
    for entry in report.purged:
        how = "deleted" if (entry.partition, entry.offset) in deleted else "marked"
        print(f"{prefix} {entry.dead_letter.dead_letter_id} ({how})")
    print(
        f"{len(report.purged)} {prefix}: {len(report.purged) - len(report.marked_only)} deleted "
        f"from the broker, {len(report.marked_only)} hidden by a mark until retention expires"
    )
    return 0 if report.purged else 1
