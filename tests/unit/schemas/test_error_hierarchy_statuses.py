"""The error hierarchy answers with the HTTP statuses issue 7 requires, per class and per code."""

from __future__ import annotations

import pytest

from schemas.errors import (
    ERROR_CATALOGUE,
    AuthenticationError,
    AuthorizationError,
    ErrorCategory,
    ErrorCode,
    InferenceError,
    InputValidationError,
    RadstreamError,
    RateLimitError,
    ResourceNotFoundError,
    TransientError,
    error_for,
    for_code,
)

pytestmark = pytest.mark.requirement("RS-ERR-01")


class TestHierarchyStatuses:
    @pytest.mark.parametrize(
        ("code", "cls", "status"),
        [
            (ErrorCode.EVENT_MALFORMED, InputValidationError, 400),
            (ErrorCode.REQUEST_INVALID, InputValidationError, 400),
            (ErrorCode.AUTHENTICATION_FAILED, AuthenticationError, 401),
            (ErrorCode.AUTHORIZATION_FAILED, AuthorizationError, 403),
            (ErrorCode.RESOURCE_NOT_FOUND, ResourceNotFoundError, 404),
            (ErrorCode.RATE_LIMITED, RateLimitError, 429),
            (ErrorCode.INFERENCE_FAILED, InferenceError, 500),
        ],
    )
    def test_issue_statuses(self, code: ErrorCode, cls: type[RadstreamError], status: int) -> None:
        """ValidationError 400, AuthN 401, AuthZ 403, NotFound 404, RateLimit 429, Inference 500."""
        error = error_for(code)
        assert type(error) is cls
        assert error.http_status == status

    @pytest.mark.parametrize(
        ("category", "allowed"),
        [
            (ErrorCategory.INPUT, {400, 413, 415, 422}),
            (ErrorCategory.AUTHENTICATION, {401}),
            (ErrorCategory.AUTHORIZATION, {403}),
            (ErrorCategory.NOT_FOUND, {404}),
            (ErrorCategory.CONFLICT, {409}),
            (ErrorCategory.RATE_LIMIT, {429}),
            (ErrorCategory.INFERENCE, {500, 503}),
            (ErrorCategory.INTEGRITY, {500}),
            (ErrorCategory.TRANSIENT, {404, 503, 504}),
        ],
    )
    def test_every_code_status_fits_its_branch(
        self, category: ErrorCategory, allowed: set[int]
    ) -> None:
        """Each code's status is one its branch of the hierarchy documents."""
        statuses = {s.http_status for s in ERROR_CATALOGUE.values() if s.category is category}
        assert statuses <= allowed

    def test_client_errors_are_never_retryable(self) -> None:
        """4xx input, auth and not-found errors are permanent (except rate limits and 404 files)."""
        retryable_4xx = {
            code
            for code, spec in ERROR_CATALOGUE.items()
            if spec.retryable and 400 <= spec.http_status < 500
        }
        assert retryable_4xx == {ErrorCode.RATE_LIMITED, ErrorCode.STORAGE_FILE_NOT_FOUND}

    def test_transient_infrastructure_codes_are_retryable(self) -> None:
        """Broker, database and timeout errors are transient and retryable."""
        for code in (
            ErrorCode.BROKER_UNAVAILABLE,
            ErrorCode.DATABASE_UNAVAILABLE,
            ErrorCode.TIMEOUT,
        ):
            error = error_for(code)
            assert isinstance(error, TransientError)
            assert error.retryable

    def test_for_code_matches_category(self) -> None:
        """for_code returns the class whose category is the code's category, for every code."""
        assert all(
            for_code(code).category is spec.category for code, spec in ERROR_CATALOGUE.items()
        )
