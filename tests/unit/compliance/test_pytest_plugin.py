"""The pytest plugin, run on small suites with pytester: markers checked, matrix written, gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.requirement("RS-CMP-01")
pytest_plugins = ["pytester"]

CATALOGUE = """\
version: 1
sources: {p: a source}
requirements:
  - {id: RS-A-1, source: p, title: a, statement: s, status: implemented, code: [x]}
  - {id: RS-A-2, source: p, title: b, statement: s, status: implemented, code: [x]}
  - {id: RS-B-1, source: p, title: c, statement: s, status: planned, issue: 9}
"""

SUITE = """\
import pytest

pytestmark = pytest.mark.requirement("RS-A-1")

def test_passes():
    pass

@pytest.mark.requirement("RS-A-2")
def test_fails():
    assert False

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfailed():
    assert False

@pytest.fixture
def broken():
    raise RuntimeError("setup")

def test_setup_error(broken):
    pass

def test_untraced_elsewhere():
    pass
"""


@pytest.fixture
def catalogue(pytester: pytest.Pytester) -> Path:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.makefile(".yaml", requirements=CATALOGUE)


def run(pytester: pytest.Pytester, catalogue: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-p",
        "compliance.pytest_plugin",
        f"--compliance-catalogue={catalogue}",
        *args,
    )


class TestMarkers:
    def test_unknown_id_stops_collection(self, pytester: pytest.Pytester, catalogue: Path) -> None:
        """A test citing an id the catalogue lacks is a usage error, naming id and test."""
        pytester.makepyfile(
            test_x='import pytest\n\n@pytest.mark.requirement("RS-NOPE-1")\n'
            "def test_a():\n    pass\n"
        )
        result = run(pytester, catalogue)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*does not declare: RS-NOPE-1 (test_x.py::test_a)*"])

    @pytest.mark.parametrize(
        ("args", "message"), [("", "names no id"), ("42", "not a requirement id")]
    )
    def test_a_marker_must_name_ids(
        self, pytester: pytest.Pytester, catalogue: Path, args: str, message: str
    ) -> None:
        """An empty marker or a non-id argument is refused, not ignored."""
        pytester.makepyfile(
            test_x=f"import pytest\n\n@pytest.mark.requirement({args})\ndef test_a():\n    pass\n"
        )
        result = run(pytester, catalogue)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*{message}*"])

    def test_a_broken_catalogue_is_a_usage_error(self, pytester: pytest.Pytester) -> None:
        """The run stops with the catalogue's problem, not a traceback."""
        pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        bad = pytester.makefile(".yaml", requirements="version: 7\n")
        pytester.makepyfile(test_x="def test_a():\n    pass\n")
        result = run(pytester, bad)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*requirement catalogue*"])


class TestMatrix:
    def test_outcomes_of_one_run_are_recorded(
        self, pytester: pytest.Pytester, catalogue: Path
    ) -> None:
        """Pass, fail, skip, xfail and setup errors land in matrix.json per requirement."""
        pytester.makepyfile(test_suite=SUITE)
        result = run(pytester, catalogue, f"--compliance-matrix={pytester.path / 'out'}")
        assert result.ret == pytest.ExitCode.TESTS_FAILED  # test_fails and test_setup_error
        data = json.loads((pytester.path / "out" / "matrix.json").read_text())
        rows = {row["id"]: row for row in data["requirements"]}
        outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in rows["RS-A-1"]["tests"]}
        assert outcomes == {
            "test_passes": "passed",
            "test_fails": "failed",
            "test_skipped": "skipped",
            "test_xfailed": "xfailed",
            "test_setup_error": "error",
            "test_untraced_elsewhere": "passed",
        }
        assert rows["RS-A-1"]["verdict"] == "failed"
        assert rows["RS-A-2"]["verdict"] == "failed"
        assert rows["RS-B-1"]["verdict"] == "planned"
        assert (pytester.path / "out" / "matrix.md").exists()
        result.stdout.fnmatch_lines(["*matrix written to*"])

    def test_without_the_option_nothing_is_written(
        self, pytester: pytest.Pytester, catalogue: Path
    ) -> None:
        """Partial runs by developers write no matrix and apply no gate."""
        pytester.makepyfile(test_x="def test_a():\n    pass\n")
        result = run(pytester, catalogue)
        assert result.ret == pytest.ExitCode.OK
        assert not list(pytester.path.rglob("matrix.json"))


class TestGate:
    def test_all_green_tests_still_fail_an_untested_requirement(
        self, pytester: pytest.Pytester, catalogue: Path
    ) -> None:
        """RS-A-2 has no test: the gate turns a green run red and says why."""
        pytester.makepyfile(
            test_x='import pytest\n\n@pytest.mark.requirement("RS-A-1")\ndef test_a():\n    pass\n'
        )
        out = pytester.path / "out"
        result = run(pytester, catalogue, f"--compliance-matrix={out}", "--compliance-gate")
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.stdout.fnmatch_lines(["*NOT VERIFIED: RS-A-2 is implemented but no passing test*"])

    def test_every_requirement_verified_passes(
        self, pytester: pytest.Pytester, catalogue: Path
    ) -> None:
        """With a passing test per implemented requirement the gate stays quiet."""
        pytester.makepyfile(
            test_x='import pytest\n\npytestmark = pytest.mark.requirement("RS-A-1", "RS-A-2")\n'
            "def test_a():\n    pass\n"
        )
        out = pytester.path / "out"
        result = run(pytester, catalogue, f"--compliance-matrix={out}", "--compliance-gate")
        assert result.ret == pytest.ExitCode.OK
        assert "NOT VERIFIED" not in result.stdout.str()
