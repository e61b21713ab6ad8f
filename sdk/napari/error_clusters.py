"""The warping error's leftover pixels as clusters, one marker each (plain numpy, no napari).

:attr:`sdk.metrics.WarpingResult.classification` labels every topological error pixel with an
:class:`~sdk.metrics.ErrorType`. A viewer wants the *errors*, not the pixels: the pixels of one type are
grouped into connected clusters exactly as :attr:`~sdk.metrics.WarpingResult.cluster_counts` counts them
(Fiji's ``clusterMismatchesByError``: mergers and foreground hole additions fully connected, everything
else face-connected, hole additions and deletions split by the warped truth's value), and each cluster
gets one marker on its pixel nearest to its centroid (a centroid may fall outside a curved cluster).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import ErrorType, WarpingResult, label_components

#: Display name and RGBA colour of each error type (Okabe-Ito colours, distinguishable with colour blindness).
ERROR_STYLES: dict[ErrorType, tuple[str, str]] = {
    ErrorType.SPLIT: ("split", "#D55E00"),
    ErrorType.MERGER: ("merger", "#F0E442"),
    ErrorType.HOLE_ADDITION: ("hole addition", "#56B4E9"),
    ErrorType.HOLE_DELETION: ("hole deletion", "#0072B2"),
    ErrorType.OBJECT_ADDITION: ("object addition", "#CC79A7"),
    ErrorType.OBJECT_DELETION: ("object deletion", "#009E73"),
}

# (type, warped truth value or None for either, fully connected) as the C++ cluster count groups them
_CLUSTER_GROUPS = (
    (ErrorType.OBJECT_ADDITION, None, False),
    (ErrorType.HOLE_DELETION, False, False),
    (ErrorType.MERGER, None, True),
    (ErrorType.HOLE_ADDITION, False, False),
    (ErrorType.OBJECT_DELETION, None, False),
    (ErrorType.HOLE_ADDITION, True, True),
    (ErrorType.SPLIT, None, False),
    (ErrorType.HOLE_DELETION, True, False),
)


@dataclass(frozen=True)
class ErrorClusters:
    """One row per error cluster, largest first: ``positions`` (n, ndim) integer pixel indices of the
    markers, ``types`` (n,) :class:`~sdk.metrics.ErrorType` codes, ``sizes`` (n,) pixels per cluster."""

    positions: np.ndarray
    types: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return int(self.types.size)

    def counts(self) -> dict[ErrorType, int]:
        """Clusters per error type (the types without clusters included, as 0)."""
        return {t: int(np.count_nonzero(self.types == t)) for t in ERROR_STYLES}

    def pixels(self) -> dict[ErrorType, int]:
        """Error pixels per type (the clusters of a type partition its pixels)."""
        return {t: int(self.sizes[self.types == t].sum()) for t in ERROR_STYLES}


def object_markers(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per object of a label image (every nonzero value): ``(labels, positions, sizes)``, sorted by label;
    ``positions`` (n, ndim) is the object's pixel nearest its centroid."""
    labels = np.asarray(labels)
    flat = np.flatnonzero(labels)
    if flat.size == 0:
        return labels.ravel()[:0], np.empty((0, labels.ndim), dtype=np.intp), np.empty(0, dtype=np.int64)
    values, ids = np.unique(labels.ravel()[flat], return_inverse=True)  # dense ids 0..n-1
    coords = np.stack(np.unravel_index(flat, labels.shape), axis=1)
    sizes = np.bincount(ids)
    centroids = np.stack([np.bincount(ids, weights=c) for c in coords.T], axis=1) / sizes[:, None]
    distance = ((coords - centroids[ids]) ** 2).sum(axis=1)
    order = np.lexsort((distance, ids))
    first = order[np.r_[0, np.flatnonzero(np.diff(ids[order])) + 1]]
    return values, coords[first], sizes


def error_clusters(result: WarpingResult) -> ErrorClusters:
    """The clusters of ``result.classification`` (2D per slice, or 3D, as ``result.mode``), largest first."""
    classification = result.classification
    positions, types, sizes = [], [], []
    for error_type, warped_value, full in _CLUSTER_GROUPS:
        mask = classification == error_type
        if warped_value is not None:
            mask &= result.warped == warped_value
        if not mask.any():
            continue
        labels = label_components(mask, mode=result.mode, connectivity="full" if full else "face")
        _, where, size = object_markers(labels)
        positions.append(where)
        sizes.append(size)
        types.append(np.full(size.size, int(error_type), dtype=np.uint8))
    if not types:
        return ErrorClusters(np.empty((0, classification.ndim), dtype=np.intp), np.empty(0, np.uint8), np.empty(0, np.int64))
    positions, types, sizes = np.concatenate(positions), np.concatenate(types), np.concatenate(sizes)
    order = np.lexsort((types, -sizes))  # largest first, then by type
    return ErrorClusters(positions[order], types[order], sizes[order])
