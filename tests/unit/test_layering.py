"""Architecture rules, read from the imports with ast (conventions: Layering)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.module_imports import imported_packages

pytestmark = pytest.mark.requirement("RS-ARC-01")

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = {"schemas", "streams", "sinks", "gateway", "observability", "cli", "app", "bench"}
DB_LIBRARIES = {"sqlalchemy", "asyncpg", "alembic", "psycopg", "psycopg2"}
IO_LIBRARIES = {
    "aiokafka",
    "faust",
    "mode",
    "httpx",
    "fastapi",
    "starlette",
    "prometheus_client",
    "structlog",
    "logging",
    "requests",
    "urllib3",
    "aiohttp",
    "socket",
    "pynetdicom",
}
PURE_PACKAGES = (
    "streams/validation",
    "streams/inference",
    "streams/audit",
    "streams/dicom",
    "streams/studies",
)
# The audit component's I/O lives beside its pure core, in its own subpackage.
IO_SUBPACKAGES = ("streams/audit/io",)
KAFKA_LAYER = ROOT / "streams" / "kafka"


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "migrations" not in p.parts)


def pure_files() -> list[Path]:
    io = [ROOT / folder for folder in IO_SUBPACKAGES]
    return [
        p
        for folder in PURE_PACKAGES
        for p in python_files(folder)
        if not any(p.is_relative_to(sub) for sub in io)
    ]


def project_files() -> list[Path]:
    """Every Python file of the project but the tests (bench/, ops/ and new packages included)."""
    found: list[Path] = []
    for top in ROOT.iterdir():
        if top.name.startswith(".") or top.name == "tests":
            continue  # .venv, .state, .git, and the tests (which check the broker independently)
        if top.suffix == ".py":
            found.append(top)
        elif top.is_dir():
            found += python_files(top.name)
    return sorted(found)


class TestLayering:
    @pytest.mark.parametrize("path", python_files("schemas"), ids=lambda p: p.name)
    def test_schemas_import_nothing_of_ours(self, path: Path) -> None:
        """schemas/ is the bottom layer: it imports no other radstream package."""
        assert imported_packages(path) & (OUR_PACKAGES - {"schemas"}) == set()

    @pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_pure_logic_does_no_io(self, path: Path) -> None:
        """Validation, inference, audit and DICOM logic import only schemas/ and libraries."""
        imported = imported_packages(path)
        assert imported & (OUR_PACKAGES - {"schemas", "streams"}) == set()
        assert imported & (DB_LIBRARIES | IO_LIBRARIES) == set()

    @pytest.mark.parametrize(
        "path",
        [
            p
            for f in ("streams", "gateway", "observability", "schemas", "cli")
            for p in python_files(f)
        ]
        + [ROOT / "app.py"],
        ids=lambda p: str(p.relative_to(ROOT)),
    )
    def test_only_sinks_talk_sql(self, path: Path) -> None:
        """SQLAlchemy and asyncpg are imported only under sinks/."""
        assert imported_packages(path) & DB_LIBRARIES == set()

    @pytest.mark.parametrize("path", python_files("bench"), ids=lambda p: p.name)
    def test_bench_does_not_import_tests(self, path: Path) -> None:
        """Benchmarks build on the product (and their own helpers), never on the test suite."""
        assert "tests" not in imported_packages(path)

    @pytest.mark.parametrize(
        "path",
        [
            p
            for f in ("schemas", "streams", "sinks", "gateway", "observability")
            for p in python_files(f)
        ],
        ids=lambda p: str(p.relative_to(ROOT)),
    )
    def test_only_the_entry_points_import_the_command_line(self, path: Path) -> None:
        """The command line sits on top: no package below it imports cli/ or app.py."""
        assert imported_packages(path) & {"cli", "app"} == set()

    @pytest.mark.parametrize(
        "path",
        [p for p in project_files() if not p.is_relative_to(KAFKA_LAYER)],
        ids=lambda p: str(p.relative_to(ROOT)),
    )
    def test_only_the_kafka_layer_imports_aiokafka(self, path: Path) -> None:
        """Producers, consumers and admin clients are built in streams/kafka/ only (bench too).

        Faust's own wiring (the Faust app and the agents) imports faust, never aiokafka.
        """
        assert "aiokafka" not in imported_packages(path)

    def test_the_kafka_rule_sees_every_package(self) -> None:
        """The rule above reads the source packages, bench/ and app.py (not just a list)."""
        folders = {p.relative_to(ROOT).parts[0] for p in project_files()}
        assert {"streams", "sinks", "gateway", "observability", "bench", "app.py"} <= folders
        assert any(p.is_relative_to(KAFKA_LAYER) for p in project_files())

    def test_pure_rule_skips_only_the_audit_io_subpackage(self) -> None:
        """The audit core is still checked; only streams/audit/io/ may do I/O."""
        checked = {p.relative_to(ROOT).as_posix() for p in pure_files()}
        assert "streams/audit/verify.py" in checked
        assert not any(name.startswith("streams/audit/io/") for name in checked)
