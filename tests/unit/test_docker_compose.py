"""docker-compose.kafka.yml is complete and agrees with the settings the app reads.

Docker does not run on the build machines, so the file is checked structurally: every service
the issue asks for, healthchecks, named volumes, ports, and every RADSTREAM_* variable being a
real setting (a typo would silently fall back to a default inside the container).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from schemas.settings import Settings

pytestmark = pytest.mark.requirement("RS-DEP-01")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def setting_names(model: type[BaseModel], prefix: str = "RADSTREAM_") -> set[str]:
    """Every environment variable name the settings model reads."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= setting_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def radstream_services() -> list[str]:
    return [name for name, svc in SERVICES.items() if svc.get("image") == "radstream:local"]


class TestComposeFile:
    def test_required_services_present(self) -> None:
        """Kafka, PostgreSQL, the workers per stage, the API and Prometheus are defined."""
        assert {"kafka", "postgres", "prometheus", "api", "migrate"} <= set(SERVICES)
        stages = {" ".join(SERVICES[n]["command"]) for n in radstream_services()}
        for stage in ("validation", "inference", "results", "audit", "studies"):
            assert f"worker --stages {stage}" in stages
        assert "dicom listen" in stages

    def test_kafka_is_kraft_without_zookeeper(self) -> None:
        """The broker runs KRaft (combined broker+controller), no ZooKeeper service."""
        env = SERVICES["kafka"]["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert "zookeeper" not in SERVICES
        assert not any("ZOOKEEPER" in key for key in env)

    @pytest.mark.parametrize("service", ["kafka", "postgres", "api", "prometheus"])
    def test_infrastructure_has_healthchecks(self, service: str) -> None:
        """Services others wait for declare a healthcheck."""
        assert SERVICES[service]["healthcheck"]["test"]

    def test_workers_wait_for_healthy_dependencies(self) -> None:
        """Migration waits for healthy Kafka and PostgreSQL; workers wait for migration."""
        assert SERVICES["migrate"]["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }
        for name in radstream_services():
            if name != "migrate":
                assert SERVICES[name]["depends_on"]["migrate"]["condition"] == (
                    "service_completed_successfully"
                )

    def test_named_volumes_declared(self) -> None:
        """Every named volume a service mounts is declared at the top level."""
        declared = set(COMPOSE["volumes"])
        for service in SERVICES.values():
            for mount in service.get("volumes", []):
                source = mount.split(":", 1)[0]
                if not source.startswith((".", "/")):
                    assert source in declared, source

    def test_environment_names_are_real_settings(self) -> None:
        """Every RADSTREAM_* variable given to a container is a setting the app reads."""
        known = setting_names(Settings)
        for name in radstream_services():
            env = SERVICES[name]["environment"]
            unknown = {key for key in env if key.startswith("RADSTREAM_")} - known
            assert unknown == set(), (name, unknown)

    def test_containers_reach_services_by_name(self) -> None:
        """Inside the network the app uses the service names and ports the services expose."""
        env = SERVICES["worker-validation"]["environment"]
        assert env["RADSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert "@postgres:5432/radstream" in env["RADSTREAM_DATABASE_URL"]
        assert (
            "PLAINTEXT://kafka:9092"
            in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        )

    def test_host_ports_match_local_defaults(self) -> None:
        """From the host, Kafka and PostgreSQL are where the settings' defaults point."""
        default_bootstrap = str(Settings.model_fields["kafka_bootstrap"].default)
        assert f"{default_bootstrap.rsplit(':', 1)[1]}:9094" in SERVICES["kafka"]["ports"]
        assert "5432:5432" in SERVICES["postgres"]["ports"]
        assert "8080:8080" in SERVICES["api"]["ports"]

    def test_no_secret_is_hardcoded(self) -> None:
        """The JWT secret must be provided by the user; compose refuses to start without it."""
        text = (ROOT / "docker-compose.kafka.yml").read_text()
        assert re.search(r"RADSTREAM_API__JWT_SECRET: \$\{RADSTREAM_API__JWT_SECRET:\?", text)

    def test_prometheus_config_scrapes_the_workers(self) -> None:
        """The mounted Prometheus config scrapes every radstream process on its metrics port.

        The workers, the DICOM listener, the lag monitor and the audit verifier on 9464, the
        API on 8080: an unscraped process's alerts (the DICOM ones) could never fire.
        """
        config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.docker.yml").read_text())
        targets = {
            t
            for job in config["scrape_configs"]
            for sc in job["static_configs"]
            for t in sc["targets"]
        }
        for name in radstream_services():
            if name == "migrate":
                continue
            port = 8080 if name == "api" else 9464
            assert f"{name}:{port}" in targets, name
        # and nothing that is not a service: a target nobody runs is always down
        assert {t.split(":")[0] for t in targets} <= set(SERVICES)

    def test_dockerfile_copies_what_the_app_needs(self) -> None:
        """The image contains every package and the model registry the workers load."""
        dockerfile = (ROOT / "Dockerfile").read_text()
        for folder in (
            "schemas",
            "streams",
            "sinks",
            "gateway",
            "observability",
            "cli",
            "model_registry",
            "app.py",
        ):
            assert f"COPY {folder}" in dockerfile


# ---------------------------------------------------------------------- issue #21: deployments
COMPOSE_SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def interpolated(text: str) -> Any:
    """The compose file as Compose reads it once every ``${VAR...}`` is set (to a test value)."""
    return yaml.safe_load(_VARIABLE.sub(lambda m: f"test-{m.group(1).lower()}", text))


class TestComposeDeployment:
    @pytest.mark.requirement("RS-DEP-02")
    def test_file_is_valid_against_the_compose_spec(self) -> None:
        """The whole file validates against the Compose Specification's JSON Schema."""
        schema = json.loads(COMPOSE_SCHEMA.read_text())
        document = interpolated((ROOT / "docker-compose.kafka.yml").read_text())
        jsonschema.Draft202012Validator(schema).validate(document)

    @pytest.mark.requirement("RS-DEP-02")
    def test_spec_check_catches_a_broken_file(self) -> None:
        """The schema check is not a formality: a misspelt service key fails it."""
        schema = json.loads(COMPOSE_SCHEMA.read_text())
        broken = {"services": {"api": {"image": "x", "helthcheck": {}}}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(schema).validate(broken)

    @pytest.mark.requirement("RS-DEP-02")
    def test_every_worker_is_health_checked_on_readyz(self) -> None:
        """Workers and the listener are healthy only when ready; monitors when serving /metrics."""
        for name in radstream_services():
            if name == "migrate":
                continue
            test = " ".join(SERVICES[name]["healthcheck"]["test"])
            if name.startswith("worker-") or name == "dicom-listener":
                assert ":9464/readyz" in test, name
            elif name == "api":
                assert ":8080/" in test
            else:
                assert ":9464/metrics" in test, name

    @pytest.mark.requirement("RS-DEP-02")
    def test_grafana_is_provisioned_with_the_dashboard(self) -> None:
        """Grafana mounts the provisioning and the shipped dashboard; both exist."""
        grafana = SERVICES["grafana"]
        sources = {mount.split(":", 1)[0] for mount in grafana["volumes"]}
        assert "./ops/grafana/radstream-pipeline.json" in sources
        assert "./ops/grafana/provisioning" in sources
        for source in sources:
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
        datasource = yaml.safe_load(
            (ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text()
        )["datasources"][0]
        assert datasource["url"] == "http://prometheus:9090"
        assert ":" in grafana["image"]
        assert "${GRAFANA_ADMIN_PASSWORD:?" in (ROOT / "docker-compose.kafka.yml").read_text()

    @pytest.mark.requirement("RS-DEP-02")
    def test_images_are_pinned(self) -> None:
        """Every image has an explicit version; the radstream image installs from uv.lock."""
        for name, service in SERVICES.items():
            image = service.get("image", "")
            assert image == "radstream:local" or re.search(r":v?\d+\.\d+", image), (name, image)
        dockerfile = (ROOT / "Dockerfile").read_text()
        assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-\w+", dockerfile, re.MULTILINE)
        assert "uv sync --locked --no-dev" in dockerfile

    @pytest.mark.requirement("RS-DEP-02")
    def test_no_default_database_password(self) -> None:
        """The database password must be provided; no placeholder is shipped as a default."""
        text = (ROOT / "docker-compose.kafka.yml").read_text()
        assert "${RADSTREAM_DB_PASSWORD:-" not in text
        assert "${RADSTREAM_DB_PASSWORD:?" in text
