"""The benchmark's command line, ratios, table and JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import work_limit
from bench.probe import offsets_partition
from bench.run_pipeline import (
    combine_rounds,
    count_lines,
    measure_single_decode_rows,
    messages_per_image,
    paced_rate,
    parse_args,
    port_of,
    ratios,
    render_table,
    targets,
    throughputs,
    total_cpu_per_image,
    write_report,
)

pytestmark = pytest.mark.requirement("RS-BEN-01")


def phase(images_per_second: float, cpu: dict[str, float | None]) -> dict[str, Any]:
    """A measured phase with the fields the table reads."""
    return {
        "images_per_second": images_per_second,
        "seconds": 400 / images_per_second,
        "latency_occurred_to_stored": {"p50_ms": 100.0, "p95_ms": 200.0, "p99_ms": 300.0},
        "cpu_seconds_per_image": cpu,
    }


HOPS = {
    "arrival_to_validated": {"p50_ms": 11.0, "p95_ms": 12.0, "p99_ms": 13.0},
    "validated_to_inferred": {"p50_ms": 21.0, "p95_ms": 22.0, "p99_ms": 23.0},
    "inferred_to_stored": {"p50_ms": 31.0, "p95_ms": 32.0, "p99_ms": 33.0},
}


def report(*, half_rate: bool) -> dict[str, Any]:
    """A report as run_benchmark builds it, with round numbers."""
    cpu = {"validation": 0.005, "inference": 0.02, "broker": None, "bench_driver": 0.5}
    pipeline: dict[str, Any] = {"saturation": phase(20.0, cpu)}
    baseline: dict[str, Any] = {
        "saturation": phase(25.0, {"validation": 0.005, "inference": 0.025})
    }
    if half_rate:
        pipeline["half_rate"] = phase(10.0, cpu) | {"target_rate": 10.0}
        baseline["half_rate"] = phase(12.0, cpu) | {"target_rate": 12.5} | {"latency_by_hop": HOPS}
    built: dict[str, Any] = {
        "machine": {"nproc": 2, "cpu_model": "cpu", "memory_mb": 1, "loadavg_1min_before": 0.5},
        "workload": {"events": 400, "bad_events": 20},
        "work_limit": {"images_per_second": 40.0, "seconds": 10.0, "cpu_seconds_per_image": 0.025},
        "pipeline": pipeline,
        "aiokafka_baseline": baseline,
    }
    built["throughputs"] = throughputs(built)
    built["ratios"] = ratios(built)
    return built


class TestArguments:
    def test_smoke_is_small_without_half_rate_or_profile(self) -> None:
        """--smoke: 12 events, saturation only, no profiling."""
        options = parse_args(["--smoke"])
        assert (options.events, options.half_rate, options.profile) == (12, False, False)
        assert options.settle_seconds == 0

    def test_default_run_has_every_phase(self) -> None:
        """make bench: 1,600 events, half rate on, profiling when pyinstrument is there."""
        options = parse_args([])
        assert options.events == 1600
        assert options.half_rate
        assert options.profile
        # The start-up's after-effects are kept out of the idle window and the phases.
        assert options.settle_seconds == 10.0
        assert parse_args(["--settle-seconds", "0"]).settle_seconds == 0

    def test_async_driver_is_stripped_from_the_admin_url(self) -> None:
        """The database URL may name SQLAlchemy's driver; asyncpg needs the plain form."""
        url = "postgresql+asyncpg://u@h:5433/db"
        options = parse_args(["--database-url", url, "--events", "9"])
        assert options.admin_database_url == "postgresql://u@h:5433/db"
        assert options.events == 9

    @pytest.mark.parametrize(
        ("address", "expected"),
        [
            ("127.0.0.1:9092", 9092),
            ("postgresql://radstream@127.0.0.1:5433/radstream", 5433),
            ("postgresql://u:pw@db/radstream", 5432),
            ("broker", 5432),
        ],
    )
    def test_ports_come_from_the_address(self, address: str, expected: int) -> None:
        """The service port is read from host:port or a URL, with a default."""
        assert port_of(address, 5432) == expected


class TestRatios:
    def test_throughput_and_cpu_ratios(self) -> None:
        """Ratios divide the pipeline's numbers by the work limit's and the baseline's."""
        built = report(half_rate=False)
        assert built["throughputs"] == {
            "work_limit": 40.0,
            "pipeline": 20.0,
            "aiokafka_baseline": 25.0,
        }
        assert built["ratios"]["pipeline_vs_work_limit"] == 0.5
        assert built["ratios"]["pipeline_vs_aiokafka_baseline"] == 0.8
        assert built["ratios"]["cpu_per_image_pipeline_vs_work_limit"] == 1.0
        assert built["ratios"]["cpu_per_image_pipeline_vs_aiokafka_baseline"] == 0.833

    def test_driver_and_unmeasured_processes_are_left_out_of_the_total(self) -> None:
        """The bench driver plays the router; a None (unreadable) process adds nothing."""
        assert total_cpu_per_image(phase(1.0, {"a": 0.01, "bench_driver": 5.0, "b": None})) == 0.01


class TestWorkLimitRounds:
    def test_mean_of_the_rounds_before_and_after(self) -> None:
        """The headline work limit is the mean of the two rounds, which are kept."""
        before = {"images_per_second": 40.0, "cpu_seconds_per_image": 0.02, "seconds": 10.0}
        after = {"images_per_second": 60.0, "cpu_seconds_per_image": 0.03, "seconds": 6.0}
        combined = combine_rounds(before | {"events": 400}, after | {"events": 400})
        assert combined["images_per_second"] == 50.0
        assert combined["cpu_seconds_per_image"] == 0.025
        assert combined["events"] == 800
        assert [r["images_per_second"] for r in combined["rounds"]] == [40.0, 60.0]

    def test_table_shows_both_rounds(self) -> None:
        """The work-limit row says how far the two rounds were apart."""
        built = report(half_rate=False)
        built["work_limit"]["rounds"] = [{"images_per_second": 38.0}, {"images_per_second": 42.0}]
        assert "(before 38.0, after 42.0)" in render_table(built)


class TestTable:
    def test_rows_for_every_measured_phase(self) -> None:
        """The table has the work limit, saturation, half rate and baseline rows with ratios."""
        table = render_table(report(half_rate=True))
        assert "pipeline, half rate (10.0/s)" in table
        assert "pipeline / aiokafka baseline: 0.80" in table
        row = next(line for line in table.splitlines() if line.startswith("pipeline, saturation"))
        assert row.split()[2:5] == ["20.0", "0.50", "100"]
        assert "aiokafka, half rate (12.5/s)" in table

    def test_latency_by_hop_for_the_phases_that_have_it(self) -> None:
        """One row per phase with hop latencies: p50, p95 and p99 of each hop in order."""
        table = render_table(report(half_rate=True))
        lines = table.splitlines()
        header = next(line for line in lines if line.startswith("latency by hop"))
        assert header.split()[-3:] == ["inferred", "to", "stored"]
        row = next(
            line for line in lines[lines.index(header) :] if line.startswith("aiokafka, half")
        )
        assert row.split()[-9:] == ["11", "12", "13", "21", "22", "23", "31", "32", "33"]

    def test_no_half_rate_row_without_the_phase(self) -> None:
        """A smoke run's table has no half-rate row; unmeasured CPU shows as '-'."""
        table = render_table(report(half_rate=False))
        assert "half rate" not in table
        assert "latency by hop" not in table
        assert " - " in table


class TestFiles:
    def test_dated_file_and_latest(self, tmp_path: Path) -> None:
        """A run writes pipeline-<date>.json and latest.json with the same content."""
        built = report(half_rate=False)
        dated, latest = write_report(built, tmp_path / "out", smoke=False)
        assert dated.name.startswith("pipeline-")
        assert latest.name == "latest.json"
        assert json.loads(dated.read_text()) == json.loads(latest.read_text())
        assert json.loads(latest.read_text())["throughputs"]["pipeline"] == 20.0

    def test_smoke_never_replaces_the_recorded_run(self, tmp_path: Path) -> None:
        """Smoke results go to smoke-*.json, so latest.json keeps the real run."""
        paths = write_report(report(half_rate=False), tmp_path, smoke=True)
        assert [p.name.split("-")[0] for p in paths] == ["smoke", "smoke"]
        assert not (tmp_path / "latest.json").exists()

    def test_count_lines_of_a_missing_file_is_zero(self, tmp_path: Path) -> None:
        """No checkpoint file yet means no checkpoints."""
        assert count_lines(tmp_path / "none.jsonl") == 0
        (tmp_path / "two.jsonl").write_text("{}\n{}\n")
        assert count_lines(tmp_path / "two.jsonl") == 2


class TestIssue18Rows:
    def test_ratios_and_targets_against_the_single_decode_limit(self) -> None:
        """CPU/image over the 1-loop limit, throughput over the 2-process limit, each judged."""
        built = report(half_rate=True)
        built["single_decode"] = {
            "processes_1": {"images_per_second": 50.0, "cpu_seconds_per_image": 0.02, "seconds": 8},
            "processes_2": {"images_per_second": 25.0, "cpu_seconds_per_image": 0.02, "seconds": 8},
        }
        built["ratios"] = ratios(built)
        assert built["ratios"]["cpu_per_image_pipeline_vs_single_decode"] == 1.25
        assert built["ratios"]["pipeline_vs_two_process_limit"] == 0.8
        found = targets(built)
        assert found["cpu_per_image_pipeline_vs_single_decode"]["met"] is True
        assert found["pipeline_vs_two_process_limit"]["met"] is True
        assert found["pipeline_vs_aiokafka_baseline"] == {
            "value": 0.8,
            "target": ">= 1",
            "met": False,
        }
        assert found["half_rate_p50_ms"]["met"] is True  # 100 ms: on the bound
        assert found["half_rate_p99_ms"] == {"value": 300.0, "target": "<= 250", "met": False}
        table = render_table(built | {"targets": found})
        assert "single decode (2 processes)" in table
        assert "throughput pipeline / 2 processes: 0.80" in table
        assert "half_rate_p99_ms" in table
        assert "NOT met" in table

    def test_a_report_without_the_single_decode_rows_says_so(self) -> None:
        """Not measured (an older report): the ratios are None, the targets unjudged."""
        built = report(half_rate=False)
        built["ratios"] = ratios(built)
        assert built["ratios"]["pipeline_vs_two_process_limit"] is None
        found = targets(built)
        assert found["cpu_per_image_pipeline_vs_single_decode"]["met"] is None
        assert found["half_rate_p50_ms"] == {"value": None, "target": "<= 100", "met": None}
        table = render_table(built | {"targets": found})
        assert "single-decode limit" in table
        assert "not measured" in table
        assert "not available" in table

    def test_single_decode_rows_measure_one_and_two_processes(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The decode-once loop runs in one process, then in two; the profile is not kept."""
        calls: list[int] = []

        def measure(
            settings: Any, items: Any, factory: Any, *, processes: int
        ) -> tuple[dict[str, float], None]:
            calls.append(processes)
            return {"images_per_second": 10.0 * processes}, None

        monkeypatch.setattr(work_limit, "measure_single_decode", measure)
        rows = measure_single_decode_rows(None, [], None)  # type: ignore[arg-type]
        assert calls == [1, 2]
        assert rows == {
            "processes_1": {"images_per_second": 10.0},
            "processes_2": {"images_per_second": 20.0},
        }

    def test_messages_per_image_by_topic(self) -> None:
        """Offsets used per image; untouched topics left out; the total counts everything."""
        before = {"images.arrived": 10, "audit.log": 5, "deadletter": 0, "offset_commits": 100}
        after = {"images.arrived": 30, "audit.log": 75, "deadletter": 0, "offset_commits": 110}
        assert messages_per_image(before, after, 20) == {
            "images.arrived": 1.0,
            "audit.log": 3.5,
            "offset_commits": 0.5,
            "total": 5.0,
        }


class TestCommitPartition:
    @pytest.mark.parametrize(
        ("group", "partitions", "expected"),
        [
            ("abc", 1_000_000, 96354),  # Java: "abc".hashCode() == 96354
            ("polygenelubricants", 50, 0),  # hashCode() == Integer.MIN_VALUE: abs gives 0
            ("Aa", 7, 2112 % 7),  # "Aa" and "BB" collide in Java (2112)
            ("BB", 7, 2112 % 7),
        ],
    )
    def test_kafkas_rule_for_the_group_coordinator_partition(
        self, group: str, partitions: int, expected: int
    ) -> None:
        """Java's String.hashCode, Kafka's Utils.abs, modulo the partitions."""
        assert offsets_partition(group, partitions) == expected


class TestPacedRate:
    def test_half_the_sets_own_saturation_by_default(self) -> None:
        """The pipeline's half-rate phase: half of what it sustained at saturation."""
        assert paced_rate(42.8, None) == 21.4

    def test_a_given_pace_wins(self) -> None:
        """The baseline runs at the pipeline's pace, whatever its own saturation was."""
        assert paced_rate(46.8, 21.4) == 21.4
