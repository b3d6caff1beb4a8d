"""The one translation of Kafka client errors into radstream's, where they enter.

Every call into aiokafka in this package runs inside :func:`kafka_errors`, so no caller ever
sees an aiokafka type: each failure becomes a :class:`~schemas.errors.TransientError`, raised
``from`` the original:

* ``BROKER_REQUEST_REFUSED`` (not retryable): the broker said no for good — an authorisation or
  authentication failure, or a transactional producer fenced by a newer one with the same id.
* ``TIMEOUT`` (retryable): the broker did not answer within a bound (ours or aiokafka's).
* ``BROKER_UNAVAILABLE`` (retryable): every other Kafka error — connection lost, no leader,
  coordinator moving, a broker restarting.

``tests/unit/streams/kafka/test_kafka_errors.py`` checks the mapping against every error class
aiokafka defines, so a new aiokafka error cannot slip through untranslated or misfiled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from aiokafka import errors as kafka

from schemas.errors import ErrorCode, TransientError

# The broker refused for good: retrying the same request with the same identity cannot help.
REFUSED_ERRORS: Final[tuple[type[BaseException], ...]] = (
    kafka.ProducerFenced,
    kafka.TransactionCoordinatorFenced,
    kafka.TopicAuthorizationFailedError,
    kafka.GroupAuthorizationFailedError,
    kafka.ClusterAuthorizationFailedError,
    kafka.TransactionalIdAuthorizationFailed,
    kafka.DelegationTokenAuthorizationFailed,
    kafka.AuthenticationFailedError,
    kafka.AuthenticationMethodNotSupported,
    kafka.SaslAuthenticationFailed,
    kafka.UnsupportedSaslMechanismError,
    kafka.IllegalSaslStateError,
)
# No answer within a bound: ours (asyncio) or aiokafka's request timeout.
TIMEOUT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    TimeoutError,
    kafka.KafkaTimeoutError,
    kafka.RequestTimedOutError,
)
# What :func:`kafka_errors` catches; anything else (our own errors, cancellation) passes as is.
TRANSLATED_ERRORS: Final[tuple[type[BaseException], ...]] = (kafka.KafkaError, TimeoutError)


def translate_kafka_error(error: BaseException, action: str) -> TransientError:
    """The radstream error for a Kafka client error met while doing ``action``.

    ``action`` names what failed ("delivery", "reading radstream.audit.log"); it must not hold
    message content. The library's own message is not copied: it stays on ``__cause__``.
    """
    if isinstance(error, REFUSED_ERRORS):
        return TransientError(
            ErrorCode.BROKER_REQUEST_REFUSED, f"{action}: refused by the broker ({_name(error)})"
        )
    if isinstance(error, TIMEOUT_ERRORS):
        return TransientError(ErrorCode.TIMEOUT, f"{action}: Kafka did not answer in time")
    return TransientError(ErrorCode.BROKER_UNAVAILABLE, f"{action}: broker unavailable")


def _name(error: BaseException) -> str:
    return type(error).__name__


@contextmanager
def kafka_errors(action: str) -> Iterator[None]:
    """Translate Kafka client errors raised inside the block (see the module docstring)."""
    try:
        yield
    except TRANSLATED_ERRORS as exc:
        raise translate_kafka_error(exc, action) from exc
