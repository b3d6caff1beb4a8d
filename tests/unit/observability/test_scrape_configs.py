"""The shipped scrape configs mark every radstream target the way the alert rules select it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.promql import alert_rules

pytestmark = pytest.mark.requirement("RS-OBS-04")

REPO = Path(__file__).resolve().parents[3]
CONFIGS = ("prometheus.yml", "prometheus.docker.yml")
MARK = 'app_kubernetes_io_name="radstream"'


class TestScrapeConfigs:
    @pytest.mark.parametrize("name", CONFIGS)
    def test_every_target_carries_the_radstream_label(self, name: str) -> None:
        """Each static target is labelled app_kubernetes_io_name=radstream."""
        config = yaml.safe_load((REPO / "ops" / "prometheus" / name).read_text())
        for job in config["scrape_configs"]:
            for static in job["static_configs"]:
                labels = static.get("labels", {})
                assert labels.get("app_kubernetes_io_name") == "radstream", (name, job["job_name"])

    def test_worker_down_selects_that_label(self) -> None:
        """RadstreamWorkerDown watches targets by the label, not only by radstream-* job names."""
        (rule,) = [r for r in alert_rules() if r["alert"] == "RadstreamWorkerDown"]
        assert f"up{{{MARK}}} == 0" in rule["expr"]
