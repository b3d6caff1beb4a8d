"""python -m compliance sbom: the make target's command, one line on failure."""

from __future__ import annotations

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
