"""The input guard: statistics of the preprocessed tensor, and refusal outside the trained range."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from schemas.errors import ErrorCode, InferenceError, InputValidationError
from streams.inference.batching import infer_batch
from streams.inference.input_guard import (
    check_in_distribution,
    input_statistics,
    out_of_range,
)
from streams.inference.manifest import InputStatistic, parse_manifest
from tests.unit.inference.inference_builders import (
    NO_RULES,
    FakeRunner,
    fake_registry,
    make_manifest,
    make_request,
    manifest_data,
)

pytestmark = pytest.mark.requirement("RS-MOD-02")

S = InputStatistic


def _guarded(**ranges: tuple[float, float]) -> dict[str, object]:
    data = manifest_data()
    data["input"]["expected_statistics"] = {
        name: {"min": low, "max": high} for name, (low, high) in ranges.items()
    }
    return data


class TestStatistics:
    """What input_statistics computes, on tensors whose answers are known."""

    def test_values_of_a_known_tensor(self) -> None:
        """Mean, std, clipped shares and the neighbour gradient of a 2x2 tensor."""
        tensor = np.array([[[0.0, 1.0], [0.0, 1.0]]], dtype=np.float32)  # (C=1, H=2, W=2)
        stats = input_statistics(tensor, "NCHW")
        assert stats[S.MEAN] == pytest.approx(0.5)
        assert stats[S.STD] == pytest.approx(0.5)
        assert stats[S.FRACTION_LOW] == pytest.approx(0.5)
        assert stats[S.FRACTION_HIGH] == pytest.approx(0.5)
        # rows: |0-0|, |1-1| = 0; columns: |1-0| twice = 1; mean of the two axis means = 0.5
        assert stats[S.GRADIENT] == pytest.approx(0.5)

    def test_layout_decides_the_spatial_axes(self) -> None:
        """The same image gives the same statistics in NCHW and NHWC."""
        rng = np.random.default_rng(7)
        image = rng.random((5, 7, 3), dtype=np.float32)
        nhwc = input_statistics(image, "NHWC")
        nchw = input_statistics(np.transpose(image, (2, 0, 1)), "NCHW")
        assert nhwc == pytest.approx(nchw)

    def test_a_single_pixel_has_no_gradient(self) -> None:
        """A 1x1 image has gradient 0, not NaN."""
        stats = input_statistics(np.full((1, 1, 1), 0.3, dtype=np.float32), "NCHW")
        assert stats[S.GRADIENT] == 0.0
        assert all(np.isfinite(list(stats.values())))

    def test_noise_raises_the_gradient(self) -> None:
        """The gradient statistic grows with noise (it is what drift of noise shows in)."""
        rng = np.random.default_rng(1)
        smooth = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (1, 32, 1))
        noisy = smooth + rng.normal(0, 0.1, smooth.shape).astype(np.float32)
        assert (
            input_statistics(noisy, "NCHW")[S.GRADIENT]
            > 3 * input_statistics(smooth, "NCHW")[S.GRADIENT]
        )


class TestManifestRanges:
    """expected_statistics in the manifest."""

    def test_ranges_parse_by_statistic_name(self) -> None:
        """Ranges are keyed by statistic names and keep their bounds."""
        manifest = parse_manifest(yaml.safe_dump(_guarded(mean=(0.1, 0.4))))
        assert manifest.input.expected_statistics[S.MEAN].max == 0.4

    def test_unknown_statistic_is_refused(self) -> None:
        """A statistic the guard cannot compute is a manifest error, not silently ignored."""
        with pytest.raises(InferenceError, match="expected_statistics"):
            parse_manifest(yaml.safe_dump(_guarded(median=(0.0, 1.0))))

    def test_inverted_range_is_refused(self) -> None:
        """min above max is refused."""
        with pytest.raises(InferenceError, match="min <= max"):
            parse_manifest(yaml.safe_dump(_guarded(std=(0.5, 0.1))))


class TestGuard:
    """check_in_distribution and the outcome infer_batch gives."""

    def test_inside_every_range_passes(self) -> None:
        """Statistics inside all declared ranges raise nothing."""
        manifest = make_manifest(**_guarded(mean=(0.0, 1.0), std=(0.0, 1.0)))
        stats = dict.fromkeys(S, 0.5)
        assert out_of_range(stats, manifest.input) == []
        check_in_distribution(stats, manifest)

    def test_bounds_are_inclusive(self) -> None:
        """A value equal to a bound is inside."""
        manifest = make_manifest(**_guarded(mean=(0.2, 0.4)))
        assert out_of_range({**dict.fromkeys(S, 0.0), S.MEAN: 0.4}, manifest.input) == []

    def test_outside_raises_out_of_distribution_naming_the_statistic(self) -> None:
        """The error names the statistic, its value and the range, with the stable code."""
        manifest = make_manifest(**_guarded(mean=(0.1, 0.2), fraction_high=(0.0, 0.01)))
        stats = {**dict.fromkeys(S, 0.0), S.MEAN: 0.15, S.FRACTION_HIGH: 0.064}
        with pytest.raises(InputValidationError) as caught:
            check_in_distribution(stats, manifest)
        assert caught.value.code is ErrorCode.MODEL_INPUT_OUT_OF_DISTRIBUTION
        assert "fraction_high 0.064 not in [0, 0.01]" in caught.value.reason
        assert "mean" not in caught.value.reason
        assert caught.value.http_status == 422
        assert not caught.value.retryable

    def test_no_declared_ranges_accept_everything(self) -> None:
        """A manifest without expected_statistics has no guard."""
        manifest = make_manifest()
        check_in_distribution(dict.fromkeys(S, 1000000000.0), manifest)

    def test_batch_refuses_only_the_out_of_distribution_image(self) -> None:
        """The odd image fails alone with statistics attached; the model never sees it."""
        runner = FakeRunner()
        # min-max normalised 4x4 ramps have mean 0.5; a constant image normalises to zeros
        registry = fake_registry((make_manifest(**_guarded(mean=(0.4, 0.6))), runner))
        flat = np.full((4, 4), 7.0, dtype=np.float32)
        outcomes = infer_batch(
            [
                make_request(model_ids=("fake-model",)),
                make_request(flat, model_ids=("fake-model",)),
            ],
            registry,
            NO_RULES,
        )
        assert outcomes[0].ok
        assert outcomes[1].error is not None
        assert outcomes[1].error.code is ErrorCode.MODEL_INPUT_OUT_OF_DISTRIBUTION
        assert outcomes[1].model_id == "fake-model@1.0.0"
        assert outcomes[1].input_statistics is not None
        assert outcomes[1].input_statistics[S.MEAN] == 0.0
        assert runner.batch_sizes == [1]

    def test_results_carry_their_input_statistics(self) -> None:
        """A scored image's outcome has the statistics drift monitoring observes."""
        registry = fake_registry((make_manifest(), FakeRunner()))
        (outcome,) = infer_batch([make_request(model_ids=("fake-model",))], registry, NO_RULES)
        assert outcome.input_statistics is not None
        assert outcome.input_statistics[S.MEAN] == pytest.approx(0.5)
