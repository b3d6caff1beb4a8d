"""python -m compliance: the make targets' commands, one line on failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compliance import __main__ as command
from compliance.soup import SOUP_FILE
from tests.unit.compliance.test_soup import KAFKA_BOM

pytestmark = pytest.mark.requirement("RS-CMP-03", "RS-CMP-04")


class TestSbom:
    def test_writes_both_files_and_names_the_exceptions(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """make sbom: SBOM and SOUP list written, exceptions listed, exit 0."""
        assert command.main(["sbom", "--out", str(tmp_path), "--kafka-bom", str(KAFKA_BOM)]) == 0
        assert (tmp_path / "sbom.cdx.json").exists()
        assert (tmp_path / "soup.md").exists()
        assert "exception applied: pylibjpeg-libjpeg" in capsys.readouterr().out

    def test_copyleft_fails_with_one_line_each(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A copyleft licence in the runtime closure makes make sbom exit 1."""
        soup = tmp_path / "soup.yaml"
        text = SOUP_FILE.read_text()
        soup.write_text(text.replace("component: pylibjpeg-libjpeg", "component: someone-else"))
        monkeypatch.setattr("compliance.soup.SOUP_FILE", soup)
        assert command.main(["sbom", "--out", str(tmp_path), "--kafka-bom", str(KAFKA_BOM)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "compliance: licence check failed: pylibjpeg-libjpeg: GPL-3.0-only — copyleft in "
            "the runtime closure"
        ]

    def test_missing_input_is_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No traceback: one line naming what to run."""
        assert command.main(["sbom", "--kafka-bom", str(tmp_path / "none.json")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert err[0].startswith("compliance: no Kafka BOM")


class TestReport:
    def test_report_without_audit(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The interim report command writes the document, saying the audit was skipped."""
        root = tmp_path / "repo"
        (root / ".state/compliance").mkdir(parents=True)
        shutil.copy(command.REPO_ROOT / "uv.lock", root / "uv.lock")
        shutil.copy(KAFKA_BOM, root / ".state/compliance/kafka-bom.json")
        monkeypatch.setattr(command, "REPO_ROOT", root)
        out = tmp_path / "report.md"
        assert command.main(["report", "--out", str(out), "--audit-source", "none"]) == 0
        assert "Not verified: skipped (--audit-source none)" in out.read_text()
        assert "report written to" in capsys.readouterr().out

    def test_report_without_an_audit_key(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no signing key there is nothing to verify: the report says so."""
        monkeypatch.setenv("RADSTREAM_AUDIT__SIGNING_KEY_FILE", str(tmp_path / "none.pem"))
        out = tmp_path / "report.md"
        assert command.main(["report", "--out", str(out)]) == 0
        assert "Not verified: no audit key at" in out.read_text()

    def test_invalid_settings_are_one_line_without_values(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad setting stops the command in one line that echoes no value."""
        monkeypatch.setenv("RADSTREAM_API__JWT_SECRET", "short-secret-value")
        assert command.main(["report", "--out", str(tmp_path / "r.md")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "invalid setting" in err
        assert "short-secret-value" not in err
