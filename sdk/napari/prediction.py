"""What the Segment widget computes, as a plain function over :class:`sdk.Segmenter` (no napari, no Qt).

:func:`predict_outputs` turns one image (numpy, or a lazy dask/zarr array) into the requested outputs:
class ``labels``, class ``probabilities`` and ``instances`` (as :meth:`Segmenter.predict_instances`
makes them: connected components of the foreground class, 4-/6-connected as the ISBI Rand error counts
objects, or split by a seeded watershed on its probability). Probabilities are computed once and the
labels taken from them, which is what :meth:`Segmenter.predict` does per tile. A 2D model on a stack
reads and predicts one slice at a time, so a lazy stack never has to fit in memory. With ``allocate``
(e.g. creating zarr arrays) the outputs are written tile by tile into what it returns, for results
larger than memory.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from ..inference import labels_from_proba
from ..instances import model_instances
from ..segmenter import Segmenter

logger = logging.getLogger(__name__)

OUTPUTS = ("labels", "probabilities", "instances")
_BLOCK_BYTES = 64 << 20  # probabilities read back per block when labels are derived from a stored array


class PredictionCancelled(Exception):
    """Raised by a progress callback to stop a prediction between tiles."""


def output_arrays(segmenter: Segmenter, shape: tuple[int, ...], outputs) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each requested output for an image of ``shape`` (raises InvalidInputError if the
    model cannot take it)."""
    labels_shape, labels_dtype = segmenter.output_spec(shape)
    specs = {}
    if "labels" in outputs:
        specs["labels"] = (labels_shape, labels_dtype)
    if "probabilities" in outputs:
        specs["probabilities"] = segmenter.output_spec(shape, proba=True)
    if "instances" in outputs:
        specs["instances"] = (labels_shape, np.dtype(np.uint32))
    return specs


Allocate = Callable[[str, tuple, np.dtype], Any]  # (output name, shape, dtype) -> array to fill


def _in_memory(_name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def _labels_from_stored(proba: Any, labels: Any) -> None:
    """labels = class index of ``proba`` (classes, *spatial), block by block along the first spatial axis."""
    row_bytes = proba.dtype.itemsize * int(np.prod(proba.shape)) // max(proba.shape[1], 1)
    step = max(1, _BLOCK_BYTES // max(row_bytes, 1))
    for start in range(0, proba.shape[1], step):
        block = np.asarray(proba[:, start : start + step])
        labels[start : start + step] = labels_from_proba(block).astype(labels.dtype, copy=False)


def predict_outputs(
    segmenter: Segmenter,
    image: Any,
    outputs,
    *,
    allocate: Allocate | None = None,
    progress: Callable[[int, int], None] | None = None,
    split_touching: bool = False,
) -> dict[str, Any]:
    """The requested ``outputs`` (a subset of :data:`OUTPUTS`) of ``segmenter`` on ``image``.

    ``progress(done, total)`` counts tiles over the whole image or stack; raising from it (e.g.
    :class:`PredictionCancelled`) stops the prediction after the current tile. ``allocate(name, shape,
    dtype)`` returns the array to fill with ``labels`` / ``probabilities`` (e.g. a zarr array; default:
    numpy); ``instances`` need the labels in memory and are refused with ``allocate``. ``split_touching``:
    instances from :func:`sdk.instances.seeded_watershed` (default seeds) instead of components.
    """
    outputs = [o for o in OUTPUTS if o in set(outputs)]
    if not outputs:
        raise ValueError("predict_outputs: no outputs requested")
    if allocate is not None and "instances" in outputs:
        raise ValueError("instances need the labels in memory; predict them without allocate")
    allocate = allocate or _in_memory
    meta = segmenter.metadata
    wants_proba = "probabilities" in outputs or ("instances" in outputs and split_touching)
    specs = output_arrays(segmenter, tuple(image.shape), ["labels", "probabilities"] if wants_proba else ["labels"])
    labels_shape, labels_dtype = specs["labels"]
    stacked = meta.spatial_dims == 2 and len(labels_shape) == 3  # a stack of 2D images, slice axis first
    proba = allocate("probabilities", *specs["probabilities"]) if wants_proba else None
    needs_labels = "labels" in outputs or "instances" in outputs
    labels = None
    if needs_labels:
        labels = (allocate if "labels" in outputs else _in_memory)("labels", labels_shape, labels_dtype)

    pieces = range(labels_shape[0]) if stacked else (None,)

    def piece_progress(index: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(index * total + done, len(pieces) * total)

    for index, n in enumerate(pieces):
        report = piece_progress(index)
        if n is None:
            if wants_proba:
                segmenter.predict_proba(np.asarray(image), out=proba, progress=report)
                if needs_labels:
                    _labels_from_stored(proba, labels)
            else:
                segmenter.predict(np.asarray(image), out=labels, progress=report)
            continue
        piece = np.asarray(image[n])  # one slice of a possibly lazy stack
        if wants_proba:
            p = segmenter.predict_proba(piece, progress=report)
            proba[:, n] = p
            if needs_labels:
                labels[n] = labels_from_proba(p).astype(labels_dtype, copy=False)
        else:
            labels[n] = segmenter.predict(piece, progress=report)
    result: dict[str, Any] = {}
    if "labels" in outputs:
        result["labels"] = labels
    if "probabilities" in outputs:
        result["probabilities"] = proba
    if "instances" in outputs:
        result["instances"] = model_instances(labels, proba[meta.foreground_class] if split_touching else None, meta,
                                              split_touching=split_touching)
    logger.debug("predicted %s for an image of shape %s", ", ".join(outputs), tuple(image.shape))
    return result
