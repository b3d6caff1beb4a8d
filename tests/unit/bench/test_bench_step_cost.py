"""The combined worker's step without Kafka, beside the single-decode loop (issue 18)."""

from __future__ import annotations

import pytest

from bench import step_cost
from bench.workload import ArrivalFactory, WorkItem
from schemas.settings import SAMPLES_DIR, load_settings

pytestmark = pytest.mark.requirement("RS-BEN-01", "RS-PRF-02")

NAMES = ("raster/ct_64.png", "dicom/ct_small.dcm", "dicom/mr_small_rle.dcm", "bad/empty.dcm")


def test_the_step_reaches_the_loops_outcomes() -> None:
    """Same arrivals, same verdicts: three images stored, three refusals (the lesion model's
    two and the empty file), and the step also publishes each accepted image as validated."""
    settings = load_settings(storage_roots=(SAMPLES_DIR,))
    items = [WorkItem(SAMPLES_DIR / name, bad=name.startswith("bad/")) for name in NAMES]
    result = step_cost.measure_step_cost(settings, items, ArrivalFactory())
    assert result["loop_outcomes"] == {"stored": 3, "rejected": 3}
    assert result["step_outcomes"] == {"images.validated": 3, "rejected": 3, "stored": 3}
    assert result["events"] == len(NAMES)
    assert result["step_cpu_seconds_per_image"] > 0
    assert len(result["loop_rounds_cpu_seconds_per_image"]) == 2


def test_main_prints_both_rows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session's logging stays as the test suite configured it.
    monkeypatch.setattr(step_cost, "configure_logging", lambda *_a, **_k: None)
    assert step_cost.main(["--events", "3"]) == 0
    out = capsys.readouterr().out
    assert "single-decode loop:" in out
    assert "combined step, no Kafka:" in out
    assert "step / loop:" in out
