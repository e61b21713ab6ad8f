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
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from . import image_statistics
from .errors import InvalidInputError, ModelError

SCHEMA_VERSION = 1
PREFIX = "unet_sdk."

NORMALIZATION_MODES = ("per_image_zscore", "per_image_minmax", "percentile", "fixed")
PADDING_MODES = ("same", "valid")
OUTPUT_ACTIVATIONS = ("none", "softmax", "sigmoid")
BLEND_MODES = ("gaussian", "constant", "none")  # "none": overlap-tile, halo cropping (sdk.tiling)
BOUNDARY_MODES = ("none", "watershed")  # sdk.postprocessing


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become network input, applied per image (per channel).

    Modes:
      * ``per_image_zscore``: ``(x - mean(x)) / max(std(x), eps)`` over the whole image.
      * ``per_image_minmax``: ``(x - min) / max(max - min, eps)``.
      * ``percentile``: ``(x - P_low) / max(P_high - P_low, eps)`` with percentiles ``low``/``high``,
        then clipped to ``[clip_low, clip_high]`` if given.
      * ``fixed``: ``(x - mean) / std`` with the stored constants (e.g. dataset statistics).
    Statistics of the per-image modes are computed on the *whole* image before tiling (in bounded
    memory, :mod:`sdk.image_statistics`), so tiled and whole-image inference see identical input values.
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
        problems = normalization_problems(dataclasses.asdict(self))
        if problems:
            raise ModelError("invalid normalization: " + "; ".join(problems))

    def statistics(self, image) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(offset, scale)`` per channel (float64) for ``image`` (C, *spatial): any array
        supporting slicing (numpy, memmap, zarr), read in bounded blocks."""
        channels = image.shape[0]
        if self.mode == "fixed":
            offset, scale = np.full(channels, float(self.mean)), np.full(channels, float(self.std))
        elif self.mode == "per_image_zscore":
            offset, scale = image_statistics.mean_std(image)
        elif self.mode == "per_image_minmax":
            offset, high = image_statistics.min_max(image)
            scale = high - offset
        else:  # percentile
            lo, hi = image_statistics.percentiles(image, [self.low, self.high])
            offset, scale = lo, hi - lo
        scale = np.maximum(scale, self.eps)
        if not (np.isfinite(offset).all() and np.isfinite(scale).all()):
            raise InvalidInputError(
                f"normalization {self.mode!r} of this image gives offset {offset.tolist()} and scale "
                f"{scale.tolist()}: its values exceed the range float64 statistics can hold; rescale the image"
            )
        return offset, scale

    def apply(
        self, image: np.ndarray, statistics: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Normalize ``image`` (C, *spatial), any real dtype, into a new float32 array.

        ``statistics`` (from :meth:`statistics` of the whole image) lets a tile be normalised exactly
        as the whole image would be. The arithmetic runs in float64, so values near float32's limit do
        not overflow before they are scaled; :class:`InvalidInputError` if a result still does not fit
        float32 (e.g. a ``fixed`` std far smaller than the image's spread).
        """
        offset, scale = self.statistics(image) if statistics is None else statistics
        shape = (-1,) + (1,) * (image.ndim - 1)
        # 8/16-bit integers are exact in float32 and cannot overflow it; anything wider runs in float64
        small = image.dtype.kind in "biu" and image.dtype.itemsize <= 2
        work = np.float32 if small else np.float64
        wide = np.asarray(image, dtype=work) - offset.astype(work).reshape(shape)
        wide /= scale.astype(work).reshape(shape)
        if self.clip_low is not None or self.clip_high is not None:
            np.clip(wide, self.clip_low, self.clip_high, out=wide)
        with np.errstate(over="ignore"):
            out = wide.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            raise InvalidInputError(
                f"normalised values overflow float32 (normalization {self.mode!r}, offset "
                f"{offset.tolist()}, scale {scale.tolist()}, image values {float(np.min(image))}.."
                f"{float(np.max(image))}): the model's normalization does not suit this image's range"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Postprocessing:
    """What :mod:`sdk.postprocessing` does to the probabilities of the whole image, chosen on held-out data.

    ``boundaries="watershed"``: seeds are the face-connected components of foreground probability
    ``>= seed_threshold``; they flood the image by decreasing probability, and where two regions meet a
    one-pixel line becomes background (probability 0). Touching objects that the network separates by a
    faint or broken boundary come out separated. ``"none"``: the network's output as it is.
    ``selection`` records how the setting was chosen (data, criterion, held-out scores without and with it).
    """

    boundaries: str = "none"
    seed_threshold: float = 0.5
    selection: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = postprocessing_problems(dataclasses.asdict(self))
        if problems:
            raise ModelError("invalid postprocessing: " + "; ".join(problems))

    @property
    def active(self) -> bool:
        return self.boundaries != "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelMetadata:
    """Everything ``sdk`` needs to run a U-Net ONNX file correctly, stored inside the file.

    ``weights_sha256`` is the SHA-256 of the model's graph (weights and layers, see
    :mod:`sdk.model_file`), written at export and checked on load; empty for models exported before it.
    """

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
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    training: Mapping[str, Any] = field(default_factory=dict)
    exporter_version: str = ""
    schema_version: int = SCHEMA_VERSION
    weights_sha256: str = ""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        problems = metadata_problems(values)
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
        values["postprocessing"] = self.postprocessing.to_dict()
        return {PREFIX + k: json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> "ModelMetadata":
        """Parse and validate ``metadata_props``; raise one :class:`ModelError` naming every problem.

        Each value is parsed with limits (:data:`MAX_PROP_CHARS` characters, :data:`MAX_JSON_DEPTH` levels
        of nesting, :data:`MAX_INT_DIGITS`-digit integers) and every field's type and range is checked
        before anything is allocated or run from it.
        """
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise ModelError(
                "the ONNX model has no unet-sdk metadata (metadata_props 'unet_sdk.*'); "
                "export it with `unet-export onnx` or add the metadata with sdk.model_metadata.ModelMetadata"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        problems: list[str] = []
        for key, text in ours.items():
            if key not in known:
                continue  # written by a newer exporter; ignoring keeps old readers working
            try:
                values[key] = parse_json(text)
            except ValueError as exc:
                problems.append(f"metadata 'unet_sdk.{key}' {exc}")
        missing = [k for k in REQUIRED_FIELDS if k not in values and not any(f"unet_sdk.{k}'" in p for p in problems)]
        if missing:
            problems.append(f"the model's unet-sdk metadata lacks required keys: {', '.join(missing)}")
        problems += metadata_problems(values)
        if problems:
            raise ModelError("invalid unet-sdk model metadata: " + "; ".join(problems))
        if "normalization" in values:
            values["normalization"] = Normalization(**values["normalization"])
        if "postprocessing" in values:
            values["postprocessing"] = Postprocessing(**values["postprocessing"])
        values["class_names"] = tuple(values["class_names"])
        values["tile_size"] = tuple(values.get("tile_size", ()))
        return cls(**values)


# -- parsing and validation ------------------------------------------------------------------------
# Bounds a real model can have: metadata beyond them is refused on load, before it can make the SDK
# allocate or compute anything (a hostile min_input_size would run the network on it at load).
MAX_CHANNELS = 1024
MAX_CLASSES = 1024
MAX_NAME_CHARS = 256
MAX_SIZE_MULTIPLE = 1024  # 2**10: ten pooling levels
MAX_MIN_INPUT_SIZE = 1024
MAX_FIRST_RUN_ELEMENTS = 1 << 24  # the smallest accepted input (channels x side**d) runs at load
MAX_TILE_SIZE = 16384
MAX_TEXT_CHARS = 1000  # exporter_version
MAX_PROP_CHARS = 1 << 20
MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 20
REQUIRED_FIELDS = ("spatial_dims", "in_channels", "class_names", "padding", "input_size_multiple")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"holds an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def parse_json(text: str) -> Any:
    """``json.loads`` within limits; ``ValueError`` saying which limit or what is malformed."""
    if len(text) > MAX_PROP_CHARS:
        raise ValueError(f"is {len(text)} characters long (at most {MAX_PROP_CHARS})")
    structure = np.frombuffer(_JSON_STRING.sub('""', text).encode("utf-8", "replace"), np.uint8)
    steps = np.isin(structure, (ord("["), ord("{"))).astype(np.int64) - np.isin(structure, (ord("]"), ord("}")))
    depth = int(np.cumsum(steps).max(initial=0))
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nests {depth} levels deep (at most {MAX_JSON_DEPTH})")
    try:
        return json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError:
        raise ValueError(f"is not valid JSON: {text[:80]!r}") from None
    except RecursionError:  # unreachable after the depth check; kept typed all the same
        raise ValueError("nests too deeply") from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_finite_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(value)
    )


def _int_problem(name: str, value: Any, low: int, high: int) -> str | None:
    if not _is_int(value):
        return f"{name} must be an integer, got {_show(value)}"
    if not low <= value <= high:
        return f"{name} must be in [{low}, {high}], got {value}"
    return None


def _number_problem(name: str, value: Any, *, above: float | None = None) -> str | None:
    if not _is_finite_number(value):
        return f"{name} must be a finite number, got {_show(value)}"
    if above is not None and not value > above:
        return f"{name} must be > {above:g}, got {value}"
    return None


def _choice_problem(name: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if not isinstance(value, str) or value not in choices:
        return f"{name} must be one of {choices}, got {_show(value)}"
    return None


def normalization_problems(values: Mapping[str, Any]) -> list[str]:
    """Every problem of a normalization record (a dict of :class:`Normalization` fields)."""
    known = {f.name for f in dataclasses.fields(Normalization)}
    unknown = sorted(str(k) for k in values if k not in known)
    problems = [f"malformed normalization: unknown key(s) {', '.join(map(_show, unknown))}"] if unknown else []
    mode = values.get("mode", "per_image_zscore")
    if not isinstance(mode, str) or mode not in NORMALIZATION_MODES:
        problems.append(f"unknown normalization mode {_show(mode)}; expected one of {NORMALIZATION_MODES}")
    for name in ("mean", "low", "high"):
        problems.append(_number_problem(f"normalization {name}", values.get(name, 0.0)))
    problems.append(_number_problem("normalization std", values.get("std", 1.0), above=0.0))
    problems.append(_number_problem("normalization eps", values.get("eps", 1e-6), above=0.0))
    clips = [values.get("clip_low"), values.get("clip_high")]
    for name, clip in zip(("clip_low", "clip_high"), clips):
        if clip is not None:
            problems.append(_number_problem(f"normalization {name}", clip))
    if all(_is_finite_number(c) for c in clips) and clips[0] > clips[1]:
        problems.append(f"normalization clip_low {clips[0]} > clip_high {clips[1]}")
    low, high = values.get("low", 1.0), values.get("high", 99.0)
    if mode == "percentile" and _is_finite_number(low) and _is_finite_number(high) and not 0 <= low < high <= 100:
        problems.append(f"normalization 'percentile' needs 0 <= low < high <= 100, got {low}, {high}")
    return [p for p in problems if p]


def postprocessing_problems(values: Mapping[str, Any]) -> list[str]:
    """Every problem of a postprocessing record (a dict of :class:`Postprocessing` fields)."""
    known = {f.name for f in dataclasses.fields(Postprocessing)}
    unknown = sorted(str(k) for k in values if k not in known)
    problems = [f"malformed postprocessing: unknown key(s) {', '.join(map(_show, unknown))}"] if unknown else []
    problems.append(_choice_problem("postprocessing boundaries", values.get("boundaries", "none"), BOUNDARY_MODES))
    seed = values.get("seed_threshold", 0.5)
    if not (_is_finite_number(seed) and 0 < seed <= 1):
        problems.append(f"postprocessing seed_threshold must be in (0, 1], got {_show(seed)}")
    if not isinstance(values.get("selection", {}), Mapping):
        problems.append(f"postprocessing selection must be an object, got {_show(values.get('selection'))}")
    return [p for p in problems if p]


def _smallest_input(multiple: int, offset: int, minimum: int) -> int:
    return minimum + (offset - minimum) % multiple


def _checked(values: Mapping[str, Any], ok: Mapping[str, Any], name: str, default: Any) -> Any:
    """A field's value if it passed its checks, its default if absent, None if it failed."""
    return ok[name] if name in ok else (default if name not in values else None)


def metadata_problems(values: Mapping[str, Any]) -> list[str]:
    """Every problem of a metadata record (field name -> value; absent fields are not checked)."""
    problems: list[str | None] = []
    ok: dict[str, Any] = {}  # fields whose type and range passed, for the checks that combine fields

    def check(name: str, problem: str | None) -> None:
        problems.append(problem)
        if problem is None and name in values:
            ok[name] = values[name]

    get = values.get
    if "spatial_dims" in values:
        dims = get("spatial_dims")
        check("spatial_dims", None if _is_int(dims) and dims in (2, 3) else f"spatial_dims must be 2 or 3, got {_show(dims)}")
    if "in_channels" in values:
        check("in_channels", _int_problem("in_channels", get("in_channels"), 1, MAX_CHANNELS))
    if "class_names" in values:
        names = get("class_names")
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in names):
            check("class_names", f"class_names must be a list of strings of at most {MAX_NAME_CHARS} characters, got {_show(names)}")
        elif not names:
            check("class_names", "class_names is empty")
        elif len(names) > MAX_CLASSES:
            check("class_names", f"class_names has {len(names)} entries (at most {MAX_CLASSES})")
        else:
            check("class_names", None)
    if "padding" in values:
        check("padding", _choice_problem("padding", get("padding"), PADDING_MODES))
    if "input_size_multiple" in values:
        check("input_size_multiple", _int_problem("input_size_multiple", get("input_size_multiple"), 1, MAX_SIZE_MULTIPLE))
    multiple = ok.get("input_size_multiple")
    if "input_size_offset" in values:
        check("input_size_offset", _int_problem("input_size_offset", get("input_size_offset"), 0, (multiple or MAX_SIZE_MULTIPLE) - 1))
    if "min_input_size" in values:
        check("min_input_size", _int_problem("min_input_size", get("min_input_size"), 1, MAX_MIN_INPUT_SIZE))
    if "output_margin" in values:
        check("output_margin", _int_problem("output_margin", get("output_margin"), 0, MAX_MIN_INPUT_SIZE))
    margin, minimum = _checked(values, ok, "output_margin", 0), _checked(values, ok, "min_input_size", 1)
    if margin is not None and minimum is not None and 2 * margin >= minimum:
        problems.append(f"output_margin {margin} leaves no output of the smallest input min_input_size={minimum}")
    if ok.get("padding") == "same" and margin:
        problems.append("a 'same'-padding model must have output_margin 0")
    if "output_activation" in values:
        check("output_activation", _choice_problem("output_activation", get("output_activation"), OUTPUT_ACTIVATIONS))
    if "foreground_class" in values and "class_names" in ok:
        check("foreground_class", _int_problem("foreground_class", get("foreground_class"), 0, len(ok["class_names"]) - 1))
    if "normalization" in values:
        norm = get("normalization")
        if isinstance(norm, Normalization):
            norm = dataclasses.asdict(norm)
        if isinstance(norm, Mapping):
            problems += normalization_problems(norm)
        else:
            problems.append(f"malformed normalization: expected an object, got {_show(norm)}")
    if "postprocessing" in values:
        post = get("postprocessing")
        if isinstance(post, Postprocessing):
            post = dataclasses.asdict(post)
        if isinstance(post, Mapping):
            post_problems = postprocessing_problems(post)
            problems += post_problems
            names = ok.get("class_names")
            if not post_problems and post.get("boundaries", "none") != "none" and names is not None and len(names) > 2:
                problems.append(
                    "postprocessing boundaries need the probability of one foreground class against the rest: "
                    f"a model of 1 or 2 classes, got {len(names)}"
                )
        else:
            problems.append(f"malformed postprocessing: expected an object, got {_show(post)}")
    offset = _checked(values, ok, "input_size_offset", 0)
    if "tile_size" in values:
        tile = get("tile_size")
        dims = ok.get("spatial_dims")
        if not isinstance(tile, (list, tuple)) or not all(_is_int(t) and 1 <= t <= MAX_TILE_SIZE for t in tile):
            check("tile_size", f"tile_size must be a list of integers in [1, {MAX_TILE_SIZE}], got {_show(tile)}")
        elif tile and dims is not None and len(tile) != dims:
            check("tile_size", f"tile_size {tuple(tile)} does not have {dims} entries")
        elif tile and None not in (multiple, minimum, offset) and not all(t >= minimum and (t - offset) % multiple == 0 for t in tile):
            check("tile_size", f"tile_size {tuple(tile)} is not an accepted input size of this model")
    if "tile_overlap" in values:
        overlap = get("tile_overlap")
        check("tile_overlap", None if _is_finite_number(overlap) and 0 <= overlap < 1 else f"tile_overlap must be in [0, 1), got {_show(overlap)}")
    if "blend" in values:
        check("blend", _choice_problem("blend", get("blend"), BLEND_MODES))
    if "training" in values and not isinstance(get("training"), Mapping):
        problems.append(f"training must be an object, got {_show(get('training'))}")
    if "exporter_version" in values:
        text = get("exporter_version")
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            problems.append(f"exporter_version must be a string of at most {MAX_TEXT_CHARS} characters")
    if "schema_version" in values:
        version = get("schema_version")
        if not _is_int(version) or version < 1:
            problems.append(f"schema_version must be a positive integer, got {_show(version)}")
        elif version > SCHEMA_VERSION:
            problems.append(
                f"schema_version {version} is newer than this unet-sdk understands ({SCHEMA_VERSION}); upgrade unet-sdk"
            )
    if "weights_sha256" in values:
        digest = get("weights_sha256")
        if not isinstance(digest, str) or not (digest == "" or _HEX_DIGEST.fullmatch(digest)):
            problems.append(f"weights_sha256 must be 64 lowercase hex digits, got {_show(digest)}")
    channels, dims = ok.get("in_channels"), ok.get("spatial_dims")
    if None not in (channels, dims, multiple, minimum, offset):
        side = _smallest_input(multiple, offset, minimum)
        if channels * side**dims > MAX_FIRST_RUN_ELEMENTS:
            problems.append(
                f"the smallest accepted input ({channels} x {side}^{dims} values) exceeds {MAX_FIRST_RUN_ELEMENTS}: "
                "no real U-Net needs that much; the size rules are corrupt"
            )
    return [p for p in problems if p]
