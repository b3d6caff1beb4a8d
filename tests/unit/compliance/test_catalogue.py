"""The requirement catalogue: the committed one is consistent; a broken one is refused whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from compliance.catalogue import Catalogue, CatalogueError, Requirement, Status, requirement_ids

pytestmark = pytest.mark.requirement("RS-CMP-01")

ROOT = Path(__file__).resolve().parents[3]


def requirement(rid: str, **fields: object) -> Requirement:
    values: dict[str, object] = {
        "id": rid,
        "source": "s",
        "title": rid,
        "statement": "does it",
        "status": "implemented",
        "code": ["app.py"],
    }
    values.update(fields)
    return Requirement.model_validate(values)


class TestCommittedCatalogue:
    def test_it_loads_with_every_source_kind(self) -> None:
        """The committed catalogue parses and covers Phase 2/3, guarantees, HIPAA and ASVS."""
        catalogue = Catalogue.load()
        assert {r.source for r in catalogue} == {"phase2", "phase3", "guarantee", "hipaa", "asvs"}
        assert len(catalogue) > 100

    def test_every_code_path_exists(self) -> None:
        """Each `code` entry names a file or folder that is in the repository."""
        assert Catalogue.load().missing_code(ROOT) == []

    def test_hipaa_technical_safeguards_are_all_there(self) -> None:
        """Every paragraph of 45 CFR 164.312 has an entry."""
        catalogue = Catalogue.load()
        for paragraph in (
            "(a)(1)", "(a)(2)(i)", "(a)(2)(ii)", "(a)(2)(iii)", "(a)(2)(iv)", "(b)",
            "(c)(1)", "(c)(2)", "(d)", "(e)(1)", "(e)(2)(i)", "(e)(2)(ii)",
        ):  # fmt: skip
            assert f"HIPAA-164.312{paragraph}" in catalogue

    def test_lookup_and_unknown_ids(self) -> None:
        """Ids are looked up exactly; unknown ones are reported sorted and once."""
        catalogue = Catalogue.load()
        assert catalogue["RS-G-05"].status is Status.IMPLEMENTED
        assert catalogue.unknown(["RS-G-05", "RS-NOPE-2", "RS-NOPE-1", "RS-NOPE-2"]) == [
            "RS-NOPE-1",
            "RS-NOPE-2",
        ]


class TestRefusals:
    def test_planned_needs_an_issue(self) -> None:
        """A planned requirement that names no issue is refused."""
        with pytest.raises(ValueError, match="names the issue"):
            requirement("RS-X-1", status="planned", code=[])

    @pytest.mark.parametrize("status", ["gap", "not-applicable"])
    def test_gap_and_not_applicable_need_a_rationale(self, status: str) -> None:
        """Saying a requirement does not apply, or is missing, requires saying why."""
        with pytest.raises(ValueError, match="rationale"):
            requirement("RS-X-1", status=status, code=[])

    def test_implemented_needs_code_or_what_satisfies_it(self) -> None:
        """An implemented requirement points somewhere."""
        with pytest.raises(ValueError, match="code or what satisfies"):
            requirement("RS-X-1", code=[])

    def test_duplicates_unknown_sources_and_references_are_named_together(self) -> None:
        """One error lists every inconsistency."""
        with pytest.raises(CatalogueError) as caught:
            Catalogue(
                {"s": "a source"},
                [
                    requirement("RS-X-1"),
                    requirement("RS-X-1"),
                    requirement("RS-X-2", source="elsewhere"),
                    requirement("RS-X-3", satisfied_by=["RS-X-9"]),
                ],
            )
        message = str(caught.value)
        assert "RS-X-1 is declared twice" in message
        assert "unknown source 'elsewhere'" in message
        assert "satisfied by unknown RS-X-9" in message

    def test_a_requirement_cannot_satisfy_itself(self) -> None:
        """Circular satisfied_by links would verify nothing."""
        with pytest.raises(CatalogueError, match="satisfied by itself"):
            Catalogue(
                {"s": "a source"},
                [
                    requirement("RS-X-1", satisfied_by=["RS-X-2"]),
                    requirement("RS-X-2", satisfied_by=["RS-X-1"]),
                ],
            )

    def test_bad_files_are_refused_with_their_path(self, tmp_path: Path) -> None:
        """Missing, non-YAML and invalid catalogues each give a CatalogueError."""
        with pytest.raises(CatalogueError, match="unreadable"):
            Catalogue.load(tmp_path / "missing.yaml")
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: [1\n")
        with pytest.raises(CatalogueError, match="not YAML"):
            Catalogue.load(bad)
        bad.write_text("version: 1\nsources: {}\nrequirements: [{id: lower-case}]\n")
        with pytest.raises(CatalogueError, match=r"requirements\.0"):
            Catalogue.load(bad)


class TestMarkerArguments:
    def test_ids_in_order_once(self) -> None:
        """Marker arguments give each id once, in the order written."""
        assert requirement_ids([("RS-A-1", "RS-B-2"), ("RS-A-1",)]) == ["RS-A-1", "RS-B-2"]

    @pytest.mark.parametrize("argument", [42, "not an id", "rs-lower-1"])
    def test_anything_but_an_id_is_refused(self, argument: object) -> None:
        """A typo or a non-string is an error, not a silently empty mark."""
        with pytest.raises(CatalogueError, match="is not a requirement id"):
            requirement_ids([(argument,)])
