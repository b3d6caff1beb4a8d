"""The completeness state machine: every rule, duplicates, late instances, any interleaving."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Priority
from schemas.studies import CompletionRule, SeriesCompleted, StudyCompleted
from streams.studies.completeness import (
    UNKNOWN_SERIES,
    CompletionEvent,
    InstanceArrival,
    QuietPeriods,
    StudyState,
    apply_arrival,
    apply_signal,
    apply_tick,
    new_study,
)

pytestmark = pytest.mark.requirement("RS-STU-01")

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
STUDY = "1.2.3"
QUIET = QuietPeriods(default_seconds=30.0, by_modality={"CT": 10.0, "MR": 60.0})


def arrival(
    sop: str,
    seconds: float = 0.0,
    *,
    series: str | None = "1.2.3.1",
    modality: str | None = "CT",
    series_expected: int | None = None,
    study_expected: int | None = None,
    priority: Priority = Priority.ROUTINE,
) -> InstanceArrival:
    return InstanceArrival(
        study_instance_uid=STUDY,
        series_instance_uid=series,
        instance_key=sop,
        at=T0 + timedelta(seconds=seconds),
        modality=modality,
        series_expected=series_expected,
        study_expected=study_expected,
        priority=priority,
    )


def studies_of(events: list[CompletionEvent]) -> list[StudyCompleted]:
    return [e for e in events if isinstance(e, StudyCompleted)]


def series_of(events: list[CompletionEvent]) -> list[SeriesCompleted]:
    return [e for e in events if isinstance(e, SeriesCompleted)]


class TestExpectedCount:
    def test_series_completes_when_its_expected_count_arrives(self) -> None:
        """The series completes on its last expected instance, the study stays open."""
        state = new_study(STUDY)
        assert apply_arrival(state, arrival("1", series_expected=2)) == []
        events = apply_arrival(state, arrival("2", 1, series_expected=2))
        assert [(e.rule, e.instance_count) for e in series_of(events)] == [
            (CompletionRule.EXPECTED_COUNT, 2)
        ]
        assert studies_of(events) == []
        assert not state.complete

    def test_study_completes_on_its_expected_count_with_open_series(self) -> None:
        """The study count completes the study and every series still open, by that rule."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1", study_expected=2))
        events = apply_arrival(state, arrival("2", 1, series="9.9", study_expected=2))
        assert [e.rule for e in events] == [CompletionRule.EXPECTED_COUNT] * 3
        assert studies_of(events)[0].series_count == 2
        assert state.complete


class TestRouterSignal:
    def test_signal_completes_the_study_with_what_arrived(self) -> None:
        """A signal without a count completes the study and its open series at once."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1"))
        events = apply_signal(state, None, T0 + timedelta(seconds=1))
        assert [e.rule for e in events] == [CompletionRule.ROUTER_SIGNAL] * 2

    def test_signal_with_a_count_waits_for_it(self) -> None:
        """A signal that overtook instances waits for its count, then completes by its rule."""
        state = new_study(STUDY)
        assert apply_signal(state, 2, T0) == []
        assert apply_arrival(state, arrival("1", 1)) == []
        events = apply_arrival(state, arrival("2", 2))
        assert studies_of(events)[0].rule is CompletionRule.ROUTER_SIGNAL

    def test_signal_for_an_empty_study_without_count_changes_nothing(self) -> None:
        """Nothing to complete and nothing to wait for: the quiet period decides later."""
        state = new_study(STUDY)
        assert apply_signal(state, None, T0) == []
        assert state.expected is None

    def test_signal_after_completion_is_ignored(self) -> None:
        """The first rule wins: a later signal completes nothing twice."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1", study_expected=1))
        assert apply_signal(state, None, T0 + timedelta(seconds=5)) == []


class TestQuietPeriod:
    def test_series_completes_after_its_modality_quiet_period(self) -> None:
        """A CT series (10 s) completes while an MR series (60 s) keeps the study open."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1"))
        apply_arrival(state, arrival("2", series="4.5", modality="MR"))
        assert apply_tick(state, T0 + timedelta(seconds=9.9), QUIET) == []
        events = apply_tick(state, T0 + timedelta(seconds=10), QUIET)
        assert [(e.series_instance_uid, e.rule) for e in series_of(events)] == [
            ("1.2.3.1", CompletionRule.QUIET_PERIOD)
        ]
        assert state.deadline(QUIET) == T0 + timedelta(seconds=60)
        events = apply_tick(state, T0 + timedelta(seconds=60), QUIET)
        assert [type(e) for e in events] == [SeriesCompleted, StudyCompleted]

    def test_unknown_modality_and_series_use_the_defaults(self) -> None:
        """No modality: the default period; no series UID: one series for those instances."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1", series=None, modality=None))
        assert list(state.series) == [UNKNOWN_SERIES]
        assert state.deadline(QUIET) == T0 + timedelta(seconds=30)

    def test_complete_study_has_no_deadline(self) -> None:
        """Nothing is waited for once complete, and ticks do nothing."""
        state = new_study(STUDY)
        assert state.deadline(QUIET) is None
        assert apply_tick(state, T0, QUIET) == []
        apply_arrival(state, arrival("1", study_expected=1))
        assert state.deadline(QUIET) is None
        assert apply_tick(state, T0 + timedelta(days=1), QUIET) == []


class TestDuplicatesAndLateInstances:
    def test_duplicate_changes_nothing(self) -> None:
        """The same SOP Instance UID again, even in another series, is recognised."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1", study_expected=2))
        before = state.model_dump()
        assert apply_arrival(state, arrival("1", 5, series="7.7", study_expected=2)) == []
        assert state.model_dump() == before

    def test_late_instance_reopens_as_the_next_generation(self) -> None:
        """A new instance after completion reopens the study and its series, not the others."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1"))
        apply_arrival(state, arrival("2", series="5.5"))
        apply_signal(state, None, T0)
        assert apply_arrival(state, arrival("3", 20)) == []
        assert state.generation == 2
        assert not state.complete
        assert state.series["5.5"].complete
        events = apply_tick(state, T0 + timedelta(seconds=40), QUIET)
        study = studies_of(events)[0]
        assert (study.generation, study.instance_count) == (2, 3)
        assert [e.series_instance_uid for e in series_of(events)] == ["1.2.3.1"]
        assert (
            study.completion_id
            != studies_of(apply_arrival(new_study(STUDY), arrival("1", study_expected=1)))[
                0
            ].completion_id
        )

    def test_priority_is_the_highest_seen(self) -> None:
        """One stat image makes the study stat; routine ones after it do not lower it."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1", priority=Priority.STAT))
        apply_arrival(state, arrival("2", priority=Priority.ROUTINE, study_expected=2))
        assert state.priority is Priority.STAT

    def test_state_survives_serialisation(self) -> None:
        """What is persisted is read back to the same state (restart safety)."""
        state = new_study(STUDY)
        apply_arrival(state, arrival("1", series_expected=3))
        restored = StudyState.model_validate_json(state.model_dump_json())
        assert restored == state
        assert apply_arrival(restored, arrival("1")) == []


# ------------------------------------------------------------------------ property tests
Step = tuple[str, int, int]  # ("arrive", instance index, seconds) | ("signal"|"tick", 0, seconds)


@dataclass(frozen=True)
class Scenario:
    """A drawn delivery of a study: its (series, SOP) instances and the steps delivering them."""

    instances: list[tuple[str, str]]
    steps: list[Step]
    use_counts: bool
    signal_count: bool


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A study of 1-3 series, delivered in any order with duplicates, ticks and signals."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    instances = [(f"1.{s}", f"1.{s}.{i}") for s, size in enumerate(sizes) for i in range(size)]
    order = draw(st.permutations(range(len(instances))))
    duplicates = draw(st.lists(st.sampled_from(range(len(instances))), max_size=5))
    arrivals = list(order)
    for dup in duplicates:
        arrivals.insert(draw(st.integers(0, len(arrivals))), dup)
    steps: list[Step] = []
    clock = 0
    for index in arrivals:
        clock += draw(st.integers(0, 40))
        steps.append(("arrive", index, clock))
        if draw(st.booleans()):
            steps.append(("tick", 0, clock + draw(st.integers(0, 70))))
        if draw(st.integers(0, 9)) == 0:
            steps.append(("signal", 0, clock))
    use_counts = draw(st.booleans())
    signal_count = draw(st.booleans())
    return Scenario(instances, steps, use_counts, signal_count)


def run(scenario: Scenario) -> tuple[StudyState, list[CompletionEvent], list[int]]:
    """Drive the machine; return the state, every completion and the generation at each step."""
    instances = scenario.instances
    state = new_study(STUDY)
    events: list[CompletionEvent] = []
    per_series = {s: sum(1 for x, _ in instances if x == s) for s, _ in instances}
    now = T0
    generations = []
    for kind, index, seconds in scenario.steps:
        now = max(now, T0 + timedelta(seconds=seconds))
        if kind == "arrive":
            series, sop = instances[index]
            events += apply_arrival(
                state,
                InstanceArrival(
                    study_instance_uid=STUDY,
                    series_instance_uid=series,
                    instance_key=sop,
                    at=now,
                    modality="CT" if series.endswith("0") else "MR",
                    series_expected=per_series[series] if scenario.use_counts else None,
                ),
            )
        elif kind == "tick":
            events += apply_tick(state, now, QUIET)
        else:
            events += apply_signal(state, len(instances) if scenario.signal_count else None, now)
        generations.append(state.generation)
    events += apply_tick(state, now + timedelta(days=1), QUIET)
    return state, events, generations


class TestAnyInterleaving:
    @settings(max_examples=120, deadline=None)
    @given(scenarios())
    def test_exactly_one_completion_per_study_generation(self, scenario: Scenario) -> None:
        """Every generation completes exactly once, generations are 1..n, the last has all."""
        state, events, _ = run(scenario)
        completions = studies_of(events)
        assert [c.generation for c in completions] == list(range(1, state.generation + 1))
        assert len({c.completion_id for c in completions}) == len(completions)
        assert completions[-1].instance_count == len(scenario.instances)
        assert state.complete

    @settings(max_examples=120, deadline=None)
    @given(scenarios())
    def test_exactly_one_completion_per_series_generation(self, scenario: Scenario) -> None:
        """No series completes twice in one generation; each ends complete with all it got."""
        state, events, _ = run(scenario)
        keys = [(e.series_instance_uid, e.generation) for e in series_of(events)]
        assert len(keys) == len(set(keys))
        for uid, series in state.series.items():
            assert series.complete
            assert sorted(series.instances) == sorted(
                sop for s, sop in scenario.instances if s == uid
            )
            assert (uid, series.generation) in keys

    @settings(max_examples=80, deadline=None)
    @given(scenarios())
    def test_duplicates_never_complete_or_reopen(self, scenario: Scenario) -> None:
        """Replaying every arrival again after the end changes nothing (redelivery is safe)."""
        state, _, _ = run(scenario)
        before = state.model_dump()
        for series, sop in scenario.instances:
            assert apply_arrival(state, arrival(sop, 10**6, series=series)) == []
        assert state.model_dump() == before

    @settings(max_examples=80, deadline=None)
    @given(scenarios())
    def test_generation_only_grows_on_a_new_instance_after_completion(
        self, scenario: Scenario
    ) -> None:
        """Reopenings are bounded by the distinct instances: duplicates never reopen."""
        state, _, generations = run(scenario)
        assert generations == sorted(generations)
        assert state.generation <= len(scenario.instances)
