"""``radstream compliance report``: the one compliance document an auditor reads.

It joins the traceability matrix of the last ``make test``, the SOUP list, the model cards and
a verification of the audit chains (or a plain statement of why they were not verified) —
:func:`compliance.report.write_compliance_report` writes it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click

from cli.audit import verify_audit_trail
from cli.context import Group, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit
from compliance.report import AuditInput, AuditUnavailable, write_compliance_report
from schemas.errors import ErrorCode, RadstreamError
from schemas.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORT = REPO_ROOT / "docs/compliance/generated/report.md"


@click.group("compliance", cls=Group)
def command() -> None:
    """Write the compliance report: traceability, SOUP, model cards, audit."""


def audit_input(settings: Settings, source: str) -> AuditInput:
    """The audit chains verified from ``source``, or why they were not."""
    if source == "none":
        return AuditUnavailable("skipped (--audit-source none)")
    try:
        return asyncio.run(verify_audit_trail(settings, source))
    except RadstreamError as exc:  # no key, broker or database down: the report says so
        return AuditUnavailable(str(exc))  # "CODE: reason"


@command.command("report")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_REPORT,
    show_default=True,
    help="Where to write the Markdown report.",
)
@click.option(
    "--audit-source",
    type=click.Choice(["topic", "table", "both", "none"]),
    default="both",
    show_default=True,
    help="Which audit store to verify for the report (none: skip, and say so in the report).",
)
@pass_invocation
def report(invocation: Invocation, *, out: Path, audit_source: str) -> None:
    """Write the one compliance report (matrix, SOUP list, model cards, audit verification)."""
    settings = invocation.start()
    audit = audit_input(settings, audit_source)
    try:
        path = write_compliance_report(
            out,
            repo_root=REPO_ROOT,
            model_registry_dir=settings.inference.model_registry_dir,
            audit=audit,
            generated_at=datetime.now(UTC),
        )
    except OSError as exc:  # the operator's --out: not a bug (the path is not echoed)
        raise CommandError(
            ErrorCode.REQUEST_INVALID,
            f"cannot write the report to the --out path ({exc.strerror or type(exc).__name__})",
            advice="Give --out a file in a directory you can write to",
        ) from exc
    emit(f"compliance report written to {path}")
