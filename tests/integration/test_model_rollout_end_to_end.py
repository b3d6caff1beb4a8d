"""A new model version added, shadowed, compared and promoted, on the real broker and database.

The operator's path through ``radstream models``: ``add`` a new lesion-detector version (1.1.0's
weights, which have no input guard, as 1.3.0), put it in ``shadow``, let a worker run the
validation, inference and results stages on three CT images, ``compare`` it with the active
1.2.0, ``promote`` it and restart the worker. Shadow results are stored and compared but never
reach ``inference.results``; after the promotion 1.3.0 publishes. Every change is on
``api.actions``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

import app
from cli.main import main
from schemas.audit import ApiAction
from schemas.events import ImageArrived, InferenceCompleted, ShadowOutcome
from schemas.settings import SAMPLES_DIR, Settings
from sinks.database import Database
from sinks.repositories import ComparisonRepository, ResultsRepository
from streams.inference.registry import read_rollout
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.router import arrival_for_file
from streams.topics import TopicKey, TopicNames
from tests.integration.kafka_support import read_from_start
from tests.integration.settings_support import (
    copied_model_registry,
    isolated_settings,
    registry_settings,
)

pytestmark = [
    pytest.mark.requirement("RS-MOD-01", "RS-MOD-02", "RS-MOD-03", "RS-MOD-04"),
    pytest.mark.usefixtures("restored_logging"),
]

T = TypeVar("T")
TIMEOUT_SECONDS = 90
IMAGES = ("ct_phantom_clear.dcm", "ct_phantom_lesion.dcm", "ct_small.dcm")


def new_version(registry_dir: Path, work: Path) -> tuple[Path, Path, Path]:
    """lesion-detector 1.1.0's files, described as a new version 1.3.0 (ONNX, manifest, card)."""
    source = registry_dir / "lesion-detector" / "1.1.0"
    manifest = yaml.safe_load((source / "manifest.yaml").read_text())
    manifest["version"] = "1.3.0"
    manifest.pop("default", None)
    work.mkdir()
    (work / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True))
    shutil.copy(source / "model.onnx", work / "model.onnx")
    shutil.copy(source / "MODEL_CARD.md", work / "MODEL_CARD.md")
    return work / "model.onnx", work / "manifest.yaml", work / "MODEL_CARD.md"


async def read_topic(bootstrap: str, topic: str, want: int) -> list[bytes]:
    """The values on ``topic`` until ``want`` arrived (bounded)."""
    records = await read_from_start(bootstrap, topic, want=want, within=TIMEOUT_SECONDS)
    return [record.value for record in records]


async def run_worker_on(
    settings: Settings,
    kafka: KafkaClientConfig,
    arrivals: Sequence[ImageArrived],
    wait: Coroutine[Any, Any, T],
) -> T:
    """Run the pipeline worker, publish ``arrivals``, return what ``wait`` awaits, stop."""
    stop, started = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        app.run_worker(
            settings,
            ["validation", "inference", "results"],
            stop,
            started=started,
            serve_http=False,
        )
    )
    try:
        await asyncio.wait_for(started.wait(), TIMEOUT_SECONDS)
        async with KafkaPublisher(kafka, TopicNames(settings.topic_prefix)) as publisher:
            for arrival in arrivals:
                await publisher.publish(TopicKey.IMAGES_ARRIVED, arrival.message_key(), arrival)
        return await wait
    finally:
        stop.set()
        await asyncio.wait_for(worker, TIMEOUT_SECONDS)


async def stored_versions(url: str, event_ids: set[uuid.UUID], want: int) -> list[str]:
    """The published lesion-detector versions stored for ``event_ids`` once ``want`` are."""
    database = Database(url, pool_size=1)
    try:
        results = ResultsRepository(database.sessions)
        async with asyncio.timeout(TIMEOUT_SECONDS):
            while True:
                found = [
                    r.model_version
                    for event in event_ids
                    for r in await results.list_for_event(event)
                    if r.model_name == "lesion-detector"
                ]
                if len(found) >= want:
                    return found
                await asyncio.sleep(0.2)
    finally:
        await database.dispose()


async def comparison_settled(url: str, failures: int, candidate_results: int) -> None:
    """Wait until 1.2.0's failures and 1.3.0's results are all stored (before the worker stops:
    the rejection may be consumed after the results the test waited for)."""
    database = Database(url, pool_size=1)
    try:
        repository = ComparisonRepository(database.sessions)
        now = datetime.now(UTC)
        async with asyncio.timeout(TIMEOUT_SECONDS):
            while True:
                report = await repository.compare(
                    "lesion-detector",
                    "1.2.0",
                    "1.3.0",
                    since=now - timedelta(hours=1),
                    until=now + timedelta(hours=1),
                )
                if (report.baseline.failures, report.candidate.results) == (
                    failures,
                    candidate_results,
                ):
                    return
                await asyncio.sleep(0.2)
    finally:
        await database.dispose()


async def cli(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``radstream models ...`` as the console script would (its own event loop, here in a
    thread); its stdout (it must succeed)."""
    status = await asyncio.to_thread(main, ["models", *argv], settings=settings)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


@pytest.fixture
def settings(
    kafka_bootstrap: str, topic_prefix: str, pipeline_database_url: str, tmp_path: Path
) -> Settings:
    """This test's topics, database and a copy of the shipped model registry."""
    return isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=pipeline_database_url,
        topic_prefix=topic_prefix,
        storage_roots=(SAMPLES_DIR,),
        inference=registry_settings(copied_model_registry(tmp_path)),
    )


async def test_add_shadow_compare_promote(
    settings: Settings,
    kafka: KafkaClientConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """add -> shadow -> traffic -> compare -> promote -> traffic, as an operator does it."""
    registry_dir = settings.inference.model_registry_dir
    onnx, manifest, card = new_version(registry_dir, tmp_path / "new")
    kafka_bootstrap, topic_prefix = settings.kafka_bootstrap, settings.topic_prefix
    pipeline_database_url = settings.database_url.get_secret_value()
    names = TopicNames(topic_prefix)
    await ensure_topics(kafka, topic_prefix)

    # add, then shadow: both audited before they take effect
    out = await cli(
        settings,
        capsys,
        "add",
        str(onnx),
        "--manifest",
        str(manifest),
        "--card",
        str(card),
        "--actor",
        "ops.alice",
    )
    assert "added lesion-detector@1.3.0 as staged" in out
    out = await cli(settings, capsys, "shadow", "lesion-detector@1.3.0", "--actor", "ops.alice")
    assert "lesion-detector@1.3.0: staged -> shadow" in out

    # live traffic: 1.2.0 publishes (and refuses the real CT), 1.3.0 runs in shadow
    arrivals = [arrival_for_file(SAMPLES_DIR / "dicom" / name, source="PACS1") for name in IMAGES]
    shadows = read_topic(kafka_bootstrap, names.shadow, want=len(IMAGES))

    async def shadows_then_stored() -> list[bytes]:
        values = await shadows
        await comparison_settled(pipeline_database_url, failures=1, candidate_results=len(IMAGES))
        return values

    outcomes = [
        ShadowOutcome.model_validate_json(v)
        for v in await run_worker_on(settings, kafka, arrivals, shadows_then_stored())
    ]
    assert {o.result.model.version for o in outcomes if o.result} == {"1.3.0"}
    events = {a.event_id for a in arrivals}
    assert sorted(await stored_versions(pipeline_database_url, events, want=2)) == [
        "1.2.0",
        "1.2.0",
    ]

    # compare: paired on the two phantoms 1.2.0 scored; its refusal of the real CT counted
    report = json.loads(await cli(settings, capsys, "compare", "lesion-detector", "--json"))
    assert report["baseline"]["model_id"] == "lesion-detector@1.2.0"
    assert report["candidate"]["model_id"] == "lesion-detector@1.3.0"
    assert report["paired_images"] == 2
    assert report["baseline"]["failures_by_code"] == {"MODEL_INPUT_OUT_OF_DISTRIBUTION": 1}
    assert (report["candidate"]["results"], report["candidate"]["failures"]) == (3, 0)
    assert 0.0 <= report["agreement"] <= 1.0
    assert [d["label"] for d in report["score_deltas"]] == ["lesion"]

    # promote: 1.2.0 staged, and after a restart 1.3.0 publishes
    out = await cli(settings, capsys, "promote", "lesion-detector@1.3.0", "--actor", "ops.alice")
    assert "lesion-detector@1.3.0: shadow -> active" in out
    assert "lesion-detector@1.2.0: active -> staged" in out
    modes = read_rollout(registry_dir).models["lesion-detector"]
    assert (modes["1.3.0"].mode.value, modes["1.2.0"].mode.value) == ("active", "staged")
    after = arrival_for_file(SAMPLES_DIR / "dicom" / "ct_small.dcm", source="PACS1")
    published = stored_versions(pipeline_database_url, {after.event_id}, want=1)
    await run_worker_on(settings, kafka, [after], published)
    assert await stored_versions(pipeline_database_url, {after.event_id}, want=1) == ["1.3.0"]
    results = [
        InferenceCompleted.model_validate_json(v)
        for v in await read_topic(kafka_bootstrap, names.results, 5 + 2)
    ]
    assert ("lesion-detector", "1.3.0") in {(r.model.name, r.model.version) for r in results}
    assert all(r.event_id == after.event_id for r in results if r.model.version == "1.3.0")

    # every change on api.actions: add, shadow, promote (two versions)
    actions = [
        ApiAction.model_validate_json(v)
        for v in await read_topic(kafka_bootstrap, names.api_actions, 4)
    ]
    assert sorted(
        (a.action.value, a.model_version, str(a.rollout_mode)) for a in actions
    ) == sorted(
        [
            ("model_add", "1.3.0", "None"),
            ("model_rollout", "1.3.0", "shadow"),
            ("model_rollout", "1.3.0", "active"),
            ("model_rollout", "1.2.0", "staged"),
        ]
    )


async def test_a_manifest_that_lies_about_the_shape_is_refused(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`models add` with a manifest declaring 128x128 for a 64x64 graph: one line, exit 7."""
    registry_dir = settings.inference.model_registry_dir
    onnx, manifest, card = new_version(registry_dir, tmp_path / "new")
    data = yaml.safe_load(manifest.read_text())
    data["input"]["height"] = data["input"]["width"] = 128
    manifest.write_text(yaml.safe_dump(data, allow_unicode=True))
    argv = ["add", str(onnx), "--manifest", str(manifest), "--card", str(card)]
    status = await asyncio.to_thread(
        main, ["models", *argv, "--actor", "ops.alice"], settings=settings
    )
    err = capsys.readouterr().err
    assert status == 7
    assert err.count("\n") == 1
    assert "radstream models add: MODEL_MANIFEST_MISMATCH: " in err
    assert not (registry_dir / "lesion-detector" / "1.3.0").exists()
