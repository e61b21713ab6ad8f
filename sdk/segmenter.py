"""``Segmenter``: a self-describing ONNX U-Net applied to images, stacks and volumes of any size.

A thin shell: :mod:`sdk.runtime` owns the ONNX Runtime session, :mod:`sdk.inference` the tiled
prediction, :mod:`sdk.tiling` the tile geometry; this module checks the user's array, maps its axes to
(N, C, *spatial) views and picks defaults from the model's metadata.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from .errors import InvalidInputError
from .inference import OutputSlot, Progress, label_dtype, sliding_window_predict
from .model_metadata import ModelMetadata
from .models import resolve_model
from .runtime import Runtime
from .tiling import MERGE_MODES, plan_tiles, validate_choice

logger = logging.getLogger(__name__)

AXES_2D = ("YX", "CYX", "YXC", "NYX", "NCYX")
AXES_3D = ("ZYX", "CZYX")
DEFAULT_TILE = {2: 512, 3: 96}
DEFAULT_BATCH = {"cpu": 1, "cuda": 8}  # CPU GEMMs are already large per tile; GPUs want batches


class Segmenter:
    """Tiled U-Net inference with ONNX Runtime on the CPU or CUDA.

    Parameters
    ----------
    model : path, bytes, name or None
        An ``.onnx`` file carrying unet-sdk metadata, or the name of an embedded model
        (:data:`sdk.models.EMBEDDED_MODELS`: ``"isbi2012"``, ``"isbi2012-int8"``); ``None`` uses the
        embedded ISBI 2012 model (fp32).
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` uses CUDA if ONNX Runtime's CUDA provider really loads, else the CPU (see
        :attr:`device`); ``"cuda"`` raises :class:`~sdk.errors.RuntimeUnavailableError` if it cannot.
    tile : int or sequence of int
        Network input side(s) of a tile, rounded up to a size the network accepts. Default: the
        model's ``tile_size``, else 512 (2D) / 96 (3D).
    overlap : float in [0, 1)
        Fraction of a tile shared with its neighbour. Default: 0 for overlap-tile on a valid-padding
        model (the margin is the halo, and the result is exact); for overlap-tile on a same-padding
        model the model's halo in pixels (``tile_overlap`` x ``tile_size``) as a fraction of ``tile``;
        for blending the model's ``tile_overlap``.
    blend : {"gaussian", "constant", "none"}
        How overlapping tiles merge: weighted blending, or ``"none"`` = overlap-tile with halo
        cropping. Default: ``"none"`` for valid-padding models, else the model's ``blend``.
    batch_size : int
        Tiles per network call (default 1 on the CPU, 8 on CUDA).
    threads : int
        ONNX Runtime intra-op threads (default: all cores this process may use).
    tta : bool
        Average the probabilities over all flips of the spatial axes.

    One instance may be shared by many threads: ``predict`` keeps no state between calls.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes | None = None,
        *,
        device: str = "auto",
        tile: int | Sequence[int] | None = None,
        overlap: float | None = None,
        blend: str | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        tta: bool = False,
    ) -> None:
        self._runtime = Runtime(resolve_model(model), device=device, threads=threads)
        meta = self.metadata
        self.blend = (
            validate_choice("blend", blend, MERGE_MODES)
            if blend is not None
            else ("none" if meta.padding == "valid" else meta.blend)
        )
        self.tile = _tile_sizes(tile if tile is not None else (meta.tile_size or DEFAULT_TILE[meta.spatial_dims]), meta)
        if overlap is None:
            overlap = self._default_overlap(meta)
        if not isinstance(overlap, (int, float, np.floating)) or not 0.0 <= float(overlap) < 1.0:
            raise InvalidInputError(f"overlap={overlap!r} must be a number in [0, 1)")
        self.overlap = float(overlap)
        if batch_size is None:
            batch_size = DEFAULT_BATCH[self.device]
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InvalidInputError(f"batch_size={batch_size!r} must be a positive integer")
        self.batch_size = int(batch_size)
        self.tta = bool(tta)

    def _default_overlap(self, meta: ModelMetadata) -> float:
        if self.blend != "none":
            return meta.tile_overlap  # blending: a fraction of the tile, as in MONAI
        if meta.padding == "valid":
            return 0.0  # the network's own margin is the halo
        if not meta.tile_size:
            return meta.tile_overlap
        # overlap-tile on a same-padding model: the halo covers the receptive field, a number of pixels,
        # so another tile size keeps the model's halo rather than its fraction (2048-px tiles at the
        # 1024-px fraction would recompute twice the halo)
        shared = meta.tile_overlap * min(meta.tile_size)
        if shared < min(self.tile):
            return shared / min(self.tile)
        logger.warning(
            "tile %s cannot hold the model's %g-px halo; overlap falls back to %g, and results near tile "
            "borders will differ from whole-image inference", self.tile, shared, meta.tile_overlap,
        )
        return meta.tile_overlap

    # -- what was loaded -----------------------------------------------------------------------------
    @property
    def metadata(self) -> ModelMetadata:
        return self._runtime.metadata

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda"``: where the session actually runs."""
        return self._runtime.device

    @property
    def providers(self) -> list[str]:
        return self._runtime.providers

    def release_memory(self) -> None:
        """Return the working memory ONNX Runtime keeps between calls (one tile batch's activations,
        reused while tiles keep their shape) to the system, e.g. before a long idle time."""
        self._runtime.release_memory()

    def __repr__(self) -> str:
        return (
            f"Segmenter({self._runtime.source!r}, device={self.device!r}, tile={self.tile}, "
            f"overlap={self.overlap}, blend={self.blend!r}, batch_size={self.batch_size}, tta={self.tta})"
        )

    # -- prediction ----------------------------------------------------------------------------------
    def predict(
        self, image: Any, *, axes: str | None = None, out: Any = None, progress: Progress | None = None
    ) -> Any:
        """Class index per pixel, shaped like the image without its channel axis.

        ``axes`` names the image's axes when its shape is ambiguous: for a 2D model "YX", "CYX", "YXC",
        "NYX" (a stack of slices) or "NCYX"; for a 3D model "ZYX" or "CZYX". ``out`` may be a
        preallocated integer array of that shape (numpy, memmap, zarr) for outputs larger than RAM.
        ``progress(done, total)`` is called with tile counts.
        """
        return self._predict(image, axes, "labels", out, progress)

    def predict_proba(
        self, image: Any, *, axes: str | None = None, out: Any = None, progress: Progress | None = None
    ) -> Any:
        """Class probabilities, float32, shaped (classes, *image shape without its channel axis)."""
        return self._predict(image, axes, "proba", out, progress)

    def output_spec(
        self, shape: Sequence[int], *, axes: str | None = None, proba: bool = False
    ) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of what :meth:`predict` (or :meth:`predict_proba`) returns for an image of
        ``shape``, e.g. to preallocate a memmap or zarr array for ``out=``."""
        shape = tuple(int(n) for n in shape)
        axes = _resolve_axes(shape, self.metadata, axes)
        classes = self.metadata.num_classes
        kept = tuple(n for n, a in zip(shape, axes) if a != "C")
        if proba:
            return (classes,) + kept, np.dtype(np.float32)
        return kept, label_dtype(classes)

    def _predict(self, image: Any, axes: str | None, output: str, out: Any, progress: Progress | None) -> Any:
        array = _checked_image(image)
        axes = _resolve_axes(array.shape, self.metadata, axes)
        stack = _as_stack(array, axes)  # (N, C, *spatial) view
        single = "N" not in axes
        spatial = stack.shape[2:]
        classes = self.metadata.num_classes
        shape, dtype = self.output_spec(array.shape, axes=axes, proba=output == "proba")
        out = _output_array(out, shape, dtype, output, classes)
        plan = plan_tiles(spatial, self.metadata, tile=self.tile, overlap=self.overlap, merge=self.blend)
        per_image = len(plan)
        logger.debug(
            "%s %s as %s: %d image(s) x %d tiles of %s, blend=%s, on %s",
            output, array.shape, axes, stack.shape[0], per_image, plan.input_shape, self.blend, self.device,
        )
        for n in range(stack.shape[0]):
            target = out if single else OutputSlot(out, 1 if output == "proba" else 0, n)
            sliding_window_predict(
                stack[n],
                self._runtime.run,
                self.metadata,
                channels=classes,
                tile=self.tile,
                overlap=self.overlap,
                merge=self.blend,
                normalization=self.metadata.normalization,
                activation=self.metadata.output_activation,
                output=output,
                out=target,
                batch_size=self.batch_size,
                tta=self.tta,
                progress=None
                if progress is None
                else (lambda done, total, n=n: progress(n * per_image + done, per_image * stack.shape[0])),
            )
        return out


def _tile_sizes(tile: int | Sequence[int], meta: ModelMetadata) -> tuple[int, ...]:
    sizes = (tile,) * meta.spatial_dims if isinstance(tile, (int, np.integer)) else tuple(tile)
    if len(sizes) != meta.spatial_dims or not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
        raise InvalidInputError(
            f"tile={tile!r}: give one positive integer or {meta.spatial_dims} of them (a {meta.spatial_dims}D model)"
        )
    return tuple(int(s) for s in sizes)


def _checked_image(image: Any) -> np.ndarray:
    array = image if isinstance(image, np.ndarray) else np.asarray(image)
    if array.dtype.kind not in "biuf":
        raise InvalidInputError(
            f"unsupported image dtype {array.dtype}: give real numbers (bool, integer or float), "
            "e.g. image.real or image.astype(np.float32)"
        )
    if array.size == 0:
        raise InvalidInputError(f"the image is empty (shape {array.shape})")
    if array.dtype.kind == "f":
        lo, hi = array.min(), array.max()  # NaN propagates through min/max; no full-size mask needed
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InvalidInputError(
                "the image contains NaN or infinite values; replace them first, "
                "e.g. np.nan_to_num(image)"
            )
    return array


def _resolve_axes(shape: tuple[int, ...], meta: ModelMetadata, axes: str | None) -> str:
    """Validate ``axes`` against ``shape``, or infer them; the error says how to disambiguate."""
    allowed = AXES_2D if meta.spatial_dims == 2 else AXES_3D
    c = meta.in_channels
    if axes is None:
        if meta.spatial_dims == 3:
            axes = {3: "ZYX", 4: "CZYX"}.get(len(shape))
        elif len(shape) == 2:
            axes = "YX"
        elif len(shape) == 3:
            if c == 1:
                axes = "NYX"
            elif shape[0] == c:
                axes = "CYX"
            elif shape[-1] == c:
                axes = "YXC"
        elif len(shape) == 4:
            axes = "NCYX"
        if axes is None:
            raise InvalidInputError(
                f"image of shape {shape} does not fit this {meta.spatial_dims}D model with {c} input "
                f"channel(s); expected one of the layouts {', '.join(allowed)} (pass axes=...)"
            )
    else:
        validate_choice("axes", axes, allowed)
        if len(axes) != len(shape):
            raise InvalidInputError(f"axes={axes!r} has {len(axes)} letters but the image has shape {shape}")
    channels = shape[axes.index("C")] if "C" in axes else 1
    if channels != c:
        raise InvalidInputError(
            f"image of shape {shape} read as {axes} has {channels} channel(s); the model takes {c}"
            + (f" (give a {'C' + axes.replace('C', '')} array)" if c > 1 else "")
        )
    return axes


def _as_stack(array: np.ndarray, axes: str) -> np.ndarray:
    """A (N, C, *spatial) view of ``array`` laid out as ``axes``."""
    target = "NC" + ("ZYX" if "Z" in axes else "YX")
    missing = [a for a in target if a not in axes]
    view = array.reshape(array.shape + (1,) * len(missing))
    current = axes + "".join(missing)
    return np.transpose(view, [current.index(a) for a in target])


def _output_array(out: Any, shape: tuple[int, ...], dtype: np.dtype, output: str, classes: int) -> Any:
    if out is None:
        return np.empty(shape, dtype=dtype)
    if tuple(out.shape) != shape:
        raise InvalidInputError(f"out has shape {tuple(out.shape)}; this prediction needs {shape}")
    kind = np.dtype(out.dtype).kind
    if output == "proba" and kind != "f":
        raise InvalidInputError(f"out has dtype {out.dtype}; probabilities need a float array")
    if output == "labels" and (kind not in "iu" or np.iinfo(out.dtype).max < classes - 1):
        raise InvalidInputError(f"out has dtype {out.dtype}; labels need an integer type holding 0..{classes - 1}")
    return out
