"""Synthetic CT-like phantoms, with and without a lesion-like blob, in Hounsfield units.

Each phantom is an elliptical body (soft tissue around 40 HU inside a subcutaneous fat ring at
about -90 HU) in air (-1000 HU) with Gaussian noise. A positive phantom adds one Gaussian blob
inside the body, brighter (enhancing) or darker (hypodense) than the tissue. Sizes, noise
levels, body shape and blob size/contrast vary. Everything is drawn from one seeded
generator, so a seed always gives the same images. Synthetic data: nothing here resembles a
real patient and no real image was used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AIR_HU = -1000.0
FAT_HU = -90.0
TISSUE_HU = 40.0
SIZES = ((96, 96), (128, 128), (160, 160), (192, 192), (256, 256), (128, 160), (200, 176))
NOISE_HU = (5.0, 10.0, 20.0, 35.0)
LESION_SIGMA_FRACTION = (0.03, 0.06)
LESION_CONTRAST_HU = (40.0, 200.0)


@dataclass(frozen=True, slots=True)
class Phantom:
    """One synthetic image (float32 HU, shape (H, W)) and whether it holds a lesion."""

    pixels: np.ndarray
    lesion: bool


def render_phantom(
    rng: np.random.Generator, height: int, width: int, noise_hu: float, *, lesion: bool
) -> np.ndarray:
    """Render one phantom of ``height`` x ``width`` pixels in HU."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cy = height / 2 * (1 + rng.uniform(-0.05, 0.05))
    cx = width / 2 * (1 + rng.uniform(-0.05, 0.05))
    ay = height * rng.uniform(0.34, 0.42)
    ax = width * rng.uniform(0.34, 0.42)
    radius = np.sqrt(((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2)
    fat = rng.uniform(0.08, 0.15)  # ring thickness as a fraction of the body radius
    image = np.full((height, width), AIR_HU)
    image[radius <= 1.0] = FAT_HU
    image[radius <= 1.0 - fat] = TISSUE_HU + rng.uniform(-15, 15)
    if lesion:
        # Keep the blob well inside the tissue, away from the fat ring's edges.
        angle = rng.uniform(0, 2 * np.pi)
        reach = rng.uniform(0.0, 0.55) * (1.0 - fat)
        ly = cy + reach * ay * np.sin(angle)
        lx = cx + reach * ax * np.cos(angle)
        sigma = rng.uniform(*LESION_SIGMA_FRACTION) * min(height, width)
        contrast = rng.uniform(*LESION_CONTRAST_HU) * rng.choice((-1.0, 1.0))
        image += contrast * np.exp(-((y - ly) ** 2 + (x - lx) ** 2) / (2 * sigma**2))
    image += rng.normal(0.0, noise_hu, size=image.shape)
    return image.astype(np.float32)


def generate_phantoms(seed: int, count: int) -> list[Phantom]:
    """``count`` phantoms, half with a lesion, in a seeded random order."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2 == 1
    rng.shuffle(labels)
    phantoms = []
    for lesion in labels:
        height, width = SIZES[rng.integers(len(SIZES))]
        noise = float(rng.choice(NOISE_HU))
        pixels = render_phantom(rng, height, width, noise, lesion=bool(lesion))
        phantoms.append(Phantom(pixels, bool(lesion)))
    return phantoms
