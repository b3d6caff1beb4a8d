"""``python -m compliance sbom|report``: what ``make sbom`` and ``make compliance-report`` run.

``report`` is the interim home of ``radstream compliance report`` until the ``cli/`` package
(issue #13) registers that command; both call :func:`compliance.report.write_compliance_report`.
Every failure ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from compliance.report import AuditInput, AuditUnavailable, write_compliance_report
from compliance.soup import build_inventory, write_sbom_and_soup
from schemas.errors import RadstreamError

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATED = REPO_ROOT / "docs/compliance/generated"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m compliance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sbom = commands.add_parser("sbom", help="write the SBOM and SOUP list; check licences")
    sbom.add_argument("--out", type=Path, default=GENERATED, help="output folder")
    sbom.add_argument("--kafka-bom", type=Path, help="the Kafka broker's CycloneDX BOM")
    report = commands.add_parser("report", help="write the one compliance report")
    report.add_argument("--out", type=Path, default=GENERATED / "report.md")
    report.add_argument(
        "--audit-source",
        choices=("topic", "table", "both", "none"),
        default="both",
        help="which audit store to verify for the report (none: skip, say so in the report)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "sbom":
            return run_sbom(args.out, args.kafka_bom)
        return run_report(args.out, args.audit_source)
    except ValidationError as exc:
        # Never the inputs: a settings error could echo a secret.
        print(
            f"compliance: {exc.error_count()} invalid setting(s); see `radstream config`",
            file=sys.stderr,
        )
        return 1
    except (ValueError, RadstreamError, OSError) as exc:  # SoupError and LockError included
        print(f"compliance: {exc}", file=sys.stderr)
        return 1


def run_sbom(out: Path, kafka_bom: Path | None) -> int:
    """Write sbom.cdx.json and soup.md; exit 1 when the runtime closure has copyleft."""
    inventory = build_inventory(REPO_ROOT, kafka_bom=kafka_bom)
    sbom, soup = write_sbom_and_soup(inventory, out, generated_at=datetime.now(UTC))
    excepted = [f for f in inventory.findings if f.exception is not None]
    print(
        f"compliance: {len(inventory.components)} components, {len(inventory.findings)} "
        f"licence-checked; {len(excepted)} by exception; wrote {sbom} and {soup}"
    )
    for finding in excepted:
        print(f"compliance: exception applied: {finding.component} ({finding.licence})")
    for finding in inventory.failures:
        print(f"compliance: licence check failed: {finding.describe()}", file=sys.stderr)
    return 1 if inventory.failures else 0


def run_report(out: Path, audit_source: str) -> int:
    """Verify the audit chains (unless told not to) and write the report."""
    from app import verify_audit_trail  # noqa: PLC0415 - the composition root, only here
    from schemas.settings import Settings  # noqa: PLC0415

    settings = Settings()
    audit: AuditInput
    if audit_source == "none":
        audit = AuditUnavailable("skipped (--audit-source none)")
    elif not settings.audit.signing_key_file.exists():
        audit = AuditUnavailable(f"no audit key at {settings.audit.signing_key_file}")
    else:
        try:
            audit = asyncio.run(verify_audit_trail(settings, audit_source))
        except RadstreamError as exc:
            audit = AuditUnavailable(f"{exc.code}: {exc}")
    path = write_compliance_report(
        out,
        repo_root=REPO_ROOT,
        model_registry_dir=settings.inference.model_registry_dir,
        audit=audit,
        generated_at=datetime.now(UTC),
    )
    print(f"compliance: report written to {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover - the module's command-line entry
    sys.exit(main())
