"""The ports the gateway needs: publish events, read results, lifecycles and models, audit.

The composition root passes real implementations (aiokafka, the results repository, the model
registry); tests pass in-memory fakes. Nothing in ``gateway/`` talks SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel

from schemas.api import (
    ComparisonQuery,
    LifecycleEntry,
    ModelStatus,
    ResultPage,
    ResultQuery,
    ResultView,
)
from schemas.audit import ApiAction
from schemas.rollout import VersionComparison
from schemas.studies import StudyView
from streams.topics import TopicKey

ReadinessCheck = Callable[[], Awaitable[bool]]
"""An async callable answering whether one dependency is ready (exceptions count as not)."""


class EventPublisher(Protocol):
    """Publishes one event on a pipeline topic and returns once the broker acknowledged it.

    Implementations raise :class:`~schemas.errors.TransientError` (``BROKER_UNAVAILABLE``,
    ``TIMEOUT``) when the broker cannot take the message.
    """

    async def publish(
        self,
        topic_key: TopicKey,
        key: bytes,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Publish ``value`` as JSON under ``key`` on the topic named by ``topic_key``."""


class ResultsReader(Protocol):
    """Reads and verifies stored results, always through the caller's visibility."""

    async def list_for_user(self, user_id: str, query: ResultQuery) -> ResultPage:
        """One page of the results ``user_id`` may see that ``query`` selects, newest first.

        Raises:
            InputValidationError: ``REQUEST_INVALID`` for a cursor it did not issue (a client
                error, never a 500).
        """

    async def get(self, result_id: uuid.UUID, *, user_id: str | None) -> ResultView | None:
        """The result, or None when it does not exist or ``user_id`` may not see it.

        ``user_id=None`` means unrestricted (admin).
        """

    async def mark_verified(self, result_id: uuid.UUID, *, user_id: str, note: str) -> ResultView:
        """Mark the result verified by ``user_id``.

        Raises:
            ConflictError: ``RESULT_ALREADY_VERIFIED`` on the second verification.
            ResourceNotFoundError: the result does not exist or is not visible to ``user_id``.
        """


class LifecycleReader(Protocol):
    """Reads what the pipeline did with a submitted image."""

    async def lifecycle(self, event_id: uuid.UUID) -> Sequence[LifecycleEntry]:
        """The image's lifecycle, oldest first; empty when the event is unknown."""

    async def submitted_by(self, event_id: uuid.UUID) -> str | None:
        """The ``requested_by`` of the arrival event, or None when unknown."""


class ModelCatalog(Protocol):
    """Lists the model registry and compares versions of a model on their stored results."""

    def list(self) -> Sequence[ModelStatus]:
        """Every registered model with its status, rollout mode and input spec."""

    async def compare(self, query: ComparisonQuery) -> VersionComparison:
        """The query's candidate version of its model against its baseline, over its window.

        Raises:
            RadstreamError: ``MODEL_NOT_FOUND``, ``REQUEST_INVALID`` (no candidate to default
                to, a bad window), ``DATABASE_UNAVAILABLE``.
        """


class StudyReader(Protocol):
    """Reads a study's status and records acknowledgements of its urgent findings."""

    async def view(self, study_instance_uid: str) -> StudyView | None:
        """The study's status, or None when no instance of it has arrived."""

    async def acknowledge(
        self, study_instance_uid: str, user_id: str, at: datetime
    ) -> Sequence[uuid.UUID]:
        """Acknowledge the study's unacknowledged urgent findings; return their alert ids."""


class ApiAuditPublisher(Protocol):
    """Hands one :class:`~schemas.audit.ApiAction` to the audit trail (topic ``api.actions``)."""

    async def publish(self, action: ApiAction) -> None:
        """Publish ``action``; raises TransientError when it cannot be recorded."""


class NoStudies:
    """The study reader of a gateway built without a studies store: no study is known."""

    async def view(self, study_instance_uid: str) -> StudyView | None:
        """No study: None."""
        return None

    async def acknowledge(
        self, study_instance_uid: str, user_id: str, at: datetime
    ) -> Sequence[uuid.UUID]:
        """Nothing to acknowledge."""
        return ()
