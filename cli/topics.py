"""``radstream topics ensure|acls``: the Kafka topics of the catalogue, and who may use them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import click

from cli.context import Group, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit, emit_json, emit_table
from cli.params import json_option
from schemas.errors import ErrorCode
from schemas.settings import Settings
from streams.acls import PRINCIPALS, acls_for
from streams.kafka import KafkaClientConfig, TopicReport, create_acls, ensure_topics


@click.group("topics", cls=Group)
def command() -> None:
    """Create and check radstream's Kafka topics."""


def ensure(settings: Settings, partitions: int | None = None) -> list[TopicReport]:
    """Create the missing topics and correct drifted settings; one report per topic."""
    kafka = KafkaClientConfig.from_settings(settings, client_id="radstream-topics")
    return asyncio.run(ensure_topics(kafka, settings.topic_prefix, partitions_override=partitions))


def show_reports(reports: Sequence[TopicReport], *, as_json: bool) -> None:
    """Print the reports; fail with ``CHECK_FAILED`` when a topic has a problem."""
    if as_json:
        emit_json(
            [
                {
                    "topic": r.name,
                    "created": r.created,
                    "partitions": r.partitions,
                    "configs": r.configs,
                    "corrected": r.corrected,
                    "problems": r.problems,
                }
                for r in reports
            ]
        )
    else:
        emit_table(
            ["topic", "state", "partitions", "cleanup.policy", "retention.ms", "problem"],
            [
                (
                    r.name,
                    "created" if r.created else "corrected" if r.corrected else "exists",
                    r.partitions,
                    r.configs.get("cleanup.policy", "?"),
                    r.configs.get("retention.ms", "?"),
                    "; ".join(r.problems),
                )
                for r in reports
            ],
        )
    troubled = [r.name for r in reports if r.problems]
    if troubled:
        raise CommandError(
            ErrorCode.CHECK_FAILED,
            f"{len(troubled)} topic(s) differ from the catalogue in a way radstream does not "
            "correct itself",
            advice="See the PROBLEM column; docs/cli.md, 'topics ensure', says what to do",
        )


@command.command("ensure")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="Create missing topics with this many partitions instead of the catalogue's.",
)
@json_option
@pass_invocation
def ensure_command(invocation: Invocation, partitions: int | None, as_json: bool) -> None:
    """Create the missing topics and correct drifted topic settings.

    Idempotent: run it at every deployment. Each topic is listed as created, exists or
    corrected (cleanup.policy or retention.ms set back to the catalogue's). A topic with fewer
    partitions than the catalogue asks for is reported and left alone (adding partitions moves
    keys to other partitions); the command then exits 1.
    """
    settings = invocation.start()
    show_reports(ensure(settings, partitions), as_json=as_json)


@command.command("acls")
@click.option(
    "--apply",
    "apply_acls",
    is_flag=True,
    help="Create them on the broker (as its super user); without it, only list them.",
)
@click.option(
    "--principals", is_flag=True, help="Only list the principals' names, one a line (scripts)."
)
@json_option
@pass_invocation
def acls_command(invocation: Invocation, apply_acls: bool, principals: bool, as_json: bool) -> None:
    """List (or, with --apply, create) the ACLs of every principal of the secure profile.

    Derived from the topic catalogue and the stages (docs/security.md, 'Principals'), for
    RADSTREAM_TOPIC_PREFIX and RADSTREAM_CONSUMER_GROUP_PREFIX. Idempotent. --apply needs the
    broker's super user in RADSTREAM_KAFKA__SASL_USERNAME/_PASSWORD.
    """
    settings = invocation.start()
    if principals:
        for name in PRINCIPALS:
            emit(name)
        return
    bindings = acls_for(settings.topic_prefix, settings.consumer_group_prefix)
    if apply_acls:
        kafka = KafkaClientConfig.from_settings(settings, client_id="radstream-topics")
        asyncio.run(create_acls(kafka, [binding.wire() for binding in bindings]))
    rows = [
        (b.kafka_principal, b.resource_type.name, b.name, b.pattern.name, b.operation.name)
        for b in bindings
    ]
    columns = ["principal", "resource", "name", "pattern", "operation"]
    if as_json:
        emit_json([dict(zip(columns, row, strict=True)) for row in rows])
    else:
        emit_table(columns, rows)
