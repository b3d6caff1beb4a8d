"""Adapters from the real stores to the gateway's ports (wired by ``app.py``).

The repositories speak in the sink's read models; the API speaks in ``schemas.api`` models.
Translating here keeps SQL in ``sinks/`` and the HTTP shapes in ``gateway/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schemas.api import (
    ComparisonQuery,
    LifecycleEntry,
    LifecycleState,
    ModelStatus,
    ResultPage,
    ResultQuery,
    ResultView,
    SpecValue,
    VerificationStatus,
)
from schemas.errors import ErrorCode, TransientError
from schemas.events import ModelRef, Stage, ValidatorVerdict, join_model_id
from schemas.rollout import VersionComparison
from sinks.records import InferenceResultRecord
from sinks.records import LifecycleEntry as StoredLifecycleEntry
from sinks.repositories import ComparisonRepository, LifecycleRepository, ResultsRepository
from streams.inference.model_admin import comparison_versions
from streams.inference.registry import ModelRegistry, ServingStatus

# The API shows an image that failed during inference as rejected: one word for "no result".
_STATE: dict[str, LifecycleState] = {
    "arrived": LifecycleState.ARRIVED,
    "validated": LifecycleState.VALIDATED,
    "rejected": LifecycleState.REJECTED,
    "failed": LifecycleState.REJECTED,
    "inferred": LifecycleState.INFERRED,
    "stored": LifecycleState.STORED,
}
_SERVING: dict[ServingStatus, str] = {
    ServingStatus.AVAILABLE: "ready",
    ServingStatus.REFUSED: "unavailable",
    ServingStatus.LOAD_FAILED: "unavailable",
}


def result_view(record: InferenceResultRecord) -> ResultView:
    """The API's view of one stored result, provenance included."""
    return ResultView(
        result_id=record.result_id,
        event_id=record.event_id,
        model=ModelRef(
            name=record.model_name,
            version=record.model_version,
            weights_sha256=record.weights_sha256,
            runtime=record.runtime,
            provider=record.provider,
        ),
        input_sha256=record.input_sha256,
        decision=record.decision,
        scores=record.scores,
        thresholds=record.thresholds,
        verdicts=tuple(ValidatorVerdict.model_validate(v) for v in record.verdicts),
        occurred_at=record.occurred_at,
        completed_at=record.completed_at,
        requested_by=record.requested_by,
        study_instance_uid=record.study_instance_uid,
        series_instance_uid=record.series_instance_uid,
        sop_instance_uid=record.sop_instance_uid,
        modality=record.modality,
        status=(
            VerificationStatus.VERIFIED if record.verified_at else VerificationStatus.UNVERIFIED
        ),
        verified_by=record.verified_by,
        verified_at=record.verified_at,
        verification_note=record.verification_note,
    )


def lifecycle_entry(entry: StoredLifecycleEntry) -> LifecycleEntry:
    """The API's view of one lifecycle step."""
    model = join_model_id(entry.model_name, entry.model_version) if entry.model_name else None
    return LifecycleEntry(
        state=_STATE[str(entry.state)],
        stage=Stage(entry.stage) if entry.stage else None,
        error_code=ErrorCode(entry.error_code) if entry.error_code else None,
        at=entry.at,
        model=model,
    )


class RepositoryResultsReader:
    """:class:`gateway.ports.ResultsReader` over the PostgreSQL results repository."""

    def __init__(self, repository: ResultsRepository) -> None:
        self._repository = repository

    async def list_for_user(self, user_id: str, query: ResultQuery) -> ResultPage:
        """One page of the caller's results (a cursor it did not issue is a 400)."""
        page = await self._repository.list_for_user(user_id, query)
        return ResultPage(
            items=tuple(result_view(r) for r in page.items), next_cursor=page.next_cursor
        )

    async def get(self, result_id: uuid.UUID, *, user_id: str | None) -> ResultView | None:
        """The result if ``user_id`` may see it (None = admin, unrestricted)."""
        record = await self._repository.get(result_id, user_id=user_id)
        return None if record is None else result_view(record)

    async def mark_verified(self, result_id: uuid.UUID, *, user_id: str, note: str) -> ResultView:
        """Verify the caller's own result, once."""
        record = await self._repository.mark_verified(
            result_id, user_id=user_id, note=note, owner_id=user_id
        )
        return result_view(record)


class RepositoryLifecycleReader:
    """:class:`gateway.ports.LifecycleReader` over the lifecycle repository."""

    def __init__(self, repository: LifecycleRepository) -> None:
        self._repository = repository

    async def lifecycle(self, event_id: uuid.UUID) -> Sequence[LifecycleEntry]:
        """Every recorded step of the image, oldest first."""
        return [lifecycle_entry(e) for e in await self._repository.lifecycle(event_id)]

    async def submitted_by(self, event_id: uuid.UUID) -> str | None:
        """Who submitted the image (None when unknown)."""
        return await self._repository.submitted_by(event_id)


def _input_spec(spec: Any) -> dict[str, SpecValue]:
    if spec is None:
        return {}
    data = spec.model_dump(mode="json")
    normalisation = data.pop("normalisation", {}) or {}
    expected = data.pop("expected_statistics", {}) or {}
    flat: dict[str, SpecValue] = {
        key: list(value) if isinstance(value, tuple | list) else value
        for key, value in data.items()
    }
    for key, value in normalisation.items():
        flat[f"normalisation_{key}"] = value
    for statistic, bounds in expected.items():  # the input guard, e.g. expected_mean_max
        for bound, value in bounds.items():
            flat[f"expected_{statistic}_{bound}"] = value
    return flat


class RegistryModelCatalog:
    """:class:`gateway.ports.ModelCatalog` over the verified model registry and the results.

    Args:
        registry: the registry as loaded when the API started (what ``GET /models`` lists).
        registry_dir: its directory, read again for each comparison (the current modes).
        comparisons: the stored results of both roles.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        registry_dir: Path | None = None,
        comparisons: ComparisonRepository | None = None,
    ) -> None:
        self._registry = registry
        self._registry_dir = registry_dir
        self._comparisons = comparisons

    async def compare(self, query: ComparisonQuery) -> VersionComparison:
        """The comparison of the query's two versions on what both stored in its window."""
        if self._registry_dir is None or self._comparisons is None:
            raise TransientError(ErrorCode.DATABASE_UNAVAILABLE, "no results store is wired")
        base, cand = comparison_versions(
            self._registry_dir, query.name, candidate=query.candidate, baseline=query.baseline
        )
        return await self._comparisons.compare(
            query.name, base, cand, since=query.since, until=query.until
        )

    def list(self) -> Sequence[ModelStatus]:
        """Every version whose weights are known, with its serving status."""
        return [
            ModelStatus(
                name=row.name,
                version=row.version,
                runtime=row.runtime or "unknown",
                digest=row.weights_sha256,
                status=_SERVING[row.status],  # type: ignore[arg-type]
                default=row.default,
                rollout=row.rollout,
                canary_percent=row.canary_percent,
                input_spec=_input_spec(row.input),
            )
            for row in self._registry.list()
            if row.weights_sha256 is not None
        ]
