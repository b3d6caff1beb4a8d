"""uv.lock read as data: the runtime closure of radstream, with versions, hashes and edges.

The runtime closure is what ``[project].dependencies`` pulls in on the locked platform (CPython
3.11 on Linux): the ``dev`` extra and whatever only it needs are left out. That is how the
licence check and the SBOM know a test tool from a runtime component.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import Marker

LOCK_FILE = "uv.lock"


class LockError(ValueError):
    """uv.lock is missing, unreadable or does not contain the project."""


@dataclass(frozen=True, slots=True)
class LockedPackage:
    """One locked third-party package of the runtime closure."""

    name: str
    version: str
    files: tuple[tuple[str, str], ...]  # (url, "sha256:...") of the sdist and every wheel
    dependencies: tuple[str, ...]
    required_by: tuple[str, ...] = field(default=())

    @property
    def purl(self) -> str:
        """The package URL of this PyPI package."""
        return f"pkg:pypi/{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class RuntimeClosure:
    """radstream's direct runtime dependencies and every package they need."""

    project: str
    version: str
    direct: tuple[str, ...]
    packages: Mapping[str, LockedPackage]


def read_runtime_closure(
    lock_path: Path, project: str = "radstream", environment: Mapping[str, str] | None = None
) -> RuntimeClosure:
    """Parse ``lock_path`` and walk the project's runtime dependencies."""
    try:
        data = tomllib.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LockError(f"{lock_path} unreadable: {exc}") from exc
    return runtime_closure(data, project, environment)


def runtime_closure(
    lock: Mapping[str, Any], project: str, environment: Mapping[str, str] | None = None
) -> RuntimeClosure:
    """Walk ``project``'s runtime edges (markers evaluated, extras followed) through ``lock``."""
    packages = {package["name"]: package for package in lock.get("package", [])}
    root = packages.get(project)
    if root is None:
        raise LockError(f"uv.lock does not contain the project {project!r}: run `make lock`")
    env = dict(environment) if environment is not None else None
    edges: dict[str, set[str]] = {}
    parents: dict[str, set[str]] = {}
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(project, "")]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        entry = packages.get(name)
        if entry is None:
            raise LockError(f"uv.lock names {name} as a dependency but does not lock it")
        wanted = entry.get("optional-dependencies", {}).get(extra, []) if extra else []
        for dep in _applicable(entry.get("dependencies", []) if not extra else wanted, env):
            edges.setdefault(name, set()).add(dep["name"])
            parents.setdefault(dep["name"], set()).add(name)
            todo.append((dep["name"], ""))
            todo.extend((dep["name"], dep_extra) for dep_extra in dep.get("extra", []))
    closure = {
        name: _locked(packages[name], edges.get(name, set()), parents.get(name, set()))
        for name in sorted(parents)
        if name != project
    }
    return RuntimeClosure(
        project=project,
        version=str(root.get("version", "")),
        direct=tuple(sorted(edges.get(project, set()))),
        packages=closure,
    )


def _applicable(
    dependencies: Iterable[Mapping[str, Any]], environment: dict[str, str] | None
) -> list[Mapping[str, Any]]:
    """The dependencies whose environment marker holds on the locked platform."""
    return [
        dep
        for dep in dependencies
        if "marker" not in dep or Marker(dep["marker"]).evaluate(environment)
    ]


def _locked(entry: Mapping[str, Any], edges: set[str], parents: set[str]) -> LockedPackage:
    files = []
    if "sdist" in entry:
        files.append((entry["sdist"].get("url", ""), entry["sdist"]["hash"]))
    files.extend((wheel.get("url", ""), wheel["hash"]) for wheel in entry.get("wheels", []))
    return LockedPackage(
        name=entry["name"],
        version=str(entry["version"]),
        files=tuple(files),
        dependencies=tuple(sorted(edges)),
        required_by=tuple(sorted(parents)),
    )
