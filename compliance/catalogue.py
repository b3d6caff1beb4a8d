"""The requirement catalogue (``compliance/requirements.yaml``): loaded strictly, checked whole.

An id is stable for good: tests and reports cite it. What each status means and what CI demands
of it is written at the top of the YAML file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CATALOGUE_FILE = Path(__file__).with_name("requirements.yaml")
ID_PATTERN = r"^[A-Z][A-Z0-9]*-[A-Za-z0-9.()-]+$"


class CatalogueError(ValueError):
    """The catalogue file is unreadable or inconsistent (one message names every problem)."""


class Status(StrEnum):
    """How far a requirement is built."""

    IMPLEMENTED = "implemented"
    PLANNED = "planned"
    GAP = "gap"
    NOT_APPLICABLE = "not-applicable"


class Requirement(BaseModel):
    """One requirement or external clause with its stable id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN, max_length=64)
    source: str
    title: str = Field(min_length=1, max_length=120)
    statement: str = Field(min_length=1)
    status: Status
    issue: int | None = Field(default=None, ge=1)
    code: tuple[str, ...] = ()
    satisfied_by: tuple[str, ...] = ()
    rationale: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _status_needs_its_facts(self) -> Requirement:
        if self.status is Status.PLANNED and self.issue is None:
            raise ValueError("a planned requirement names the issue that builds it")
        if self.status in (Status.GAP, Status.NOT_APPLICABLE) and not self.rationale:
            raise ValueError(f"a {self.status.value} requirement gives its rationale")
        if self.status is Status.IMPLEMENTED and not (self.code or self.satisfied_by):
            raise ValueError("an implemented requirement names its code or what satisfies it")
        return self


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=1, le=1)
    sources: dict[str, str]
    requirements: tuple[Requirement, ...]


class Catalogue:
    """Every requirement by id, in file order, with the sources they come from."""

    def __init__(self, sources: dict[str, str], requirements: Iterable[Requirement]) -> None:
        self.sources = dict(sources)
        self._by_id: dict[str, Requirement] = {}
        problems: list[str] = []
        for requirement in requirements:
            if requirement.id in self._by_id:
                problems.append(f"{requirement.id} is declared twice")
            self._by_id[requirement.id] = requirement
        for requirement in self:
            if requirement.source not in self.sources:
                problems.append(f"{requirement.id} names unknown source {requirement.source!r}")
            problems.extend(
                f"{requirement.id} is satisfied by unknown {other}"
                for other in requirement.satisfied_by
                if other not in self._by_id
            )
        problems.extend(self._cycles())
        if problems:
            raise CatalogueError("requirement catalogue: " + "; ".join(problems))

    @classmethod
    def load(cls, path: Path = CATALOGUE_FILE) -> Catalogue:
        """Read and check a catalogue file; :class:`CatalogueError` names what is wrong."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            parsed = _CatalogueFile.model_validate(data)
        except OSError as exc:
            raise CatalogueError(f"requirement catalogue {path} unreadable: {exc}") from exc
        except yaml.YAMLError as exc:
            raise CatalogueError(f"requirement catalogue {path} is not YAML: {exc}") from exc
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise CatalogueError(f"requirement catalogue {path}: {details}") from exc
        return cls(parsed.sources, parsed.requirements)

    def __iter__(self) -> Iterator[Requirement]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, requirement_id: object) -> bool:
        return requirement_id in self._by_id

    def __getitem__(self, requirement_id: str) -> Requirement:
        return self._by_id[requirement_id]

    def unknown(self, requirement_ids: Iterable[str]) -> list[str]:
        """The ids among ``requirement_ids`` that the catalogue does not declare, sorted."""
        return sorted({rid for rid in requirement_ids if rid not in self._by_id})

    def missing_code(self, root: Path) -> list[str]:
        """``id: path`` for every code path that does not exist under ``root``."""
        return [
            f"{requirement.id}: {path}"
            for requirement in self
            for path in requirement.code
            if not (root / path).exists()
        ]

    def _cycles(self) -> list[str]:
        """A requirement may not be satisfied by itself, directly or through others."""
        problems = []
        for requirement in self:
            seen: set[str] = set()
            todo = list(requirement.satisfied_by)
            while todo:
                current = todo.pop()
                if current == requirement.id:
                    problems.append(f"{requirement.id} is satisfied by itself")
                    break
                if current in seen or current not in self._by_id:
                    continue
                seen.add(current)
                todo.extend(self._by_id[current].satisfied_by)
        return problems


def requirement_ids(markers: Iterable[tuple[object, ...]]) -> list[str]:
    """The ids named by ``requirement`` markers' arguments (strings only, in order, once)."""
    found: dict[str, None] = {}
    for args in markers:
        for arg in args:
            if not isinstance(arg, str) or not re.fullmatch(ID_PATTERN, arg):
                raise CatalogueError(f"requirement marker argument {arg!r} is not a requirement id")
            found[arg] = None
    return list(found)
