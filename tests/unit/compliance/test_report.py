"""The one compliance report: every section present, each failure said plainly."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from compliance.matrix import Outcome, write_matrix
from compliance.report import AuditUnavailable, write_compliance_report
from tests.unit.compliance.test_matrix import WHEN, matrix, req
from tests.unit.compliance.test_soup import KAFKA_BOM

pytestmark = pytest.mark.requirement("RS-CMP-04")

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = ROOT / "model_registry"


@dataclass(frozen=True)
class FakeAudit:
    ok: bool
    line: str

    def summary(self) -> str:
        return self.line


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with the lock, the Kafka BOM and a recorded test run."""
    root = tmp_path / "repo"
    (root / ".state/compliance").mkdir(parents=True)
    shutil.copy(ROOT / "uv.lock", root / "uv.lock")
    shutil.copy(KAFKA_BOM, root / ".state/compliance/kafka-bom.json")
    write_matrix(
        matrix([req("RS-A-1")], ("tests/t.py::a", "RS-A-1", Outcome.PASSED)),
        root / "docs/compliance/generated",
    )
    return root


def report(repo: Path, audit: object, registry: Path = REGISTRY, **kwargs: object) -> str:
    out = write_compliance_report(
        repo / "out" / "report.md",
        repo_root=repo,
        model_registry_dir=registry,
        audit=audit,  # type: ignore[arg-type]
        generated_at=WHEN,
        **kwargs,  # type: ignore[arg-type]
    )
    return out.read_text()


class TestSections:
    def test_all_four_sections(self, repo: Path) -> None:
        """Matrix, SOUP list, model cards and audit verification in one document."""
        text = report(repo, [("topic radstream.audit.log", FakeAudit(True, "chain 0 intact"))])
        assert text.startswith("# radstream compliance report")
        for heading in (
            "## Traceability matrix",
            "## SOUP list",
            "## Model cards",
            "## Audit-chain verification",
        ):
            assert heading in text
        assert "| RS-A-1 |" in text
        assert "pylibjpeg-libjpeg" in text
        assert "Verdict: intact." in text
        assert "- topic radstream.audit.log: chain 0 intact" in text

    def test_model_cards_of_the_registry(self, repo: Path) -> None:
        """Each registered version with its digest check and its card, headings nested."""
        text = report(repo, AuditUnavailable("skipped"))
        assert "### lesion-detector@1.2.0 (default)" in text
        assert "- rollout: active" in text
        assert "- rollout: staged" in text
        assert "weights match their SHA-256, served" in text
        assert "NOT FOR CLINICAL USE" in text.upper()
        assert "\n# " not in text.split("## Model cards", 1)[1]

    def test_a_broken_chain_is_not_intact(self, repo: Path) -> None:
        """One failing chain makes the verdict NOT INTACT."""
        text = report(
            repo,
            [("topic", FakeAudit(True, "intact")), ("table", FakeAudit(False, "sequence 7"))],
        )
        assert "Verdict: NOT INTACT." in text


class TestWhatIsMissing:
    def test_audit_not_verified_says_why(self, repo: Path) -> None:
        """No verification, or none possible, is stated in the report."""
        assert "Not verified: broker down" in report(repo, AuditUnavailable("broker down"))
        assert "no audit source was checked" in report(repo, [])

    def test_no_test_run_recorded(self, repo: Path, tmp_path: Path) -> None:
        """Without matrix.json the report says to run make test."""
        text = report(repo, [], matrix_dir=tmp_path / "none")
        assert "No test run recorded" in text

    def test_soup_unavailable(self, repo: Path) -> None:
        """Without the Kafka BOM the SOUP section says what is missing."""
        (repo / ".state/compliance/kafka-bom.json").unlink()
        assert "Not available: no Kafka BOM" in report(repo, [])

    def test_refused_and_missing_models(self, repo: Path, tmp_path: Path) -> None:
        """Swapped weights show as REFUSED; a missing registry is said, not raised."""
        registry = tmp_path / "registry"
        shutil.copytree(REGISTRY, registry)
        (registry / "lesion-detector/1.0.0/model.onnx").write_bytes(b"swapped")
        text = report(repo, [], registry=registry)
        assert "REFUSED: weights do not match their SHA-256" in text
        assert "Model registry not available" in report(repo, [], registry=tmp_path / "nope")
