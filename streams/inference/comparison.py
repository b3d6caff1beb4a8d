"""Compare a shadow or canary version with the active one, from the results both stored.

:func:`compare_versions` is a pure function over stored rows: results (one per image and model
version) and failures (rejections naming a model version). It pairs the two versions' results
by the image's event id, so agreement and score deltas are measured on the same images, and
summarises each version's failures and latency over everything it was given. The results
repository's rows (``InferenceResultRecord``) and lifecycle rows (``LifecycleEntry``) satisfy the
two protocols as they are, so the API and CLI only have to select the rows.

:func:`pair_live_outcomes` is the live counterpart, for metrics: over one batch's outcomes
(the inference stage runs the published and shadow versions on the same image in one batch) it
pairs each image's active-version outcome with every other version of the same model that ran
on it, a shadow's, or a canary's on a canary study (where the active version runs in shadow).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from schemas.events import join_model_id
from schemas.rollout import (
    DecisionPair,
    LatencySummary,
    PairAgreement,
    ScoreDelta,
    VersionComparison,
    VersionOutcomes,
)

if TYPE_CHECKING:  # the stage's outcome type; importing it would load the ONNX runtime
    from streams.inference.batching import InferenceOutcome


class StoredResult(Protocol):
    """A stored inference result, as far as the comparison reads it."""

    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def model_name(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def decision(self) -> str: ...
    @property
    def scores(self) -> Mapping[str, float]: ...
    @property
    def inference_seconds(self) -> float: ...


class StoredFailure(Protocol):
    """A stored rejection of an image by a model version (other rejections are ignored)."""

    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def model_name(self) -> str | None: ...
    @property
    def model_version(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


def _outcomes(
    model_id: str,
    results: Mapping[uuid.UUID, StoredResult],
    failures: Mapping[uuid.UUID, str],
) -> VersionOutcomes:
    # An image that failed once and then got a result (a retry) counts as a result only.
    failed = {event: code for event, code in failures.items() if event not in results}
    attempts = len(results) + len(failed)
    latencies = [r.inference_seconds for r in results.values()]
    return VersionOutcomes(
        model_id=model_id,
        results=len(results),
        failures=len(failed),
        failures_by_code=dict(sorted(Counter(failed.values()).items())),
        failure_rate=len(failed) / attempts if attempts else None,
        latency=LatencySummary(
            count=len(latencies),
            p50_seconds=_quantile(latencies, 0.5),
            p95_seconds=_quantile(latencies, 0.95),
        ),
    )


def _score_deltas(
    pairs: list[tuple[StoredResult, StoredResult]],
) -> tuple[ScoreDelta, ...]:
    labels = sorted(
        {label for base, cand in pairs for label in base.scores if label in cand.scores}
    )
    deltas = []
    for label in labels:
        values = np.array(
            [
                cand.scores[label] - base.scores[label]
                for base, cand in pairs
                if label in base.scores and label in cand.scores
            ]
        )
        magnitude = np.abs(values)
        deltas.append(
            ScoreDelta(
                label=label,
                pairs=len(values),
                mean_delta=float(values.mean()),
                mean_abs_delta=float(magnitude.mean()),
                p95_abs_delta=float(np.quantile(magnitude, 0.95)),
                max_abs_delta=float(magnitude.max()),
            )
        )
    return tuple(deltas)


def compare_versions(
    baseline: str,
    candidate: str,
    results: Iterable[StoredResult],
    failures: Iterable[StoredFailure] = (),
) -> VersionComparison:
    """The comparison of ``candidate`` against ``baseline`` (both ``name@version``).

    Rows of other versions are ignored, so the caller may pass everything stored for a period.
    When a version has several results for one image (a redelivered event), the last one given
    counts.
    """
    wanted = {baseline, candidate}
    by_version: dict[str, dict[uuid.UUID, StoredResult]] = {baseline: {}, candidate: {}}
    for result in results:
        model_id = join_model_id(result.model_name, result.model_version)
        if model_id in wanted:
            by_version[model_id][result.event_id] = result
    failed: dict[str, dict[uuid.UUID, str]] = {baseline: {}, candidate: {}}
    for failure in failures:
        if failure.model_name is None or not failure.error_code:
            continue  # a step of no model, or one that did not fail: nothing to compare
        model_id = join_model_id(failure.model_name, failure.model_version)
        if model_id in wanted:
            failed[model_id][failure.event_id] = failure.error_code
    base, cand = by_version[baseline], by_version[candidate]
    pairs = [(base[event], cand[event]) for event in sorted(base.keys() & cand.keys())]
    decisions = Counter((b.decision, c.decision) for b, c in pairs)
    agreeing = sum(count for (b, c), count in decisions.items() if b == c)
    return VersionComparison(
        baseline=_outcomes(baseline, base, failed[baseline]),
        candidate=_outcomes(candidate, cand, failed[candidate]),
        paired_images=len(pairs),
        agreement=agreeing / len(pairs) if pairs else None,
        decisions=tuple(
            DecisionPair(baseline=b, candidate=c, images=count)
            for (b, c), count in sorted(decisions.items(), key=lambda item: (-item[1], item[0]))
        ),
        score_deltas=_score_deltas(pairs),
    )


@dataclass(frozen=True, slots=True)
class LivePair:
    """One image handled by the active version (baseline) and another version (candidate)."""

    model: str
    baseline_version: str
    candidate_version: str
    agreement: PairAgreement
    score_deltas: Mapping[str, float]  # candidate - baseline, per label both scored


def _agreement(baseline: InferenceOutcome, candidate: InferenceOutcome) -> PairAgreement:
    base, cand = baseline.result, candidate.result
    if base is None:
        return PairAgreement.BOTH_FAILED if cand is None else PairAgreement.BASELINE_FAILED
    if cand is None:
        return PairAgreement.CANDIDATE_FAILED
    return PairAgreement.AGREE if base.decision == cand.decision else PairAgreement.DISAGREE


def pair_live_outcomes(
    outcomes: Sequence[InferenceOutcome], is_active: Callable[[str, str], bool]
) -> list[LivePair]:
    """Pairs of outcomes on the same image: the active version's with each other version's.

    ``is_active(name, version)`` says which version is the baseline. Outcomes are grouped by
    their request (one image as delivered) and model name; only outcomes of a resolved
    ``name@version`` count. A group without the active version's outcome (an event pinning a
    version) yields nothing. Pairs come in the order the outcomes were given.
    """
    groups: dict[tuple[int, str], list[tuple[str, InferenceOutcome]]] = {}
    for outcome in outcomes:
        name, _, version = (outcome.model_id or "").partition("@")
        if version:
            groups.setdefault((id(outcome.request), name), []).append((version, outcome))
    pairs = []
    for (_, name), members in groups.items():
        baseline = next(((v, o) for v, o in members if is_active(name, v)), None)
        if baseline is None:
            continue
        base_version, base = baseline
        for version, candidate in members:
            if candidate is base:
                continue
            deltas = {}
            if base.result is not None and candidate.result is not None:
                base_scores = base.result.scores
                deltas = {
                    label: score - base_scores[label]
                    for label, score in sorted(candidate.result.scores.items())
                    if label in base_scores
                }
            pairs.append(LivePair(name, base_version, version, _agreement(base, candidate), deltas))
    return pairs


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def render_comparison(report: VersionComparison) -> list[str]:
    """The report as text lines for ``radstream models compare`` (no patient data in it)."""
    base, cand = report.baseline, report.candidate
    window = (
        f"{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
        if report.since and report.until
        else "everything given"
    )
    lines = [
        f"{cand.model_id} (candidate) against {base.model_id} (baseline), {window}"
        + (" - truncated to the newest rows" if report.truncated else ""),
        f"  paired images  {report.paired_images}",
        f"  agreement      {_share(report.agreement)}",
    ]
    for version in (base, cand):
        codes = ", ".join(f"{code} {count}" for code, count in version.failures_by_code.items())
        lines.append(
            f"  {version.model_id}: {version.results} results, {version.failures} failures"
            f" ({_share(version.failure_rate)}{'; ' + codes if codes else ''}),"
            f" latency p50 {_seconds(version.latency.p50_seconds)}"
            f" p95 {_seconds(version.latency.p95_seconds)}"
        )
    if report.decisions:
        lines.append("  decisions (baseline -> candidate: images)")
        lines += [f"    {d.baseline} -> {d.candidate}: {d.images}" for d in report.decisions]
    if report.score_deltas:
        lines.append("  score deltas (candidate - baseline)")
        lines += [
            f"    {d.label}: mean {d.mean_delta:+.3f}, mean |d| {d.mean_abs_delta:.3f},"
            f" p95 |d| {d.p95_abs_delta:.3f}, max |d| {d.max_abs_delta:.3f} ({d.pairs} pairs)"
            for d in report.score_deltas
        ]
    return lines
