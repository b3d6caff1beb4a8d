"""The one translation of Kafka errors: complete against every error class aiokafka defines."""

from __future__ import annotations

import inspect

import pytest
from aiokafka import errors as kafka

from schemas.errors import ErrorCode, TransientError
from streams.kafka.errors import (
    REFUSED_ERRORS,
    TIMEOUT_ERRORS,
    kafka_errors,
    translate_kafka_error,
)

KAFKA_ERRORS = sorted(
    {
        cls
        for _name, cls in inspect.getmembers(kafka, inspect.isclass)
        if issubclass(cls, kafka.KafkaError)
    },
    key=lambda cls: cls.__name__,
)
# Words in a class name that say "the broker refused for good" or "no answer in time".
REFUSAL_WORDS = ("Authorization", "Authentication", "Fenced", "Sasl")
TIMEOUT_WORDS = ("Timeout", "TimedOut")


def instance(cls: type[BaseException]) -> BaseException:
    """An instance of an aiokafka error class (some need a message)."""
    try:
        return cls()
    except TypeError:
        return cls("test")


class TestMappingIsComplete:
    @pytest.mark.parametrize("cls", KAFKA_ERRORS, ids=lambda cls: cls.__name__)
    def test_every_kafka_error_becomes_a_transient_error(self, cls: type[BaseException]) -> None:
        """No aiokafka error escapes untranslated: each maps to one of three codes."""
        error = translate_kafka_error(instance(cls), "testing")
        assert isinstance(error, TransientError)
        assert error.code in {
            ErrorCode.BROKER_REQUEST_REFUSED,
            ErrorCode.TIMEOUT,
            ErrorCode.BROKER_UNAVAILABLE,
        }

    @pytest.mark.parametrize("cls", KAFKA_ERRORS, ids=lambda cls: cls.__name__)
    def test_refusals_and_timeouts_are_filed_by_name(self, cls: type[BaseException]) -> None:
        """A new aiokafka authorisation, fencing or timeout error must be filed deliberately."""
        code = translate_kafka_error(instance(cls), "testing").code
        if any(word in cls.__name__ for word in REFUSAL_WORDS):
            assert code is ErrorCode.BROKER_REQUEST_REFUSED
        elif any(word in cls.__name__ for word in TIMEOUT_WORDS) and "Invalid" not in cls.__name__:
            # (InvalidSessionTimeoutError and the like are bad settings, not a late answer.)
            assert code is ErrorCode.TIMEOUT
        else:
            assert code in {ErrorCode.BROKER_UNAVAILABLE, ErrorCode.BROKER_REQUEST_REFUSED}

    def test_the_tables_name_real_aiokafka_classes(self) -> None:
        """Every class the tables file is still one aiokafka defines (no stale entries)."""
        for cls in (*REFUSED_ERRORS, *TIMEOUT_ERRORS):
            assert cls is TimeoutError or cls in KAFKA_ERRORS

    def test_refusals_are_not_retryable_the_rest_is(self) -> None:
        """Retrying helps with an unavailable broker or a timeout, never with a refusal."""
        assert not translate_kafka_error(kafka.ProducerFenced(), "a").retryable
        assert translate_kafka_error(kafka.KafkaConnectionError(), "a").retryable
        assert translate_kafka_error(TimeoutError(), "a").retryable


class TestKafkaErrors:
    def test_translates_with_the_cause_kept(self) -> None:
        """The original error stays on __cause__; the reason names only the action."""
        original = kafka.NodeNotReadyError("node 1 at 10.0.0.7 not ready")
        with pytest.raises(TransientError) as caught, kafka_errors("reading offsets"):
            raise original
        assert caught.value.__cause__ is original
        assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE
        assert caught.value.reason == "reading offsets: broker unavailable"

    def test_our_own_timeout_is_a_timeout(self) -> None:
        """asyncio's TimeoutError (our bound) becomes TIMEOUT."""
        with pytest.raises(TransientError) as caught, kafka_errors("delivery"):
            raise TimeoutError
        assert caught.value.code is ErrorCode.TIMEOUT

    def test_other_errors_pass_unchanged(self) -> None:
        """Errors that are not Kafka's (ours, a bug) are not disguised as broker trouble."""
        ours = TransientError(ErrorCode.DATABASE_UNAVAILABLE)
        with pytest.raises(TransientError) as caught, kafka_errors("x"):
            raise ours
        assert caught.value is ours
        with pytest.raises(KeyError), kafka_errors("x"):
            raise KeyError("k")

    def test_refusal_names_the_broker_error_type_only(self) -> None:
        """A refusal says which kind (for the operator), never the library's message text."""
        error = translate_kafka_error(kafka.TopicAuthorizationFailedError("topic x"), "delivery")
        assert error.reason == "delivery: refused by the broker (TopicAuthorizationFailedError)"
        assert error.code is ErrorCode.BROKER_REQUEST_REFUSED
