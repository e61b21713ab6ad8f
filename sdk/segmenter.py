"""``Segmenter``: a self-describing ONNX U-Net applied to images, stacks and volumes of any size.

A thin shell: :mod:`sdk.runtime` owns the ONNX Runtime session, :mod:`sdk.inference` the tiled
prediction, :mod:`sdk.tiling` the tile geometry; this module checks the user's array, maps its axes to
(N, C, *spatial) views and picks defaults from the model's metadata.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Sequence

import numpy as np

from .errors import InvalidInputError
from .image_statistics import min_max
from .inference import OutputSlot, Progress, label_dtype, labels_from_proba, sliding_window_predict, tta_mode
from .model_metadata import ModelMetadata
from .postprocessing import apply_postprocessing
from .models import resolve_model
from .runtime import Runtime
from . import sizing
from .tiling import MERGE_MODES, plan_tiles, validate_choice

logger = logging.getLogger(__name__)

AXES_2D = ("YX", "CYX", "YXC", "NYX", "NCYX", "NYXC")
AXES_3D = ("ZYX", "CZYX", "ZYXC")
COLOUR_CHANNELS = (3, 4)  # RGB, RGBA: a trailing axis of this length on a 1-channel model is colour
# luminance of RGB as scikit-image's rgb2gray (ITU-R BT.709 primaries); an alpha channel is ignored
LUMINANCE = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
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
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``"auto"`` uses CUDA if ONNX Runtime's CUDA provider really loads, else the CPU (see
        :attr:`device`); ``"cuda"`` (GPU 0) or ``"cuda:N"`` (GPU N) raises
        :class:`~sdk.errors.RuntimeUnavailableError` if it cannot.
    tile : int or sequence of int
        Network input side(s) of a tile, rounded up to a size the network accepts. Default: for
        overlap-tile on the CPU the largest tile whose working memory fits a quarter of the available
        memory (:func:`sdk.sizing.default_tile`); otherwise the model's ``tile_size``, else 512 (2D) /
        96 (3D). For overlap-tile on a same-padding model a tile too small to hold the model's halo is
        grown to the smallest one that does (logged), so
        the result never depends on the tile.
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
        ONNX Runtime intra-op threads (default: all cores this process may use; requests beyond
        :data:`sdk.runtime.MAX_THREADS_PER_CORE` per core are capped there, with a warning).
    tta : bool or {"none", "flips", "dihedral"}
        Test-time augmentation: average the probabilities over all flips of the spatial axes
        (``True`` or ``"flips"``: 4 views in 2D), or over the 8 symmetries of the (Y, X) square
        (``"dihedral"``: quarter turns and flips, x2 with a Z flip in 3D). Costs that many network runs.
    postprocess : bool
        Apply the post-processing the model's metadata declares (``metadata.postprocessing``, e.g. the
        shipped ISBI 2012 model's watershed boundaries, :mod:`sdk.postprocessing`) to each whole image;
        ``False``: the network's output as it is. Models without one are unaffected. The attribute
        ``postprocess`` says whether it is applied (False for a model that declares none).

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
        tta: bool | str = False,
        postprocess: bool = True,
    ) -> None:
        self._model_source = resolve_model(model)  # sdk.explain appends its explanation graph to these bytes
        self._runtime = Runtime(self._model_source, device=device, threads=threads)
        meta = self.metadata
        self.blend = (
            validate_choice("blend", blend, MERGE_MODES)
            if blend is not None
            else ("none" if meta.padding == "valid" else meta.blend)
        )
        if tile is None:
            # overlap-tile results do not depend on the tile, so take the largest that fits the memory budget
            batch = batch_size if isinstance(batch_size, int) and batch_size > 0 else 1
            tile = (sizing.default_tile(self._runtime, batch_size=batch) if self.blend == "none"
                    else meta.tile_size or DEFAULT_TILE[meta.spatial_dims])
        self.tile = _tile_sizes(tile, meta)
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
        self.tta = tta_mode(tta)
        self.postprocess = bool(postprocess) and meta.postprocessing.active

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
        # a tile must hold the halo and still advance by at least one pooling step
        smallest = meta.valid_input_size_at_least(math.ceil(shared) + meta.input_size_multiple)
        if min(self.tile) < smallest:
            grown = tuple(max(t, smallest) for t in self.tile)
            logger.info(
                "tile %s cannot hold the model's %g-px halo; using tile %s, the smallest that does",
                self.tile, shared, grown,
            )
            self.tile = grown
        return shared / min(self.tile)

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

    @property
    def weights_verified(self) -> bool:
        """Whether loading checked the weights against the digest stored in the model (models exported
        before digests carry none, and load unchecked)."""
        return self._runtime.weights_verified

    def release_memory(self) -> None:
        """Return the working memory ONNX Runtime keeps between calls (one tile batch's activations,
        reused while tiles keep their shape) to the system, e.g. before a long idle time."""
        self._runtime.release_memory()

    def __repr__(self) -> str:
        return (
            f"Segmenter({self._runtime.source!r}, device={self.device!r}, tile={self.tile}, "
            f"overlap={self.overlap}, blend={self.blend!r}, batch_size={self.batch_size}, tta={self.tta!r}, "
            f"postprocess={self.postprocess})"
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

    def explain(self, image: Any, *, target_class: int | str | None = None, region: Any = None,
                layer: str | None = None, axes: str | None = None, progress: Progress | None = None) -> np.ndarray:
        """Seg-Grad-CAM heat map (Vinogradova et al. 2020), float32 >= 0, shaped like :meth:`predict`'s output.

        ``target_class`` (index or name; default the foreground class) and ``region`` (a mask of that shape;
        default the pixels predicted as the class) define the score; ``layer`` is one of
        ``sdk.explain.explainable_layers(seg)`` (default the bottleneck). Needs a model exported
        with its explanation graph (``unet-export onnx --explain``), else :class:`~sdk.errors.ModelError`.
        Tiling, and the formula: :mod:`sdk.explain`.
        """
        from .explain import explain

        return explain(self, image, target_class=target_class, region=region, layer=layer, axes=axes,
                       progress=progress)

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

    def predict_instances(
        self,
        image: Any,
        *,
        axes: str | None = None,
        connectivity: str = "face",
        split_touching: bool = False,
        seed_threshold: float = 0.9,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Objects of the model's foreground class as instance labels: uint32, 0 = not foreground,
        1..n per object, shaped like :meth:`predict`'s output.

        Objects are the connected components (:func:`sdk.metrics.label_components`; ``connectivity``
        ``"face"`` = 4/6-neighbours, ``"full"`` = 8/26) of the pixels predicted as the foreground class;
        the slices of a stack are labelled one by one (labels stay unique across slices), a volume as a
        whole. ``split_touching=True`` separates touching objects with a seeded watershed on the
        foreground probability: seeds are the components where it is at least ``seed_threshold``, and
        they flood the foreground in order of decreasing probability (:func:`sdk.instances.seeded_watershed`;
        Beucher & Meyer 1993), so a foreground component without a seed stays background.
        """
        from .instances import model_instances

        if not 0.0 < seed_threshold <= 1.0:
            raise InvalidInputError(f"seed_threshold={seed_threshold!r} must be in (0, 1]")
        proba = self.predict_proba(image, axes=axes, progress=progress)
        return model_instances(labels_from_proba(proba), proba[self.metadata.foreground_class], self.metadata,
                               split_touching=split_touching, seed_threshold=seed_threshold,
                               connectivity=connectivity)

    def _predict(self, image: Any, axes: str | None, output: str, out: Any, progress: Progress | None) -> Any:
        array = _checked_image(image)
        axes = _resolve_axes(array.shape, self.metadata, axes)
        stack = _as_stack(array, axes)  # (N, C, *spatial) view
        if stack.shape[1] != self.metadata.in_channels:  # colour into a 1-channel model (_resolve_axes)
            logger.info(
                "%s image %s: converted to grey by luminance (0.2125 R + 0.7154 G + 0.0721 B%s) for this "
                "1-channel model", "RGBA" if stack.shape[1] == 4 else "RGB", array.shape,
                ", alpha ignored" if stack.shape[1] == 4 else "",
            )
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
        def tiled(source: Any, kind: str, into: Any, n: int) -> Any:
            return sliding_window_predict(
                source,
                self._runtime.run,
                self.metadata,
                channels=classes,
                tile=self.tile,
                overlap=self.overlap,
                merge=self.blend,
                normalization=self.metadata.normalization,
                activation=self.metadata.output_activation,
                output=kind,
                out=into,
                batch_size=self.batch_size,
                tta=self.tta,
                progress=None
                if progress is None
                else (lambda done, total: progress(n * per_image + done, per_image * stack.shape[0])),
            )

        for n in range(stack.shape[0]):
            target = out if single else OutputSlot(out, 1 if output == "proba" else 0, n)
            source = stack[n] if stack.shape[1] == self.metadata.in_channels else Luminance(stack[n])
            if not self.postprocess:
                tiled(source, output, target, n)
                continue
            # the flood of the post-processing needs the whole image's probabilities at once
            proba = apply_postprocessing(tiled(source, "proba", _whole_image_proba(classes, spatial), n), self.metadata)
            whole = (slice(None),) * len(spatial)
            if output == "proba":
                target[(slice(None),) + whole] = proba
            else:
                target[whole] = labels_from_proba(proba)
        return out


class Luminance:
    """A (1, *spatial) grey view of a colour image (3|4, *spatial), computed per block as it is read:
    ``0.2125 R + 0.7154 G + 0.0721 B`` in float32, in the image's own units (an alpha channel is
    ignored). Supports what tiling and normalisation read: ``shape``, ``dtype``, ``ndim`` and slicing
    with the channel index first."""

    dtype = np.dtype(np.float32)

    def __init__(self, colour: Any) -> None:
        self.colour = colour
        self.shape = (1,) + tuple(colour.shape[1:])
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        channel, rest = (key[0], key[1:]) if key else (slice(None), ())
        rgb = np.asarray(self.colour[(slice(0, 3),) + tuple(rest)], dtype=np.float32)
        return np.tensordot(LUMINANCE, rgb, axes=(0, 0))[None][channel]


def _tile_sizes(tile: int | Sequence[int], meta: ModelMetadata) -> tuple[int, ...]:
    sizes = (tile,) * meta.spatial_dims if isinstance(tile, (int, np.integer)) else tuple(tile)
    if len(sizes) != meta.spatial_dims or not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
        raise InvalidInputError(
            f"tile={tile!r}: give one positive integer or {meta.spatial_dims} of them (a {meta.spatial_dims}D model)"
        )
    return tuple(int(s) for s in sizes)


def _checked_image(image: Any) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        from .io import read_image  # a path: read it as `unet-sdk predict` would

        image = read_image(image)
    try:
        array = image if isinstance(image, np.ndarray) else np.asarray(image)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"the image is not a rectangular array ({exc}): pass a numpy array, e.g. one read with "
            "sdk.io.read_image, or stack equally sized images with np.stack"
        ) from None
    if array.dtype.kind not in "biuf":
        raise InvalidInputError(
            f"unsupported image dtype {array.dtype}: give real numbers (bool, integer or float), "
            "e.g. image.real or image.astype(np.float32)"
            + ("; to segment a file, pass its path or read it with sdk.io.read_image" if array.dtype.kind in "US" else "")
        )
    if array.size == 0:
        raise InvalidInputError(f"the image is empty (shape {array.shape})")
    if array.dtype.kind == "f":
        lo, hi = min_max(array[None])  # in blocks: no full-size temporary
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise InvalidInputError(
                "the image contains NaN or infinite values; replace them first, "
                "e.g. np.nan_to_num(image)"
            )
    return array


def _resolve_axes(shape: tuple[int, ...], meta: ModelMetadata, axes: str | None) -> str:
    """Validate ``axes`` against ``shape``, or infer them; the error says how to disambiguate.

    A trailing axis of 3 or 4 on an (H, W, C), (N, H, W, C) or (Z, H, W, C) image given to a 1-channel
    model is read as colour (converted to grey by :class:`Luminance`), as every viewer reads RGB(A) files.
    """
    allowed = AXES_2D if meta.spatial_dims == 2 else AXES_3D
    c = meta.in_channels
    colour = c == 1 and len(shape) >= 3 and shape[-1] in COLOUR_CHANNELS and min(shape[-3:-1]) > max(COLOUR_CHANNELS)
    if axes is None:
        if meta.spatial_dims == 3:
            if len(shape) == 3:
                axes = "ZYX"
            elif len(shape) == 4:
                axes = "ZYXC" if colour or (shape[0] != c and shape[-1] == c) else "CZYX"
        elif len(shape) == 2:
            axes = "YX"
        elif len(shape) == 3:
            if colour:
                axes = "YXC"
            elif c == 1:
                axes = "NYX"
            elif shape[0] == c:
                axes = "CYX"
            elif shape[-1] == c:
                axes = "YXC"
        elif len(shape) == 4:
            axes = "NYXC" if colour or (shape[1] != c and shape[-1] == c) else "NCYX"
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
    if channels != c and not (c == 1 and channels in COLOUR_CHANNELS):
        raise InvalidInputError(
            f"image of shape {shape} read as {axes} has {channels} channel(s); the model takes {c}"
            + (f" (give a {'C' + axes.replace('C', '')} array)" if c > 1 else " (or 3/4 colour channels, read as grey)")
        )
    return axes


def _as_stack(array: np.ndarray, axes: str) -> np.ndarray:
    """A (N, C, *spatial) view of ``array`` laid out as ``axes``."""
    target = "NC" + ("ZYX" if "Z" in axes else "YX")
    missing = [a for a in target if a not in axes]
    view = array.reshape(array.shape + (1,) * len(missing))
    current = axes + "".join(missing)
    return np.transpose(view, [current.index(a) for a in target])


def _whole_image_proba(classes: int, spatial: tuple[int, ...]) -> np.ndarray:
    try:
        return np.empty((classes,) + spatial, dtype=np.float32)
    except MemoryError:
        raise InvalidInputError(
            f"the model's post-processing needs the probabilities of a whole image ({classes} x {spatial} "
            "float32) in memory, and they do not fit: pass postprocess=False for the network's raw output"
        ) from None


def _output_array(out: Any, shape: tuple[int, ...], dtype: np.dtype, output: str, classes: int) -> Any:
    if out is None:
        from .sizing import available_memory

        needed, available = math.prod(shape) * dtype.itemsize, available_memory()
        if needed > available:
            raise InvalidInputError(
                f"the {'probabilities' if output == 'proba' else 'labels'} of this image ({shape}, {dtype}) need "
                f"{needed / 1e9:.1f} GB, more than the {available / 1e9:.1f} GB of memory available: pass out= "
                "a numpy.memmap or zarr array of that shape and dtype (Segmenter.output_spec gives both)"
            )
        try:
            return np.empty(shape, dtype=dtype)
        except MemoryError:
            raise InvalidInputError(
                f"cannot allocate the output ({shape}, {dtype}): pass out= a numpy.memmap or zarr array"
            ) from None
    if tuple(out.shape) != shape:
        raise InvalidInputError(f"out has shape {tuple(out.shape)}; this prediction needs {shape}")
    kind = np.dtype(out.dtype).kind
    if output == "proba" and kind != "f":
        raise InvalidInputError(f"out has dtype {out.dtype}; probabilities need a float array")
    if output == "labels" and (kind not in "iu" or np.iinfo(out.dtype).max < classes - 1):
        raise InvalidInputError(f"out has dtype {out.dtype}; labels need an integer type holding 0..{classes - 1}")
    return out
