"""Preprocessing against hand-computed arrays: windowing, normalisation, resizing, layout."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from schemas.errors import ErrorCode, InferenceError
from streams.inference.manifest import (
    InputSpec,
    MinMaxNormalisation,
    WindowNormalisation,
    ZScoreNormalisation,
)
from streams.inference.preprocessing import (
    normalise,
    preprocess,
    preprocess_batch,
    resample_matrix,
    resize,
)

pytestmark = pytest.mark.requirement("RS-INF-04")


def _spec(**overrides: Any) -> InputSpec:
    data: dict[str, Any] = {
        "channels": 1,
        "height": 2,
        "width": 2,
        "normalisation": {"kind": "minmax"},
    }
    data.update(overrides)
    return InputSpec.model_validate(data)


WINDOW = WindowNormalisation(kind="window", center=40.0, width=400.0)


class TestNormalise:
    """Windowing and normalisation of whole images."""

    def test_window_maps_edges_and_centre(self) -> None:
        """center-width/2 -> 0, center -> 0.5, center+width/2 -> 1, outside clipped."""
        hu = np.array([[-1000.0, -160.0], [40.0, 140.0], [240.0, 3000.0]])
        expected = np.array([[0.0, 0.0], [0.5, 0.75], [1.0, 1.0]])
        np.testing.assert_allclose(normalise(hu, WINDOW), expected)

    def test_minmax_maps_range_to_unit_interval(self) -> None:
        """Min-max: (x - 2) / 8 for values 2..10."""
        image = np.array([[2.0, 4.0], [6.0, 10.0]])
        expected = np.array([[0.0, 0.25], [0.5, 1.0]])
        np.testing.assert_allclose(normalise(image, MinMaxNormalisation(kind="minmax")), expected)

    def test_minmax_of_constant_image_is_zero(self) -> None:
        """A flat image becomes zeros instead of NaN."""
        result = normalise(np.full((3, 3), 7.0), MinMaxNormalisation(kind="minmax"))
        np.testing.assert_array_equal(result, np.zeros((3, 3)))

    def test_zscore_per_image(self) -> None:
        """Per-image z-score of [1, 3] is [-1, 1] (mean 2, population std 1)."""
        result = normalise(np.array([[1.0, 3.0]]), ZScoreNormalisation(kind="zscore"))
        np.testing.assert_allclose(result, [[-1.0, 1.0]])

    def test_zscore_of_constant_image_is_zero(self) -> None:
        """A flat image has no spread: zeros, not NaN."""
        result = normalise(np.full((2, 2), 5.0), ZScoreNormalisation(kind="zscore"))
        np.testing.assert_array_equal(result, np.zeros((2, 2)))

    def test_zscore_with_fixed_statistics(self) -> None:
        """Fixed mean 10 and std 5: 20 -> 2, 0 -> -2."""
        normalisation = ZScoreNormalisation(kind="zscore", mean=10.0, std=5.0)
        np.testing.assert_allclose(normalise(np.array([[20.0, 0.0]]), normalisation), [[2, -2]])

    @pytest.mark.parametrize(
        "normalisation",
        [WINDOW, MinMaxNormalisation(kind="minmax"), ZScoreNormalisation(kind="zscore")],
    )
    def test_the_input_is_left_as_it_was(self, normalisation: Any) -> None:
        """Normalising works in a new array: the decoded pixels stay for the next model."""
        image = np.array([[-500.0, 40.0], [300.0, 900.0]], dtype=np.float32)
        before = image.copy()
        result = normalise(image, normalisation)
        np.testing.assert_array_equal(image, before)
        assert not np.shares_memory(result, image)


class TestResample:
    """Resizing by matrices: area when shrinking, bilinear when enlarging."""

    def test_a_matrix_is_built_once_and_cannot_be_changed(self) -> None:
        """Every image of a size shares its matrix, so no caller may write into it."""
        assert resample_matrix(512, 64) is resample_matrix(512, 64)
        with pytest.raises(ValueError, match="read-only"):
            resample_matrix(512, 64)[0, 0] = 1.0
        with pytest.raises(ValueError, match="read-only"):
            resample_matrix(2, 5)[0, 0] = 1.0

    def test_same_size_is_identity(self) -> None:
        """No resize, no change."""
        np.testing.assert_array_equal(resample_matrix(3, 3), np.eye(3))

    def test_integer_shrink_averages_blocks(self) -> None:
        """4x4 to 2x2 gives the means of the four 2x2 blocks."""
        image = np.arange(16, dtype=np.float64).reshape(4, 4, 1)
        expected = np.array([[2.5, 4.5], [10.5, 12.5]])
        np.testing.assert_allclose(resize(image, 2, 2)[:, :, 0], expected)

    def test_fractional_shrink_weights_by_overlap(self) -> None:
        """3 pixels to 2: [a, b, c] -> [(2a+b)/3, (b+2c)/3]."""
        expected = np.array([[2 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 2 / 3]])
        np.testing.assert_allclose(resample_matrix(3, 2), expected)

    def test_enlarge_interpolates_between_centres(self) -> None:
        """[0, 4] to 4 pixels (half-pixel centres, clamped edges) -> [0, 1, 3, 4]."""
        row = np.array([[0.0, 4.0]])[:, :, np.newaxis]
        np.testing.assert_allclose(resize(row, 1, 4)[0, :, 0], [0.0, 1.0, 3.0, 4.0])

    def test_shrinking_preserves_the_mean(self) -> None:
        """Area interpolation keeps the mean intensity of the image."""
        image = np.random.default_rng(0).normal(size=(37, 53, 1))
        assert resize(image, 8, 8).mean() == pytest.approx(image.mean())


class TestPreprocess:
    """The whole declared pipeline for one image."""

    def test_ct_window_then_area_resize_in_nchw(self) -> None:
        """A 4x4 HU image: window to [0,1], then 2x2 block means (0.75+0.75+0+1)/4, as float32."""
        hu = np.array(
            [
                [-160, -160, 40, 40],
                [-160, -160, 40, 40],
                [240, 240, 140, 140],
                [240, 240, -1000, 3000],
            ],
            dtype=np.float32,
        )
        spec = _spec(normalisation={"kind": "window", "center": 40.0, "width": 400.0})
        result = preprocess(hu, spec)
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, [[[0.0, 0.5], [1.0, 0.625]]])

    def test_rgb_is_reduced_to_luma_for_one_channel(self) -> None:
        """Pure red, green, blue become their BT.601 luma weights."""
        rgb = np.zeros((2, 2, 3), dtype=np.float32)
        rgb[0, 0, 0] = rgb[0, 1, 1] = rgb[1, 0, 2] = 1.0
        spec = _spec(normalisation={"kind": "zscore", "mean": 0.0, "std": 1.0})
        np.testing.assert_allclose(
            preprocess(rgb, spec)[0], [[0.299, 0.587], [0.114, 0.0]], rtol=1e-6
        )

    def test_grey_is_replicated_for_three_channels(self) -> None:
        """A grey image fed to an RGB model repeats in every channel."""
        grey = np.array([[0.0, 1.0], [2.0, 4.0]])
        result = preprocess(grey, _spec(channels=3))
        assert result.shape == (3, 2, 2)
        for channel in result:
            np.testing.assert_allclose(channel, [[0.0, 0.25], [0.5, 1.0]])

    def test_rgb_kept_for_three_channels(self) -> None:
        """An RGB model keeps the channels apart."""
        rgb = np.zeros((2, 2, 3))
        rgb[..., 2] = 1.0
        spec = _spec(channels=3, normalisation={"kind": "zscore", "mean": 0.0, "std": 1.0})
        np.testing.assert_allclose(preprocess(rgb, spec)[:, 0, 0], [0.0, 0.0, 1.0])

    def test_nhwc_layout(self) -> None:
        """An NHWC model gets (H, W, C)."""
        result = preprocess(np.ones((4, 6)), _spec(height=3, width=5, layout="NHWC"))
        assert result.shape == (3, 5, 1)

    def test_integer_pixels_are_accepted(self) -> None:
        """uint16 pixels are converted, not refused."""
        result = preprocess(np.array([[0, 65535], [0, 65535]], dtype=np.uint16), _spec())
        np.testing.assert_allclose(result[0], [[0.0, 1.0], [0.0, 1.0]])

    def test_batch_stacks_on_first_axis(self) -> None:
        """preprocess_batch gives (N, C, H, W)."""
        batch = preprocess_batch([np.ones((4, 4)), np.zeros((8, 3))], _spec())
        assert batch.shape == (2, 1, 2, 2)
        assert batch.dtype == np.float32

    @pytest.mark.parametrize(
        "pixels",
        [
            np.zeros((4, 4, 4)),
            np.zeros(16),
            np.zeros((0, 4)),
            np.array([["a", "b"]]),
            np.array([[1.0, np.nan]]),
            np.array([[1.0, np.inf]]),
        ],
        ids=["rgba", "1d", "empty", "strings", "nan", "inf"],
    )
    def test_unusable_pixels_fail_with_code(self, pixels: np.ndarray) -> None:
        """Bad shapes, types and values raise INFERENCE_PREPROCESSING_FAILED."""
        with pytest.raises(InferenceError) as caught:
            preprocess(pixels, _spec())
        assert caught.value.code is ErrorCode.INFERENCE_PREPROCESSING_FAILED

    def test_oversized_image_is_refused_before_any_work(self) -> None:
        """An image above the pixel cap is refused (a zero-copy view, so no memory is used)."""
        huge = np.broadcast_to(np.float32(0), (8193, 8193))
        with pytest.raises(InferenceError, match="too large"):
            preprocess(huge, _spec())

    def test_numpy_failures_are_translated(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A ValueError from numpy inside a step becomes INFERENCE_PREPROCESSING_FAILED."""

        def broken(*_args: object) -> np.ndarray:
            raise ValueError("shapes")

        monkeypatch.setattr("streams.inference.preprocessing.resize", broken)
        with pytest.raises(InferenceError) as caught:
            preprocess(np.ones((2, 2)), _spec())
        assert caught.value.code is ErrorCode.INFERENCE_PREPROCESSING_FAILED
