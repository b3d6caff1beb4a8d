"""The SOUP list and the CycloneDX SBOM, from uv.lock, the Kafka BOM and ``soup.yaml``.

Sources, one each: versions, hashes and the runtime closure come from ``uv.lock``; licences of
Python packages from their installed metadata (checked to be the locked version) unless
``soup.yaml`` says otherwise; the Kafka broker's jars, versions and licences from the BOM that
cyclonedx-maven-plugin writes for ``ops/kafka/pom.xml`` (``make sbom``); purposes, scopes and the
non-Python components from ``soup.yaml``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import shutil
import subprocess  # nosec B404
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compliance.licences import LicenceException, LicenceFinding, LicencePolicy, judge
from compliance.lock import LOCK_FILE, RuntimeClosure, read_runtime_closure

SOUP_FILE = Path(__file__).with_name("soup.yaml")
KAFKA_BOM = Path(".state/compliance/kafka-bom.json")
SBOM_FILE = "sbom.cdx.json"
SOUP_MARKDOWN = "soup.md"
PROJECT_LICENCE = "Apache-2.0"


class SoupError(ValueError):
    """The SOUP inputs are missing or disagree (one line says what to run)."""


class Scope(StrEnum):
    """Where a component runs; runtime and service components are licence-checked."""

    RUNTIME = "runtime"
    SERVICE = "service"
    OPTIONAL = "optional"
    TEST = "test"

    @property
    def judged(self) -> bool:
        """Whether the licence check judges components of this scope."""
        return self in (Scope.RUNTIME, Scope.SERVICE)


class _Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    permissive: tuple[str, ...]
    copyleft: tuple[str, ...]
    aliases: dict[str, str]
    classifiers: dict[str, str]


class _Exception(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    component: str
    licence: str
    reason: str = Field(min_length=10)


class _PythonEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    purpose: str | None = None
    licence: str | None = None
    licence_source: str | None = None


class _Kafka(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    broker: str
    purpose: str


class _Other(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    kind: str = Field(pattern="^(deb|platform)$")
    scope: Scope
    licence: str
    purpose: str
    installed_by: str
    version: str | None = None


class SoupData(BaseModel):
    """``soup.yaml``: policy, exceptions, purposes and the non-Python components."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    policy: _Policy
    exceptions: tuple[_Exception, ...] = ()
    python: dict[str, _PythonEntry]
    kafka: _Kafka
    components: tuple[_Other, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> SoupData:
        """Read and check ``soup.yaml`` (default: the committed one)."""
        path = path or SOUP_FILE
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise SoupError(f"{path}: {exc}") from exc

    def licence_policy(self) -> LicencePolicy:
        """The policy as the licence checker uses it."""
        return LicencePolicy(
            permissive=frozenset(self.policy.permissive),
            copyleft=self.policy.copyleft,
            aliases=self.policy.aliases,
            classifiers=self.policy.classifiers,
        )

    def licence_exceptions(self) -> list[LicenceException]:
        """The recorded exceptions."""
        return [LicenceException(e.component, e.licence, e.reason) for e in self.exceptions]


@dataclass(frozen=True, slots=True)
class Component:
    """One SOUP item: what it is, which version, under which licence, and why radstream has it."""

    name: str
    version: str
    kind: str  # pypi | maven | deb | platform
    scope: Scope
    licence: str | None
    purpose: str
    purl: str | None = None
    group: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    dependencies: tuple[str, ...] = ()
    licence_source: str | None = None

    @property
    def ref(self) -> str:
        """The component's bom-ref: its package URL, else kind and name."""
        return self.purl or f"{self.kind}:{self.name}"

    @property
    def display_name(self) -> str:
        """Group and name for jars, the name otherwise."""
        return f"{self.group}:{self.name}" if self.group else self.name


@dataclass(frozen=True, slots=True)
class Inventory:
    """Every SOUP component and the licence check's findings on the judged ones."""

    project: str
    project_version: str
    components: tuple[Component, ...]
    findings: tuple[LicenceFinding, ...]
    identity: str = field(default="")

    @property
    def failures(self) -> list[LicenceFinding]:
        """Judged components with a copyleft or unknown licence and no exception."""
        return [finding for finding in self.findings if finding.fails]


MetadataLookup = Callable[[str], Message | None]
DebianVersion = Callable[[str], str | None]


def installed_metadata(name: str) -> Message | None:
    """The installed distribution's metadata, or None when it is not installed."""
    try:
        metadata: Message = importlib.metadata.metadata(name)  # type: ignore[assignment]
    except importlib.metadata.PackageNotFoundError:
        return None
    return metadata


def debian_version(package: str) -> str | None:
    """The installed Debian package's version (dpkg-query), or None."""
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return None
    # dpkg-query with fixed arguments and no shell; the package name comes from soup.yaml.
    done = subprocess.run(  # noqa: S603  # nosec B603
        [dpkg, "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def build_inventory(
    repo_root: Path,
    *,
    data: SoupData | None = None,
    kafka_bom: Path | None = None,
    metadata: MetadataLookup = installed_metadata,
    deb_version: DebianVersion = debian_version,
) -> Inventory:
    """Collect every component and judge the runtime closure's licences."""
    data = data or SoupData.load()
    policy = data.licence_policy()
    lock_path = repo_root / LOCK_FILE
    closure = read_runtime_closure(lock_path)
    bom_path = kafka_bom or repo_root / KAFKA_BOM
    components = [
        *_python_components(closure, data, policy, metadata),
        *_kafka_components(bom_path, data, policy),
        *_other_components(data, deb_version),
    ]
    exceptions = data.licence_exceptions()
    findings = tuple(
        judge(policy, c.display_name, c.licence, exceptions) for c in components if c.scope.judged
    )
    identity = hashlib.sha256(lock_path.read_bytes() + bom_path.read_bytes()).hexdigest()
    return Inventory(closure.project, closure.version, tuple(components), findings, identity)


def _python_components(
    closure: RuntimeClosure, data: SoupData, policy: LicencePolicy, metadata: MetadataLookup
) -> list[Component]:
    missing = [name for name in closure.direct if not _purpose(data, name)]
    if missing:
        raise SoupError(
            "compliance/soup.yaml gives no purpose for the direct dependencies "
            + ", ".join(missing)
        )
    components = []
    for package in closure.packages.values():
        entry = data.python.get(package.name, _PythonEntry())
        installed = metadata(package.name)
        if installed is not None and installed.get("Version") != package.version:
            raise SoupError(
                f"{package.name} {installed.get('Version')} is installed but uv.lock has "
                f"{package.version}: run `make setup`"
            )
        licence = entry.licence or (policy.from_metadata(installed) if installed else None)
        source = entry.licence_source or ("package metadata" if licence else None)
        purpose = _purpose(data, package.name) or "needed by " + ", ".join(package.required_by)
        components.append(
            Component(
                name=package.name,
                version=package.version,
                kind="pypi",
                scope=Scope.RUNTIME,
                licence=licence,
                purpose=purpose,
                purl=package.purl,
                files=_installable(package.files),
                dependencies=tuple(
                    closure.packages[d].purl for d in package.dependencies if d in closure.packages
                ),
                licence_source=source,
            )
        )
    return components


def _installable(files: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The sdist and the wheels this platform can install (not every platform's wheels)."""
    supported = frozenset(sys_tags())
    kept = []
    for url, digest in files:
        name = url.rsplit("/", 1)[-1]
        if name.endswith(".whl"):
            try:
                tags = parse_wheel_filename(name)[3]
            except InvalidWheelFilename:
                continue
            if tags.isdisjoint(supported):
                continue
        kept.append((url, digest))
    return tuple(kept)


def _purpose(data: SoupData, name: str) -> str | None:
    entry = data.python.get(name)
    return entry.purpose if entry else None


def _kafka_components(bom_path: Path, data: SoupData, policy: LicencePolicy) -> list[Component]:
    try:
        bom = json.loads(bom_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SoupError(f"no Kafka BOM at {bom_path} ({exc}): run `make sbom`") from exc
    depends = {d["ref"]: d.get("dependsOn", []) for d in bom.get("dependencies", [])}
    components = []
    for jar in bom.get("components", []):
        coordinate = f"{jar.get('group')}:{jar['name']}"
        components.append(
            Component(
                name=jar["name"],
                group=jar.get("group"),
                version=jar.get("version", ""),
                kind="maven",
                scope=Scope.SERVICE,
                licence=_bom_licence(jar.get("licenses", []), policy),
                purpose=data.kafka.purpose
                if coordinate == data.kafka.broker
                else f"part of the Kafka broker ({data.kafka.broker.split(':')[1]})",
                purl=jar.get("purl"),
                files=tuple(
                    ("", f"{h['alg'].lower().replace('-', '')}:{h['content']}")
                    for h in jar.get("hashes", [])
                    if h.get("alg") == "SHA-256"
                ),
                dependencies=tuple(depends.get(jar.get("bom-ref", ""), [])),
                licence_source="Maven POM",
            )
        )
    return components


def _bom_licence(licences: Sequence[Mapping[str, Any]], policy: LicencePolicy) -> str | None:
    """A POM's licences as one expression; several declared licences all apply (AND)."""
    parts = []
    for entry in licences:
        if "expression" in entry:
            parts.append(str(entry["expression"]))
            continue
        licence = entry.get("license", {})
        text = licence.get("id") or policy.normalise(str(licence.get("name", "")))
        if not text:
            return None
        parts.append(text)
    if not parts:
        return None
    return " AND ".join(f"({p})" if " " in p else p for p in parts)


def _other_components(data: SoupData, deb_version: DebianVersion) -> list[Component]:
    components = []
    for item in data.components:
        if item.kind == "deb":
            version = deb_version(item.name) or "not installed on this host"
            purl = f"pkg:deb/debian/{item.name}"
        else:
            version = platform.python_version() if item.name == "CPython" else item.version or ""
            purl = None
        components.append(
            Component(
                name=item.name,
                version=version,
                kind=item.kind,
                scope=item.scope,
                licence=item.licence,
                purpose=item.purpose,
                purl=purl,
                licence_source=f"installed by {item.installed_by}",
            )
        )
    return components


# ---------------------------------------------------------------- outputs

_CDX_SCOPE = {
    Scope.RUNTIME: "required",
    Scope.SERVICE: "required",
    Scope.OPTIONAL: "optional",
    Scope.TEST: "excluded",
}
_CDX_TYPE = {"pypi": "library", "maven": "library", "deb": "application", "platform": "platform"}


def cyclonedx(inventory: Inventory, *, generated_at: datetime) -> dict[str, Any]:
    """The inventory as a CycloneDX 1.6 JSON document (serial number fixed by the inputs)."""
    root = f"pkg:pypi/{inventory.project}@{inventory.project_version}"
    direct = [
        c.ref for c in inventory.components if c.kind != "pypi" or not _is_dependency(c, inventory)
    ]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": uuid.uuid5(uuid.NAMESPACE_URL, f"radstream-sbom:{inventory.identity}").urn,
        "version": 1,
        "metadata": {
            "timestamp": generated_at.isoformat(timespec="seconds"),
            "tools": {"components": [{"type": "application", "name": "radstream compliance"}]},
            "component": {
                "type": "application",
                "bom-ref": root,
                "name": inventory.project,
                "version": inventory.project_version,
                "purl": root,
                "licenses": [{"expression": PROJECT_LICENCE}],
            },
        },
        "components": [_cdx_component(c) for c in inventory.components],
        "dependencies": [
            {"ref": root, "dependsOn": direct},
            *({"ref": c.ref, "dependsOn": list(c.dependencies)} for c in inventory.components),
        ],
    }


def _is_dependency(component: Component, inventory: Inventory) -> bool:
    return any(component.ref in other.dependencies for other in inventory.components)


def _cdx_component(component: Component) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": _CDX_TYPE[component.kind],
        "bom-ref": component.ref,
        "name": component.name,
        "version": component.version,
        "scope": _CDX_SCOPE[component.scope],
    }
    if component.group:
        entry["group"] = component.group
    if component.purl:
        entry["purl"] = component.purl
    if component.licence:
        entry["licenses"] = [{"expression": component.licence}]
    references = [
        {"type": "distribution", "url": url, "hashes": [_cdx_hash(digest)]}
        for url, digest in component.files
        if url
    ]
    if references:
        entry["externalReferences"] = references
    hashes = [_cdx_hash(digest) for url, digest in component.files if not url]
    if hashes:
        entry["hashes"] = hashes
    entry["properties"] = [
        {"name": "radstream:purpose", "value": component.purpose},
        {"name": "radstream:scope", "value": component.scope.value},
        {"name": "radstream:licence-source", "value": component.licence_source or "unknown"},
    ]
    return entry


def _cdx_hash(digest: str) -> dict[str, str]:
    algorithm, _, content = digest.partition(":")
    return {"alg": {"sha256": "SHA-256"}.get(algorithm, algorithm.upper()), "content": content}


def render_soup_markdown(inventory: Inventory, *, heading_level: int = 1) -> str:
    """The SOUP list for people: the licence check, then one table per scope."""
    h = "#" * heading_level
    lines = [f"{h} SOUP list", ""]
    judged = len(inventory.findings)
    failures = inventory.failures
    excepted = [f for f in inventory.findings if f.exception is not None]
    lines.append(
        f"Licence check of the runtime closure ({judged} components in the runtime and service "
        f"scopes): {'FAILED' if failures else 'passed'}."
    )
    lines += [""] + [f"- **{f.describe()}**" for f in failures]
    if excepted:
        lines += ["", "Exceptions applied:", ""] + [f"- {f.describe()}" for f in excepted]
    lines.append("")
    for scope in Scope:
        rows = [c for c in inventory.components if c.scope is scope]
        if not rows:
            continue
        lines += [
            f"{h}# {scope.value} ({len(rows)})",
            "",
            "| component | version | licence | licence read from | purpose |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c.display_name} | {c.version} | {c.licence or 'UNKNOWN'} | "
            f"{c.licence_source or '-'} | {c.purpose} |"
            for c in sorted(rows, key=lambda c: (c.kind, c.display_name))
        ]
        lines.append("")
    return "\n".join(lines)


def write_sbom_and_soup(
    inventory: Inventory, directory: Path, *, generated_at: datetime
) -> tuple[Path, Path]:
    """Write ``sbom.cdx.json`` and ``soup.md`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    sbom_path = directory / SBOM_FILE
    soup_path = directory / SOUP_MARKDOWN
    sbom = cyclonedx(inventory, generated_at=generated_at)
    sbom_path.write_text(json.dumps(sbom, indent=2) + "\n", encoding="utf-8")
    soup_path.write_text(render_soup_markdown(inventory), encoding="utf-8")
    return sbom_path, soup_path
