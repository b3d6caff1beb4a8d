"""ops/prometheus/check.sh passes: rule syntax, promtool rule unit tests and scrape config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.requirement("RS-OBS-04", "RS-MOD-02")  # the drift alerts

REPO = Path(__file__).resolve().parents[3]


class TestPromtool:
    def test_check_script_succeeds(self) -> None:
        """promtool accepts the rules, their unit tests pass and the config is valid."""
        result = subprocess.run(
            ["bash", str(REPO / "ops" / "prometheus" / "check.sh")],
            capture_output=True,
            text=True,
            timeout=120,  # promtool finishes in about a second; bound a hung binary
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "FAILED" not in output
        assert output.count("SUCCESS") >= 3
