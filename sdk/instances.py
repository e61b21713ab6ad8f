"""Instance labels from a semantic prediction: connected components, or a seeded watershed that splits
touching objects. numpy and the C++ core only (no scikit-image at run time).

The watershed is the priority flood of Beucher & Meyer (1993) as scikit-image implements it
(``skimage.segmentation.watershed(-p, markers, mask=mask)``, pixel for pixel where probabilities have no
ties): every seed pixel enters a heap keyed by (priority, age); the pixel popped hands its label to each
unlabelled neighbour inside the mask, which enters the heap with the next age. Higher probability floods
first; equal probabilities flood in the order they were reached. With ``lines=True`` a pixel is labelled
when it is popped instead, and becomes a one-pixel watershed line (0) where two regions meet
(``csrc/include/unetsdk/watershed.hpp``). Cost: O(n log n) for the n pixels flooded (seed pixels inside a
seed are never queued), in C++ without the GIL, slices of a stack in parallel.
"""
from __future__ import annotations

import numpy as np

from . import _core
from .errors import InvalidInputError

CONNECTIVITIES = ("face", "full")


def connected_components(mask: np.ndarray, *, connectivity: str = "face", mode: str = "2d") -> np.ndarray:
    """uint32 labels of the connected components of ``mask`` (see :func:`sdk.metrics.label_components`)."""
    from .metrics import label_components

    return label_components(mask, mode=mode, connectivity=connectivity)


def seeded_watershed(
    probability: np.ndarray,
    mask: np.ndarray | None,
    *,
    seed_threshold: float = 0.9,
    connectivity: str = "face",
    mode: str = "2d",
    lines: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Split ``mask`` into objects: seeds are the connected components of ``mask & (probability >=
    seed_threshold)``; they flood the rest of ``mask`` by decreasing ``probability``. Pixels of ``mask``
    no seed reaches stay 0. ``mask=None`` floods the whole image. ``lines=True`` leaves a one-pixel line
    (0) wherever two regions would touch, so that no two neighbouring pixels (``connectivity``) carry
    different labels. ``mode="2d"`` floods each slice of a stack on its own (in parallel on ``threads``,
    default all cores), ``"3d"`` a volume. Returns uint32 labels shaped like ``probability`` (seed
    numbering: :func:`connected_components`)."""
    from .metrics._validation import resolve_threads

    probability = np.asarray(probability)
    if probability.dtype.kind not in "biuf":
        raise InvalidInputError(f"probability must be real numbers, got dtype {probability.dtype}")
    if probability.dtype.kind == "f" and np.isnan(probability).any():
        raise InvalidInputError(f"probability holds NaN at {np.argwhere(np.isnan(probability))[0].tolist()}: the "
                                "flood has no order for it")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if probability.shape != mask.shape:
            raise InvalidInputError(f"probability {probability.shape} and mask {mask.shape} differ in shape")
    if connectivity not in CONNECTIVITIES:
        raise InvalidInputError(f"connectivity={connectivity!r}: give one of {', '.join(CONNECTIVITIES)}")
    spatial = 3 if mode == "3d" else 2
    if probability.ndim < spatial:
        raise InvalidInputError(f"mode={mode!r} needs at least {spatial} axes, got shape {probability.shape}")
    seeds = probability >= seed_threshold
    labels = connected_components(seeds if mask is None else mask & seeds, connectivity=connectivity, mode=mode)
    # -p: the flood pops the lowest priority first (negation is exact, so float32 keeps the order of p)
    dtype = np.float32 if probability.dtype in (np.float32, np.float16) or probability.dtype.itemsize < 4 else np.float64
    priority = np.negative(probability.astype(dtype, copy=False))
    volumes = (-1,) + probability.shape[-3:] if spatial == 3 else (-1,) + probability.shape[-2:]
    priority = np.ascontiguousarray(priority.reshape(volumes))
    flat = np.ascontiguousarray(labels.reshape(volumes))
    flat_mask = None if mask is None else np.ascontiguousarray(mask.reshape(volumes), dtype=np.uint8)
    threads = resolve_threads(threads)
    if spatial == 2:
        _core.seeded_watershed(priority, flat, flat_mask, False, connectivity == "full", lines, threads)
    else:  # one volume (connected_components has refused anything else)
        _core.seeded_watershed(priority[0], flat[0], None if flat_mask is None else flat_mask[0], True,
                               connectivity == "full", lines, threads)
    return flat.reshape(probability.shape)


def model_instances(
    labels: np.ndarray,
    foreground_probability: np.ndarray | None,
    metadata,
    *,
    split_touching: bool = False,
    seed_threshold: float = 0.9,
    connectivity: str = "face",
) -> np.ndarray:
    """Instances of a model's foreground class from its class labels (as
    :func:`sdk.inference.labels_from_proba` makes them): a single sigmoid channel's foreground is label 1
    (p >= 0.5), several classes' is ``metadata.foreground_class``. Slices of a stack are labelled one by
    one for a 2D model, a volume as a whole for a 3D one; ``split_touching`` floods the
    ``foreground_probability`` from seeds (:func:`seeded_watershed`), else connected components."""
    mask = np.asarray(labels) == (1 if metadata.num_classes == 1 else metadata.foreground_class)
    mode = "3d" if metadata.spatial_dims == 3 else "2d"
    if split_touching:
        return seeded_watershed(foreground_probability, mask, seed_threshold=seed_threshold,
                                connectivity=connectivity, mode=mode)
    return connected_components(mask, connectivity=connectivity, mode=mode)
