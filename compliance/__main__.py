"""``python -m compliance sbom``: what ``make sbom`` runs (the report is ``radstream compliance
report``).

It runs before the project's own package is importable in a fresh build step (the Dockerfile's
licence check), so it stays a plain module with argparse. Every failure ends in one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

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
    args = parser.parse_args(argv)
    try:
        return run_sbom(args.out, args.kafka_bom)
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


if __name__ == "__main__":  # pragma: no cover - the module's command-line entry
    sys.exit(main())
