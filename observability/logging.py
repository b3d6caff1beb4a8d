"""structlog set-up: one pipeline for radstream's own loggers and the libraries' stdlib loggers.

Every line goes through the same processors, in this order::

    merge_contextvars -> add_log_level -> TimeStamper(UTC ISO) -> format_traceback
        -> PhiMasker -> ControlCharacterEscaper -> JSONRenderer | ConsoleRenderer

Lines of faust, aiokafka, uvicorn and every other stdlib logger are routed through structlog's
:class:`~structlog.stdlib.ProcessorFormatter`, so they are masked and escaped too. Exceptions are
formatted *before* masking, so patient data in a traceback's message is masked as well. The
masker replaces absolute paths whole, so a traceback names the frames of code files by their
module path instead (:func:`format_traceback`): ``cli/main.py``, ``click/core.py``.

Per-message context (correlation id, event id, stage, topic/partition/offset) lives in
contextvars: bind it with :func:`message_context` around the processing of one message or
request. Only a :data:`~schemas.correlation.CorrelationId` made by ``schemas/correlation.py``
(the id's one owner) can be bound, and the masker refuses any other value logged as
``correlation_id``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import sysconfig
import traceback
import uuid
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import Token
from typing import Any, Final, TextIO, TypedDict, Unpack

import structlog
from structlog.typing import ExcInfo, Processor

from observability.log_gate import RepeatedLineGate
from observability.phi import PhiMasker, set_default_masker
from schemas.correlation import CorrelationId
from schemas.events import Stage
from schemas.settings import LoggingSettings

MESSAGE_CONTEXT_KEYS: Final = (
    "correlation_id",
    "event_id",
    "stage",
    "topic",
    "partition",
    "offset",
)

# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: each can forge or
# split a log line when printed.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HANDLER_MARK = "_radstream_handler"
# Library loggers that print message keys and values at DEBUG (aiokafka's producer logs every
# send's key and value; its connection logs whole request and response reprs, record batches
# included). Payloads are patient data, and bytes inside a repr defeat pattern masking, so these
# never go below INFO whatever the configured level (tests/security/test_logs_have_no_phi.py).
PAYLOAD_LOGGERS: Final = ("aiokafka.conn", "aiokafka.producer.producer")


def escape_control_characters(text: str) -> str:
    """Escape newlines, carriage returns and other control characters as visible literals."""
    return _CONTROL_RE.sub(
        lambda m: (
            _NAMED_ESCAPES.get(m.group(0)) or f"\\x{ord(m.group(0)):02x}"
            if ord(m.group(0)) < 0x100
            else f"\\u{ord(m.group(0)):04x}"
        ),
        text,
    )


class ControlCharacterEscaper:
    """A structlog processor neutralising log injection in keys and (nested) string values."""

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Escape every control character in the event dict."""
        escaped: dict[str, Any] = self._escape(event_dict)
        return escaped

    def _escape(self, value: Any) -> Any:
        if isinstance(value, str):
            return escape_control_characters(value)
        if isinstance(value, Mapping):
            return {self._escape(key): self._escape(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._escape(item) for item in value)
        return value


@functools.cache
def _code_roots() -> tuple[str, ...]:
    """Directories whose ``.py`` files are code, not data: the project, site-packages, stdlib.

    Longest first, so a library in a virtualenv inside the project gets its import path.
    """
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = sysconfig.get_paths()
    roots = {project, *(paths[name] for name in ("purelib", "platlib", "stdlib"))}
    return tuple(sorted((os.path.normpath(root) for root in roots), key=len, reverse=True))


def relative_code_path(filename: str) -> str:
    """A code frame's file as its path below the code root holding it; else ``filename``.

    Only a ``.py`` file below the project, site-packages or the standard library whose every
    component is a Python identifier (a path an import could reach) is shortened. Any other
    name is returned as it is and the masker replaces it whole, as every absolute path: image
    file names can carry patient data.
    """
    if not (filename.endswith(".py") and os.path.isabs(filename)):
        return filename
    normal = os.path.normpath(filename)
    root = next((root for root in _code_roots() if normal.startswith(root + os.sep)), None)
    if root is None:
        return filename
    parts = normal[len(root) + 1 : -len(".py")].split(os.sep)
    if not all(part.isidentifier() for part in parts):
        return filename
    return "/".join(parts) + ".py"


def format_traceback(exc_info: ExcInfo) -> str:
    """Python's traceback of ``exc_info``, code frames named by :func:`relative_code_path`.

    File names are taken from the frames, never from the text: a message imitating a frame
    line stays message text, and is masked as such.
    """
    report = traceback.TracebackException(*exc_info, compact=True)
    pending = [report]
    while pending:
        current = pending.pop()
        for frame in current.stack:
            frame.filename = relative_code_path(frame.filename)
        chained = (current.__cause__, current.__context__, *(current.exceptions or ()))
        pending.extend(item for item in chained if item is not None)
    return "".join(report.format()).removesuffix("\n")


def _shared_processors() -> list[Processor]:
    """What every line gets before it is rendered, whatever logger produced it."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def build_renderer_chain(settings: LoggingSettings, masker: PhiMasker) -> list[Processor]:
    """The processors after the shared ones: exceptions, masking, escaping, rendering."""
    renderer: Processor
    if settings.format == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    return [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.ExceptionRenderer(format_traceback),
        masker,
        ControlCharacterEscaper(),
        renderer,
    ]


class RoutineLibraryErrors(logging.Filter):
    """Lowers to a warning the library "errors" that are routine for a service like ours.

    pynetdicom logs "Network timeout reached" at ERROR when a peer leaves an association idle
    past ``network_timeout`` and it is closed: routine for a listener (a PACS keeping its
    association open between studies). Log-based alerting on errors must not page for it.
    """

    # Not routine, on purpose: the three lines pynetdicom.acse logs at ERROR when a PACS
    # rejects an export's association ("Association Rejected", "Result: Rejected Permanent,
    # Source: ...", "Reason: ..."; a failure *status* makes pynetdicom log no ERROR at all).
    # radstream does report that refusal itself, with its code, but as the dead letter's
    # ``message_dead_lettered`` WARNING (every dead letter is a warning; the alert is
    # RadstreamDeadLettersRising on radstream_dead_letters_total). Lowered, a permanently
    # refused export - which needs a person: register our AE title at the PACS - would leave
    # no ERROR line for log-based alerting at all. Only a line radstream itself reports at
    # ERROR may be lowered here; tests/unit/observability/test_logging_pipeline.py pins this.
    ROUTINE: Final = frozenset({("pynetdicom.association", "Network timeout reached")})

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; lowers a routine one above WARNING to WARNING."""
        # structlog's own records carry a dict as ``msg``: only a library's text is compared.
        routine = isinstance(record.msg, str) and (record.name, record.msg) in self.ROUTINE
        if routine and record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def build_handler(
    settings: LoggingSettings,
    masker: PhiMasker,
    stream: TextIO | None = None,
    filters: Sequence[logging.Filter] = (),
) -> logging.Handler:
    """A stdlib handler rendering any record through radstream's masking pipeline.

    Repeated warnings and errors of the Kafka client are collapsed
    (:class:`~observability.log_gate.RepeatedLineGate`).
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *build_renderer_chain(settings, masker),
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(RoutineLibraryErrors())
    # The caller's filters first: the gate must count (and summarise) only lines it would show.
    for item in filters:
        handler.addFilter(item)
    # Reconnection errors of the Kafka client come by the thousand in an outage: collapsed.
    handler.addFilter(RepeatedLineGate())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def _handler_from_config(
    settings: LoggingSettings, stream: TextIO | None = None
) -> logging.Handler:
    """dictConfig factory: the same handler configure_logging installs."""
    return build_handler(settings, PhiMasker.from_settings(settings), stream)


def worker_logging_config(
    settings: LoggingSettings, *, stream: TextIO | None = None
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict that keeps radstream's masked handler on the root.

    faust/mode's ``Worker`` applies its own dictConfig at start-up, replacing the root handlers
    with an unmasked colour handler. Pass this as ``Worker(app, logging_config=...)`` so the
    worker installs radstream's handler instead.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "radstream": {"()": _handler_from_config, "settings": settings, "stream": stream}
        },
        "root": {"level": settings.level, "handlers": ["radstream"]},
    }


def configure_logging(
    settings: LoggingSettings,
    *,
    stream: TextIO | None = None,
    filters: Sequence[logging.Filter] = (),
) -> PhiMasker:
    """Configure structlog and stdlib logging once, at start-up; returns the masker in use.

    Args:
        settings: output format, level and the site's masking options.
        stream: where lines go (stdout when omitted; the command line passes stderr, tests a
            StringIO).
        filters: stdlib filters on the handler (the command line holds library lines back).
    """
    masker = PhiMasker.from_settings(settings)
    set_default_masker(masker)
    level = logging.getLevelNamesMapping()[settings.level]

    handler = build_handler(settings, masker, stream, filters)

    root = logging.getLogger()
    # Replace only what an earlier call installed, so re-configuring never duplicates lines.
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    # pydicom's warnings quote attribute values ("Invalid value for VR PN: 'Doe^John'"): the
    # masker would catch most, but such lines carry no operational value, so they are dropped.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # pynetdicom's INFO/DEBUG lines narrate associations, PDUs and datasets (AE titles and
    # attribute values a sender chose); its warnings and errors are about the connection.
    logging.getLogger("pynetdicom").setLevel(max(level, logging.WARNING))
    # highdicom's INFO lines narrate each report it builds (about seven per SR: "copy
    # Patient-related attributes from dataset <UID>"): noise at INFO, and they name source UIDs.
    logging.getLogger("highdicom").setLevel(max(level, logging.WARNING))
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))

    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Not cached: tests and the CLI may reconfigure; the lookup cost is negligible.
        cache_logger_on_first_use=False,
    )
    return masker


class MessageContext(TypedDict, total=False):
    """Where a message came from and what it is, beside its correlation id (all optional)."""

    event_id: uuid.UUID | str | None
    stage: Stage | str | None
    topic: str | None
    partition: int | None
    offset: int | None


def bind_message_context(
    correlation_id: CorrelationId, **context: Unpack[MessageContext]
) -> Mapping[str, Token[Any]]:
    """Bind one message's context to every log line in this task; returns reset tokens."""
    event_id, stage = context.get("event_id"), context.get("stage")
    values: dict[str, Any] = {
        **context,
        "correlation_id": correlation_id,
        "event_id": None if event_id is None else str(event_id),
        "stage": stage.value if isinstance(stage, Stage) else stage,
    }
    return structlog.contextvars.bind_contextvars(
        **{key: value for key, value in values.items() if value is not None}
    )


def reset_message_context(tokens: Mapping[str, Token[Any]]) -> None:
    """Undo :func:`bind_message_context`, restoring the context that was there before."""
    structlog.contextvars.reset_contextvars(**tokens)


@contextmanager
def message_context(
    correlation_id: CorrelationId, **context: Unpack[MessageContext]
) -> Iterator[None]:
    """Bind a message's (or request's) context for the ``with`` block around its processing."""
    tokens = bind_message_context(correlation_id, **context)
    try:
        yield
    finally:
        reset_message_context(tokens)
