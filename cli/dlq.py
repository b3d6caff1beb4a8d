"""``radstream dlq list|show|replay|purge``: the operator's view of the dead-letter topic.

Replay and purge need ``--actor`` (a pseudonymous id), because both are audited. ``show``
never prints the original message as it is: the value is masked (JSON by key and pattern,
other text by pattern) and binary values are not printed at all; ``--raw`` prints it unmasked
and is refused outside development.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click

from cli.context import Group, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit, emit_json, emit_table, progress
from cli.params import (
    WORKER_STAGE_FOR,
    AwareTime,
    ErrorCodeType,
    NameChoice,
    actor_option,
    json_option,
)
from observability.logging import escape_control_characters
from observability.phi import mask_text, mask_value
from schemas.correlation import with_correlation_header
from schemas.errors import ErrorCode
from schemas.events import Stage
from schemas.settings import Settings
from streams import dlq
from streams.deadletter import DeadLetterEntry, DeadLetterFilter
from streams.kafka import KafkaClientConfig
from streams.topics import TopicNames

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@click.group("dlq", cls=Group)
def command() -> None:
    """List, show, replay or purge dead letters.

    Dead letters are messages a stage could not process (docs/deadletters.md).
    """


def selection_options(action: F) -> F:
    """The filters every dlq command takes, handed to it as one ``selection``."""

    @functools.wraps(action)
    def with_selection(
        *args: Any,
        ids: tuple[uuid.UUID, ...],
        code: ErrorCode | None,
        stage: str | None,
        since: datetime | None,
        until: datetime | None,
        **kwargs: Any,
    ) -> Any:
        selection = DeadLetterFilter(
            ids=frozenset(ids),
            code=code,
            stage=None if stage is None else Stage(stage),
            since=since,
            until=until,
        )
        return action(*args, selection=selection, **kwargs)

    options = [
        click.option(
            "--id", "ids", multiple=True, type=click.UUID, help="A dead letter's id (repeatable)."
        ),
        click.option(
            "--code", type=ErrorCodeType(), help="Only dead letters with this error code."
        ),
        click.option(
            "--stage",
            type=NameChoice(
                [s.value for s in Stage],
                {worker: stage.value for stage, worker in WORKER_STAGE_FOR.items()},
            ),
            help="Only dead letters from this stage, as dead letters name it; the worker's "
            "spellings (dicom-export, results) are accepted too.",
        ),
        click.option(
            "--since",
            type=AwareTime(),
            help="Only dead letters whose last failure is at or after this ISO 8601 time "
            "(UTC unless it has an offset).",
        ),
        click.option(
            "--until",
            type=AwareTime(),
            help="Only dead letters whose last failure is before this ISO 8601 time.",
        ),
    ]
    wrapped: Any = with_selection
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def on_topics(
    settings: Settings,
    doing: str,
    action: Callable[[KafkaClientConfig, TopicNames], Coroutine[Any, Any, T]],
) -> T:
    """Run ``action(kafka, topics)`` on this deployment's topics, with progress."""
    with progress(doing):
        return asyncio.run(action(dlq.client_config(settings), TopicNames(settings.topic_prefix)))


def require_selection(selection: DeadLetterFilter, verb: str) -> None:
    """Replay and purge never act on every dead letter at once."""
    if not selection.selective:
        raise click.UsageError(
            f"{verb} needs --id or at least one of --code, --stage, --since, --until"
        )


def entry_row(entry: DeadLetterEntry) -> tuple[object, ...]:
    """One listing row: id, state, stage, code, attempts, last failure, source position."""
    letter = entry.dead_letter
    return (
        letter.dead_letter_id,
        entry.state,
        letter.stage.value,
        letter.error_code.value,
        letter.attempts,
        letter.last_failure_at.isoformat(),
        f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}",
    )


ENTRY_HEADERS = ["id", "state", "stage", "code", "attempts", "last failure", "source"]


def entry_summary(entry: DeadLetterEntry) -> dict[str, Any]:
    """The listing's facts of one dead letter, for ``--json`` (no key, headers or value)."""
    letter = entry.dead_letter
    return {
        "dead_letter_id": str(letter.dead_letter_id),
        "state": entry.state,
        "stage": letter.stage.value,
        "error_code": letter.error_code.value,
        "attempts": letter.attempts,
        "first_failure_at": letter.first_failure_at.isoformat(),
        "last_failure_at": letter.last_failure_at.isoformat(),
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "deadletter_partition": entry.partition,
        "deadletter_offset": entry.offset,
    }


@command.command("list")
@selection_options
@click.option(
    "--limit", type=click.IntRange(min=1), help="Print at most this many (the oldest first)."
)
@click.option("--include-purged", is_flag=True, help="Also list purged dead letters.")
@json_option
@pass_invocation
def list_command(
    invocation: Invocation,
    *,
    selection: DeadLetterFilter,
    limit: int | None,
    include_purged: bool,
    as_json: bool,
) -> None:
    """List the dead letters matching the filters, oldest first (purged ones hidden)."""
    entries = on_topics(
        invocation.start(),
        "reading the dead-letter topic",
        lambda kafka, topics: dlq.list_dead_letters(
            kafka, topics, selection, limit=limit, include_purged=include_purged
        ),
    )
    if as_json:
        emit_json([entry_summary(entry) for entry in entries])
    else:
        emit_table(ENTRY_HEADERS, [entry_row(entry) for entry in entries])


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


def masked_entry(entry: DeadLetterEntry) -> dict[str, Any]:
    """``show``'s facts: the dead letter's metadata, masked key, headers and value.

    The correlation id shown (as a field and as a header) is the one a replay carries: a refused
    original kept by an older release is never printed.
    """
    letter = entry.dead_letter
    correlation_id = letter.effective_correlation_id()
    key = None if letter.key_b64 is None else base64.b64decode(letter.key_b64)
    headers = [(h.key, base64.b64decode(h.value_b64)) for h in letter.headers]
    return {
        **entry_summary(entry),
        "marked_by": entry.mark.actor if entry.mark else None,
        "marked_at": entry.mark.marked_at.isoformat() if entry.mark else None,
        "reason": escape_control_characters(mask_text(letter.reason)),
        "correlation_id": correlation_id,
        "event_id": str(letter.event_id) if letter.event_id else None,
        "key": None if key is None else render_value(key),
        "headers": {
            escape_control_characters(mask_text(name)): render_value(data)
            for name, data in with_correlation_header(headers, correlation_id)
        },
        "value": render_value(base64.b64decode(letter.value_b64)),
    }


def render_entry(entry: DeadLetterEntry) -> list[str]:
    """``show``'s lines: the dead letter's metadata, masked key and headers, masked value."""
    facts = masked_entry(entry)
    state = facts["state"] + (
        f" by {facts['marked_by']} at {facts['marked_at']}" if facts["marked_by"] else ""
    )
    return [
        f"dead_letter_id: {facts['dead_letter_id']}",
        f"state:          {state}",
        f"stage:          {facts['stage']}",
        f"error_code:     {facts['error_code']}",
        f"reason:         {facts['reason']}",
        f"attempts:       {facts['attempts']}",
        f"first_failure:  {facts['first_failure_at']}",
        f"last_failure:   {facts['last_failure_at']}",
        f"source:         {facts['source_topic']}[{facts['source_partition']}]"
        f"@{facts['source_offset']}",
        f"deadletter_at:  partition {facts['deadletter_partition']} "
        f"offset {facts['deadletter_offset']}",
        f"correlation_id: {facts['correlation_id']}",
        f"event_id:       {facts['event_id'] or '-'}",
        f"key:            {facts['key'] or '-'}",
        "headers:",
        *(f"  {name}: {value}" for name, value in facts["headers"].items()),
        "value:",
        facts["value"],
    ]


@command.command("show")
@click.argument("dead_letter_id", type=click.UUID)
@click.option(
    "--raw", is_flag=True, help="Also print the value unmasked (refused outside development)."
)
@json_option
@pass_invocation
def show_command(
    invocation: Invocation, dead_letter_id: uuid.UUID, raw: bool, as_json: bool
) -> None:
    """Show one dead letter: its metadata, and its key, headers and value masked.

    Values are masked like log lines (JSON by key and pattern, text by pattern); binary
    values are not printed. Exits 4 when there is no such dead letter.
    """
    settings = invocation.start()
    if raw and settings.environment != "development":
        raise CommandError(
            ErrorCode.AUTHORIZATION_FAILED,
            f"--raw is refused in the {settings.environment} environment",
            advice="Read masked values only; --raw exists for development",
        )
    entry = on_topics(
        settings,
        "reading the dead-letter topic",
        lambda kafka, topics: dlq.get_dead_letter(kafka, topics, dead_letter_id),
    )
    if entry is None:
        raise CommandError(
            ErrorCode.RESOURCE_NOT_FOUND,
            f"no dead letter {dead_letter_id}",
            advice="List them with 'radstream dlq list --include-purged'",
        )
    if as_json:
        emit_json(masked_entry(entry))
    else:
        for line in render_entry(entry):
            emit(line)
    if raw:
        emit("raw value (unmasked, development only):")
        emit(base64.b64decode(entry.dead_letter.value_b64).decode("utf-8", errors="replace"))


def nothing_selected(verb: str) -> CommandError:
    """The failure of a replay or purge whose filters select no dead letter."""
    return CommandError(
        ErrorCode.RESOURCE_NOT_FOUND,
        f"no dead letter matches the filters, nothing to {verb}",
        advice="Check them with 'radstream dlq list' and the same filters",
    )


def emit_outcomes(
    verb: str,
    rows: Sequence[tuple[uuid.UUID, str, str]],
    detail: tuple[str, str],
    *,
    as_json: bool,
) -> None:
    """Print what a replay or purge did to each dead letter; fail when it selected none.

    Args:
        verb: ``replay`` or ``purge``, for the failure's message.
        rows: dead letter id, outcome and a detail per dead letter.
        detail: the detail's JSON key and its table header.
        as_json: a JSON list instead of a table.
    """
    key, header = detail
    if as_json:
        emit_json([{"dead_letter_id": str(i), "outcome": o, key: d} for i, o, d in rows])
    else:
        emit_table(["id", "outcome", header], rows)
    if not rows:
        raise nothing_selected(verb)


@command.command("replay")
@selection_options
@actor_option
@click.option("--dry-run", is_flag=True, help="Only say what would be replayed.")
@click.option("--force", is_flag=True, help="Replay again what was replayed before.")
@json_option
@pass_invocation
def replay_command(
    invocation: Invocation,
    *,
    selection: DeadLetterFilter,
    actor: str,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Republish the selected dead letters to their original topics (audited).

    Key, value, headers and correlation id are the original ones. A dead letter replayed
    before is refused unless --force. Exits 4 when nothing matches, 7 when every refusal is
    an earlier replay, and 1 when another refusal happened.
    """
    require_selection(selection, "replay")
    report = on_topics(
        invocation.start(),
        "replaying dead letters",
        lambda kafka, topics: dlq.replay(
            kafka, topics, selection, actor=actor, force=force, dry_run=dry_run
        ),
    )
    verb = "would replay" if report.dry_run else "replayed"
    rows = [
        (e.dead_letter.dead_letter_id, verb, e.dead_letter.source_topic) for e in report.replayed
    ]
    rows += [(e.dead_letter.dead_letter_id, "refused", reason) for e, reason in report.refused]
    emit_outcomes("replay", rows, ("detail", "topic or reason"), as_json=as_json)
    if report.refused:
        again = all(entry.replayed for entry, _ in report.refused)
        raise CommandError(
            ErrorCode.DEAD_LETTER_ALREADY_REPLAYED if again else ErrorCode.CHECK_FAILED,
            f"{len(report.refused)} of {len(rows)} dead letter(s) refused",
            advice="Add --force to replay them again" if again else "See the REASON column",
        )


@command.command("purge")
@selection_options
@actor_option
@click.option("--dry-run", is_flag=True, help="Only say what would be purged.")
@json_option
@pass_invocation
def purge_command(
    invocation: Invocation,
    *,
    selection: DeadLetterFilter,
    actor: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove the selected dead letters (audited).

    Each is hidden at once; Kafka deletes from a partition's start only, so one behind a kept
    dead letter stays on the broker, hidden, until retention or a later purge removes it.
    Exits 4 when nothing matches.
    """
    require_selection(selection, "purge")
    report = on_topics(
        invocation.start(),
        "purging dead letters",
        lambda kafka, topics: dlq.purge(kafka, topics, selection, actor=actor, dry_run=dry_run),
    )
    deleted = {(e.partition, e.offset) for e in report.deleted}
    verb = "would purge" if report.dry_run else "purged"
    rows = [
        (
            entry.dead_letter.dead_letter_id,
            verb,
            "deleted" if (entry.partition, entry.offset) in deleted else "hidden by a mark",
        )
        for entry in report.purged
    ]
    emit_outcomes("purge", rows, ("how", "how"), as_json=as_json)
