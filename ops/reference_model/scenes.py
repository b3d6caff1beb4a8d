"""Synthetic grey-level scenes with a known amount of noise, for the image-quality model.

Each scene is a piecewise-smooth image of the kind medical images are made of: a background
level, in half of the scenes a large bright "body", 3 to 13 overlapping ellipses of random
size, orientation and intensity (sharp
boundaries softened by a small point-spread function), a smooth texture and a smooth intensity
bias, in arbitrary units (random gain and offset, as CT, MR and 8-bit exports differ). Then
white Gaussian noise is added.

The label is about the noise *as the model sees it*: the model looks at the image area-resized
to 64x64, which averages ``k x k`` pixels (``k`` = native size / 64) and so divides white noise
by ``k``. ``relative_noise`` = noise standard deviation at 64x64 / the clean image's contrast
(its 1st-99th percentile range); an image is ``noisy`` from :data:`NOISY_FROM` (4 %). Half the
scenes draw their noise below that threshold, half above, continuously across it. Everything
comes from one seeded generator. Synthetic data: no real image is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streams.inference.preprocessing import resample_matrix

MODEL_SIZE = 64
SIZES = ((64, 64), (96, 96), (128, 128), (128, 160), (192, 192), (256, 256), (240, 320))
NOISY_FROM = 0.04
ACCEPTABLE_NOISE = (0.0, NOISY_FROM)
NOISY_NOISE = (NOISY_FROM, 0.12)
PSF_PIXELS = (0.4, 1.0)  # the imaging system's own blur, in native pixels


@dataclass(frozen=True, slots=True)
class Scene:
    """One synthetic image (float32, shape (H, W)), its relative noise and its label."""

    pixels: np.ndarray
    relative_noise: float
    noisy: bool


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur of ``image`` by ``sigma`` pixels (edges extended)."""
    half = max(1, math.ceil(3 * sigma))
    taps = np.exp(-(np.arange(-half, half + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    height, width = image.shape
    padded = np.pad(image, half, mode="edge")
    rows = sum(tap * padded[i : i + height, :] for i, tap in enumerate(taps))
    return np.asarray(sum(tap * rows[:, i : i + width] for i, tap in enumerate(taps)))


def smooth_texture(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Unit-variance smooth random texture with features about ``scale`` pixels across.

    Random values on a coarse grid, enlarged bilinearly (the pipeline's own resampling).
    """
    grid = rng.normal(0.0, 1.0, (max(2, round(height / scale)), max(2, round(width / scale))))
    texture = (
        resample_matrix(grid.shape[0], height) @ grid @ resample_matrix(grid.shape[1], width).T
    )
    return np.asarray(texture / (texture.std() + 1e-12))


def render_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A clean scene of ``height`` x ``width`` pixels in arbitrary units (float64)."""
    image = np.full((height, width), rng.uniform(0.0, 0.3))
    # Half the scenes have a large bright "body" on a dark background, as CT and MR slices do.
    body = bool(rng.integers(2))
    for index in range(int(rng.integers(3, 14))):
        if body and index == 0:
            cy, cx = rng.uniform(0.45, 0.55) * height, rng.uniform(0.45, 0.55) * width
            ay, ax = rng.uniform(0.3, 0.48) * height, rng.uniform(0.3, 0.48) * width
            value = rng.uniform(1.0, 3.0)
        else:
            cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
            ay, ax = rng.uniform(0.04, 0.45) * height, rng.uniform(0.04, 0.45) * width
            value = rng.uniform(-0.4, 0.8)
        angle = rng.uniform(0.0, np.pi)
        # Only the ellipse's bounding square is evaluated.
        reach = max(ay, ax)
        top, left = max(0, int(cy - reach)), max(0, int(cx - reach))
        bottom, right = min(height, int(cy + reach) + 2), min(width, int(cx + reach) + 2)
        y, x = np.mgrid[top:bottom, left:right].astype(np.float64)
        u = ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) / ax
        v = (-(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)) / ay
        image[top:bottom, left:right] += value * (u * u + v * v <= 1.0)
    texture = smooth_texture(rng, height, width, rng.uniform(3.0, 10.0) * height / MODEL_SIZE)
    image += texture * rng.uniform(0.0, 0.06)
    ramp_y = (np.arange(height)[:, np.newaxis] / height - 0.5) * rng.uniform(-0.2, 0.2)
    ramp_x = (np.arange(width)[np.newaxis, :] / width - 0.5) * rng.uniform(-0.2, 0.2)
    image *= 1 + ramp_y + ramp_x
    return blur(image, rng.uniform(*PSF_PIXELS))


def generate_scenes(seed: int, count: int) -> list[Scene]:
    """``count`` scenes, half acceptable and half noisy, in a seeded random order."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2 == 1
    rng.shuffle(labels)
    scenes = []
    for noisy in labels:
        height, width = SIZES[rng.integers(len(SIZES))]
        clean = render_scene(rng, height, width)
        low, high = np.percentile(clean, [1, 99])
        contrast = max(float(high - low), 1e-6)
        relative = float(rng.uniform(*(NOISY_NOISE if noisy else ACCEPTABLE_NOISE)))
        shrink = math.sqrt(height * width) / MODEL_SIZE  # area resizing divides noise by this
        noise = rng.normal(0.0, relative * contrast * shrink, clean.shape)
        gain, offset = rng.uniform(50.0, 3000.0), rng.uniform(-1000.0, 500.0)
        pixels = ((clean + noise) * gain + offset).astype(np.float32)
        scenes.append(Scene(pixels, relative, bool(noisy)))
    return scenes
