"""Series and study completeness as an explicit state machine (pure: no clock, no I/O).

A study **opens** on its first instance and is ``receiving``. A series, and the study, **complete**
on the first of three rules (:class:`~schemas.studies.CompletionRule`):

1. ``expected_count`` — the sender gave the number of instances (per series or per study) and
   that many *distinct* instances arrived;
2. ``router_signal`` — the router published ``StudyTransferCompleted``: the study and all its
   open series complete at once. A signal with an ``instance_count`` the study has not reached
   yet waits for that count (and completes by this rule when it is reached); a signal without a
   count that overtakes every instance has nothing to complete and is ignored (the quiet period
   completes the study);
3. ``quiet_period`` — no new instance for the modality's quiet period (:class:`QuietPeriods`): a
   series after its own modality's period, the study after the longest period of its series.

Completing the study completes every series still open, by the same rule. Later rules never
complete a generation twice: the first rule wins, the others are no-ops.

**Duplicates** (the same SOP Instance UID again, anywhere in the study) are recognised and change
nothing. A **late instance** — a new one for a study already complete — *reopens* the study and
the series it belongs to: their generations go up by one (a series counts its own reopenings:
a late instance for a series completed while the study was still open reopens only the series),
and they complete again by the same rules (``StudyCompleted`` carries the new generation, and the
study results are computed again for it). Series the late instance does not belong to stay
complete.

The caller supplies every time (``at``/``now``): the state machine never reads a clock, so tests
drive it with any interleaving of arrivals, signals and ticks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Priority
from schemas.studies import (
    CompletionRule,
    SeriesCompleted,
    StudyCompleted,
    completion_id,
)

_PRIORITY_RANK = {Priority.ROUTINE: 0, Priority.URGENT: 1, Priority.STAT: 2}
# Instances without a series UID (PNG/JPEG from a router that knows none) form one series.
UNKNOWN_SERIES = "0"

CompletionEvent = SeriesCompleted | StudyCompleted


@dataclass(frozen=True, slots=True)
class QuietPeriods:
    """How long a series of each modality may stay silent before it counts as complete."""

    default_seconds: float
    by_modality: Mapping[str, float] = field(default_factory=dict)

    def seconds(self, modality: str | None) -> float:
        """The quiet period of ``modality`` (the default for an unknown or missing one)."""
        if modality is None:
            return self.default_seconds
        return self.by_modality.get(modality, self.default_seconds)


@dataclass(frozen=True, slots=True)
class InstanceArrival:
    """One image of a study arrived (from ``ImageArrived``; ``at`` is when it was consumed)."""

    study_instance_uid: str
    series_instance_uid: str | None
    instance_key: str
    at: datetime
    modality: str | None = None
    series_expected: int | None = None
    study_expected: int | None = None
    priority: Priority = Priority.ROUTINE


class _Generations(BaseModel):
    """What a series and a study share: numbered generations, each completed once by a rule."""

    model_config = ConfigDict(extra="forbid")

    generation: int = 1
    completed_by: CompletionRule | None = None
    completed_at: datetime | None = None

    @property
    def complete(self) -> bool:
        """Whether the current generation is complete."""
        return self.completed_by is not None

    def reopen(self) -> None:
        """Start the next generation: a new instance arrived after this one completed."""
        self.generation += 1
        self.completed_by = self.completed_at = None


class SeriesState(_Generations):
    """One series of a study: its distinct instances and whether its generation is complete."""

    series_instance_uid: str
    modality: str | None = None
    instances: list[str] = Field(default_factory=list)
    expected: int | None = None
    first_arrival_at: datetime
    last_arrival_at: datetime


class StudyState(_Generations):
    """The persisted state of one study: everything the rules need, and nothing of the patient."""

    study_instance_uid: str
    priority: Priority = Priority.ROUTINE
    series: dict[str, SeriesState] = Field(default_factory=dict)
    expected: int | None = None
    expected_from_signal: bool = False
    first_arrival_at: datetime | None = None
    last_arrival_at: datetime | None = None

    @property
    def instance_count(self) -> int:
        """The distinct instances received (every generation)."""
        return sum(len(series.instances) for series in self.series.values())

    def has_instance(self, key: str) -> bool:
        """Whether the instance was received before (a duplicate)."""
        return any(key in series.instances for series in self.series.values())

    def deadline(self, quiet: QuietPeriods) -> datetime | None:
        """When the next quiet period ends (a tick then completes something), or None."""
        if self.complete or self.last_arrival_at is None:
            return None
        ends = [
            series.last_arrival_at + timedelta(seconds=quiet.seconds(series.modality))
            for series in self.series.values()
            if not series.complete
        ]
        ends.append(self.last_arrival_at + timedelta(seconds=self.study_quiet_seconds(quiet)))
        return min(ends)

    def study_quiet_seconds(self, quiet: QuietPeriods) -> float:
        """The study's quiet period: the longest of its series' modalities."""
        return max(quiet.seconds(series.modality) for series in self.series.values())


def new_study(study_instance_uid: str) -> StudyState:
    """The state of a study nothing has arrived for yet."""
    return StudyState(study_instance_uid=study_instance_uid)


def apply_arrival(state: StudyState, arrival: InstanceArrival) -> list[CompletionEvent]:
    """Record one arrival in ``state`` (mutated); return the completions it caused.

    A duplicate changes nothing and returns nothing. A new instance of a complete study reopens
    it (and its series) as the next generation.
    """
    if state.has_instance(arrival.instance_key):
        return []
    series_uid = arrival.series_instance_uid or UNKNOWN_SERIES
    if state.complete:
        state.reopen()
        state.expected, state.expected_from_signal = None, False
    series = state.series.get(series_uid)
    if series is None:
        series = SeriesState(
            series_instance_uid=series_uid,
            modality=arrival.modality,
            first_arrival_at=arrival.at,
            last_arrival_at=arrival.at,
            generation=state.generation,
        )
        state.series[series_uid] = series
    elif series.complete:
        series.reopen()
    series.instances.append(arrival.instance_key)
    series.modality = series.modality or arrival.modality
    series.first_arrival_at = min(series.first_arrival_at, arrival.at)
    series.last_arrival_at = max(series.last_arrival_at, arrival.at)
    if arrival.series_expected is not None:
        series.expected = arrival.series_expected
    if arrival.study_expected is not None and not state.expected_from_signal:
        state.expected = arrival.study_expected
    if _PRIORITY_RANK[arrival.priority] > _PRIORITY_RANK[state.priority]:
        state.priority = arrival.priority
    state.first_arrival_at = min(state.first_arrival_at or arrival.at, arrival.at)
    state.last_arrival_at = max(state.last_arrival_at or arrival.at, arrival.at)

    events: list[CompletionEvent] = []
    if series.expected is not None and len(series.instances) >= series.expected:
        events.append(_complete_series(state, series, CompletionRule.EXPECTED_COUNT, arrival.at))
    if state.expected is not None and state.instance_count >= state.expected:
        rule = (
            CompletionRule.ROUTER_SIGNAL
            if state.expected_from_signal
            else CompletionRule.EXPECTED_COUNT
        )
        events += _complete_study(state, rule, arrival.at)
    return events


def apply_signal(
    state: StudyState, instance_count: int | None, at: datetime
) -> list[CompletionEvent]:
    """Record the router's ``StudyTransferCompleted``; return the completions it caused.

    A complete study ignores it (the first rule won). With an ``instance_count`` not reached yet
    the study waits for it; without one, the study completes with what it has — unless it has
    nothing yet, then the signal cannot say what to wait for and changes nothing.
    """
    if state.complete:
        return []
    if instance_count is not None and state.instance_count < instance_count:
        state.expected, state.expected_from_signal = instance_count, True
        return []
    if state.instance_count == 0:
        return []
    return _complete_study(state, CompletionRule.ROUTER_SIGNAL, at)


def apply_tick(state: StudyState, now: datetime, quiet: QuietPeriods) -> list[CompletionEvent]:
    """Complete what has been quiet for long enough at ``now``; return those completions."""
    if state.complete or state.last_arrival_at is None:
        return []
    events: list[CompletionEvent] = []
    if now - state.last_arrival_at >= timedelta(seconds=state.study_quiet_seconds(quiet)):
        return _complete_study(state, CompletionRule.QUIET_PERIOD, now)
    for series in state.series.values():
        quiet_for = timedelta(seconds=quiet.seconds(series.modality))
        if not series.complete and now - series.last_arrival_at >= quiet_for:
            events.append(_complete_series(state, series, CompletionRule.QUIET_PERIOD, now))
    return events


def _complete_series(
    state: StudyState, series: SeriesState, rule: CompletionRule, at: datetime
) -> SeriesCompleted:
    series.completed_by, series.completed_at = rule, at
    return SeriesCompleted(
        completion_id=completion_id(
            state.study_instance_uid, series.generation, series.series_instance_uid
        ),
        study_instance_uid=state.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        modality=series.modality,
        rule=rule,
        generation=series.generation,
        instance_count=len(series.instances),
        expected_instances=series.expected,
        first_arrival_at=series.first_arrival_at,
        last_arrival_at=series.last_arrival_at,
        completed_at=at,
    )


def _complete_study(state: StudyState, rule: CompletionRule, at: datetime) -> list[CompletionEvent]:
    events: list[CompletionEvent] = [
        _complete_series(state, series, rule, at)
        for series in state.series.values()
        if not series.complete
    ]
    state.completed_by, state.completed_at = rule, at
    if state.first_arrival_at is None or state.last_arrival_at is None:
        raise ValueError("a study completes with instances only")
    events.append(
        StudyCompleted(
            completion_id=completion_id(state.study_instance_uid, state.generation),
            study_instance_uid=state.study_instance_uid,
            rule=rule,
            generation=state.generation,
            series_count=len(state.series),
            instance_count=state.instance_count,
            priority=state.priority,
            first_arrival_at=state.first_arrival_at,
            last_arrival_at=state.last_arrival_at,
            completed_at=at,
        )
    )
    return events
