"""Which models an image goes to: the event's explicit ``model_ids``, else rules in data.

``routing.yaml`` holds an ordered list of rules; the first rule whose modality (and body part,
when the rule names one) matches the image wins, so specific rules go before general ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.body_part import recognised_body_part
from schemas.errors import ErrorCode, InferenceError, InputValidationError, ResourceNotFoundError
from schemas.modality import recognised_modality
from streams.inference.manifest import read_model_file

_MODEL_ID = r"^[a-z0-9][a-z0-9._-]{0,63}(@[0-9A-Za-z.+-]{1,32})?$"


class RoutingRule(BaseModel):
    """Images of ``modality`` (and ``body_part`` when given) go to ``models``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, protected_namespaces=())

    modality: str = Field(pattern=r"^[A-Z0-9]{1,16}$")
    body_part: str | None = Field(None, min_length=1, max_length=32)
    models: tuple[str, ...] = Field(min_length=1, max_length=8)

    @field_validator("models")
    @classmethod
    def _ids_well_formed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for model_id in value:
            if not re.fullmatch(_MODEL_ID, model_id):
                raise ValueError(f"{model_id!r} is not a model id (name or name@version)")
        return value

    @field_validator("modality")
    @classmethod
    def _modality_defined(cls, value: str) -> str:
        """A DICOM modality defined term: an image's modality is never anything else."""
        if recognised_modality(value) != value:
            raise ValueError(f"modality {value!r} is not a DICOM modality defined term (CID 33)")
        return value

    @field_validator("body_part")
    @classmethod
    def _body_part_defined(cls, value: str | None) -> str | None:
        """A DICOM defined term (any case), kept in upper case; anything else could never match."""
        if value is None:
            return None
        term = recognised_body_part(value)
        if term is None:
            raise ValueError(
                f"body_part {value!r} is not a DICOM Body Part Examined defined term"
                " (PS3.16 Annex L, e.g. CHEST, HEAD, ABDOMEN)"
            )
        return term

    def matches(self, modality: str | None, body_part: str | None) -> bool:
        """Whether an image with this modality and body part falls under the rule.

        The image's body part counts only as a defined term (schemas/body_part.py), compared
        without case or surrounding blanks.
        """
        if modality is None or modality.upper() != self.modality:
            return False
        if self.body_part is None:
            return True
        return recognised_body_part(body_part) == self.body_part


class RoutingRules(BaseModel):
    """The ordered rules of ``routing.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    rules: tuple[RoutingRule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> RoutingRules:
        """Parse the YAML text strictly, or raise ``MODEL_LOAD_FAILED`` saying why."""
        try:
            document = json.dumps(yaml.safe_load(text))
            return cls.model_validate_json(document)
        except (yaml.YAMLError, TypeError, ValueError) as exc:
            # ValidationError is a ValueError: one message for every way the file is wrong.
            detail = (
                "; ".join(str(error["msg"]) for error in exc.errors()[:3])
                if isinstance(exc, ValidationError)
                else type(exc).__name__
            )
            raise InferenceError(
                ErrorCode.MODEL_LOAD_FAILED, f"invalid routing rules: {detail}"[:500]
            ) from exc

    @classmethod
    def load(cls, path: Path) -> RoutingRules:
        """Read and parse the rules file."""
        return cls.parse(read_model_file(path, "routing rules"))

    def unknown_models(self, known: Callable[[str], bool]) -> list[str]:
        """Model ids the rules name that ``known`` does not recognise (a start-up check)."""
        return sorted({m for rule in self.rules for m in rule.models if not known(m)})


def route(
    model_ids: Sequence[str],
    modality: str | None,
    body_part: str | None,
    rules: RoutingRules,
    *,
    known: Callable[[str], bool] | None = None,
) -> list[str]:
    """The model ids an image goes to, in order and without duplicates.

    Explicit ``model_ids`` win; otherwise the first matching rule decides.

    Raises:
        InputValidationError: ``MODEL_NO_ROUTE`` when nothing was asked and no rule matches.
        ResourceNotFoundError: ``MODEL_NOT_FOUND`` when ``known`` rejects a chosen id.
    """
    chosen: Sequence[str] = model_ids
    if not chosen:
        rule = next((r for r in rules.rules if r.matches(modality, body_part)), None)
        if rule is None:
            raise InputValidationError(
                ErrorCode.MODEL_NO_ROUTE,
                f"no model requested and no routing rule for modality {modality or 'unknown'}",
            )
        chosen = rule.models
    ordered = list(dict.fromkeys(chosen))
    if known is not None:
        unknown = [model_id for model_id in ordered if not known(model_id)]
        if unknown:
            raise ResourceNotFoundError(
                ErrorCode.MODEL_NOT_FOUND,
                f"model(s) {', '.join(m[:100] for m in unknown)} not registered"[:500],
            )
    return ordered
