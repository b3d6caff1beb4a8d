"""docker-compose.secure.yml: every radstream service acts as its own principal over SASL_SSL.

Docker does not run on the build machines, so the override is checked structurally against the
base file's services, the principals whose ACLs ``streams/acls.py`` derives, and the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.settings import Settings
from streams.acls import PRINCIPALS
from tests.unit.test_docker_compose import SERVICES as BASE_SERVICES
from tests.unit.test_docker_compose import radstream_services, setting_names

pytestmark = pytest.mark.requirement("RS-SEC-01", "RS-DEP-01")

ROOT = Path(__file__).resolve().parents[2]


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (``!override``, ``!reset``) read as plain values."""


for _tag in ("!override", "!reset"):
    ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: loader.construct_sequence(node),  # type: ignore[arg-type]
    )

_TEXT = (ROOT / "docker-compose.secure.yml").read_text()
OVERRIDE: dict[str, Any] = yaml.load(_TEXT, Loader=ComposeLoader)["services"]  # noqa: S506 - safe
# Which principal each service of the base file runs as.
EXPECTED = {
    "worker --stages validation": "validation",
    "worker --stages inference": "inference",
    "worker --stages results": "results",
    "worker --stages audit": "audit",
    "worker --stages studies": "studies",
    "dicom listen": "router",
    "api": "api",
    "bootstrap": "admin",
    "lag --serve": "admin",
    "audit verify --every 300": "admin",
}


class TestSecureOverride:
    @pytest.mark.parametrize("service", radstream_services())
    def test_every_radstream_service_has_its_principal(self, service: str) -> None:
        """Each service's credentials are those of the principal its command needs."""
        command = " ".join(BASE_SERVICES[service]["command"])
        principal = EXPECTED[command]
        assert principal in (*PRINCIPALS, "admin")
        secure = OVERRIDE[service]
        assert secure["env_file"] == f".state/kafka-secure/clients/{principal}.env"
        env = secure["environment"]
        assert env["RADSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9093"
        assert env["RADSTREAM_KAFKA__MANAGE_TOPICS"] == "false"
        assert env["RADSTREAM_KAFKA__SSL_CAFILE"] == "/etc/radstream/kafka/ca.pem"
        assert set(env) <= setting_names(Settings)

    def test_the_acls_are_applied_by_the_super_user_after_the_topics(self) -> None:
        """kafka-acls runs 'topics acls --apply' as admin once migrate created the topics."""
        service = OVERRIDE["kafka-acls"]
        assert service["command"] == ["topics", "acls", "--apply"]
        assert service["env_file"] == ".state/kafka-secure/clients/admin.env"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"

    def test_the_broker_listens_only_with_sasl_ssl(self) -> None:
        """No plaintext listener is left from the base file; the authorizer denies by default."""
        env = OVERRIDE["kafka"]["environment"]
        assert env["KAFKA_LISTENERS"] == "SASL_SSL://:9093,CONTROLLER://127.0.0.1:9095"
        assert "PLAINTEXT" not in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",") == [
            "SASL_SSL:SASL_SSL",
            "CONTROLLER:SASL_PLAINTEXT",
        ]
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
        assert OVERRIDE["kafka"]["ports"] == ["9093:9093"]

    def test_no_password_is_written_into_the_file(self) -> None:
        """Passwords come from the generated files and the environment, never the file itself."""
        text = (ROOT / "docker-compose.secure.yml").read_text()
        for line in text.splitlines():
            if "password=" in line.replace(" ", ""):
                assert "${" in line or "$$" in line, line
