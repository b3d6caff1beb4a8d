"""The end-to-end benchmark still works: a 12-event smoke run on the real broker and database.

Not a speed test (speed is measured by ``make bench``): it checks that the work limit, the
pipeline's worker processes and the aiokafka baseline all finish the workload and that the
report has every number the README's table is built from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.run_pipeline import main
from bench.workers import roles_for

pytestmark = pytest.mark.requirement("RS-BEN-01")

PHASE_KEYS = {
    "events",
    "seconds",
    "images_per_second",
    "publish_seconds",
    "database_seconds",
    "finished_by_state",
    "result_rows",
    "latency_occurred_to_stored",
    "audit",
    "cpu_seconds",
    "cpu_seconds_per_image",
}


@pytest.fixture(scope="module")
def smoke_report(
    kafka_bootstrap: str, admin_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One smoke run (about 15-25 s: two sets of four worker processes start and stop)."""
    output = tmp_path_factory.mktemp("bench")
    code = main(
        [
            "--smoke",
            "--bootstrap",
            kafka_bootstrap,
            "--database-url",
            admin_database_url,
            "--output-dir",
            str(output),
            # Bounded: a phase of 12 events takes seconds; this only stops a hung run.
            "--phase-timeout",
            "45",
        ]
    )
    assert code == 0
    latest = output / "smoke-latest.json"
    dated = list(output.glob("smoke-2*.json"))
    assert len(dated) == 1
    assert json.loads(dated[0].read_text()) == json.loads(latest.read_text())
    report: dict[str, Any] = json.loads(Path(latest).read_text())
    return report


class TestBenchSmoke:
    def test_three_positive_throughputs_and_both_ratios(self, smoke_report: dict[str, Any]) -> None:
        """Work limit, pipeline and aiokafka baseline all measured; ratios derived from them."""
        throughputs = smoke_report["throughputs"]
        assert set(throughputs) == {"work_limit", "pipeline", "aiokafka_baseline"}
        assert all(value > 0 for value in throughputs.values())
        ratios = smoke_report["ratios"]
        assert ratios["pipeline_vs_work_limit"] == pytest.approx(
            throughputs["pipeline"] / throughputs["work_limit"], rel=0.01
        )
        assert ratios["pipeline_vs_aiokafka_baseline"] == pytest.approx(
            throughputs["pipeline"] / throughputs["aiokafka_baseline"], rel=0.01
        )

    def test_every_arrival_finished_in_both_runs(self, smoke_report: dict[str, Any]) -> None:
        """All 12 arrivals reached a terminal state; CT images have result rows and latencies."""
        for run in ("pipeline", "aiokafka_baseline"):
            phase = smoke_report[run]["saturation"]
            assert set(phase) >= PHASE_KEYS
            assert phase["events"] == 12
            assert sum(phase["finished_by_state"].values()) >= 12
            assert phase["result_rows"] == smoke_report["work_limit"]["stored"]
            assert phase["latency_occurred_to_stored"]["count"] == phase["result_rows"]
            assert phase["latency_occurred_to_stored"]["p50_ms"] > 0

    def test_every_message_was_audited(self, smoke_report: dict[str, Any]) -> None:
        """The audit chain got at least an arrival and an outcome record per event."""
        audit = smoke_report["pipeline"]["saturation"]["audit"]
        assert audit["records"] >= 2 * 12
        assert audit["transactions"] >= 1

    def test_kafka_messages_per_image_are_counted(self, smoke_report: dict[str, Any]) -> None:
        """Every image costs at least its arrival and its audit records; the total adds up."""
        counts = smoke_report["pipeline"]["saturation"]["kafka_messages_per_image"]
        assert counts["images.arrived"] == 1.0
        assert counts["audit.log"] >= 2.0
        assert counts["total"] >= sum(v for k, v in counts.items() if k != "total") - 0.01

    def test_cpu_per_image_for_each_worker_process(self, smoke_report: dict[str, Any]) -> None:
        """Every stage's worker process was measured and used CPU; workers exited cleanly."""
        for run in ("pipeline", "aiokafka_baseline"):
            per_image = smoke_report[run]["saturation"]["cpu_seconds_per_image"]
            roles = roles_for()  # the default layout: validation+inference twice, results, audit
            assert all(per_image[role] > 0 for role in roles[:2])
            assert set(roles) <= set(per_image)
            assert smoke_report[run]["exit_codes"] == dict.fromkeys(roles, 0)
            assert smoke_report[run]["topics_deleted"] is True

    def test_smoke_has_no_half_rate_phase_or_profile(self, smoke_report: dict[str, Any]) -> None:
        """The smoke variant skips the half-rate phase and profiling, and says what it ran."""
        assert "half_rate" not in smoke_report["pipeline"]
        assert "profile" not in smoke_report
        assert {"machine", "workload", "work_limit", "measured_at"} <= set(smoke_report)
        assert smoke_report["workload"]["events"] == 12
