"""The traceability matrix: requirement -> code -> tests -> result of the last run.

Built from the catalogue and the outcomes one pytest run recorded (the plugin in
``compliance/pytest_plugin.py`` collects them as the suite runs, so the suite runs once), then
written as JSON (for tools and the report) and Markdown (for people). :func:`gate_violations`
is what CI enforces.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from compliance.catalogue import Catalogue, Requirement, Status

MATRIX_JSON = "matrix.json"
MATRIX_MARKDOWN = "matrix.md"


class Outcome(StrEnum):
    """What one test did in the run (setup, call and teardown taken together)."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"

    @property
    def counts_as_failure(self) -> bool:
        """Failed assertions and errors in setup or teardown both break verification."""
        return self in (Outcome.FAILED, Outcome.ERROR)


class Verdict(StrEnum):
    """What the run says about a requirement."""

    VERIFIED = "verified"
    PARTIAL = "partially verified"
    FAILED = "failed"
    UNTESTED = "no passing test"
    PLANNED = "planned"
    GAP = "gap"
    NOT_APPLICABLE = "not applicable"


_BY_STATUS = {
    Status.PLANNED: Verdict.PLANNED,
    Status.GAP: Verdict.GAP,
    Status.NOT_APPLICABLE: Verdict.NOT_APPLICABLE,
}


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test of the run: its node id, the requirements it names, its outcome."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    requirements: tuple[str, ...]
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Row:
    """One requirement in the matrix."""

    requirement: Requirement
    verdict: Verdict
    tests: tuple[TestResult, ...]

    def as_json(self) -> dict[str, Any]:
        """The row for matrix.json."""
        req = self.requirement
        return {
            "id": req.id,
            "title": req.title,
            "statement": req.statement,
            "source": req.source,
            "status": req.status.value,
            "issue": req.issue,
            "verdict": self.verdict.value,
            "code": list(req.code),
            "satisfied_by": list(req.satisfied_by),
            "rationale": req.rationale,
            "note": req.note,
            "tests": [{"nodeid": t.nodeid, "outcome": t.outcome.value} for t in self.tests],
        }


@dataclass(frozen=True, slots=True)
class Matrix:
    """Every requirement's row, plus what the run did overall."""

    rows: tuple[Row, ...]
    outcomes: Mapping[str, int]
    traced_tests: int
    generated_at: datetime
    unknown_ids: tuple[str, ...] = field(default=())

    def verdicts(self) -> Counter[Verdict]:
        """How many requirements got each verdict."""
        return Counter(row.verdict for row in self.rows)


def build_matrix(
    catalogue: Catalogue, results: Iterable[TestResult], *, generated_at: datetime
) -> Matrix:
    """Judge every requirement from its own tests and from the requirements satisfying it."""
    results = tuple(results)
    by_requirement: dict[str, list[TestResult]] = {}
    unknown: set[str] = set()
    for result in results:
        for rid in result.requirements:
            if rid in catalogue:
                by_requirement.setdefault(rid, []).append(result)
            else:
                unknown.add(rid)
    verdicts: dict[str, Verdict] = {}

    def verdict_of(requirement: Requirement) -> Verdict:
        if requirement.id not in verdicts:
            verdicts[requirement.id] = _judge(
                requirement,
                by_requirement.get(requirement.id, []),
                [verdict_of(catalogue[other]) for other in requirement.satisfied_by],
            )
        return verdicts[requirement.id]

    rows = tuple(
        Row(req, verdict_of(req), tuple(by_requirement.get(req.id, ()))) for req in catalogue
    )
    return Matrix(
        rows=rows,
        outcomes=dict(Counter(result.outcome.value for result in results)),
        traced_tests=sum(1 for result in results if result.requirements),
        generated_at=generated_at,
        unknown_ids=tuple(sorted(unknown)),
    )


def _judge(requirement: Requirement, own: Sequence[TestResult], deps: Sequence[Verdict]) -> Verdict:
    """Verified only on a passing test, never on a status alone; see ``Verdict``."""
    if requirement.status is not Status.IMPLEMENTED:
        return _BY_STATUS[requirement.status]
    if any(t.outcome.counts_as_failure for t in own) or Verdict.FAILED in deps:
        return Verdict.FAILED
    if Verdict.UNTESTED in deps:
        return Verdict.UNTESTED
    evidence = any(t.outcome is Outcome.PASSED for t in own) or any(
        verdict in (Verdict.VERIFIED, Verdict.PARTIAL) for verdict in deps
    )
    if not evidence:
        return Verdict.UNTESTED
    if any(verdict in (Verdict.PARTIAL, Verdict.PLANNED, Verdict.GAP) for verdict in deps):
        return Verdict.PARTIAL
    return Verdict.VERIFIED


def gate_violations(matrix: Matrix) -> list[str]:
    """Why CI must fail: an implemented requirement not verified, or an unknown id cited."""
    problems = [
        f"{row.requirement.id} is implemented but {row.verdict.value}" + _failing_tests(row)
        for row in matrix.rows
        if row.verdict in (Verdict.FAILED, Verdict.UNTESTED)
    ]
    problems.extend(f"tests name unknown requirement {rid}" for rid in matrix.unknown_ids)
    return problems


def _failing_tests(row: Row) -> str:
    failing = [t.nodeid for t in row.tests if t.outcome.counts_as_failure]
    return f" ({', '.join(failing[:3])}{' …' if len(failing) > 3 else ''})" if failing else ""


# ---------------------------------------------------------------- files


def write_matrix(matrix: Matrix, directory: Path) -> tuple[Path, Path]:
    """Write matrix.json and matrix.md into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / MATRIX_JSON
    markdown_path = directory / MATRIX_MARKDOWN
    json_path.write_text(json.dumps(matrix_json(matrix), indent=2) + "\n", encoding="utf-8")
    markdown_path.write_text(render_markdown(matrix), encoding="utf-8")
    return json_path, markdown_path


def matrix_json(matrix: Matrix) -> dict[str, Any]:
    """The whole matrix as a JSON-ready dict (every test of every requirement)."""
    return {
        "generated_at": matrix.generated_at.isoformat(),
        "tests": {"outcomes": dict(matrix.outcomes), "traced": matrix.traced_tests},
        "verdicts": {verdict.value: n for verdict, n in sorted(matrix.verdicts().items())},
        "unknown_ids": list(matrix.unknown_ids),
        "requirements": [row.as_json() for row in matrix.rows],
    }


def read_matrix(path: Path) -> Matrix:
    """The matrix a run wrote to ``path`` (matrix.json), as it was judged then."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for entry in data["requirements"]:
        requirement = Requirement.model_validate(
            {key: entry[key] for key in Requirement.model_fields if entry.get(key) is not None}
        )
        tests = tuple(
            TestResult(t["nodeid"], (requirement.id,), Outcome(t["outcome"]))
            for t in entry["tests"]
        )
        rows.append(Row(requirement, Verdict(entry["verdict"]), tests))
    return Matrix(
        rows=tuple(rows),
        outcomes=data["tests"]["outcomes"],
        traced_tests=data["tests"]["traced"],
        generated_at=datetime.fromisoformat(data["generated_at"]),
        unknown_ids=tuple(data["unknown_ids"]),
    )


def render_markdown(matrix: Matrix, *, heading_level: int = 1) -> str:
    """The matrix for people: a summary, then one table per source, tests grouped by module."""
    h = "#" * heading_level
    total = sum(matrix.outcomes.values())
    outcome_text = ", ".join(f"{n} {name}" for name, n in sorted(matrix.outcomes.items()))
    verdict_text = ", ".join(f"{n} {v.value}" for v, n in sorted(matrix.verdicts().items()))
    lines = [
        f"{h} Traceability matrix",
        "",
        f"Last run: {matrix.generated_at.isoformat(timespec='seconds')}; {total} test ids "
        f"({outcome_text or 'none'}); {matrix.traced_tests} of them name a requirement.",
        "",
        f"Requirements: {len(matrix.rows)} ({verdict_text}).",
        "",
    ]
    problems = gate_violations(matrix)
    if problems:
        lines += ["**Not verified:**", "", *[f"- {p}" for p in problems], ""]
    sources: dict[str, list[Row]] = {}
    for row in matrix.rows:
        sources.setdefault(row.requirement.source, []).append(row)
    for source, rows in sources.items():
        lines += [
            f"{h}# {source}",
            "",
            "| id | requirement | status | verdict | code | tests |",
            "|---|---|---|---|---|---|",
        ]
        lines += [_markdown_row(row) for row in rows]
        lines.append("")
    return "\n".join(lines)


def _markdown_row(row: Row) -> str:
    req = row.requirement
    status = req.status.value + (f" (#{req.issue})" if req.issue else "")
    code = "<br>".join(f"`{path}`" for path in req.code)
    if req.satisfied_by:
        code = (code + "<br>" if code else "") + "via " + ", ".join(req.satisfied_by)
    explanation = req.rationale or req.note
    title = _cell(req.title) + (f" — {_cell(explanation)}" if explanation else "")
    return (
        f"| {req.id} | {title} | {status} | {row.verdict.value} | {code} | "
        f"{_tests_cell(row.tests)} |"
    )


def _tests_cell(tests: Sequence[TestResult]) -> str:
    """Tests grouped by module: ``tests/unit/x.py 12/12`` (passed/run), failures named."""
    by_module: dict[str, list[TestResult]] = {}
    for test in tests:
        by_module.setdefault(test.nodeid.split("::", 1)[0], []).append(test)
    parts = []
    for module, module_tests in by_module.items():
        passed = sum(1 for t in module_tests if t.outcome is Outcome.PASSED)
        parts.append(f"`{module}` {passed}/{len(module_tests)}")
        parts.extend(f"FAILED `{t.nodeid}`" for t in module_tests if t.outcome.counts_as_failure)
    return "<br>".join(parts)


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")
