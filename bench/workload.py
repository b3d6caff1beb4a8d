"""The benchmark workload: arrival events over a fixed mix of the bundled sample images.

The mix is the CT and MR samples (DICOM, PNG, JPEG; 64 to 2048 px) that a radiology router
would send, plus a small share of the deliberately bad inputs in ``samples/bad``. Choices come
from a seeded generator so every run (and the work-limit loop) sees the same sequence.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cli.demo import demo_modality_hint
from schemas.events import ImageArrived, utc_now
from schemas.settings import SAMPLES_DIR
from streams.router import arrival_for_file

# CT/MR as the issue asks: DICOM (incl. RLE), PNG and JPEG from 64 to 2048 px. The US/NM/OT
# samples exist to test validation, not to model a radiology workload.
GOOD_SAMPLES: tuple[str, ...] = (
    "dicom/ct_small.dcm",
    "dicom/mr_small.dcm",
    "dicom/mr_small_rle.dcm",
    "raster/ct_64.png",
    "raster/ct_64.jpg",
    "raster/ct_128_16bit.png",
    "raster/ct_256.png",
    "raster/ct_256.jpg",
    "raster/ct_512.png",
    "raster/ct_512.jpg",
    "raster/ct_2048.png",
    "raster/ct_2048.jpg",
    "raster/mr_256.png",
)
BAD_DIR = "bad"
SOURCE = "radstream-bench"
REQUESTED_BY = "bench-clinician"


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One arrival to generate: which file, and whether it is one of the bad inputs."""

    path: Path
    bad: bool

    @property
    def name(self) -> str:
        """The file's path relative to the samples directory (for reports)."""
        return self.path.relative_to(SAMPLES_DIR).as_posix()


def bad_samples(samples_dir: Path = SAMPLES_DIR) -> list[Path]:
    """Every file in ``samples/bad``, sorted."""
    return sorted(p for p in (samples_dir / BAD_DIR).iterdir() if p.is_file())


def build_workload(
    events: int, *, bad_share: float = 0.05, seed: int = 20260101, samples_dir: Path = SAMPLES_DIR
) -> list[WorkItem]:
    """``events`` work items: ``round(events * bad_share)`` bad ones, the rest good, shuffled.

    Good files are drawn uniformly from :data:`GOOD_SAMPLES`, bad ones from ``samples/bad``.
    """
    if events < 1:
        raise ValueError("events must be at least 1")
    if not 0 <= bad_share < 1:
        raise ValueError("bad_share must be in [0, 1)")
    rng = random.Random(seed)
    bad_count = round(events * bad_share)
    good = [samples_dir / name for name in GOOD_SAMPLES]
    bad = bad_samples(samples_dir)
    items = [WorkItem(rng.choice(bad), bad=True) for _ in range(bad_count)]
    items += [WorkItem(rng.choice(good), bad=False) for _ in range(events - bad_count)]
    rng.shuffle(items)
    return items


def warmup_items(items: Sequence[WorkItem], limit: int | None = None) -> list[WorkItem]:
    """One item per distinct file of ``items`` (first ``limit`` of them), in first-seen order."""
    seen: dict[Path, WorkItem] = {}
    for item in items:
        seen.setdefault(item.path, item)
    distinct = list(seen.values())
    return distinct if limit is None else distinct[:limit]


def mix_of(items: Sequence[WorkItem]) -> dict[str, int]:
    """How many events each file contributes, by name (sorted), for the report."""
    return dict(sorted(Counter(item.name for item in items).items()))


class ArrivalFactory:
    """Builds fresh arrival events for work items, reading each file only once.

    ``arrival_for_file`` hashes the file and reads its DICOM header; doing that per event would
    put router work into the measured publishing time, so each file's event is built once and
    copied with a new event id and ``occurred_at`` at the moment it is published.
    """

    def __init__(self) -> None:
        self._templates: dict[Path, ImageArrived] = {}

    def template(self, path: Path) -> ImageArrived:
        """The arrival event of ``path`` (with the demo's modality hint), built once."""
        if path not in self._templates:
            self._templates[path] = arrival_for_file(
                path, source=SOURCE, requested_by=REQUESTED_BY, modality=demo_modality_hint(path)
            )
        return self._templates[path]

    def fresh(self, item: WorkItem) -> ImageArrived:
        """A new arrival for ``item``: new event id, occurring now."""
        return self.template(item.path).model_copy(
            update={"event_id": uuid.uuid4(), "occurred_at": utc_now()}
        )
