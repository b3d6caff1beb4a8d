"""Study results per model and decision support rules (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.errors import ErrorCode
from schemas.events import ModelRef, Priority
from schemas.studies import StudyResult
from streams.studies.aggregation import (
    CompletedStudy,
    InstanceOutcome,
    StudyInstance,
    aggregate_study,
    all_rejected,
)
from streams.studies.decision_support import (
    DecisionRule,
    ModelRules,
    load_decision_rules,
    study_findings,
)

pytestmark = pytest.mark.requirement("RS-STU-02", "RS-CDS-01")

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MODEL = ModelRef(name="m", version="1", weights_sha256="a" * 64, runtime="onnx", provider="cpu")
EVENTS = [uuid.UUID(int=i) for i in range(1, 4)]
STUDY = CompletedStudy(
    study_instance_uid="1.2.3",
    generation=1,
    priority=Priority.ROUTINE,
    completed_at=T0,
    instances=tuple(
        StudyInstance(instance_key=f"1.2.3.{i}", event_ids=(event,), sop_instance_uid=f"1.2.3.{i}")
        for i, event in enumerate(EVENTS)
    ),
)


def result(event: uuid.UUID, score: float) -> InstanceOutcome:
    return InstanceOutcome(
        event_id=event,
        model=MODEL,
        result_id=uuid.uuid4(),
        scores={"lesion": score},
        decision="lesion" if score >= 0.5 else "no_finding",
    )


class TestAggregation:
    def test_waits_for_every_instance(self) -> None:
        """No result while one instance has no outcome for the model."""
        outcomes = [result(EVENTS[0], 0.9), result(EVENTS[1], 0.2)]
        assert aggregate_study(STUDY, outcomes, now=T0, timed_out=False) == []

    def test_summarises_scores_and_failures(self) -> None:
        """A rejection for the model is a listed failure; positives, finding and top ranks."""
        outcomes = [
            result(EVENTS[0], 0.9),
            result(EVENTS[1], 0.2),
            InstanceOutcome(
                event_id=EVENTS[2], model_name="m", error_code="MODEL_INPUT_OUT_OF_DISTRIBUTION"
            ),
        ]
        (summary,) = aggregate_study(STUDY, outcomes, now=T0, timed_out=False)
        assert (summary.analysed_count, summary.positive_count, summary.finding) == (2, 1, "lesion")
        assert summary.max_score == pytest.approx(0.9)
        assert summary.decisions == {"lesion": 1, "no_finding": 1}
        assert [t.event_id for t in summary.top_instances] == EVENTS[:2]
        assert [f.error_code for f in summary.failures] == ["MODEL_INPUT_OUT_OF_DISTRIBUTION"]

    def test_timeout_lists_missing_instances(self) -> None:
        """After the analysis timeout the missing instances fail with STUDY_RESULT_MISSING."""
        (summary,) = aggregate_study(STUDY, [result(EVENTS[0], 0.1)], now=T0, timed_out=True)
        assert [f.error_code for f in summary.failures] == [ErrorCode.STUDY_RESULT_MISSING] * 2

    def test_done_models_are_skipped(self) -> None:
        """A model whose study result exists is not aggregated again."""
        outcomes = [result(event, 0.1) for event in EVENTS]
        assert (
            aggregate_study(STUDY, outcomes, now=T0, timed_out=False, done=frozenset({("m", "1")}))
            == []
        )

    def test_all_rejected_before_any_model(self) -> None:
        """Every instance rejected by validation: the study failed."""
        rejected = [InstanceOutcome(event_id=e, error_code="IMAGE_MALFORMED") for e in EVENTS]
        assert all_rejected(STUDY, rejected)
        assert not all_rejected(STUDY, rejected[:2])

    def test_a_rejected_copy_beside_an_analysed_resend_is_not_failed(self) -> None:
        """A corrupt copy, then a good resend of the same SOP instance: analysed, not failed."""
        corrupt, resent = uuid.UUID(int=10), uuid.UUID(int=11)
        study = CompletedStudy(
            study_instance_uid="1.2.3",
            generation=1,
            priority=Priority.ROUTINE,
            completed_at=T0,
            instances=(
                StudyInstance(
                    instance_key="1.2.3.9", event_ids=(corrupt, resent), sop_instance_uid="1.2.3.9"
                ),
            ),
        )
        outcomes = [
            InstanceOutcome(event_id=corrupt, error_code="PIXEL_DATA_TRUNCATED"),
            result(resent, 0.9),
        ]
        assert not all_rejected(study, outcomes)
        (summary,) = aggregate_study(study, outcomes, now=T0, timed_out=False)
        assert (summary.analysed_count, len(summary.failures)) == (1, 0)


class TestDecisionRules:
    def test_study_rule_needs_score_and_positive_images(self) -> None:
        """A study rule fires only with the score and enough positive images."""
        rules = {
            "m": ModelRules(
                rules=(
                    DecisionRule(
                        name="r",
                        finding="lesion",
                        level="study",
                        min_score=0.8,
                        min_positive_images=2,
                    ),
                )
            )
        }
        outcomes = [result(EVENTS[0], 0.9), result(EVENTS[1], 0.6), result(EVENTS[2], 0.1)]
        (summary,) = aggregate_study(STUDY, outcomes, now=T0, timed_out=False)
        (finding,) = study_findings(rules, summary, T0)
        assert (finding.finding, finding.rule, finding.level) == ("lesion", "r", "study")
        single: StudyResult = summary.model_copy(update={"positive_count": 1})
        assert study_findings(rules, single, T0) == []

    def test_shipped_rules_load(self) -> None:
        """The registry's rules files are valid; the reference lesion model has both levels."""
        rules = load_decision_rules(Path(__file__).resolve().parents[3] / "model_registry")
        assert {r.level for r in rules["lesion-detector"].rules} == {"image", "study"}

    def test_invalid_rules_file_is_refused(self, tmp_path: Path) -> None:
        """A rules file that is not a mapping fails loudly at start-up."""
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "decision_support.yaml").write_text("- a list\n")
        with pytest.raises(ValueError, match="must hold a mapping"):
            load_decision_rules(tmp_path)
