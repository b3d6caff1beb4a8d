"""configure_logging: one masked, injection-safe pipeline for structlog and stdlib loggers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage  # type: ignore[attr-defined]

from observability.logging import (
    MESSAGE_CONTEXT_KEYS,
    bind_message_context,
    build_handler,
    configure_logging,
    escape_control_characters,
    message_context,
    relative_code_path,
    reset_message_context,
    worker_logging_config,
)
from observability.phi import (
    REDACTED_EMAIL,
    REDACTED_ID,
    REDACTED_PATH,
    REDACTED_PHI,
    PhiMasker,
    default_masker,
    set_default_masker,
)
from schemas.correlation import CorrelationId, derived_correlation_id
from schemas.events import Stage
from schemas.settings import DicomPeer, LoggingSettings
from streams.dicom_io.sender import DicomSender
from streams.pipeline import log_outcomes
from streams.stages.dicom_export import DicomExportStage
from tests.unit.dicom.test_dicom_export_stage import POLICY, no_sleep, stored_result
from tests.unit.dicom.test_dicom_export_stage import message as export_message

pytestmark = pytest.mark.requirement("RS-LOG-01", "RS-LOG-03", "RS-G-01")

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def cid(name: str) -> CorrelationId:
    """A canonical correlation id standing for ``name`` in a test."""
    return derived_correlation_id("test", name)


@pytest.fixture
def configured() -> Iterator[Any]:
    """Configure logging into a buffer; undo everything afterwards."""
    previous_masker = default_masker()
    root = logging.getLogger()
    previous_level = root.level
    stream = io.StringIO()

    def configure(**overrides: Any) -> io.StringIO:
        configure_logging(LoggingSettings(**overrides), stream=stream)
        return stream

    yield configure
    for handler in [h for h in root.handlers if getattr(h, "_radstream_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(previous_level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    set_default_masker(previous_masker)


def _raise(error: Exception) -> None:
    """Raise ``error`` (so the tests can log from an except block)."""
    raise error


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


class TestJsonOutput:
    def test_lines_have_level_and_utc_iso_timestamp(self, configured: Any) -> None:
        """Each JSON line carries the level and a UTC ISO-8601 timestamp."""
        stream = configured()
        structlog.get_logger().info("image_validated", latency_seconds=0.5)
        (line,) = _json_lines(stream)
        assert line["event"] == "image_validated"
        assert line["level"] == "info"
        assert line["timestamp"].endswith("Z")
        assert line["latency_seconds"] == 0.5

    def test_structlog_fields_are_masked(self, configured: Any) -> None:
        """PHI in a structlog call's message and fields is masked in the output."""
        stream = configured()
        structlog.get_logger().warning("saw Doe^John", PatientID="PID-1", contact="a@b.org")
        text = stream.getvalue()
        assert "Doe^John" not in text
        assert "PID-1" not in text
        assert "a@b.org" not in text
        (line,) = _json_lines(stream)
        assert line["PatientID"] == REDACTED_PHI
        assert line["contact"] == REDACTED_EMAIL

    def test_stdlib_library_lines_are_masked(self, configured: Any) -> None:
        """A library's stdlib logger (faust, aiokafka) goes through the same masking."""
        stream = configured()
        logging.getLogger("aiokafka.consumer").warning("bad record PatientName=%s", "Roe^Jane")
        (line,) = _json_lines(stream)
        assert "Roe" not in stream.getvalue()
        assert line["logger"] == "aiokafka.consumer"
        assert line["level"] == "warning"
        assert line["event"] == f"bad record PatientName={REDACTED_PHI}"

    @pytest.mark.parametrize("library", ["highdicom", "pynetdicom"])
    def test_dicom_libraries_narration_is_not_logged_at_info(
        self, configured: Any, library: str
    ) -> None:
        """Their INFO lines narrate each report/association; their warnings still show."""
        stream = configured(level="INFO")
        logging.getLogger(f"{library}.base").info("copy Patient-related attributes")
        logging.getLogger(f"{library}.base").warning("something about the connection")
        (line,) = _json_lines(stream)
        assert line["event"] == "something about the connection"

    def test_an_idle_association_closing_is_a_warning_not_an_error(self, configured: Any) -> None:
        """pynetdicom's "Network timeout reached" is routine for a listener: no ERROR line."""
        stream = configured(level="INFO")
        logging.getLogger("pynetdicom.association").error("Network timeout reached")
        logging.getLogger("pynetdicom.association").error("Association Aborted")
        logging.getLogger("pynetdicom.association").warning("Network timeout reached")
        levels = [(line["event"], line["level"]) for line in _json_lines(stream)]
        assert levels == [
            ("Network timeout reached", "warning"),
            ("Association Aborted", "error"),
            ("Network timeout reached", "warning"),
        ]

    async def test_a_refused_export_keeps_its_only_error_lines(
        self, configured: Any, tmp_path: Path
    ) -> None:
        """An export whose association the PACS rejects permanently, over a real association:
        pynetdicom's three rejection lines stay ERROR, because radstream's own report of it
        (the DICOM_EXPORT_REFUSED dead letter) is a WARNING; a failure status (C000) makes
        pynetdicom log no ERROR, so radstream's warning is the one line there."""
        stream = configured(level="INFO")
        rejected = await _export_to_refusing_pacs(stream, tmp_path, status=0, known=False)
        refused = await _export_to_refusing_pacs(stream, tmp_path, status=0xC000, known=True)
        assert rejected == [
            ("error", "pynetdicom.acse", "Association Rejected", None),
            ("error", "pynetdicom.acse", "Result: Rejected Permanent, Source: Service User", None),
            ("error", "pynetdicom.acse", "Reason: Calling AE title not recognised", None),
            ("warning", None, "message_dead_lettered", "DICOM_EXPORT_REFUSED"),
        ]
        assert refused == [("warning", None, "message_dead_lettered", "DICOM_EXPORT_REFUSED")]
        assert "CANARY" not in stream.getvalue().upper()

    def test_exception_text_is_masked(self, configured: Any) -> None:
        """PHI in an exception message is masked in the rendered traceback."""
        stream = configured()
        try:
            _raise(ValueError("PatientID=SECRET77; failed"))
        except ValueError:
            structlog.get_logger().exception("image_failed")
        (line,) = _json_lines(stream)
        assert "SECRET77" not in stream.getvalue()
        assert "ValueError" in line["exception"]

    def test_stdlib_exception_text_is_masked(self, configured: Any) -> None:
        """A stdlib logger's exc_info traceback is masked too."""
        stream = configured()
        try:
            _raise(RuntimeError("mail jane@example.org"))
        except RuntimeError:
            logging.getLogger("faust").exception("agent crashed")
        assert "jane@example.org" not in stream.getvalue()
        assert REDACTED_EMAIL in _json_lines(stream)[0]["exception"]

    def test_level_filters_lines(self, configured: Any) -> None:
        """Lines below the configured level are dropped, for structlog and stdlib alike."""
        stream = configured(level="WARNING")
        structlog.get_logger().info("dropped")
        logging.getLogger("uvicorn").info("dropped too")
        structlog.get_logger().warning("kept")
        assert [line["event"] for line in _json_lines(stream)] == ["kept"]

    def test_reconfiguring_does_not_duplicate_lines(self, configured: Any) -> None:
        """Calling configure_logging twice leaves one handler, so each line appears once."""
        configured()
        stream = configured()
        logging.getLogger("x").warning("once")
        assert stream.getvalue().count("once") == 1

    def test_configure_installs_site_masker(self, configured: Any) -> None:
        """The site's MRN formats become the process-wide default masker."""
        configured(mrn_patterns=(r"\bZ\d{3}\b",))
        assert default_masker().mask_text("Z123") == "[REDACTED_MRN]"


class TestLogInjection:
    def test_json_values_keep_one_line_per_event(self, configured: Any) -> None:
        """A newline in a value cannot forge a second JSON line."""
        stream = configured()
        forged = 'x\n{"event": "forged", "level": "critical"}'
        structlog.get_logger().info("image_rejected", reason=forged)
        lines = _json_lines(stream)
        assert len(lines) == 1
        assert lines[0]["reason"].startswith("x\\n")

    def test_console_escapes_newlines_and_controls(self, configured: Any) -> None:
        """Console output shows newlines, CRs and ESC as literals, one line per event."""
        stream = configured(format="console")
        structlog.get_logger().info("evil\r\nINFO fake", detail="a\x1b[31mred\u2028b")
        text = stream.getvalue()
        assert text.count("\n") == 1
        assert "\\r\\n" in text
        assert "\\x1b" in text
        assert "\\u2028" in text

    def test_keys_with_controls_are_escaped(self, configured: Any) -> None:
        """Control characters in keys are escaped too."""
        stream = configured()
        structlog.get_logger().info("e", **{"bad\nkey": 1})
        assert _json_lines(stream)[0]["bad\\nkey"] == 1

    def test_console_traceback_stays_on_the_event_line(self, configured: Any) -> None:
        """A console traceback is escaped into the event instead of spanning lines."""
        stream = configured(format="console")
        try:
            _raise(KeyError("k"))
        except KeyError:
            structlog.get_logger().exception("failed")
        assert "Traceback" in stream.getvalue()
        assert stream.getvalue().rstrip("\n").count("\n") == 1

    @pytest.mark.parametrize(
        ("raw", "escaped"),
        [("a\nb", "a\\nb"), ("\t", "\\t"), ("\x00", "\\x00"), ("\x85", "\\x85"), ("ok", "ok")],
    )
    def test_escape_function(self, raw: str, escaped: str) -> None:
        """escape_control_characters renders controls as visible escapes."""
        assert escape_control_characters(raw) == escaped

    def test_nested_values_are_escaped(self, configured: Any) -> None:
        """Control characters inside lists and dicts are escaped."""
        stream = configured()
        structlog.get_logger().info("e", items=["a\nb", ("c\rd",)], more={"k": "e\nf"})
        line = _json_lines(stream)[0]
        assert line["items"] == ["a\\nb", ["c\\rd"]]
        assert line["more"] == {"k": "e\\nf"}


def _raise_in(filename: str, message: str = "boom") -> None:
    """Raise ValueError(message) from code whose frame names ``filename``."""
    code = compile(f"raise ValueError({message!r})", filename, "exec")
    exec(code, {})  # noqa: S102 - a constant statement, compiled to forge the frame's file name


def _logged_traceback(configured: Any, error: Exception | None = None, **raising: str) -> str:
    """The ``exception`` field of one JSON line logged while handling an error."""
    stream = configured()
    try:
        if error is not None:
            _raise(error)
        _raise_in(**raising)
    except Exception:  # noqa: BLE001 - whichever error the test raised is logged
        structlog.get_logger().exception("command_failed")
    (line,) = _json_lines(stream)
    exception: str = line["exception"]
    return exception


class TestReadableTracebacks:
    """Frames of code files show module paths; every other path stays masked."""

    def test_own_frames_show_the_path_within_the_project(self, configured: Any) -> None:
        """A frame of radstream's own code reads tests/.../file.py, not [REDACTED_PATH]."""
        text = _logged_traceback(configured, ValueError("x"))
        assert 'File "tests/unit/observability/test_logging_pipeline.py", line' in text
        assert REDACTED_PATH not in text

    def test_library_frames_show_the_path_within_site_packages(self, configured: Any) -> None:
        """A frame of an installed library reads yaml/....py."""
        stream = configured()
        try:
            yaml.safe_load("[")
        except yaml.YAMLError:
            structlog.get_logger().exception("command_failed")
        text = _json_lines(stream)[0]["exception"]
        assert 'File "yaml/__init__.py", line' in text
        assert REDACTED_PATH not in text

    def test_a_file_outside_the_code_roots_stays_masked(self, configured: Any) -> None:
        """A frame of a file elsewhere (a data directory) is masked as before."""
        text = _logged_traceback(configured, filename="/data/JaneDoe/scan.py")
        assert f'File "{REDACTED_PATH}", line 1' in text
        assert "JaneDoe" not in text

    def test_escaping_the_project_root_stays_masked(self, configured: Any) -> None:
        """``..`` cannot lead a path out of the project and unmasked."""
        text = _logged_traceback(configured, filename=f"{PROJECT_ROOT}/../JaneDoe/scan.py")
        assert "JaneDoe" not in text

    def test_a_file_name_that_is_no_module_name_stays_masked(self, configured: Any) -> None:
        """Under the project root, a file name no import could reach is masked as before."""
        text = _logged_traceback(configured, filename=f"{PROJECT_ROOT}/in/Doe-Jane_19420317.py")
        assert "Doe" not in text
        assert REDACTED_PATH in text

    def test_paths_in_the_message_stay_masked(self, configured: Any) -> None:
        """A message imitating a code frame is message text: its path is masked."""
        forged = f'\n  File "{PROJECT_ROOT}/JaneDoe.py", line 1, in x'
        text = _logged_traceback(configured, FileNotFoundError(f"/data/JaneDoe.dcm{forged}"))
        assert "JaneDoe" not in text

    def test_chained_and_grouped_frames_are_relative(self, configured: Any) -> None:
        """Causes, contexts and the members of an exception group get module paths too."""
        group = ExceptionGroup("several", [_caught(ValueError("a"))])
        cause = _caught(KeyError("b"))
        group.__cause__ = cause
        text = _logged_traceback(configured, group)
        assert text.count('File "tests/unit/observability/test_logging_pipeline.py"') >= 3
        assert REDACTED_PATH not in text

    @pytest.mark.parametrize("filename", ["<string>", "cli/main.py", "/data/scan.dcm"])
    def test_other_names_are_left_as_they_are(self, filename: str) -> None:
        """Pseudo-files, relative names and files other than .py are not touched."""
        assert relative_code_path(filename) == filename


def _caught(error: Exception) -> Exception:
    """``error`` after it was raised (so that it carries a traceback)."""
    try:
        _raise(error)
    except Exception as exc:  # noqa: BLE001 - returned to the caller
        return exc


class TestMessageContext:
    def test_context_fields_appear_on_every_line(self, configured: Any) -> None:
        """Lines inside message_context carry correlation id, event id, stage and position."""
        stream = configured()
        event_id = uuid.uuid4()
        with message_context(
            cid("corr-1"),
            event_id=event_id,
            stage=Stage.VALIDATION,
            topic="radstream.images.arrived",
            partition=2,
            offset=41,
        ):
            structlog.get_logger().info("image_validated")
            logging.getLogger("faust").info("library line")
        lines = _json_lines(stream)
        assert len(lines) == 2
        for line in lines:
            assert {key: line[key] for key in MESSAGE_CONTEXT_KEYS} == {
                "correlation_id": cid("corr-1"),
                "event_id": str(event_id),
                "stage": "validation",
                "topic": "radstream.images.arrived",
                "partition": 2,
                "offset": 41,
            }

    def test_context_is_removed_after_the_block(self, configured: Any) -> None:
        """After the block, lines no longer carry the message's context."""
        stream = configured()
        with message_context(cid("corr-2"), stage="inference"):
            pass
        structlog.get_logger().info("idle")
        assert "correlation_id" not in _json_lines(stream)[0]

    def test_outer_context_is_restored(self) -> None:
        """Binding then resetting restores the previously bound values."""
        outer = bind_message_context(cid("outer"))
        inner = bind_message_context(cid("inner"), offset=5)
        reset_message_context(inner)
        assert structlog.contextvars.get_contextvars() == {"correlation_id": cid("outer")}
        reset_message_context(outer)
        assert structlog.contextvars.get_contextvars() == {}

    async def test_concurrent_tasks_keep_their_own_context(self) -> None:
        """Two tasks processing messages concurrently do not see each other's ids."""

        async def worker(correlation_id: CorrelationId) -> str:
            with message_context(correlation_id):
                await asyncio.sleep(0)
                return str(structlog.contextvars.get_contextvars()["correlation_id"])

        assert await asyncio.gather(worker(cid("a")), worker(cid("b"))) == [cid("a"), cid("b")]


class TestCorrelationIdsInLogs:
    def test_a_refused_id_logged_by_hand_is_redacted(self, configured: Any) -> None:
        """A PHI-shaped correlation id passed straight to a logger never reaches the line."""
        stream = configured()
        structlog.get_logger().warning("api_request_failed", correlation_id="MRN-55667788")
        line = _json_lines(stream)[0]
        assert line["correlation_id"] == REDACTED_ID
        assert "55667788" not in stream.getvalue()


class TestWorkerLoggingConfig:
    def test_dictconfig_installs_the_masked_handler(self, configured: Any) -> None:
        """A worker's dictConfig with worker_logging_config keeps lines masked, once each."""
        configured()
        stream = io.StringIO()
        logging.config.dictConfig(worker_logging_config(LoggingSettings(), stream=stream))
        logging.getLogger("faust.worker").warning("PatientName=Doe; starting")
        lines = _json_lines(stream)
        assert [line["event"] for line in lines] == [f"PatientName={REDACTED_PHI}; starting"]

    def test_dictconfig_handler_is_replaced_by_configure(self, configured: Any) -> None:
        """configure_logging after a worker's dictConfig does not duplicate lines."""
        logging.config.dictConfig(worker_logging_config(LoggingSettings(), stream=io.StringIO()))
        stream = configured()
        logging.getLogger("x").warning("once")
        assert stream.getvalue().count("once") == 1
        assert (
            sum(getattr(h, "_radstream_handler", False) for h in logging.getLogger().handlers) == 1
        )


class _Toggle(logging.Filter):
    """Drops every record while ``dropping`` (as the CLI holds library lines back)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropping = True

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.dropping


def test_the_repeated_line_gate_counts_only_lines_the_callers_filters_let_through() -> None:
    """Lines a caller's filter dropped are neither held as repeats nor summarised later."""
    toggle = _Toggle()
    stream = io.StringIO()
    handler = build_handler(
        LoggingSettings(), PhiMasker.from_settings(LoggingSettings()), stream, [toggle]
    )
    error = logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, "down %s", ("n",), None)
    for _ in range(3):
        handler.handle(error)
    assert stream.getvalue() == ""
    toggle.dropping = False
    handler.handle(error)  # the first this handler shows: not a repeat of the dropped ones
    assert json.loads(stream.getvalue())["event"] == "down n"


async def _export_to_refusing_pacs(
    stream: io.StringIO, tmp_path: Path, *, status: int, known: bool
) -> list[tuple[str, str | None, str, str | None]]:
    """Export a result to a loopback PACS (answering ``status``, or rejecting our AE title
    when not ``known``) through the dicom-export stage and its outcome log; return the
    warning and error lines (level, logger, event, error code) logged meanwhile."""
    already = len(stream.getvalue().splitlines())
    ae = AE(ae_title="PACS")
    ae.add_supported_context(ComprehensiveSRStorage)
    ae.require_calling_aet = ["RADSTREAM" if known else "SOMEONE"]
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda _e: status)]
    )
    try:
        peer = DicomPeer(ae_title="PACS", host="127.0.0.1", port=server.server_address[1])
        store, inferred = stored_result(tmp_path / f"store-{status:04x}-{known}")
        export = DicomExportStage(store, DicomSender("RADSTREAM"), (peer,), POLICY, sleep=no_sleep)
        batch = [export_message(inferred)]
        log_outcomes(Stage.DICOM_EXPORT, batch, await export.handle(batch))
    finally:
        server.shutdown()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()[already:] if line]
    return [
        (line["level"], line.get("logger"), line["event"], line.get("error_code"))
        for line in lines
        if line["level"] in {"warning", "error", "critical"}
    ]
