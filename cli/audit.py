"""``radstream audit verify|show``: check the audit trail, or print one image's trail."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Callable

import click
from prometheus_client import CollectorRegistry

from cli.context import Group, Invocation, metrics_endpoint, pass_invocation, run_until_signalled
from cli.errors import CommandError
from cli.output import emit, emit_json, emit_table, progress
from cli.params import json_option, seconds_option
from observability.metrics import Metrics
from schemas.audit import AuditRecord
from schemas.errors import ErrorCode
from schemas.settings import Settings
from streams.audit.checkpoints import TrustedKeys, encode_public_key
from streams.audit.files import KeyFileError, load_public_key
from streams.audit.io import AuditTrail
from streams.audit.io.trail import SOURCES
from streams.audit.verify import VerificationReport

Verified = list[tuple[str, VerificationReport]]


@click.group("audit", cls=Group)
def command() -> None:
    """Verify the audit trail, or show one image's trail."""


def pinned_keys(settings: Settings) -> TrustedKeys:
    """The pinned verification keys; verification never trusts the signing-key file beside it.

    Raises:
        CommandError: ``SETTINGS_INVALID`` when no key is pinned or a pinned key is malformed.
    """
    advice = (
        "Pin the audit agent's public key: RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS='[\"<key>\"]' "
        "with the key `radstream audit public-key` prints on the audit host"
    )
    try:
        trusted = TrustedKeys.parse(settings.audit.trusted_public_keys)
    except ValueError as exc:
        raise CommandError(ErrorCode.SETTINGS_INVALID, str(exc), advice=advice) from exc
    if not trusted:
        raise CommandError(
            ErrorCode.SETTINGS_INVALID, "no audit verification key is pinned", advice=advice
        )
    return trusted


async def verify_audit_trail(settings: Settings, source: str) -> Verified:
    """Verify the chains on the audit topic and/or in the audit table; one report each.

    Raises:
        CommandError: ``SETTINGS_INVALID`` when no verification key is pinned.
    """
    return await AuditTrail.from_settings(settings, pinned_keys(settings)).verify(source)


def verification_data(reports: Verified) -> list[dict[str, object]]:
    """The reports as JSON data."""
    return [
        {"store": where, **dataclasses.asdict(report), "error_code": report.error_code}
        for where, report in reports
    ]


def show_verification(reports: Verified, *, as_json: bool) -> None:
    """Print the reports; fail with the first broken chain's code when one does not verify."""
    if as_json:
        emit_json(verification_data(reports))
    else:
        emit_table(["store", "result"], [(where, report.summary()) for where, report in reports])
    raise_for_broken(reports)


def raise_for_broken(reports: Verified) -> None:
    """Fail with the first broken chain's code (``AUDIT_*``, exit 6) when one does not verify."""
    for where, report in reports:
        if report.error_code is not None:
            raise CommandError(
                report.error_code,
                f"{where}: chain {report.chain_partition} breaks at sequence "
                f"{report.first_bad_sequence} ({report.problem or 'unknown'})",
            )


async def serve_audit_verification(
    settings: Settings,
    source: str,
    every: float,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Verify every ``every`` seconds and export the outcome on /metrics until ``stop``.

    This feeds the ``radstream_audit_*`` verification metrics the alert rules watch; a broken
    chain is exported (and printed), it does not end the service.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    with metrics_endpoint(settings, registry):
        while not stop.is_set():
            reports = await verify_audit_trail(settings, source)
            metrics.audit_verified(ok=all(report.ok for _, report in reports))
            for where, report in reports:
                emit(f"{where}: {report.summary()}")
            if on_started is not None:  # serving: the first round reached the stores
                on_started()
                on_started = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


@command.command("verify")
@click.option(
    "--source",
    type=click.Choice(SOURCES),
    default="both",
    show_default=True,
    help="Verify the audit topic, the audit_log table, or both.",
)
@seconds_option(
    "--every",
    minimum=1,
    help_text="Keep verifying every SECONDS until stopped, exporting radstream_audit_* metrics "
    "on /metrics (what the audit alerts watch).",
)
@json_option
@pass_invocation
def verify_command(invocation: Invocation, source: str, every: float | None, as_json: bool) -> None:
    """Verify the hash chains and the signed checkpoints of the audit trail.

    Every record's hash and link to its predecessor is recomputed, every record's and
    checkpoint's Ed25519 signature checked against the pinned keys
    (RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS, never the signing-key file); the checkpoints (file,
    topic, table) reveal a truncated log. Exits 6 naming the first bad sequence when a chain
    does not verify.
    """
    if every is not None:
        settings = invocation.start(service=True)
        run_until_signalled(
            lambda stop: serve_audit_verification(
                settings, source, every, stop, on_started=invocation.service_started
            )
        )
        return
    settings = invocation.start()
    with progress(f"verifying the audit trail ({source})"):
        reports = asyncio.run(verify_audit_trail(settings, source))
    show_verification(reports, as_json=as_json)


# ``recorded_at`` is when the audited event happened, by the clock of the service that produced
# it (a router's for an arrival), not when the audit agent appended the record: "happened at".
# "detail", not "code": besides error codes it holds an export's destination AE title, an urgent
# finding's finding:rule and a model change (docs/audit.md, outcome_description).
SHOW_HEADERS = [
    "chain/seq",
    "happened at",
    "event",
    "action",
    "outcome",
    "detail",
    "actor",
    "source",
]


def record_row(record: AuditRecord) -> tuple[object, ...]:
    """One line of ``audit show`` (the columns of :data:`SHOW_HEADERS`)."""
    return (
        f"{record.chain_partition}/{record.sequence}",
        record.recorded_at.isoformat(),
        record.event_type.value,
        record.action.value,
        record.outcome.name.lower(),
        record.outcome_description or "",
        record.actor.user_id,
        f"{record.source.topic}[{record.source.partition}]@{record.source.offset}",
    )


@command.command("show")
@click.option(
    "--event-id",
    required=True,
    type=click.UUID,
    help="The arrival's event id (a UUID, as 'publish' and the API return it).",
)
@click.option(
    "--source",
    type=click.Choice(SOURCES[:2]),
    default="topic",
    show_default=True,
    help="Read the audit topic or the audit_log table.",
)
@json_option
@pass_invocation
def show_command(invocation: Invocation, event_id: uuid.UUID, source: str, as_json: bool) -> None:
    """Print the audit trail of one image: every record about its event id, in chain order.

    Rows are in chain order (CHAIN/SEQ): the order the audit agent appended the records, which
    the hash chain attests and 'audit verify' refers to. HAPPENED AT is the record's
    recorded_at: when the audited event happened, by the clock of the service that produced it
    (the router's for an arrival), not when it was appended. The agent reads the stages' topics
    side by side, so a step can be appended after a later one (a validation after the inference
    it preceded) and the times need not rise down the table; --json gives both for sorting.

    Records name stages, actions, outcomes and ids, never patient data. Exits 4 when no
    record mentions the event.
    """
    settings = invocation.start()
    with progress("reading the audit trail"):
        trusted = pinned_keys(settings) if source == "topic" else TrustedKeys()
        trail = asyncio.run(AuditTrail.from_settings(settings, trusted).trail(event_id, source))
    if not trail:
        raise CommandError(
            ErrorCode.RESOURCE_NOT_FOUND,
            f"no audit record mentions event {event_id} (in the {source})",
            advice="Check the id; an image is audited once the audit stage has seen it",
        )
    if as_json:
        emit_json([record.model_dump(mode="json") for record in trail])
        return
    emit_table(SHOW_HEADERS, [record_row(record) for record in trail])


@command.command("public-key")
@pass_invocation
def public_key_command(invocation: Invocation) -> None:
    """Print the audit signing key's public key, the value verifiers pin.

    Run it on the audit host and put the line in RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS (a JSON
    list) wherever the trail is verified. Exits 4 when the audit stage has not created its key.
    """
    settings = invocation.start()
    path = settings.audit.signing_key_file
    if not path.exists():
        raise CommandError(
            ErrorCode.RESOURCE_NOT_FOUND,
            f"no audit signing key at {path}",
            advice="Run the audit stage once (it creates the key), or point "
            "RADSTREAM_AUDIT__SIGNING_KEY_FILE at the key it signs with",
        )
    try:
        public = load_public_key(path)
    except (KeyFileError, ValueError) as exc:
        raise CommandError(ErrorCode.SETTINGS_INVALID, f"{path}: not an Ed25519 key") from exc
    emit(encode_public_key(public))
