"""While a command holds the libraries' lines back, every line of radstream's own passes."""

from __future__ import annotations

import logging
import re

import pytest

from cli.context import LibraryLines
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
def test_our_named_loggers_pass_while_held(name: str) -> None:
    """A worker that fails while starting still logs why (consumer_failed, delivery_failed)."""
    lines = LibraryLines()
    assert lines.held
    assert lines.filter(record(name))


@pytest.mark.parametrize("name", ["aiokafka.consumer", "faust.transport", "pynetdicom.assoc"])
def test_library_lines_are_held_until_released(name: str) -> None:
    """Libraries' lines are dropped while held and pass once the service started."""
    lines = LibraryLines()
    assert not lines.filter(record(name))
    lines.held = False
    assert lines.filter(record(name))
