"""The one place that knows the unet-sdk ONNX metadata schema.

``export/`` writes it into the model's ``metadata_props`` (:meth:`ModelMetadata.to_props`), ``sdk/`` reads
and validates it on load (:meth:`ModelMetadata.from_props`). Like timm's pretrained configs, the
preprocessing travels with the weights, so a model file is all a user needs.

Every key is stored under the ``unet_sdk.`` prefix as a string (ONNX metadata values are strings);
structured values are JSON.

Size rules of a U-Net (Ronneberger et al. 2015): an input side ``n`` is accepted iff
``n >= min_input_size`` and ``(n - input_size_offset) % input_size_multiple == 0``. The output side is
``n - 2 * output_margin`` ("valid" padding loses a margin at each border; "same" padding loses none).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import InvalidInputError, ModelError

SCHEMA_VERSION = 1
PREFIX = "unet_sdk."

NORMALIZATION_MODES = ("per_image_zscore", "per_image_minmax", "percentile", "fixed")
PADDING_MODES = ("same", "valid")
OUTPUT_ACTIVATIONS = ("none", "softmax", "sigmoid")
BLEND_MODES = ("gaussian", "constant", "none")  # "none": overlap-tile, halo cropping (sdk.tiling)


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become network input, applied per image (per channel).

    Modes:
      * ``per_image_zscore``: ``(x - mean(x)) / max(std(x), eps)`` over the whole image.
      * ``per_image_minmax``: ``(x - min) / max(max - min, eps)``.
      * ``percentile``: ``(x - P_low) / max(P_high - P_low, eps)`` with percentiles ``low``/``high``,
        then clipped to ``[clip_low, clip_high]`` if given.
      * ``fixed``: ``(x - mean) / std`` with the stored constants (e.g. dataset statistics).
    Statistics of the per-image modes are computed on the *whole* image before tiling, so tiled and
    whole-image inference see identical input values.
    """

    mode: str = "per_image_zscore"
    mean: float = 0.0
    std: float = 1.0
    low: float = 1.0
    high: float = 99.0
    clip_low: float | None = None
    clip_high: float | None = None
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATION_MODES:
            raise ModelError(
                f"unknown normalization mode {self.mode!r}; expected one of {NORMALIZATION_MODES}"
            )
        if self.mode == "fixed" and not self.std > 0:
            raise ModelError(f"normalization 'fixed' needs std > 0, got {self.std}")
        if self.mode == "percentile" and not 0 <= self.low < self.high <= 100:
            raise ModelError(
                f"normalization 'percentile' needs 0 <= low < high <= 100, got {self.low}, {self.high}"
            )

    def statistics(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(offset, scale)`` per channel for ``image`` of shape (C, *spatial)."""
        flat = image.reshape(image.shape[0], -1)
        if self.mode == "fixed":
            offset = np.full(flat.shape[0], self.mean, dtype=np.float64)
            scale = np.full(flat.shape[0], self.std, dtype=np.float64)
        elif self.mode == "per_image_zscore":
            offset = flat.mean(axis=1, dtype=np.float64)
            scale = flat.std(axis=1, dtype=np.float64)
        elif self.mode == "per_image_minmax":
            offset = flat.min(axis=1).astype(np.float64)
            scale = flat.max(axis=1).astype(np.float64) - offset
        else:  # percentile
            lo, hi = np.percentile(flat, [self.low, self.high], axis=1)
            offset, scale = lo.astype(np.float64), (hi - lo).astype(np.float64)
        return offset, np.maximum(scale, self.eps)

    def apply(
        self, image: np.ndarray, statistics: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Normalize ``image`` (C, *spatial), any real dtype, into a new float32 array.

        ``statistics`` (from :meth:`statistics` of the whole image) lets a tile be normalised exactly
        as the whole image would be.
        """
        offset, scale = self.statistics(image) if statistics is None else statistics
        shape = (-1,) + (1,) * (image.ndim - 1)
        out = (image.astype(np.float32) - offset.astype(np.float32).reshape(shape)) / scale.astype(
            np.float32
        ).reshape(shape)
        if self.clip_low is not None or self.clip_high is not None:
            np.clip(out, self.clip_low, self.clip_high, out=out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelMetadata:
    """Everything ``sdk`` needs to run a U-Net ONNX file correctly, stored inside the file."""

    spatial_dims: int
    in_channels: int
    class_names: tuple[str, ...]
    padding: str
    input_size_multiple: int
    input_size_offset: int = 0
    min_input_size: int = 1
    output_margin: int = 0
    output_activation: str = "none"
    foreground_class: int = 1
    normalization: Normalization = field(default_factory=Normalization)
    tile_size: tuple[int, ...] = ()
    tile_overlap: float = 0.25
    blend: str = "gaussian"
    training: Mapping[str, Any] = field(default_factory=dict)
    exporter_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        problems = []
        if self.spatial_dims not in (2, 3):
            problems.append(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.in_channels < 1:
            problems.append(f"in_channels must be >= 1, got {self.in_channels}")
        if len(self.class_names) < 1:
            problems.append("class_names is empty")
        if self.padding not in PADDING_MODES:
            problems.append(f"padding must be one of {PADDING_MODES}, got {self.padding!r}")
        if self.input_size_multiple < 1:
            problems.append(f"input_size_multiple must be >= 1, got {self.input_size_multiple}")
        if not 0 <= self.input_size_offset < max(self.input_size_multiple, 1):
            problems.append(
                f"input_size_offset must be in [0, {self.input_size_multiple}), got {self.input_size_offset}"
            )
        if self.output_margin < 0:
            problems.append(f"output_margin must be >= 0, got {self.output_margin}")
        if self.padding == "same" and self.output_margin != 0:
            problems.append("a 'same'-padding model must have output_margin 0")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            problems.append(
                f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {self.output_activation!r}"
            )
        if not 0 <= self.foreground_class < len(self.class_names):
            problems.append(
                f"foreground_class {self.foreground_class} is not a class index (0..{len(self.class_names) - 1})"
            )
        if self.tile_size and len(self.tile_size) != self.spatial_dims:
            problems.append(f"tile_size {self.tile_size} does not have {self.spatial_dims} entries")
        if self.tile_size and not all(self.is_valid_input_size(s) for s in self.tile_size):
            problems.append(f"tile_size {self.tile_size} is not an accepted input size of this model")
        if not 0 <= self.tile_overlap < 1:
            problems.append(f"tile_overlap must be in [0, 1), got {self.tile_overlap}")
        if self.blend not in BLEND_MODES:
            problems.append(f"blend must be one of {BLEND_MODES}, got {self.blend!r}")
        if self.schema_version > SCHEMA_VERSION:
            problems.append(
                f"schema_version {self.schema_version} is newer than this unet-sdk understands "
                f"({SCHEMA_VERSION}); upgrade unet-sdk"
            )
        if problems:
            raise ModelError("invalid unet-sdk model metadata: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def is_valid_input_size(self, n: int) -> bool:
        return n >= self.min_input_size and (n - self.input_size_offset) % self.input_size_multiple == 0

    def valid_input_size_at_least(self, n: int) -> int:
        """Smallest accepted input side >= ``n``."""
        n = max(n, self.min_input_size)
        m = self.input_size_multiple
        return n + (self.input_size_offset - n) % m

    def output_size(self, n: int) -> int:
        if not self.is_valid_input_size(n):
            raise InvalidInputError(f"{n} is not an accepted input size of this model")
        return n - 2 * self.output_margin

    # -- serialisation -------------------------------------------------------------------------
    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (string -> string) that describe this model."""
        values: dict[str, Any] = dataclasses.asdict(self)
        values["normalization"] = self.normalization.to_dict()
        return {PREFIX + k: json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> "ModelMetadata":
        """Parse and validate ``metadata_props``; raise :class:`ModelError` naming what is wrong."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise ModelError(
                "the ONNX model has no unet-sdk metadata (metadata_props 'unet_sdk.*'); "
                "export it with `unet-export onnx` or add the metadata with sdk.model_metadata.ModelMetadata"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, text in ours.items():
            if key not in known:
                continue  # written by a newer exporter; ignoring keeps old readers working
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ModelError(f"metadata 'unet_sdk.{key}' is not valid JSON: {text!r}") from exc
        required = ("spatial_dims", "in_channels", "class_names", "padding", "input_size_multiple")
        missing = [k for k in required if k not in values]
        if missing:
            raise ModelError(f"the model's unet-sdk metadata lacks required keys: {', '.join(missing)}")
        try:
            if "normalization" in values:
                values["normalization"] = Normalization(**values["normalization"])
            values["class_names"] = tuple(values["class_names"])
            values["tile_size"] = tuple(values.get("tile_size", ()))
            return cls(**values)
        except TypeError as exc:
            raise ModelError(f"malformed unet-sdk metadata: {exc}") from exc
