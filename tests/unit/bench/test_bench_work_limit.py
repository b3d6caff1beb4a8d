"""The work-limit loop does the pipeline's work: outcomes and audit records per arrival."""

from __future__ import annotations

import pytest

from bench.work_limit import WorkLoop, measure_work_limit
from bench.workload import ArrivalFactory, WorkItem
from schemas.settings import SAMPLES_DIR, load_settings

pytestmark = pytest.mark.requirement("RS-BEN-01")


@pytest.fixture(scope="module")
def loop() -> WorkLoop:
    """The registry, routing and clinical rules, loaded once."""
    return WorkLoop.load(load_settings(storage_roots=(SAMPLES_DIR,)))


def items(*names: str) -> list[WorkItem]:
    """Work items for sample files."""
    return [WorkItem(SAMPLES_DIR / name, bad=name.startswith("bad/")) for name in names]


class TestWorkLoop:
    def test_outcomes_match_what_the_pipeline_decides(self, loop: WorkLoop) -> None:
        """CT: a quality result and the lesion model's refusal (real CT is out of its
        distribution); MR: a quality result; a bad file is rejected at validation."""
        factory = ArrivalFactory()
        names = ("raster/ct_64.png", "dicom/ct_small.dcm", "dicom/mr_small.dcm", "bad/empty.dcm")
        arrivals = [factory.fresh(item) for item in items(*names)]
        outcomes = loop.run(arrivals)
        assert (outcomes["stored"], outcomes["rejected"]) == (3, 3)
        # arrival + validation outcome for each, + one inference outcome per routed model
        assert outcomes["audit_records"] == 4 + 4 + (2 + 2 + 1)

    def test_partial_batches_are_inferred(self, loop: WorkLoop) -> None:
        """More than one micro-batch: every validated CT image still gets its result."""
        factory = ArrivalFactory()
        size = loop.settings.inference.batch_size
        arrivals = [factory.fresh(item) for item in items(*["raster/ct_64.jpg"] * (size + 3))]
        assert loop.run(arrivals)["stored"] == size + 3

    def test_steps_are_timed(self, loop: WorkLoop) -> None:
        """Every step of the work gets its share of the time."""
        loop.steps.clear()
        loop.run([ArrivalFactory().fresh(items("raster/ct_256.png")[0])])
        assert set(loop.steps) == {
            "read", "validate", "decode_for_inference", "preprocess_and_infer", "audit",
        }  # fmt: skip
        assert all(seconds > 0 for seconds in loop.steps.values())


class TestMeasure:
    def test_images_per_second_and_profile(self) -> None:
        """The measurement counts every event and returns a profile session when asked."""
        settings = load_settings(storage_roots=(SAMPLES_DIR,))
        work = items("raster/ct_64.png", "bad/not_an_image.bin", "raster/mr_256.png")
        result, session = measure_work_limit(settings, work, ArrivalFactory(), profile=True)
        assert result["events"] == 3
        assert result["images_per_second"] > 0
        assert (result["stored"], result["rejected"]) == (2, 2)
        assert session is not None
        assert measure_work_limit(settings, work, ArrivalFactory())[1] is None
