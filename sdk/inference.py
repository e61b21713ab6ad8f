"""The inference core as plain functions (like MONAI's ``sliding_window_inference``).

:func:`sliding_window_predict` takes one image (C, *spatial), a ``predictor`` (any callable from a batch
of network inputs to network outputs: an ORT session, a test double, a torch module) and the model's
size rule, and writes probabilities or labels into an output array (numpy, memmap or zarr). It knows
nothing of ONNX Runtime; :class:`sdk.segmenter.Segmenter` is the shell that wires the two.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InvalidInputError, ModelError
from .model_metadata import Normalization
from .tiling import (
    SizeRule,
    Tile,
    extract_tile,
    make_merger,
    plan_tiles,
    validate_choice,
)

ACTIVATIONS = ("none", "softmax", "sigmoid")
OUTPUTS = ("proba", "labels")
#: Test-time augmentation: none; all flips of the spatial axes (4 in 2D, 8 in 3D); the dihedral group of
#: the (Y, X) square, 4 rotations x a flip of X (8 in 2D; x a flip of Z in 3D: 16).
TTA_MODES = ("none", "flips", "dihedral")

Predictor = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]  # (tiles done, tiles in total)


def activate(logits: np.ndarray, activation: str, axis: int = 1) -> np.ndarray:
    """Probabilities from network outputs (float32; softmax over ``axis``)."""
    if activation == "none":
        return logits
    if activation == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * logits))  # logistic without overflow warnings
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def label_dtype(classes: int) -> np.dtype:
    """The smallest unsigned type holding class indices ``0..classes-1``."""
    return np.dtype(np.uint8 if classes <= 256 else np.uint16)


def labels_from_proba(proba: np.ndarray) -> np.ndarray:
    """Class index per pixel of ``proba`` (K, ...) as :func:`label_dtype`: argmax (the first class on ties),
    or ``p >= 0.5`` for a single channel."""
    if proba.shape[0] == 1:
        return (proba[0] >= 0.5).view(np.uint8)
    if proba.shape[0] == 2 and not np.isnan(proba).any():
        # argmax of two classes, ties to class 0; one comparison instead of numpy's strided int64 argmax
        # over the class axis (8192²: 0.1 s against 3.0 s)
        return np.greater(proba[1], proba[0]).view(np.uint8)
    return np.argmax(proba, axis=0).astype(label_dtype(proba.shape[0]))


def tta_mode(tta: bool | str) -> str:
    """The :data:`TTA_MODES` entry of a ``tta`` option: ``True`` is ``"flips"``, ``False`` ``"none"``."""
    if isinstance(tta, (bool, np.bool_)):
        return "flips" if tta else "none"
    return validate_choice("tta", tta, TTA_MODES)


def _views(spatial_dims: int, mode: str) -> list[tuple[int, tuple[int, ...]]]:
    """(quarter turns in the (Y, X) plane, flipped axes) of each view, axes counted from the end."""
    if mode == "flips":
        axes = [-a for a in range(spatial_dims, 0, -1)]
        return [(0, combo) for k in range(spatial_dims + 1) for combo in itertools.combinations(axes, k)]
    flippable = (-1,) if spatial_dims == 2 else (-3, -1)
    flips = [combo for k in range(len(flippable) + 1) for combo in itertools.combinations(flippable, k)]
    return [(turns, combo) for turns in range(4) for combo in flips]


def tta_predictions(predictor: Predictor, batch: np.ndarray, activation: str, mode: str = "flips") -> np.ndarray:
    """Test-time augmentation: the mean probabilities over the views of ``mode`` (:data:`TTA_MODES`); each
    view transforms the input batch (B, C, *spatial), and the inverse transform brings its probabilities
    back. Quarter turns need a square (Y, X) tile, or one whose turned shape the network also accepts."""
    if mode == "none":
        return activate(predictor(batch), activation)
    total = None
    views = _views(batch.ndim - 2, mode)
    for turns, axes in views:
        view = np.flip(batch, axes) if axes else batch
        view = np.rot90(view, turns, axes=(-2, -1)) if turns else view
        proba = activate(predictor(np.ascontiguousarray(view) if (axes or turns) else batch), activation)
        proba = np.rot90(proba, -turns, axes=(-2, -1)) if turns else proba
        proba = np.flip(proba, axes) if axes else proba
        total = proba.copy() if total is None else np.add(total, proba, out=total)
    return total / np.float32(len(views))


class OutputSlot:
    """Writes into ``array[...]`` with ``index`` inserted at ``axis`` (one slice of a stack output).

    Works for any array supporting ``__setitem__`` with slices (numpy, memmap, zarr), where a view
    ``array[:, n]`` would be a copy.
    """

    def __init__(self, array: Any, axis: int | None = None, index: int = 0) -> None:
        self.array, self.axis, self.index = array, axis, index

    def __setitem__(self, key: tuple, value: np.ndarray) -> None:
        if self.axis is not None:
            key = key[: self.axis] + (self.index,) + key[self.axis :]
        self.array[key] = value


def sliding_window_predict(
    image: np.ndarray,
    predictor: Predictor,
    rule: SizeRule,
    *,
    channels: int,
    tile: int | Sequence[int],
    overlap: float,
    merge: str,
    normalization: Normalization | None = None,
    activation: str = "softmax",
    output: str = "proba",
    out: Any = None,
    batch_size: int = 1,
    tta: bool | str = False,
    progress: Progress | None = None,
) -> Any:
    """Tiled inference of ``image`` (C, *spatial); returns ``out`` filled with probabilities or labels.

    ``predictor`` maps a float32 batch (B, C, *tile_in) to network outputs (B, channels, *tile_out),
    with ``tile_out = tile_in - 2 * rule.output_margin``. ``normalization`` statistics are computed on
    the whole image once, then applied to every tile, so tiles see exactly the whole image's values.
    ``output="proba"`` fills (channels, *spatial) float32, ``"labels"`` fills (*spatial) class indices;
    ``out`` may be any such array (e.g. a memmap or zarr array), else one is allocated.
    See :mod:`sdk.tiling` for the tile plan and the merging strategies.
    """
    validate_choice("activation", activation, ACTIVATIONS)
    validate_choice("output", output, OUTPUTS)
    tta = tta_mode(tta)
    if batch_size < 1:
        raise InvalidInputError(f"batch_size={batch_size} must be >= 1")
    spatial = tuple(image.shape[1:])
    plan = plan_tiles(spatial, rule, tile=tile, overlap=overlap, merge=merge)
    if out is None:
        out = (
            np.empty((channels,) + spatial, dtype=np.float32)
            if output == "proba"
            else np.empty(spatial, dtype=label_dtype(channels))
        )
    statistics = normalization.statistics(image) if normalization is not None else None

    def write(window: tuple[slice, ...], proba: np.ndarray) -> None:
        if output == "proba":
            out[(slice(None),) + window] = proba
        else:
            out[window] = labels_from_proba(proba)

    def checked(batch: np.ndarray) -> np.ndarray:
        result = predictor(batch)
        # from the batch's own sides: a quarter turn (dihedral TTA) swaps those of a non-square tile
        promised = (len(batch), channels) + tuple(n - 2 * rule.output_margin for n in batch.shape[2:])
        if result.shape != promised:
            raise ModelError(
                f"the network returned shape {result.shape} for input {batch.shape}; its metadata promises "
                f"{promised} (class_names or output_margin disagree with the graph)"
            )
        if not np.isfinite(result).all():
            raise ModelError(
                f"the network returned NaN or infinite values for a finite input tile (values "
                f"{float(batch.min()):.3g}..{float(batch.max()):.3g}): its weights are corrupt or overflow "
                "on this input"
            )
        return result

    def prepared(t: Tile) -> np.ndarray:
        raw = extract_tile(image, plan, t)
        if normalization is None:
            return raw.astype(np.float32, copy=False)
        return normalization.apply(raw, statistics)

    merger = make_merger(plan, channels, write)
    tiles = list(plan)
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first : first + batch_size]
        batch = np.stack([prepared(t) for t in chunk])
        result = tta_predictions(checked, batch, activation, tta)
        for t, proba in zip(chunk, result):
            merger.add(t, proba)
        if progress is not None:
            progress(first + len(chunk), len(tiles))
    merger.close()
    return out
