"""Data augmentation for U-Net training, applied identically to image, label and weight map (2D and 3D).

* Elastic deformation as in the U-Net paper: random displacement vectors on a coarse grid (3 x 3 control
  points by default) drawn from a Gaussian with ``sigma = 10`` px, interpolated smoothly (cubic spline) to a
  per-pixel displacement field. The image and the weight map are resampled linearly, the label with
  nearest-neighbour so it keeps exactly its original values.
* Flips on every spatial axis and 90-degree rotations in the last two axes (the in-plane axes of an
  anisotropic stack).
* Intensity jitter on the (already normalised) image: random gain and offset, plus Gaussian noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def elastic_displacement(
    shape: tuple[int, ...], rng: np.random.Generator, *, grid: int = 3, sigma: float = 10.0
) -> np.ndarray:
    """A smooth random displacement field of shape ``(len(shape), *shape)`` in pixels.

    ``grid ** ndim`` control points each get an independent ``N(0, sigma**2)`` displacement per axis;
    a cubic spline through them gives the displacement at every pixel.
    """
    if grid < 2:
        raise ValueError(f"grid must be >= 2 control points per axis, got {grid}")
    ndim = len(shape)
    coarse = rng.normal(0.0, sigma, size=(ndim,) + (grid,) * ndim)
    # Pixel i of an axis of length n sits at control-grid coordinate i * (grid - 1) / (n - 1).
    axes = [np.linspace(0.0, grid - 1.0, n) for n in shape]
    where = np.stack(np.meshgrid(*axes, indexing="ij"))
    return np.stack(
        [ndimage.map_coordinates(coarse[axis], where, order=3, mode="nearest") for axis in range(ndim)]
    )


def warp(array: np.ndarray, displacement: np.ndarray, *, order: int) -> np.ndarray:
    """Resample ``array`` (``*spatial`` or ``(C, *spatial)``) at ``identity + displacement`` (reflecting)."""
    ndim = displacement.shape[0]
    spatial = displacement.shape[1:]
    identity = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in spatial], indexing="ij"))
    coords = identity + displacement
    if array.ndim == ndim:
        return ndimage.map_coordinates(array, coords, order=order, mode="reflect")
    return np.stack([ndimage.map_coordinates(c, coords, order=order, mode="reflect") for c in array])


@dataclass(frozen=True)
class Augmenter:
    """Random augmentation of ``(image (C, *spatial), label (*spatial), weights (*spatial) or None)``.

    Every transform is drawn once per call and applied to all three arrays, so they stay aligned.
    """

    spatial_dims: int = 2
    elastic: bool = True
    elastic_grid: int = 3
    elastic_sigma: float = 10.0
    flips: bool = True
    rotations: bool = True
    intensity: bool = True
    gain_range: tuple[float, float] = (0.8, 1.2)
    offset_range: tuple[float, float] = (-0.2, 0.2)
    noise_std: float = 0.05

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")

    def __call__(
        self,
        image: np.ndarray,
        label: np.ndarray,
        weights: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        spatial = label.shape
        if image.shape[1:] != spatial or len(spatial) != self.spatial_dims:
            raise ValueError(
                f"image {image.shape} (C, *spatial) and label {label.shape} do not match a "
                f"{self.spatial_dims}-d sample"
            )
        if weights is not None and weights.shape != spatial:
            raise ValueError(f"weight map {weights.shape} does not match label {label.shape}")
        if self.elastic:
            field = elastic_displacement(spatial, rng, grid=self.elastic_grid, sigma=self.elastic_sigma)
            image = warp(image, field, order=1)
            label = warp(label, field, order=0)
            if weights is not None:
                weights = warp(weights, field, order=1)
        if self.flips:
            for axis in range(self.spatial_dims):
                if rng.random() < 0.5:
                    image, label = np.flip(image, axis + 1), np.flip(label, axis)
                    weights = None if weights is None else np.flip(weights, axis)
        if self.rotations:
            # A quarter turn of a non-square plane would change the sample's shape: half turns only.
            square = label.shape[-1] == label.shape[-2]
            turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
            if turns:
                image = np.rot90(image, turns, axes=(-2, -1))
                label = np.rot90(label, turns, axes=(-2, -1))
                weights = None if weights is None else np.rot90(weights, turns, axes=(-2, -1))
        if self.intensity:
            gain = rng.uniform(*self.gain_range)
            offset = rng.uniform(*self.offset_range)
            image = image * gain + offset
            if self.noise_std > 0:
                image = image + rng.normal(0.0, self.noise_std, size=image.shape)
        image = np.ascontiguousarray(image, dtype=np.float32)
        label = np.ascontiguousarray(label)
        weights = None if weights is None else np.ascontiguousarray(weights, dtype=np.float32)
        return image, label, weights
