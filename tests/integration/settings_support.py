"""Settings of tests that run real workers: their own consumer groups, audit files and models."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from schemas.settings import SAMPLES_DIR, Settings, load_settings

# A phantom of the kind the reference lesion-detector was trained on (a real CT slice is
# refused by its input guard, which is not what the tests using it are about).
PHANTOM_CT = SAMPLES_DIR / "dicom" / "ct_phantom_lesion.dcm"


def isolated_settings(
    *,
    kafka_bootstrap: str,
    topic_prefix: str,
    storage_roots: tuple[Path, ...],
    database_url: str | None = None,
    audit_dir: Path | None = None,
    **groups: Any,
) -> Settings:
    """Settings of one test: its topics, a fresh consumer-group prefix (no earlier offsets).

    With ``audit_dir`` the audit signing key and checkpoint file live there; an ``audit``
    group in ``groups`` adds to them.
    """
    fields: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "topic_prefix": topic_prefix,
        "consumer_group_prefix": f"rstest-{uuid.uuid4().hex[:8]}",
        "storage_roots": storage_roots,
        **groups,
    }
    if database_url is not None:
        fields["database_url"] = SecretStr(database_url)
    if audit_dir is not None:
        fields["audit"] = {
            "signing_key_file": audit_dir / "audit_key.pem",
            "checkpoint_file": audit_dir / "checkpoints.jsonl",
            **groups.get("audit", {}),
        }
    return load_settings(**fields)


def phantom_storage(tmp_path: Path) -> Path:
    """A storage root under ``tmp_path`` holding one CT phantom, ``ct.dcm``."""
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(PHANTOM_CT, root / "ct.dcm")
    return root


def copied_model_registry(tmp_path: Path) -> Path:
    """A copy of the shipped model registry under ``tmp_path``, free for a test to change."""
    registry_dir = tmp_path / "model_registry"
    shutil.copytree(load_settings().inference.model_registry_dir, registry_dir)
    return registry_dir


def registry_settings(registry_dir: Path) -> dict[str, Path]:
    """The ``inference`` settings group serving the models and routing of ``registry_dir``."""
    return {"model_registry_dir": registry_dir, "routing_rules_file": registry_dir / "routing.yaml"}
