"""The single-decode limit (issue 18): the necessary work only, in one or two processes."""

from __future__ import annotations

import pytest

from bench.work_limit import WorkLoop, measure_single_decode
from bench.workload import ArrivalFactory, WorkItem
from schemas.settings import SAMPLES_DIR, load_settings

pytestmark = pytest.mark.requirement("RS-BEN-01", "RS-PRF-02")

NAMES = ("raster/ct_64.png", "dicom/ct_small.dcm", "dicom/mr_small_rle.dcm", "bad/empty.dcm")


def items(*names: str) -> list[WorkItem]:
    """Work items for sample files."""
    return [WorkItem(SAMPLES_DIR / name, bad=name.startswith("bad/")) for name in names]


class TestSingleDecodeLoop:
    def test_same_outcomes_without_the_second_decode(self) -> None:
        """Decode once: the same results, rejections and audit records as the loop that decodes
        twice, and no decode_for_inference step at all."""
        settings = load_settings(storage_roots=(SAMPLES_DIR,))
        twice = WorkLoop.load(settings)
        once = WorkLoop.load(settings, single_decode=True)
        factory = ArrivalFactory()
        arrivals = [factory.fresh(item) for item in items(*NAMES)]
        assert once.run(arrivals) == twice.run(arrivals)
        assert "decode_for_inference" in twice.steps
        assert set(once.steps) == {"read", "validate", "preprocess_and_infer", "audit"}


class TestMeasure:
    def test_two_processes_do_all_the_work(self) -> None:
        """Split in halves over two spawned processes: every event counted once, the outcomes
        one loop has (CT: a result and the lesion model's refusal; MR: a result; bad: refused;
        arrival + validation outcome + one per routed model audited)."""
        settings = load_settings(storage_roots=(SAMPLES_DIR,))
        work = items(*NAMES)
        result, session = measure_single_decode(settings, work, ArrivalFactory(), processes=2)
        assert session is None
        assert (result["processes"], result["events"]) == (2, len(work))
        assert result["images_per_second"] > 0
        assert result["cpu_seconds_per_image"] > 0
        assert (result["stored"], result["rejected"]) == (3, 3)
        assert result["audit_records"] == 4 + 4 + (2 + 2 + 1)
        assert "decode_for_inference" not in result["seconds_by_step"]

    def test_profile_in_one_process(self) -> None:
        settings = load_settings(storage_roots=(SAMPLES_DIR,))
        result, session = measure_single_decode(
            settings, items("raster/mr_256.png"), ArrivalFactory(), profile=True
        )
        assert (result["processes"], result["stored"], result["rejected"]) == (1, 1, 0)
        assert session is not None

    def test_bad_arguments(self) -> None:
        settings = load_settings(storage_roots=(SAMPLES_DIR,))
        work = items("raster/ct_64.png")
        with pytest.raises(ValueError, match="processes"):
            measure_single_decode(settings, work, ArrivalFactory(), processes=0)
        with pytest.raises(ValueError, match="one process"):
            measure_single_decode(settings, work, ArrivalFactory(), processes=2, profile=True)
