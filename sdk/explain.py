"""Seg-Grad-CAM heat maps from a unet-sdk ONNX model, with ONNX Runtime only (no torch, no onnx).

Seg-Grad-CAM (Vinogradova, Dibrov, Myers 2020, arXiv:2002.11434; after Grad-CAM, Selvaraju et al. 2017):
for a class ``c``, a region ``R`` and a layer with activations ``A_k`` (channel ``k``),

    S = sum_{p in R} z_c(p),    w_k = mean_q dS / dA_k(q),    map = ReLU(sum_k w_k A_k),

upsampled (bilinearly, half-pixel centres as in ``torch.nn.functional.interpolate``) to the input. ``z_c`` is
the pre-activation output of the model's graph: the logit ``y_c`` for three or more classes; for two
classes the log-odds ``y_c - y_other``, the only part of a two-class softmax's logits that a model defines
(they are fixed up to a shared shift, and exported two-class models fold the head into that difference).

The gradients come from an explanation graph stored in the model (``unet-export onnx --explain``, written by
``export/explain_graph.py``): the forward graph plus its backward pass written out as forward ops, one per
explainable layer, kept in the metadata as a protobuf delta that is appended to the model's bytes (protobuf
merges concatenated messages), so prediction never pays for it.

Tiling (images larger than a tile) changes what a "global mean" weight means: a tile's own mean would weigh
channels by what that tile's pixels of the region need, so the same structure would be explained differently
in each tile, and tiles without region pixels would get no weights at all. Here the weights are those of the
whole image: a first pass sums the gradients of every tile (each region pixel's score counted once, in the
tile whose kept window holds it; the sensitivities to a tile's halo are part of that sum, as they are in the
whole image), divided by the number of layer positions of the whole image; a second pass forms each tile's
map with these weights and keeps its window (overlap-tile, so every pixel's map comes from one tile, like
``predict``). With a halo that covers the receptive field this equals whole-image Seg-Grad-CAM up to float
rounding. Tiles' activations are kept between the passes when they fit in :data:`ACTIVATION_CACHE_BYTES`,
else recomputed.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .errors import InvalidInputError, ModelError
from .model_metadata import ModelMetadata, Normalization
from .tiling import TilePlan, extract_tile, plan_tiles

logger = logging.getLogger(__name__)

METADATA_KEY = "unet_sdk_explanation"  # outside the "unet_sdk." prefix: re-stamping ModelMetadata keeps it
SCHEMA_VERSION = 1
REGION_INPUT = "explain_region"  # (N, 1, *output spatial) float32: weight of each output pixel in the score
CLASS_INPUT = "explain_class"  # (K,) float32: weight of each class's score (one-hot for one class)
ACTIVATIONS_OUTPUT = "explain_activations"  # (N, channels, *layer spatial)
GRADIENTS_OUTPUT = "explain_gradients"  # d score / d activations, same shape
ACTIVATION_CACHE_BYTES = 1 << 30
# an explanation run keeps the forward activations for the backward pass: measured on the default model at
# 1024^2, 2.7-3.0 GB peak against 0.41 GB for predict
EXPLAIN_MEMORY_FACTOR = 8.0
MAX_EXPLAIN_OVERLAP = 0.75
# tiles up to these sizes need at most ~0.7 GB for an explanation: neither shrunk nor released after a call
# (keeping the arena saves 15-20 % of a repeated 512² explanation)
SMALL_TILE = {2: (512, 512), 3: (96, 96, 96)}
MAX_METADATA_CHARS = 64 << 20  # a depth-4 U-Net's nine layers take ~0.1 MB (fp32) / 0.35 MB (int8)
REEXPORT_HINT = (
    "re-export it with `unet-export onnx CHECKPOINT --explain`, or add the graph to an existing .onnx with "
    "`python -m export.explain_graph MODEL.onnx -o OUT.onnx` (needs the 'train' extra)"
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExplainableLayer:
    name: str
    channels: int
    stride: float  # input pixels per layer position along each axis
    graph: bytes  # the delta appended to the model's bytes


@dataclass(frozen=True)
class Explanation:
    """What the model's metadata says about its explanation graphs."""

    layers: Mapping[str, ExplainableLayer]
    default_layer: str

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "the model") -> "Explanation":
        """Parse the :data:`METADATA_KEY` entry; :class:`ModelError` (with how to re-export) if absent or bad."""
        text = props.get(METADATA_KEY)
        if text is None:
            raise ModelError(f"{source} has no explanation graph (metadata '{METADATA_KEY}'); {REEXPORT_HINT}")
        if len(text) > MAX_METADATA_CHARS:
            raise ModelError(f"{source}: explanation metadata of {len(text)} characters (at most "
                             f"{MAX_METADATA_CHARS}); {REEXPORT_HINT}")
        try:
            entry = json.loads(text)
            version = int(entry["schema_version"])
            layers = {
                name: ExplainableLayer(name, int(layer["channels"]), float(layer["stride"]),
                                       _checked_graph(name, layer, source))
                for name, layer in entry["layers"].items()
            }
            default = entry["default_layer"]
        except ModelError:  # a graph that fails its digest (a ValueError too): already says what is wrong
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # binascii.Error is a ValueError
            raise ModelError(f"{source}: malformed explanation metadata ({type(exc).__name__}: {exc}); "
                             f"{REEXPORT_HINT}") from exc
        if version > SCHEMA_VERSION:
            raise ModelError(f"{source}: explanation schema {version} is newer than this unet-sdk understands "
                             f"({SCHEMA_VERSION}); upgrade unet-sdk")
        if not layers or default not in layers or not all(layer.stride > 0 for layer in layers.values()):
            raise ModelError(f"{source}: explanation metadata lists no layers, a default layer it lacks or a "
                             f"non-positive stride; {REEXPORT_HINT}")
        return cls(layers, default)


def _checked_graph(name: str, layer: Mapping[str, Any], source: str) -> bytes:
    """A layer's decoded graph delta, checked against its SHA-256 when the entry has one (a flipped bit in
    the text can still decode to a valid graph with a different constant: a silently wrong map)."""
    graph = base64.b64decode(layer["graph"], validate=True)
    expected = layer.get("sha256")
    if expected is not None and hashlib.sha256(graph).hexdigest() != expected:
        raise ModelError(f"{source}: the explanation graph of layer {name!r} does not match its digest: the file "
                         f"is corrupt; {REEXPORT_HINT}")
    return graph


# -- the functional core --------------------------------------------------------------------------------

# (batch (1, C, *tile_in), region (1, 1, *tile_out), class weights (K,)) -> (activations, gradients)
TileExplainer = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def upsample_window(cam: np.ndarray, window: tuple[slice, ...], margin: int, input_shape: tuple[int, ...],
                    stride: float) -> np.ndarray:
    """Linear interpolation of a layer map ``cam`` (*layer spatial) at the output pixels ``window`` of a tile
    (tile output coordinates), separably per axis.

    The layer grid is centred on the tile's input (every U-Net op is symmetric: padded or valid 3-wide
    convolutions, 2x pooling of even sides, centred skip crops), so output pixel ``o`` (input pixel
    ``o + margin``) lies at layer position ``(n_L - 1) / 2 + (o + margin - (n_in - 1) / 2) / stride``,
    clamped to the grid. For same padding this is ``(o + 0.5) / stride - 0.5``: bilinear/trilinear
    interpolation with ``align_corners=False``, as in the reference code.
    """
    out = cam.astype(np.float64)
    for axis, (w, n_in) in enumerate(zip(window, input_shape)):
        n_layer = cam.shape[axis]
        pos = (n_layer - 1) / 2.0 + (np.arange(w.start, w.stop) + margin - (n_in - 1) / 2.0) / stride
        pos = np.clip(pos, 0.0, n_layer - 1)
        low = np.floor(pos).astype(np.intp)
        high = np.minimum(low + 1, n_layer - 1)
        frac = (pos - low).reshape((-1,) + (1,) * (cam.ndim - axis - 1))
        out = np.take(out, low, axis=axis) * (1.0 - frac) + np.take(out, high, axis=axis) * frac
    return out.astype(np.float32)


def tiled_seg_grad_cam(
    image: np.ndarray,
    explain_tile: TileExplainer,
    plan: TilePlan,
    *,
    region: np.ndarray,
    class_weights: np.ndarray,
    stride: float,
    normalization: Normalization | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Seg-Grad-CAM of ``image`` (C, *spatial) over overlap-tiles ``plan`` (merge "none"); returns the map
    (*spatial) float32. ``region`` (*spatial) weighs each pixel's score (a 0/1 mask); see the module
    docstring for how the weights are pooled over tiles."""
    if plan.merge != "none":
        raise InvalidInputError("explanations tile by overlap-tile (merge='none'): each pixel from one tile")
    statistics = normalization.statistics(image) if normalization is not None else None
    tiles = list(plan)
    margin = plan.axes[0].margin
    region = np.asarray(region, dtype=np.float32)
    class_weights = np.ascontiguousarray(class_weights, dtype=np.float32)
    total_steps = 2 * len(tiles) if len(tiles) > 1 else 1

    def tile_input(tile) -> np.ndarray:
        raw = extract_tile(image, plan, tile)
        x = raw.astype(np.float32) if normalization is None else normalization.apply(raw, statistics)
        return x[None]

    def tile_region(tile) -> np.ndarray:
        out = np.zeros((1, 1) + plan.output_shape, dtype=np.float32)
        out[(0, 0) + tile.local(tile.keep)] = region[tile.keep]
        return out

    gradient_sum = None
    cached: list[np.ndarray | None] = []
    cache_bytes = 0
    for index, tile in enumerate(tiles):
        tile_reg = tile_region(tile)
        if not tile_reg.any() and len(tiles) > 1:
            cached.append(None)  # no region pixel here: its gradient is exactly zero
        else:
            activations, gradients = explain_tile(tile_input(tile), tile_reg, class_weights)
            tile_sum = gradients[0].sum(axis=tuple(range(1, gradients.ndim - 1)), dtype=np.float64)
            gradient_sum = tile_sum if gradient_sum is None else gradient_sum + tile_sum
            keep = cache_bytes + activations.nbytes <= ACTIVATION_CACHE_BYTES
            cached.append(activations[0] if keep else None)
            cache_bytes += activations.nbytes if keep else 0
        if progress is not None:
            progress(index + 1, total_steps)
    if gradient_sum is None:
        raise InvalidInputError("the region is empty: no pixel contributes to the score")
    positions = math.prod(plan.shape) / stride ** len(plan.shape)
    weights = gradient_sum / positions
    heat = np.zeros(plan.shape, dtype=np.float32)
    no_region = np.zeros((1, 1) + plan.output_shape, dtype=np.float32)
    for index, tile in enumerate(tiles):
        activations = cached[index]
        if activations is None:
            activations = explain_tile(tile_input(tile), no_region, class_weights)[0][0]
        cam = np.maximum(np.tensordot(weights, activations, axes=1), 0.0)
        heat[tile.keep] = upsample_window(cam, tile.local(tile.keep), margin, plan.input_shape, stride)
        if progress is not None and len(tiles) > 1:
            progress(len(tiles) + index + 1, total_steps)
    logger.debug("seg-grad-cam over %d tile(s): weights %s", len(tiles), np.round(weights[:8], 6))
    return heat


# -- the ONNX Runtime shell ----------------------------------------------------------------------------


class Explainer:
    """Explanation sessions of one model, one per layer (created on first use; thread-safe)."""

    def __init__(self, model_bytes: bytes, explanation: Explanation, *, device: str, threads: int,
                 source: str, device_id: int = 0, input_name: str = "image") -> None:
        self.model_bytes = model_bytes
        self.input_name = input_name
        self.explanation = explanation
        self.device = device
        self.device_id = device_id
        self.threads = threads
        self.source = source
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def layer(self, name: str | None) -> ExplainableLayer:
        name = self.explanation.default_layer if name is None else name
        if name not in self.explanation.layers:
            raise InvalidInputError(
                f"layer={name!r} is not explainable in {self.source}; its layers are "
                f"{', '.join(self.explanation.layers)}"
            )
        return self.explanation.layers[name]

    def session(self, name: str) -> Any:
        with self._lock:
            if name not in self._sessions:
                self._sessions[name] = self._open(self.explanation.layers[name])
            return self._sessions[name]

    def _open(self, layer: ExplainableLayer) -> Any:
        from .runtime import CPU, CUDA, _cuda_provider_options, _ORT_QUIET, _session_options, import_onnxruntime

        ort = import_onnxruntime()
        providers = [(CUDA, _cuda_provider_options(self.device_id)), CPU] if self.device == "cuda" else [CPU]
        try:
            return ort.InferenceSession(self.model_bytes + layer.graph,
                                        sess_options=_session_options(ort, self.threads, _ORT_QUIET),
                                        providers=providers)
        except Exception as exc:  # ORT's own exception types
            raise ModelError(f"{self.source}: the explanation graph of layer {layer.name!r} does not load "
                             f"({type(exc).__name__}: {str(exc).strip()[:300]}); {REEXPORT_HINT}") from exc

    def tile_explainer(self, name: str) -> TileExplainer:
        session = self.session(name)

        def run(batch: np.ndarray, region: np.ndarray, class_weights: np.ndarray):
            activations, gradients = session.run(
                [ACTIVATIONS_OUTPUT, GRADIENTS_OUTPUT],
                {self.input_name: batch, REGION_INPUT: region, CLASS_INPUT: class_weights},
            )
            return np.asarray(activations, np.float32), np.asarray(gradients, np.float32)

        return run

    def release_memory(self, name: str, metadata: ModelMetadata) -> None:
        """Hand the idle memory of layer ``name``'s session back to the system: an explanation run holds
        several times predict's working memory, too much to keep between calls. ORT shrinks an arena only as
        a run ends, so this runs the smallest accepted input with the shrink option."""
        from .runtime import import_onnxruntime

        options = import_onnxruntime().RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage",
                                     f"gpu:{self.device_id}" if self.device == "cuda" else "cpu:0")
        side = metadata.valid_input_size_at_least(1)
        d = metadata.spatial_dims
        self.session(name).run([GRADIENTS_OUTPUT], {
            self.input_name: np.zeros((1, metadata.in_channels) + (side,) * d, np.float32),
            REGION_INPUT: np.zeros((1, 1) + (side - 2 * metadata.output_margin,) * d, np.float32),
            CLASS_INPUT: np.zeros(metadata.num_classes, np.float32),
        }, options)


_EXPLAINERS: "weakref.WeakKeyDictionary[Any, Explainer]" = weakref.WeakKeyDictionary()
_EXPLAINERS_LOCK = threading.Lock()


def explainer_of(segmenter: Any) -> Explainer:
    """The :class:`Explainer` of a :class:`~sdk.segmenter.Segmenter` (made once, on the first explanation)."""
    from .model_file import read_model_file
    from .runtime import _model_bytes

    with _EXPLAINERS_LOCK:
        if segmenter not in _EXPLAINERS:
            runtime = segmenter._runtime
            data, _ = _model_bytes(segmenter._model_source)
            record = read_model_file(data, runtime.source)
            explanation = Explanation.from_props(record.props, runtime.source)
            if record.external:
                raise ModelError(f"{runtime.source}: keeps its weights in external files; explanations need a "
                                 "self-contained model (re-export without external data)")
            _EXPLAINERS[segmenter] = Explainer(data, explanation, device=runtime.device, threads=runtime.threads,
                                               source=runtime.source, device_id=runtime.device_id,
                                               input_name=runtime.input_name)
        return _EXPLAINERS[segmenter]


def explanation_tiles(segmenter: Any, shape: tuple[int, ...]) -> tuple[tuple[int, ...], float]:
    """The segmenter's tiles and overlap, with tiles shrunk on the CPU where an explanation run
    (:data:`EXPLAIN_MEMORY_FACTOR` times predict's working memory) would not fit the memory budget that
    sizes predict's default tiles; the overlap keeps its halo in pixels."""
    from . import sizing

    meta = segmenter.metadata
    tile, overlap = segmenter.tile, segmenter.overlap
    plan = plan_tiles(shape, meta, tile=tile, overlap=overlap, merge="none")
    if segmenter.device != "cpu" or math.prod(plan.input_shape) <= math.prod(SMALL_TILE[meta.spatial_dims]):
        return tile, overlap
    per_pixel = sizing.tile_bytes_per_pixel(segmenter._runtime) * EXPLAIN_MEMORY_FACTOR
    fitting = sizing.largest_tile(meta, per_pixel, sizing.memory_budget(), spatial_dims=meta.spatial_dims)
    if max(plan.input_shape) <= fitting:
        return tile, overlap
    shrunk = tuple(min(t, fitting) for t in tile)
    shared = overlap * min(tile)
    logger.info("explanation tiles %s instead of %s: an explanation needs ~%gx predict's memory per pixel",
                shrunk, tile, EXPLAIN_MEMORY_FACTOR)
    return shrunk, min(shared / min(shrunk), MAX_EXPLAIN_OVERLAP)


def class_index(target_class: int | str | None, metadata: ModelMetadata) -> int:
    """A class given by index or name (default: the model's foreground class)."""
    if target_class is None:
        return metadata.foreground_class
    if isinstance(target_class, str):
        if target_class in metadata.class_names:
            return metadata.class_names.index(target_class)
        if not target_class.isdigit():
            raise InvalidInputError(f"class {target_class!r} is not one of {', '.join(metadata.class_names)}")
        target_class = int(target_class)
    if not isinstance(target_class, (int, np.integer)) or not 0 <= target_class < metadata.num_classes:
        raise InvalidInputError(
            f"class {target_class!r} is not a class index 0..{metadata.num_classes - 1} or a name "
            f"({', '.join(metadata.class_names)})"
        )
    return int(target_class)


def explain(
    segmenter: Any,
    image: Any,
    *,
    target_class: int | str | None = None,
    region: Any = None,
    layer: str | None = None,
    axes: str | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Seg-Grad-CAM heat map (float32, >= 0) shaped like ``segmenter.predict(image)``; see
    :meth:`sdk.segmenter.Segmenter.explain`."""
    from .segmenter import Luminance, _as_stack, _checked_image, _resolve_axes

    meta = segmenter.metadata
    explainer = explainer_of(segmenter)
    chosen = explainer.layer(layer)
    c = class_index(target_class, meta)
    array = _checked_image(image)
    axes = _resolve_axes(array.shape, meta, axes)
    stack = _as_stack(array, axes)
    out_shape, _ = segmenter.output_spec(array.shape, axes=axes)
    if region is None:
        masks = np.asarray(segmenter.predict(array, axes=axes)) == c
        if not masks.any():
            raise InvalidInputError(
                f"no pixel is predicted as class {c} ({meta.class_names[c]}); pass region=... to explain it anyway"
            )
    else:
        masks = np.asarray(region)
        if masks.shape != out_shape:
            raise InvalidInputError(f"region has shape {masks.shape}; it must be {out_shape}, the image's "
                                    "shape without its channel axis")
        if masks.dtype.kind not in "biuf" or not np.all(np.isfinite(masks)):
            raise InvalidInputError("region must be a boolean mask or finite numbers (weights of pixels)")
        if not masks.any():
            raise InvalidInputError("region is empty: no pixel contributes to the score")
    masks = masks.reshape((stack.shape[0],) + stack.shape[2:])
    tile, overlap = explanation_tiles(segmenter, stack.shape[2:])
    plan = plan_tiles(stack.shape[2:], meta, tile=tile, overlap=overlap, merge="none")
    class_weights = np.zeros(meta.num_classes, np.float32)
    class_weights[c] = 1.0
    run = explainer.tile_explainer(chosen.name)
    heat = np.empty(masks.shape, dtype=np.float32)
    for n in range(stack.shape[0]):
        if not masks[n].any():
            heat[n] = 0.0  # a slice of a stack without region pixels has nothing to explain
            continue
        image_n = stack[n] if stack.shape[1] == meta.in_channels else Luminance(stack[n])  # colour, as predict
        heat[n] = tiled_seg_grad_cam(
            image_n, run, plan, region=masks[n], class_weights=class_weights, stride=chosen.stride,
            normalization=meta.normalization,
            progress=None if progress is None else (lambda d, t, n=n: progress(n * t + d, t * stack.shape[0])),
        )
    if math.prod(plan.input_shape) > math.prod(SMALL_TILE[meta.spatial_dims]):
        explainer.release_memory(chosen.name, meta)
    return heat.reshape(out_shape)


def explainable_layers(segmenter: Any) -> dict[str, dict[str, float]]:
    """``{layer: {"channels": ..., "stride": ...}}`` of the segmenter's model, default layer first; empty if
    the model has no explanation graph."""
    props = segmenter._runtime.session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        return {}
    explanation = Explanation.from_props(props, segmenter._runtime.source)
    names = [explanation.default_layer] + [n for n in explanation.layers if n != explanation.default_layer]
    return {n: {"channels": explanation.layers[n].channels, "stride": explanation.layers[n].stride} for n in names}
