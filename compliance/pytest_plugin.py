"""pytest plugin: tests name the requirements they verify; the run writes the matrix.

Loaded for every run (``pytest_plugins`` in the root conftest.py):

- ``@pytest.mark.requirement("RS-VAL-01", ...)`` (or one ``pytestmark`` line per module) names
  requirements of ``compliance/requirements.yaml``; an id the catalogue does not declare stops
  the run at collection with a usage error, whatever is selected.
- ``--compliance-matrix DIR`` records each test's outcome while the suite runs and writes
  ``DIR/matrix.json`` and ``DIR/matrix.md`` at the end (the suite runs once).
- ``--compliance-gate`` (``make test`` passes it, on the whole suite) fails the run when an
  implemented requirement has no passing test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from compliance.catalogue import CATALOGUE_FILE, Catalogue, CatalogueError, requirement_ids
from compliance.matrix import Outcome, TestResult, build_matrix, gate_violations, write_matrix

MARKER = "requirement"
_SEVERITY = {
    Outcome.PASSED: 0,
    Outcome.SKIPPED: 1,
    Outcome.XFAILED: 1,
    Outcome.FAILED: 2,
    Outcome.ERROR: 2,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """The two options ``make test`` uses."""
    group = parser.getgroup("compliance", "requirement traceability")
    group.addoption(
        "--compliance-matrix",
        metavar="DIR",
        type=Path,
        help="write the traceability matrix of this run (matrix.json, matrix.md) into DIR",
    )
    group.addoption(
        "--compliance-catalogue",
        metavar="FILE",
        type=Path,
        default=CATALOGUE_FILE,
        help="the requirement catalogue (default: compliance/requirements.yaml)",
    )
    group.addoption(
        "--compliance-gate",
        action="store_true",
        help="fail when an implemented requirement has no passing test (whole-suite runs only)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the recorder for this run."""
    config.pluginmanager.register(TraceabilityRecorder(config), "compliance-recorder")


def outcome_of(report: pytest.TestReport) -> Outcome | None:
    """One phase's outcome; None for a passing setup or teardown (the call decides)."""
    if report.failed:
        return Outcome.FAILED if report.when == "call" else Outcome.ERROR
    if report.skipped:
        return Outcome.XFAILED if hasattr(report, "wasxfail") else Outcome.SKIPPED
    if report.when != "call":
        return None
    # A non-strict xpass proves nothing the test was written to prove.
    return Outcome.XFAILED if hasattr(report, "wasxfail") else Outcome.PASSED


class TraceabilityRecorder:
    """Checks markers at collection and records each test's outcome during the run."""

    def __init__(self, config: pytest.Config) -> None:
        self.matrix_dir: Path | None = config.getoption("compliance_matrix")
        self.gate: bool = config.getoption("compliance_gate")
        self.catalogue_file: Path = config.getoption("compliance_catalogue")
        self.requirements: dict[str, tuple[str, ...]] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.problems: list[str] = []
        self.written: Path | None = None
        self._catalogue: Catalogue | None = None

    @property
    def catalogue(self) -> Catalogue:
        """The catalogue, read once; a broken one is a usage error."""
        if self._catalogue is None:
            try:
                self._catalogue = Catalogue.load(self.catalogue_file)
            except CatalogueError as exc:
                raise pytest.UsageError(str(exc)) from exc
        return self._catalogue

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Read every item's requirement ids; refuse the run if one is unknown."""
        unknown: dict[str, list[str]] = {}
        for item in items:
            try:
                ids = requirement_ids(marker.args for marker in item.iter_markers(MARKER))
            except CatalogueError as exc:
                raise pytest.UsageError(f"{item.nodeid}: {exc}") from exc
            if item.get_closest_marker(MARKER) is not None and not ids:
                raise pytest.UsageError(f"{item.nodeid}: a requirement marker names no id")
            self.requirements[item.nodeid] = tuple(ids)
            for rid in self.catalogue.unknown(ids):
                unknown.setdefault(rid, []).append(item.nodeid)
        if unknown:
            raise pytest.UsageError(
                "tests name requirements that compliance/requirements.yaml does not declare: "
                + "; ".join(f"{rid} ({nodes[0]})" for rid, nodes in sorted(unknown.items()))
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the worst outcome of a test's setup, call and teardown."""
        outcome = outcome_of(report)
        if outcome is None:
            return
        previous = self.outcomes.get(report.nodeid)
        if previous is None or _SEVERITY[outcome] > _SEVERITY[previous]:
            self.outcomes[report.nodeid] = outcome

    def results(self) -> list[TestResult]:
        """Every test that reported, with the requirements it names."""
        return [
            TestResult(nodeid, self.requirements.get(nodeid, ()), outcome)
            for nodeid, outcome in self.outcomes.items()
        ]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the matrix; under the gate, turn an unverified requirement into a failure."""
        if self.matrix_dir is None:
            return
        matrix = build_matrix(self.catalogue, self.results(), generated_at=datetime.now(UTC))
        self.written, _ = write_matrix(matrix, self.matrix_dir)
        if self.gate:
            self.problems = gate_violations(matrix)
            if self.problems and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Say where the matrix is and, under the gate, what is not verified."""
        if self.written is None:
            return
        terminalreporter.write_sep("-", "requirement traceability")
        terminalreporter.write_line(f"matrix written to {self.written.parent}/matrix.md|json")
        for problem in self.problems:
            terminalreporter.write_line(f"NOT VERIFIED: {problem}", red=True)
