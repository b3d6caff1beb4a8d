"""Verdicts of the traceability matrix and the gate CI applies to them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from compliance.catalogue import Catalogue, Requirement
from compliance.matrix import (
    Matrix,
    Outcome,
    TestResult,
    Verdict,
    build_matrix,
    gate_violations,
    read_matrix,
    render_markdown,
    write_matrix,
)

pytestmark = pytest.mark.requirement("RS-CMP-01")

WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def req(rid: str, status: str = "implemented", **fields: object) -> Requirement:
    values: dict[str, object] = {
        "id": rid,
        "source": "phase2",
        "title": f"title {rid}",
        "statement": "does it",
        "status": status,
    }
    if status == "implemented" and "satisfied_by" not in fields:
        values["code"] = ["app.py"]
    if status == "planned":
        values["issue"] = 99
    if status in ("gap", "not-applicable"):
        values["rationale"] = "because | reasons"
    values.update(fields)
    return Requirement.model_validate(values)


def matrix(requirements: list[Requirement], *results: tuple[str, str, Outcome]) -> Matrix:
    catalogue = Catalogue({"phase2": "p2", "hipaa": "h"}, requirements)
    tests = [TestResult(node, tuple(ids.split()), outcome) for node, ids, outcome in results]
    return build_matrix(catalogue, tests, generated_at=WHEN)


def verdict(m: Matrix, rid: str) -> Verdict:
    return next(row.verdict for row in m.rows if row.requirement.id == rid)


class TestVerdicts:
    def test_a_passing_test_verifies(self) -> None:
        """An implemented requirement with a passing test is verified."""
        m = matrix([req("RS-A-1")], ("t.py::a", "RS-A-1", Outcome.PASSED))
        assert verdict(m, "RS-A-1") is Verdict.VERIFIED

    @pytest.mark.parametrize("outcome", [Outcome.FAILED, Outcome.ERROR])
    def test_one_failure_fails_it(self, outcome: Outcome) -> None:
        """A failed or erroring test fails the requirement even beside passing ones."""
        m = matrix(
            [req("RS-A-1")],
            ("t.py::a", "RS-A-1", Outcome.PASSED),
            ("t.py::b", "RS-A-1", outcome),
        )
        assert verdict(m, "RS-A-1") is Verdict.FAILED

    @pytest.mark.parametrize("outcome", [Outcome.SKIPPED, Outcome.XFAILED])
    def test_skips_and_xfails_prove_nothing(self, outcome: Outcome) -> None:
        """Only a passing test counts as evidence."""
        m = matrix([req("RS-A-1")], ("t.py::a", "RS-A-1", outcome))
        assert verdict(m, "RS-A-1") is Verdict.UNTESTED

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("planned", Verdict.PLANNED),
            ("gap", Verdict.GAP),
            ("not-applicable", Verdict.NOT_APPLICABLE),
        ],
    )
    def test_status_other_than_implemented_is_shown_as_such(
        self, status: str, expected: Verdict
    ) -> None:
        """A planned requirement stays planned even with a passing test: never 'verified'."""
        m = matrix([req("RS-A-1", status)], ("t.py::a", "RS-A-1", Outcome.PASSED))
        assert verdict(m, "RS-A-1") is expected

    def test_a_clause_is_verified_through_what_satisfies_it(self) -> None:
        """An external clause is verified when every implemented requirement under it is."""
        m = matrix(
            [req("RS-A-1"), req("RS-A-2"), req("HIPAA-X", satisfied_by=["RS-A-1", "RS-A-2"])],
            ("t.py::a", "RS-A-1", Outcome.PASSED),
            ("t.py::b", "RS-A-2", Outcome.PASSED),
        )
        assert verdict(m, "HIPAA-X") is Verdict.VERIFIED

    def test_a_planned_part_makes_it_partial(self) -> None:
        """Verified parts and planned parts give 'partially verified'."""
        m = matrix(
            [
                req("RS-A-1"),
                req("RS-B-1", "planned"),
                req("H-1", satisfied_by=["RS-A-1", "RS-B-1"]),
            ],
            ("t.py::a", "RS-A-1", Outcome.PASSED),
        )
        assert verdict(m, "H-1") is Verdict.PARTIAL

    def test_an_untested_part_leaves_it_untested(self) -> None:
        """One implemented part without a passing test keeps the clause unverified."""
        m = matrix(
            [req("RS-A-1"), req("RS-A-2"), req("H-1", satisfied_by=["RS-A-1", "RS-A-2"])],
            ("t.py::a", "RS-A-1", Outcome.PASSED),
        )
        assert verdict(m, "H-1") is Verdict.UNTESTED

    def test_a_failed_part_fails_it(self) -> None:
        """A failing requirement under a clause fails the clause."""
        m = matrix(
            [req("RS-A-1"), req("H-1", satisfied_by=["RS-A-1"])],
            ("t.py::a", "RS-A-1", Outcome.FAILED),
        )
        assert verdict(m, "H-1") is Verdict.FAILED

    def test_only_planned_parts_are_no_evidence(self) -> None:
        """A clause satisfied only by planned work is not verified."""
        m = matrix([req("RS-B-1", "planned"), req("H-1", satisfied_by=["RS-B-1"])])
        assert verdict(m, "H-1") is Verdict.UNTESTED


class TestGate:
    def test_untested_failed_and_unknown_are_violations(self) -> None:
        """CI fails on implemented-but-unverified requirements and on unknown ids."""
        m = matrix(
            [req("RS-A-1"), req("RS-A-2"), req("RS-A-3"), req("RS-B-1", "planned")],
            ("t.py::a", "RS-A-1", Outcome.PASSED),
            ("t.py::b", "RS-A-2 RS-Z-9", Outcome.FAILED),
        )
        assert gate_violations(m) == [
            "RS-A-2 is implemented but failed (t.py::b)",
            "RS-A-3 is implemented but no passing test",
            "tests name unknown requirement RS-Z-9",
        ]

    def test_everything_verified_passes(self) -> None:
        """No violation when every implemented requirement has a passing test."""
        m = matrix([req("RS-A-1"), req("RS-B-1", "gap")], ("t.py::a", "RS-A-1", Outcome.PASSED))
        assert gate_violations(m) == []


class TestFiles:
    def test_json_round_trip_keeps_verdicts_and_tests(self, tmp_path: Path) -> None:
        """What a run writes, the report reads back as it was judged."""
        m = matrix(
            [req("RS-A-1"), req("RS-B-1", "gap"), req("H-1", satisfied_by=["RS-A-1"])],
            ("tests/t.py::a", "RS-A-1", Outcome.PASSED),
            ("tests/t.py::b", "", Outcome.SKIPPED),
        )
        json_path, markdown_path = write_matrix(m, tmp_path / "out")
        again = read_matrix(json_path)
        assert [(r.requirement, r.verdict) for r in again.rows] == [
            (r.requirement, r.verdict) for r in m.rows
        ]
        assert again.outcomes == {"passed": 1, "skipped": 1}
        assert again.traced_tests == 1
        assert again.generated_at == WHEN
        assert markdown_path.read_text().startswith("# Traceability matrix")

    def test_markdown_names_failures_and_escapes_cells(self) -> None:
        """People see failing tests by name; a '|' in text does not break the table."""
        m = matrix(
            [
                req("RS-A-1"),
                req("RS-B-1", "gap"),
                req("H-1", "implemented", satisfied_by=["RS-A-1"]),
            ],
            ("tests/t.py::a", "RS-A-1", Outcome.FAILED),
            ("tests/t.py::b", "RS-A-1", Outcome.PASSED),
        )
        text = render_markdown(m, heading_level=2)
        assert text.startswith("## Traceability matrix")
        assert "**Not verified:**" in text
        assert "FAILED `tests/t.py::a`" in text
        assert "`tests/t.py` 1/2" in text
        assert "because \\| reasons" in text
        assert "via RS-A-1" in text
