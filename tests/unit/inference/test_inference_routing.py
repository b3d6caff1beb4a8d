"""Routing: explicit model ids win, else the first matching rule; otherwise a coded rejection."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ErrorCode, InferenceError, InputValidationError, ResourceNotFoundError
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules, route

pytestmark = pytest.mark.requirement("RS-INF-03")

RULES = RoutingRules.parse(
    """
rules:
  - modality: CT
    body_part: CHEST
    models: [chest-ct, lesion-detector]
  - modality: CT
    models: [lesion-detector]
  - modality: MR
    body_part: HEAD
    models: [brain-mr@2.0.0]
"""
)


class TestRoute:
    """route() picks models for one image."""

    def test_explicit_ids_win_over_rules(self) -> None:
        """Ids named by the event are used as given, even when a rule matches."""
        assert route(["other-model@1.0.0"], "CT", "CHEST", RULES) == ["other-model@1.0.0"]

    def test_explicit_ids_are_deduplicated_in_order(self) -> None:
        """Repeated ids produce one result each, in first-seen order."""
        assert route(["b", "a", "b"], None, None, RULES) == ["b", "a"]

    def test_specific_rule_matches_body_part(self) -> None:
        """A CT of the chest takes the body-part rule."""
        assert route([], "CT", "CHEST", RULES) == ["chest-ct", "lesion-detector"]

    def test_body_part_is_case_insensitive(self) -> None:
        """BodyPartExamined is compared without case or surrounding spaces."""
        assert route([], "CT", " chest ", RULES) == ["chest-ct", "lesion-detector"]

    def test_other_body_part_falls_through_to_general_rule(self) -> None:
        """A CT of the abdomen takes the modality-only rule."""
        assert route([], "CT", "ABDOMEN", RULES) == ["lesion-detector"]

    def test_missing_body_part_does_not_match_a_body_part_rule(self) -> None:
        """Without a body part only modality-only rules can match."""
        assert route([], "CT", None, RULES) == ["lesion-detector"]

    def test_name_as_body_part_matches_no_body_part_rule(self) -> None:
        """A code-shaped name is no body part: only modality-only rules can match it."""
        assert route([], "CT", "CANARYDOE", RULES) == ["lesion-detector"]

    def test_no_route_reason_never_names_the_body_part(self) -> None:
        """MODEL_NO_ROUTE names the modality only; a name in the body part stays out."""
        with pytest.raises(InputValidationError) as caught:
            route([], "MR", "CANARYDOE", RULES)
        assert "CANARYDOE" not in caught.value.reason

    def test_pinned_version_in_rule(self) -> None:
        """Rules may pin a version."""
        assert route([], "MR", "HEAD", RULES) == ["brain-mr@2.0.0"]

    @pytest.mark.parametrize(
        ("modality", "body_part"), [("MR", "KNEE"), ("US", None), (None, None)]
    )
    def test_no_matching_rule_is_no_route(
        self, modality: str | None, body_part: str | None
    ) -> None:
        """Nothing requested and no rule: MODEL_NO_ROUTE (an input error)."""
        with pytest.raises(InputValidationError) as caught:
            route([], modality, body_part, RULES)
        assert caught.value.code is ErrorCode.MODEL_NO_ROUTE

    def test_unknown_explicit_model_is_not_found(self) -> None:
        """With a registry check, an unregistered id raises MODEL_NOT_FOUND naming it."""
        with pytest.raises(ResourceNotFoundError) as caught:
            route(["ghost"], "CT", None, RULES, known=lambda model_id: model_id != "ghost")
        assert caught.value.code is ErrorCode.MODEL_NOT_FOUND
        assert "ghost" in caught.value.reason

    def test_unknown_routed_model_is_not_found(self) -> None:
        """A rule naming an unregistered model fails the same way."""
        with pytest.raises(ResourceNotFoundError):
            route([], "CT", "CHEST", RULES, known=lambda model_id: model_id == "lesion-detector")


class TestRules:
    """Parsing and checking routing.yaml."""

    def test_committed_rules_name_only_registered_models(
        self, reference_rules: RoutingRules, reference_registry: ModelRegistry
    ) -> None:
        """The shipped routing.yaml routes CT to both reference models, MR and US to one."""
        assert reference_rules.unknown_models(reference_registry.knows) == []
        assert route([], "CT", None, reference_rules) == ["lesion-detector", "image-quality"]
        assert route([], "MR", None, reference_rules) == ["image-quality"]
        assert route([], "US", None, reference_rules) == ["image-quality"]

    def test_unknown_models_lists_the_strangers(self) -> None:
        """The start-up check reports ids the registry does not know."""
        assert RULES.unknown_models(lambda m: m == "lesion-detector") == [
            "brain-mr@2.0.0",
            "chest-ct",
        ]

    def test_empty_file_means_no_rules(self) -> None:
        """An empty rules file is valid and routes nothing."""
        assert RoutingRules.parse("rules: []\n").rules == ()

    @pytest.mark.parametrize(
        "text",
        [
            "rules: [",
            "rules:\n  - modality: ct\n    models: [m]\n",
            "rules:\n  - modality: CT\n    models: [Not A Model]\n",
            "rules:\n  - modality: CT\n    models: []\n",
            "rules:\n  - modality: CT\n    model: [m]\n",
            "routes: []\n",
        ],
    )
    def test_invalid_rules_are_refused(self, text: str) -> None:
        """Syntax errors, bad modality codes, bad ids, empty lists and unknown keys fail."""
        with pytest.raises(InferenceError) as caught:
            RoutingRules.parse(text)
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED

    def test_rule_body_part_is_kept_as_the_defined_term(self) -> None:
        """A rule may write a body part in any case; it is held, and matched, in upper case."""
        rules = RoutingRules.parse(
            "rules:\n  - modality: CT\n    body_part: chest\n    models: [m]\n"
        )
        assert rules.rules[0].body_part == "CHEST"
        assert route([], "CT", "CHEST", rules) == ["m"]

    def test_rule_body_part_that_is_no_defined_term_is_refused(self) -> None:
        """A rule naming a non-term could never match: a load failure that names it."""
        text = "rules:\n  - modality: CT\n    body_part: LUNGS\n    models: [m]\n"
        with pytest.raises(
            InferenceError, match="'LUNGS' is not a DICOM Body Part Examined"
        ) as caught:
            RoutingRules.parse(text)
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED

    def test_rule_modality_that_is_no_defined_term_is_refused(self) -> None:
        """A rule for modality "XR" (not a DICOM term; CR/DX are) could never match."""
        text = "rules:\n  - modality: XR\n    models: [m]\n"
        with pytest.raises(InferenceError, match="'XR' is not a DICOM modality defined term"):
            RoutingRules.parse(text)

    def test_missing_file_is_a_load_failure(self, tmp_path: Path) -> None:
        """An absent rules file raises MODEL_LOAD_FAILED."""
        with pytest.raises(InferenceError, match="unreadable"):
            RoutingRules.load(tmp_path / "routing.yaml")
