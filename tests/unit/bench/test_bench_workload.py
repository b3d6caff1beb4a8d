"""The benchmark workload: the mix, its determinism, and fresh arrival events."""

from __future__ import annotations

import pytest

from bench.workload import (
    GOOD_SAMPLES,
    ArrivalFactory,
    WorkItem,
    bad_samples,
    build_workload,
    mix_of,
    warmup_items,
)
from schemas.settings import SAMPLES_DIR

pytestmark = pytest.mark.requirement("RS-BEN-01")


class TestBuildWorkload:
    def test_bad_share_is_rounded_to_whole_events(self) -> None:
        """5% of 400 arrivals are bad inputs from samples/bad, the rest good samples."""
        items = build_workload(400, bad_share=0.05)
        bad = [i for i in items if i.bad]
        assert len(items) == 400
        assert len(bad) == 20
        assert {i.path.parent.name for i in bad} == {"bad"}
        assert {i.name for i in items if not i.bad} <= set(GOOD_SAMPLES)

    def test_same_seed_same_sequence(self) -> None:
        """A seed fixes the sequence, so every phase and the work loop see the same images."""
        assert build_workload(50, seed=7) == build_workload(50, seed=7)
        assert build_workload(50, seed=7) != build_workload(50, seed=8)

    @pytest.mark.parametrize(("events", "share"), [(0, 0.05), (10, 1.0), (10, -0.1)])
    def test_nonsense_arguments_are_refused(self, events: int, share: float) -> None:
        """No events, or a bad share outside [0, 1), is an error, not an empty benchmark."""
        with pytest.raises(ValueError, match="must"):
            build_workload(events, bad_share=share)

    def test_every_good_sample_exists(self) -> None:
        """The mix names files that are in samples/ (a renamed sample breaks the bench here)."""
        assert all((SAMPLES_DIR / name).is_file() for name in GOOD_SAMPLES)
        assert len(bad_samples()) >= 5


class TestWarmupAndMix:
    def test_warmup_has_one_item_per_distinct_file(self) -> None:
        """Warm-up touches every file once, in first-seen order, optionally capped."""
        items = build_workload(200)
        distinct = warmup_items(items)
        assert len({i.path for i in distinct}) == len(distinct) == len({i.path for i in items})
        assert distinct[0] == items[0]
        assert warmup_items(items, limit=3) == distinct[:3]

    def test_mix_counts_events_per_file(self) -> None:
        """The report's mix adds up to the number of events."""
        items = build_workload(120)
        mix = mix_of(items)
        assert sum(mix.values()) == 120
        assert list(mix) == sorted(mix)


class TestArrivalFactory:
    def test_fresh_arrivals_get_new_ids_and_times(self) -> None:
        """Each published arrival is a new event of the same file, occurring now."""
        factory = ArrivalFactory()
        item = WorkItem(SAMPLES_DIR / "raster" / "ct_256.png", bad=False)
        first, second = factory.fresh(item), factory.fresh(item)
        assert first.event_id != second.event_id
        assert second.occurred_at >= first.occurred_at
        assert first.image_uri == second.image_uri
        assert first.sha256 == second.sha256

    def test_raster_files_carry_the_demo_modality_hint(self) -> None:
        """PNG/JPEG exports get the router's modality hint, as in ``radstream demo``."""
        factory = ArrivalFactory()
        ct = factory.fresh(WorkItem(SAMPLES_DIR / "raster" / "ct_64.jpg", bad=False))
        mr = factory.fresh(WorkItem(SAMPLES_DIR / "raster" / "mr_256.png", bad=False))
        assert (ct.modality, mr.modality) == ("CT", "MR")

    def test_template_is_built_once_per_file(self) -> None:
        """The file is read and hashed once, not per event."""
        factory = ArrivalFactory()
        path = SAMPLES_DIR / "dicom" / "ct_small.dcm"
        assert factory.template(path) is factory.template(path)
