"""Clinical decision support: rules as data per model, evaluated on image and study results (pure).

Each model may ship ``model_registry/<model>/decision_support.yaml`` (one file for all its
versions; the models engineer's registry layout keeps per-model data there). A rule names a
*finding* (one of the model's score labels) and when it is urgent:

* ``level: image`` — any single image whose score for the finding reaches ``min_score``: raised
  as soon as that image's result arrives, without waiting for the study to complete (this is
  what makes a stat study's alert fast);
* ``level: study`` — the study result's ``max_score`` for the finding reaches ``min_score`` and
  at least ``min_positive_images`` images were positive.

An urgent finding is raised at most once per study and finding (its id is derived from both);
the stage keeps that promise across restarts with a unique key in the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from schemas.events import InferenceCompleted, Priority
from schemas.studies import StudyResult, UrgentFinding, urgent_alert_id

RULES_FILE_NAME = "decision_support.yaml"


class DecisionRule(BaseModel):
    """One rule: which finding is urgent, at which level, from which score on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    finding: str = Field(min_length=1, max_length=64)
    level: Literal["image", "study"]
    min_score: float = Field(ge=0, le=1)
    min_positive_images: int = Field(1, ge=1)


class ModelRules(BaseModel):
    """The rules file of one model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[DecisionRule, ...] = ()


def load_decision_rules(registry_dir: Path) -> dict[str, ModelRules]:
    """Every model's rules file under ``registry_dir``, by model name (models without: none).

    Raises:
        ValueError: a rules file is not valid YAML or does not match the schema.
        OSError: a rules file cannot be read.
    """
    found: dict[str, ModelRules] = {}
    for path in sorted(registry_dir.glob(f"*/{RULES_FILE_NAME}")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(document, dict):
            raise ValueError(f"{path.parent.name}/{RULES_FILE_NAME} must hold a mapping")  # noqa: TRY004
        found[path.parent.name] = ModelRules.model_validate(document)
    return found


def image_findings(
    rules: Mapping[str, ModelRules], result: InferenceCompleted, priority: Priority, at: datetime
) -> list[UrgentFinding]:
    """The urgent findings one image result raises (image-level rules)."""
    if result.study_instance_uid is None:
        return []
    model_rules = rules.get(result.model.name, ModelRules())
    found: list[UrgentFinding] = []
    for rule in model_rules.rules:
        score = result.scores.get(rule.finding)
        if rule.level == "image" and score is not None and score >= rule.min_score:
            found.append(
                _finding(
                    result.study_instance_uid,
                    result.model.name,
                    result.model.version,
                    rule,
                    score=score,
                    priority=priority,
                    at=at,
                )
            )
    return _one_per_finding(found)


def study_findings(
    rules: Mapping[str, ModelRules], result: StudyResult, at: datetime
) -> list[UrgentFinding]:
    """The urgent findings one study result raises (study-level rules)."""
    model_rules = rules.get(result.model.name, ModelRules())
    found = [
        _finding(
            result.study_instance_uid,
            result.model.name,
            result.model.version,
            rule,
            score=result.max_score,
            priority=result.priority,
            at=at,
        )
        for rule in model_rules.rules
        if rule.level == "study"
        and result.finding == rule.finding
        and result.max_score >= rule.min_score
        and result.positive_count >= rule.min_positive_images
    ]
    return _one_per_finding(found)


def _finding(
    study: str,
    model: str,
    version: str,
    rule: DecisionRule,
    *,
    score: float,
    priority: Priority,
    at: datetime,
) -> UrgentFinding:
    return UrgentFinding(
        alert_id=urgent_alert_id(study, model, rule.finding),
        study_instance_uid=study,
        model_name=model,
        model_version=version,
        finding=rule.finding,
        score=score,
        rule=rule.name,
        level=rule.level,
        priority=priority,
        raised_at=at,
    )


def _one_per_finding(found: list[UrgentFinding]) -> list[UrgentFinding]:
    """Two rules on one finding raise one alert (the first rule in the file names it)."""
    unique: dict[object, UrgentFinding] = {}
    for finding in found:
        unique.setdefault(finding.alert_id, finding)
    return list(unique.values())
