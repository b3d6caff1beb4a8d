"""The SOUP list and SBOM: complete, judged by scope, valid CycloneDX."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from email.message import Message
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from compliance.soup import (
    Scope,
    SoupData,
    SoupError,
    build_inventory,
    cyclonedx,
    debian_version,
    installed_metadata,
    render_soup_markdown,
    write_sbom_and_soup,
)
from tests.unit.compliance.test_matrix import WHEN

pytestmark = pytest.mark.requirement("RS-CMP-03")

ROOT = Path(__file__).resolve().parents[3]
KAFKA_BOM = Path(__file__).with_name("kafka-bom.json")


def no_debian(_: str) -> str | None:
    return None


@pytest.fixture(scope="module")
def inventory():  # type: ignore[no-untyped-def]
    return build_inventory(ROOT, kafka_bom=KAFKA_BOM, deb_version=no_debian)


def apt_packages_in_ops_scripts() -> set[str]:
    """Every package name the ops scripts hand to apt-get install."""
    found: set[str] = set()
    for script in ROOT.glob("ops/**/*.sh"):
        text = script.read_text()
        for listed in re.findall(r"need\+=\(([^)]*)\)", text):
            found.update(listed.split())
        commands = [
            line
            for line in text.splitlines()
            if not line.lstrip().startswith("#") and "echo" not in line
        ]
        for line in re.findall(r"apt-get install([^\n]*)", "\n".join(commands)):
            found.update(
                word
                for word in line.split()
                if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", word) and not word.startswith("-")
            )
    return found


class TestCommittedInventory:
    def test_the_runtime_closure_passes_the_licence_check(self, inventory) -> None:  # type: ignore[no-untyped-def]
        """No copyleft or unknown licence enters the runtime except by a recorded exception."""
        assert [f.describe() for f in inventory.failures] == []

    def test_every_runtime_component_has_licence_and_purpose(self, inventory) -> None:  # type: ignore[no-untyped-def]
        """The SOUP list says, for each item, which version, which licence and why."""
        for component in inventory.components:
            assert component.version
            assert component.licence
            assert component.purpose

    def test_test_peers_are_listed_but_not_judged(self, inventory) -> None:  # type: ignore[no-untyped-def]
        """Orthanc (GPL) is a test peer: in the SOUP list, outside the licence check."""
        orthanc = next(c for c in inventory.components if c.name == "orthanc")
        assert orthanc.scope is Scope.TEST
        assert orthanc.licence.startswith("GPL")
        assert "orthanc" not in {f.component for f in inventory.findings}

    def test_dev_tools_are_not_soup(self, inventory) -> None:  # type: ignore[no-untyped-def]
        """What only the dev extra installs is not part of the product."""
        names = {c.name for c in inventory.components}
        assert not names & {"pytest", "ruff", "mypy", "cyclonedx-python-lib"}

    def test_every_package_the_ops_scripts_install_is_listed(self) -> None:
        """A Debian package added to an ops script must get its SOUP entry and scope."""
        listed = {c.name for c in SoupData.load().components if c.kind == "deb"}
        assert apt_packages_in_ops_scripts() <= listed
        assert {"postgresql", "prometheus"} <= apt_packages_in_ops_scripts()

    def test_kafka_jars_come_from_the_bom(self, inventory) -> None:  # type: ignore[no-untyped-def]
        """Jar licences are read from the POMs, 'Go License' mapped to its SPDX id."""
        jars = {c.name: c for c in inventory.components if c.kind == "maven"}
        assert jars["re2j"].licence == "BSD-3-Clause"
        assert jars["HdrHistogram"].licence == "CC0-1.0 AND BSD-2-Clause"
        assert jars["kafka_2.13"].purpose.startswith("Apache Kafka broker")
        assert jars["kafka-clients"].purpose == "part of the Kafka broker (kafka_2.13)"


class TestSbom:
    def test_valid_cyclonedx_1_6(self, inventory) -> None:  # type: ignore[no-untyped-def]
        """Every kind of component we emit validates against the strict CycloneDX 1.6 schema.

        One component of each kind (PyPI with its files, jar, Debian package, platform): the
        schema's URL format check costs ~0.3 s per URL, too slow for all ~130 in a unit test.
        """
        kinds: dict[str, object] = {}
        for component in inventory.components:
            kinds.setdefault(component.kind, component)
        sample = replace(inventory, components=tuple(kinds.values()))
        document = json.dumps(cyclonedx(sample, generated_at=WHEN))
        assert set(kinds) == {"pypi", "maven", "deb", "platform"}
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None

    def test_only_this_platforms_files(self, inventory) -> None:  # type: ignore[no-untyped-def]
        """A package lists its sdist and the wheels this platform installs, not all of them."""
        numpy = next(c for c in inventory.components if c.name == "numpy")
        wheels = [url for url, _ in numpy.files if url.endswith(".whl")]
        assert len(wheels) == 1
        assert "cp311" in wheels[0]
        assert any(url.endswith(".tar.gz") for url, _ in numpy.files)

    def test_scopes_and_a_stable_serial_number(self, inventory) -> None:  # type: ignore[no-untyped-def]
        """Test peers are 'excluded'; the serial number depends on the inputs, not the time."""
        first = cyclonedx(inventory, generated_at=WHEN)
        components = {c["name"]: c for c in first["components"]}
        assert components["orthanc"]["scope"] == "excluded"
        assert components["pydantic"]["scope"] == "required"
        assert components["pydantic"]["externalReferences"][0]["hashes"][0]["alg"] == "SHA-256"
        assert first["serialNumber"] == cyclonedx(inventory, generated_at=WHEN)["serialNumber"]

    def test_written_files(self, inventory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """write_sbom_and_soup writes both files; the SOUP list names the exceptions."""
        sbom, soup = write_sbom_and_soup(inventory, tmp_path / "out", generated_at=WHEN)
        assert json.loads(sbom.read_text())["bomFormat"] == "CycloneDX"
        text = soup.read_text()
        assert "Licence check of the runtime closure" in text
        assert "passed" in text
        assert "pylibjpeg-libjpeg: GPL-3.0-only — allowed by exception" in text


class TestRefusals:
    def test_copyleft_without_exception_fails(self, tmp_path: Path) -> None:
        """Take away the recorded exception and the GPL decoder fails the check."""
        data = SoupData.load()
        without = data.model_copy(update={"exceptions": ()})
        found = build_inventory(ROOT, data=without, kafka_bom=KAFKA_BOM, deb_version=no_debian)
        assert [f.component for f in found.failures] == ["pylibjpeg-libjpeg", "OpenJDK"]
        assert "FAILED" in render_soup_markdown(found)

    def test_a_direct_dependency_needs_a_purpose(self) -> None:
        """A new dependency without a purpose in soup.yaml stops the SOUP list."""
        data = SoupData.load()
        python = {k: v for k, v in data.python.items() if k != "numpy"}
        with pytest.raises(SoupError, match="no purpose for the direct dependencies numpy"):
            build_inventory(
                ROOT, data=data.model_copy(update={"python": python}), kafka_bom=KAFKA_BOM
            )

    def test_installed_version_must_be_the_locked_one(self) -> None:
        """A venv that drifted from the lock is refused: the SOUP list would lie."""

        def stale(name: str) -> Message | None:
            message = Message()
            message["Version"] = "0.0.0"
            return message

        with pytest.raises(SoupError, match="run `make setup`"):
            build_inventory(ROOT, kafka_bom=KAFKA_BOM, metadata=stale)

    def test_missing_kafka_bom_says_what_to_run(self, tmp_path: Path) -> None:
        """Without the Maven BOM the error names make sbom."""
        with pytest.raises(SoupError, match="make sbom"):
            build_inventory(ROOT, kafka_bom=tmp_path / "none.json")

    def test_unmapped_pom_licence_is_unknown(self, tmp_path: Path) -> None:
        """A jar whose POM licence name is not an SPDX alias fails the check."""
        bom = json.loads(KAFKA_BOM.read_text())
        bom["components"][0]["licenses"] = [{"license": {"name": "Some Licence"}}]
        path = tmp_path / "bom.json"
        path.write_text(json.dumps(bom))
        found = build_inventory(ROOT, kafka_bom=path, deb_version=no_debian)
        assert [f.licence for f in found.failures] == [None]

    def test_broken_soup_file(self, tmp_path: Path) -> None:
        """An invalid soup.yaml is a SoupError naming the file."""
        bad = tmp_path / "soup.yaml"
        bad.write_text("policy: {}\n")
        with pytest.raises(SoupError, match=r"soup\.yaml"):
            SoupData.load(bad)


class TestHostLookups:
    def test_installed_metadata(self) -> None:
        """Metadata of an installed distribution; None for one that is not installed."""
        found = installed_metadata("pyyaml")
        assert found is not None
        assert found["Name"].lower() == "pyyaml"
        assert installed_metadata("no-such-distribution-radstream") is None

    def test_debian_version(self) -> None:
        """dpkg-query knows bash on a Debian host, and not a made-up package."""
        assert debian_version("bash")
        assert debian_version("no-such-package-radstream") is None
