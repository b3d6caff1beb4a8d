"""While a command holds the libraries' lines back, every line of radstream's own passes."""

from __future__ import annotations

import logging
import re

import pytest

from cli.context import Invocation, LibraryLines
from schemas.settings import LoggingSettings
from tests.conftest import REPO_ROOT

# structlog.get_logger("<name>") with a literal name: how radstream's modules log (stdlib
# getLogger calls with a literal name configure the libraries' loggers).
NAMED_LOGGER = re.compile(r"""structlog\.get_logger\(\s*["']([\w.]+)["']""")
SOURCE_PACKAGES = (
    "app.py",
    "bench",
    "cli",
    "gateway",
    "observability",
    "schemas",
    "sinks",
    "streams",
)


def logger_names() -> set[str]:
    """Every literal logger name radstream's modules log under."""
    names: set[str] = set()
    for entry in SOURCE_PACKAGES:
        root = REPO_ROOT / entry
        paths = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in paths:
            names.update(NAMED_LOGGER.findall(path.read_text(encoding="utf-8")))
    return names


def record(name: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, "event", None, None)


def test_the_source_names_loggers_outside_the_module_paths() -> None:
    """The scan finds the "radstream.<area>" loggers (else the next test would prove nothing)."""
    assert {"radstream.agents", "radstream.kafka", "gateway"} <= logger_names()


@pytest.mark.parametrize("name", sorted(logger_names()))
def test_our_named_loggers_pass_while_a_service_starts(name: str) -> None:
    """A worker that fails while starting still logs why (consumer_failed, delivery_failed)."""
    lines = LibraryLines()
    lines.service = True
    assert lines.held
    assert lines.filter(record(name))


def test_a_one_shot_command_holds_the_pipelines_internal_lines() -> None:
    """One-shot: its result and one failure line; radstream.<area> lines are held like a
    library's (the module-path loggers of the command itself still pass)."""
    lines = LibraryLines()
    assert not lines.filter(record("radstream.kafka"))
    assert lines.filter(record("cli.context"))
    lines.held = False  # --verbose
    assert lines.filter(record("radstream.kafka"))


@pytest.mark.parametrize("service", [False, True])
@pytest.mark.parametrize("name", ["aiokafka.consumer", "faust.transport", "pynetdicom.assoc"])
def test_library_lines_are_held_until_released(name: str, service: bool) -> None:
    """Libraries' lines are dropped while held and pass once the service started."""
    lines = LibraryLines()
    lines.service = service
    assert not lines.filter(record(name))
    lines.held = False
    assert lines.filter(record(name))


def test_a_service_invocation_marks_its_filter() -> None:
    """Invocation.configure_logging(service=True) is what lets the pipeline's lines through."""
    invocation = Invocation()
    invocation.configure_logging(LoggingSettings(), service=True)
    assert invocation.library_lines.service
    invocation.configure_logging(LoggingSettings())
    assert not invocation.library_lines.service
