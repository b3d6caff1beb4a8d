"""One compliance report: traceability matrix, SOUP list, model cards, audit verification.

:func:`write_compliance_report` is the single entry point; ``radstream compliance report``
calls it. It does no Kafka or database I/O itself: the caller verifies the audit chains (as
``radstream audit verify`` does) and hands the reports in, or says why it could not.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from compliance.matrix import MATRIX_JSON, read_matrix, render_markdown
from compliance.soup import SoupError, build_inventory, render_soup_markdown
from schemas.errors import RadstreamError
from schemas.events import join_model_id
from streams.inference.registry import ModelRegistry, ServingStatus

DEFAULT_MATRIX_DIR = Path("docs/compliance/generated")


class AuditVerification(Protocol):
    """What the report needs of an audit verification (``streams.audit.verify`` reports)."""

    @property
    def ok(self) -> bool:
        """Whether the chain verified."""

    def summary(self) -> str:
        """One line: intact with counts, or the first bad sequence and why."""


@dataclass(frozen=True, slots=True)
class AuditUnavailable:
    """The audit chains could not be verified for the report, and why (one line)."""

    reason: str


AuditInput = Sequence[tuple[str, AuditVerification]] | AuditUnavailable


def write_compliance_report(
    out: Path,
    *,
    repo_root: Path,
    model_registry_dir: Path,
    audit: AuditInput,
    generated_at: datetime,
    matrix_dir: Path | None = None,
) -> Path:
    """Write the whole report as one Markdown document at ``out`` and return its path.

    Args:
        out: the Markdown file to write (its folder is created).
        repo_root: the checkout holding uv.lock and .state/compliance/kafka-bom.json.
        model_registry_dir: the registry whose model cards go into the report.
        audit: ``(where, report)`` per verified chain, or why verification was not possible.
        generated_at: the report's timestamp (injected: the caller owns the clock).
        matrix_dir: where the last ``make test`` wrote matrix.json
            (default ``docs/compliance/generated`` under ``repo_root``).
    """
    matrix_path = (matrix_dir or repo_root / DEFAULT_MATRIX_DIR) / MATRIX_JSON
    sections = [
        "# radstream compliance report",
        "",
        f"Generated {generated_at.isoformat(timespec='seconds')}. Sections: traceability "
        "matrix (requirements to code to tests, with the last test run's results), SOUP list "
        "with the licence check, model cards of the registry, audit-chain verification.",
        "",
        _matrix_section(matrix_path),
        _soup_section(repo_root),
        _model_section(model_registry_dir),
        _audit_section(audit),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(sections), encoding="utf-8")
    return out


def _matrix_section(path: Path) -> str:
    try:
        matrix = read_matrix(path)
    except (OSError, ValueError, KeyError) as exc:
        return (
            "## Traceability matrix\n\nNo test run recorded "
            f"({path} unreadable: {type(exc).__name__}); run `make test` first.\n"
        )
    return render_markdown(matrix, heading_level=2)


def _soup_section(repo_root: Path) -> str:
    try:
        inventory = build_inventory(repo_root)
    except (SoupError, ValueError) as exc:
        return f"## SOUP list\n\nNot available: {exc}\n"
    return render_soup_markdown(inventory, heading_level=2)


def _model_section(directory: Path) -> str:
    lines = ["## Model cards", ""]
    try:
        registry = ModelRegistry.load(directory)
    except RadstreamError as exc:
        return "\n".join([*lines, f"Model registry not available: {exc}", ""])
    for status in registry.list():
        model_id = join_model_id(status.name, status.version)
        verified = {
            ServingStatus.AVAILABLE: "weights match their SHA-256, served",
            ServingStatus.REFUSED: "REFUSED: weights do not match their SHA-256",
            ServingStatus.LOAD_FAILED: f"NOT LOADED: {status.error_code}",
        }[status.status]
        lines += [
            f"### {model_id}{' (default)' if status.default else ''}",
            "",
            f"- rollout: {status.rollout.value}"
            + (f" ({status.canary_percent}% of studies)" if status.canary_percent else ""),
            f"- status: {status.clinical_status or 'unknown'}",
            f"- runtime: {status.runtime or '-'}; weights SHA-256 {status.weights_sha256 or '-'}",
            f"- verification: {verified}",
            "",
        ]
        card = _model_card(directory, registry, model_id, status.name, status.version)
        lines += [card, ""] if card else ["(no model card found)", ""]
    return "\n".join(lines)


def _model_card(
    directory: Path, registry: ModelRegistry, model_id: str, name: str, version: str
) -> str | None:
    card_name = "MODEL_CARD.md"  # a refused model still has its card under the default name
    with contextlib.suppress(RadstreamError):
        card_name = registry.resolve(model_id).manifest.model_card
    try:
        text = (directory / name / version / card_name).read_text(encoding="utf-8")
    except OSError:
        return None
    # Nest the card's headings under this model's heading (### ...).
    return re.sub(r"^(#+)", lambda m: "#" * min(len(m.group(1)) + 3, 6), text, flags=re.M)


def _audit_section(audit: AuditInput) -> str:
    lines = ["## Audit-chain verification", ""]
    if isinstance(audit, AuditUnavailable):
        return "\n".join([*lines, f"Not verified: {audit.reason}", ""])
    if not audit:
        return "\n".join([*lines, "Not verified: no audit source was checked.", ""])
    intact = all(report.ok for _, report in audit)
    lines.append(f"Verdict: {'intact' if intact else 'NOT INTACT'}.")
    lines.append("")
    lines += [f"- {where}: {report.summary()}" for where, report in audit]
    lines.append("")
    return "\n".join(lines)
