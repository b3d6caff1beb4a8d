"""uv.lock as the source of truth: the runtime closure, and the venv installed from it."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from compliance.lock import LockError, read_runtime_closure, runtime_closure

pytestmark = pytest.mark.requirement("RS-CMP-02")

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower().replace("_", "-") for r in requirements}


class TestCommittedLock:
    def test_direct_dependencies_are_pyprojects(self) -> None:
        """The lock's runtime roots are exactly [project].dependencies."""
        closure = read_runtime_closure(ROOT / "uv.lock")
        assert set(closure.direct) == names(PYPROJECT["project"]["dependencies"])

    def test_dev_tools_are_not_in_the_runtime_closure(self) -> None:
        """pytest, ruff, mypy and the SBOM validator come with the dev extra only."""
        closure = read_runtime_closure(ROOT / "uv.lock")
        for tool in ("pytest", "ruff", "mypy", "bandit", "cyclonedx-python-lib", "hypothesis"):
            assert tool not in closure.packages

    def test_every_locked_file_has_a_sha256(self) -> None:
        """Each sdist and wheel of the closure carries its hash."""
        closure = read_runtime_closure(ROOT / "uv.lock")
        for package in closure.packages.values():
            assert package.files
            assert all(digest.startswith("sha256:") for _, digest in package.files)

    def test_the_venv_is_the_lock(self) -> None:
        """make setup installed exactly the locked version of every runtime package."""
        closure = read_runtime_closure(ROOT / "uv.lock")
        installed = {name: importlib.metadata.version(name) for name in closure.packages}
        assert installed == {name: p.version for name, p in closure.packages.items()}

    def test_same_closure_as_uv_export(self) -> None:
        """Our reading of the lock agrees with uv's own export of the runtime closure."""
        uv = sorted(ROOT.glob(".state/uv-*/bin/uv"))
        assert uv, "uv is installed by make setup under .state/"
        exported = subprocess.run(
            [str(uv[-1]), "export", "--frozen", "--no-dev", "--format", "cyclonedx1.5", "-q"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        components = json.loads(exported.stdout)["components"]
        closure = read_runtime_closure(ROOT / "uv.lock")
        assert {(c["name"], c["version"]) for c in components} == {
            (p.name, p.version) for p in closure.packages.values()
        }


def lock(*packages: dict[str, object]) -> dict[str, object]:
    return {"package": list(packages)}


ROOT_PACKAGE = {
    "name": "app",
    "version": "1.0",
    "source": {"editable": "."},
    "dependencies": [
        {"name": "a"},
        {"name": "win", "marker": "sys_platform == 'win32'"},
        {"name": "b", "extra": ["fast"]},
    ],
    "optional-dependencies": {"dev": [{"name": "tool"}]},
}


def pkg(name: str, **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "version": "1",
        "source": {"registry": "https://pypi.org/simple"},
        "sdist": {"url": f"https://x/{name}.tar.gz", "hash": "sha256:00"},
        **fields,
    }


class TestWalk:
    def test_markers_extras_and_dev_extra(self) -> None:
        """False markers and the dev extra are left out; a requested extra is followed."""
        closure = runtime_closure(
            lock(
                ROOT_PACKAGE,
                pkg("a", dependencies=[{"name": "c"}]),
                pkg("b", **{"optional-dependencies": {"fast": [{"name": "speedup"}]}}),
                pkg("c"),
                pkg("speedup"),
                pkg("win"),
                pkg("tool"),
            ),
            "app",
            {"sys_platform": "linux"},
        )
        assert closure.direct == ("a", "b")
        assert set(closure.packages) == {"a", "b", "c", "speedup"}
        assert closure.packages["c"].required_by == ("a",)
        assert closure.packages["speedup"].required_by == ("b",)
        assert closure.packages["a"].purl == "pkg:pypi/a@1"

    def test_missing_project_or_package(self, tmp_path: Path) -> None:
        """A lock without the project, or naming an unlocked package, is an error."""
        with pytest.raises(LockError, match="does not contain the project"):
            runtime_closure(lock(pkg("a")), "app")
        with pytest.raises(LockError, match="does not lock it"):
            runtime_closure(lock(ROOT_PACKAGE), "app", {"sys_platform": "linux"})
        with pytest.raises(LockError, match="unreadable"):
            read_runtime_closure(tmp_path / "uv.lock")
