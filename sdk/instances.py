"""Instance labels from a semantic prediction: connected components, or a seeded watershed that splits
touching objects. numpy and the C++ labelling only (no scikit-image at run time).

The watershed is the priority flood of Beucher & Meyer (1993) as scikit-image implements it
(``skimage.segmentation.watershed(-p, markers, mask=mask)``): every seed pixel enters a heap keyed by
(priority, age); the pixel popped hands its label to each unlabelled neighbour inside the mask, which
enters the heap with the next age. Higher probability floods first; equal probabilities flood in the
order they were reached. Cost: O(n log n) for the n foreground pixels, in Python (about 1-2 s per
megapixel of foreground), and about 40 bytes per pixel of the image slice being flooded.
"""
from __future__ import annotations

import heapq
import itertools

import numpy as np

from .errors import InvalidInputError


def connected_components(mask: np.ndarray, *, connectivity: str = "face", mode: str = "2d") -> np.ndarray:
    """uint32 labels of the connected components of ``mask`` (see :func:`sdk.metrics.label_components`)."""
    from .metrics import label_components

    return label_components(mask, mode=mode, connectivity=connectivity)


def _neighbour_offsets(padded_shape: tuple[int, ...], connectivity: str) -> list[int]:
    """Flat-index offsets of the neighbours of a pixel in a C-order array of ``padded_shape``."""
    strides = np.cumprod((1,) + padded_shape[:0:-1])[::-1]
    offsets = []
    for step in itertools.product((-1, 0, 1), repeat=len(padded_shape)):
        moved = sum(abs(s) for s in step)
        if moved and (connectivity == "full" or moved == 1):
            offsets.append(int(np.dot(step, strides)))
    return offsets


def _flood(priority: np.ndarray, labels: np.ndarray, mask: np.ndarray, connectivity: str) -> np.ndarray:
    """Flood ``labels`` (seeds > 0) over ``mask`` in order of increasing ``priority``, one image."""
    pad = [(1, 1)] * labels.ndim
    padded_mask = np.pad(mask, pad)  # the border ring is outside the mask, so no bounds checks
    flat_labels = np.pad(labels, pad).ravel().tolist()
    flat_mask = padded_mask.ravel().tolist()
    flat_priority = np.pad(priority, pad).ravel().tolist()
    offsets = _neighbour_offsets(padded_mask.shape, connectivity)
    heap = [(flat_priority[i], 0, i) for i in np.flatnonzero(np.pad(labels, pad)).tolist()]
    heapq.heapify(heap)
    age = 0
    while heap:
        _, _, i = heapq.heappop(heap)
        label = flat_labels[i]
        for offset in offsets:
            j = i + offset
            if flat_labels[j] or not flat_mask[j]:
                continue
            age += 1
            flat_labels[j] = label
            heapq.heappush(heap, (flat_priority[j], age, j))
    inner = tuple(slice(1, -1) for _ in labels.shape)
    return np.array(flat_labels, dtype=np.uint32).reshape(padded_mask.shape)[inner]


def seeded_watershed(
    probability: np.ndarray,
    mask: np.ndarray,
    *,
    seed_threshold: float = 0.9,
    connectivity: str = "face",
    mode: str = "2d",
) -> np.ndarray:
    """Split ``mask`` into objects: seeds are the connected components of ``mask & (probability >=
    seed_threshold)``; they flood the rest of ``mask`` by decreasing ``probability``. Pixels of ``mask``
    no seed reaches stay 0. ``mode="2d"`` floods each slice of a stack on its own, ``"3d"`` a volume.
    Returns uint32 labels shaped like ``mask`` (seed numbering: :func:`connected_components`)."""
    probability, mask = np.asarray(probability), np.asarray(mask, dtype=bool)
    if probability.shape != mask.shape:
        raise InvalidInputError(f"probability {probability.shape} and mask {mask.shape} differ in shape")
    labels = connected_components(mask & (probability >= seed_threshold), connectivity=connectivity, mode=mode)
    spatial = 3 if mode == "3d" else 2
    if mask.ndim < spatial:
        raise InvalidInputError(f"mode={mode!r} needs at least {spatial} axes, got shape {mask.shape}")
    # -p: a min-heap pops the most probable pixel first (float64: exact order of float32 values)
    priority = -probability.astype(np.float64)
    out = np.empty(mask.shape, dtype=np.uint32)
    for lead in np.ndindex(*mask.shape[: mask.ndim - spatial]):
        out[lead] = _flood(priority[lead], labels[lead], mask[lead], connectivity)
    return out


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
