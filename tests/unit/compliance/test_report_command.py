"""``radstream compliance report``: the one report, written even when the audit is unchecked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli import compliance as command
from cli.main import main
from tests.unit.compliance.test_soup import KAFKA_BOM

pytestmark = pytest.mark.requirement("RS-CMP-04")


class TestReport:
    def test_report_without_audit(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The report command writes the document, saying the audit was skipped."""
        root = tmp_path / "repo"
        (root / ".state/compliance").mkdir(parents=True)
        shutil.copy(command.REPO_ROOT / "uv.lock", root / "uv.lock")
        shutil.copy(KAFKA_BOM, root / ".state/compliance/kafka-bom.json")
        monkeypatch.setattr(command, "REPO_ROOT", root)
        out = tmp_path / "report.md"
        assert main(["compliance", "report", "--out", str(out), "--audit-source", "none"]) == 0
        assert "Not verified: skipped (--audit-source none)" in out.read_text()
        assert "compliance report written to" in capsys.readouterr().out

    def test_report_without_an_audit_key(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no pinned verification key there is nothing to verify with: the report says so."""
        monkeypatch.delenv("RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS", raising=False)
        out = tmp_path / "report.md"
        assert main(["compliance", "report", "--out", str(out)]) == 0
        assert "Not verified: SETTINGS_INVALID: no audit verification key is pinned" in (
            out.read_text()
        )

    def test_invalid_settings_are_one_line_without_values(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad setting stops the command in one line that echoes no value."""
        monkeypatch.setenv("RADSTREAM_API__JWT_SECRET", "short-secret-value")
        assert main(["compliance", "report", "--out", str(tmp_path / "r.md")]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "SETTINGS_INVALID: RADSTREAM_API__JWT_SECRET" in err
        assert "short-secret-value" not in err
