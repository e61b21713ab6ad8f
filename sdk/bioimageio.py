"""BioImage Model Zoo packages (bioimage.io, model format 0.5.x) read into what :class:`sdk.Segmenter` runs.

A package is an ``rdf.yaml`` (or ``bioimageio.yaml``) plus the files it names, as a folder or a zip.
Format 0.4 rdfs are converted to 0.5 by ``bioimageio.spec`` (the zoo's own converter) when it is installed.
:func:`load_package` returns a :class:`ZooModel`: the ONNX weights (checked against their ``sha256``)
and a :class:`~sdk.model_metadata.ModelMetadata` read from the rdf, so a zoo model gets the same tiling,
devices and memory bounds as our own. Only numpy and a YAML parser (PyYAML's safe loader, which builds
plain lists and dicts, never objects) are used; ``bioimageio.spec`` is not needed.

How the rdf maps onto our metadata:

* axes ``batch, channel, space...`` in this order (2 or 3 space axes), on the input and on the output;
* an input space size ``{min, step}`` is our size rule (``min_input_size``, ``input_size_multiple``);
* an output space size ``{tensor_id: input, axis_id: same axis, offset: -2m}`` is a network that crops
  ``m`` pixels per side ("valid" padding, exact overlap-tile); an output ``halo`` on a same-size output
  makes overlap-tile with that halo the default merge, otherwise tiles are blended (gaussian);
* preprocessing runs step by step with the zoo's own formulas
  (:class:`~sdk.bioimageio_processing.ZooPreprocessing`, e.g.
  ``(x - mean) / (std + eps)``), statistics over the whole image as bioimageio.core computes them for a
  sample; postprocessing ``sigmoid`` / ``softmax`` (over channels) becomes the output activation.

Anything else (fixed input sizes, other axis orders, index/time axes, a batch fixed to 1, several inputs
or outputs, dataset statistics of another tensor, custom operations, ...) is a :class:`ModelError`
naming the feature: never a silent approximation.

Packages written by ``unet-export bioimageio`` carry our own ONNX file, metadata included. When the
rdf says what our exporter writes for that metadata (:func:`~sdk.bioimageio_processing.preprocessing_for` etc.), the file's own
metadata is used, so the package predicts bit-identically to the ``.onnx`` it was made from.

TorchScript and PyTorch state-dict weights (no ONNX entry) are converted to ONNX once with torch (the
``train`` extra) and cached (:mod:`sdk.bioimageio_weights`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from .bioimageio_processing import ZooPreprocessing, activation_of, preprocessing_for, preprocessing_steps
from .errors import ModelError, RuntimeUnavailableError
from .model_metadata import ModelMetadata

logger = logging.getLogger(__name__)

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
SUPPORTED_FORMAT = "0.5"
MAX_RDF_BYTES = 2**20  # an rdf is a few kB; refuse to parse anything that is not one
MAX_FILE_BYTES = 2**31  # ONNX Runtime loads single-file models below 2 GB; nothing in a package is larger
DEFAULT_TILE = {2: 512, 3: 96}  # the Segmenter's defaults, used to express a halo as an overlap fraction


# -- the package ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZooModel:
    """A zoo package ready for :class:`sdk.runtime.Runtime`: ONNX bytes and the metadata to run them."""

    onnx: bytes = field(repr=False)
    metadata: ModelMetadata
    source: str
    name: str
    rdf: Mapping[str, Any] = field(repr=False)
    weights_format: str = "onnx"  # the rdf's weights entry the ONNX comes from (converted unless "onnx")
    weights_verified: bool = False  # the rdf gave that entry's sha256 and the file matched it
    metadata_source: str = "rdf"  # "onnx": the weights' own unet-sdk metadata (a package we exported)

    def __str__(self) -> str:
        return self.source

    def summary(self) -> dict[str, Any]:
        """What ``unet-sdk info`` shows of the package beyond the metadata."""
        return {
            "name": self.name,
            "format_version": self.rdf.get("format_version"),
            "license": self.rdf.get("license"),
            "weights_formats": sorted(self.rdf.get("weights") or {}),
            "weights_run": self.weights_format + ("" if self.weights_format == "onnx" else " (converted to ONNX)"),
            "weights_sha256_verified": self.weights_verified,
            "metadata_from": "the ONNX file's unet-sdk metadata" if self.metadata_source == "onnx" else "the rdf",
        }


def is_package(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like a zoo package: an rdf file, a ``.zip``, or a folder holding an rdf."""
    p = Path(path)
    if p.is_dir():
        return any((p / name).is_file() for name in RDF_NAMES)
    return p.name in RDF_NAMES or p.name.endswith(".bioimageio.yaml") or p.suffix.lower() == ".zip"


class _PackageFiles:
    """Reads files named relative to the rdf, from a folder or a zip; refuses URLs, escapes (``..``,
    absolute paths, symlinks out of the folder) and files larger than their limit (zip bombs)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise ModelError(f"{path}: no such file or folder")
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if path.suffix.lower() == ".zip":
            try:
                self._zip = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise ModelError(f"{path}: not a readable zip file ({exc})") from exc
            names = set(self._zip.namelist())
            found = [n for n in RDF_NAMES if n in names] or sorted(n for n in names if n.endswith(".bioimageio.yaml") and "/" not in n)
            if not found:
                raise ModelError(f"{path}: no rdf.yaml or bioimageio.yaml at the top of the zip")
            self.rdf_name = found[0]
            self.root = None
        else:
            if path.is_dir():
                found = [path / n for n in RDF_NAMES if (path / n).is_file()]
                if not found:
                    raise ModelError(f"{path}: the folder holds no rdf.yaml or bioimageio.yaml")
                path = found[0]
            self.rdf_name = path.name
            self.root = path.parent

    def __enter__(self) -> "_PackageFiles":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._zip is not None:
            self._zip.close()

    def read(self, name: str, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
        if not isinstance(name, str) or not name:
            raise ModelError(f"{self.path}: {what} names no file ({name!r})")
        if "://" in name:
            raise ModelError(
                f"{self.path}: {what} is a URL ({name}); unet-sdk reads local packages only: download the "
                "package (e.g. the zip from bioimage.io) and pass that"
            )
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ModelError(f"{self.path}: {what} {name!r} points outside the package")
        try:
            if self._zip is not None:
                size = self._zip.getinfo(str(relative)).file_size
            else:
                path = (self.root / relative).resolve()
                if not path.is_relative_to(self.root.resolve()):
                    raise ModelError(f"{self.path}: {what} {name!r} links outside the package")
                size = path.stat().st_size
            if size > limit:
                raise ModelError(f"{self.path}: {what} {name!r} is {size} bytes (at most {limit} are read)")
            return self._zip.read(str(relative)) if self._zip is not None else path.read_bytes()
        except (KeyError, OSError) as exc:
            raise ModelError(f"{self.path}: {what} {name!r} is missing from the package") from exc


def _yaml_loader(yaml: Any) -> type:
    """PyYAML's safe loader (plain data only) reading floats as YAML 1.2 does: rdf files are YAML 1.2,
    where ``1e-06`` is a number (YAML 1.1, PyYAML's default, reads it as a string)."""

    class Yaml12SafeLoader(yaml.SafeLoader):
        pass

    Yaml12SafeLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
    )
    return Yaml12SafeLoader


def _parse_rdf(files: _PackageFiles) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as exc:
        raise RuntimeUnavailableError(
            "reading BioImage Model Zoo packages needs PyYAML: pip install 'unet-sdk[cpu]' (or pyyaml)"
        ) from exc
    path = files.path
    text = files.read(files.rdf_name, "the rdf", MAX_RDF_BYTES)
    try:
        rdf = yaml.load(text, Loader=_yaml_loader(yaml))
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: {files.rdf_name} is not valid YAML ({exc})") from exc
    if not isinstance(rdf, dict):
        raise ModelError(f"{path}: {files.rdf_name} is not a YAML mapping")
    if rdf.get("type") != "model":
        raise ModelError(f"{path}: the rdf describes a {rdf.get('type')!r}, not a model")
    version = str(rdf.get("format_version", ""))
    if version.split(".")[:2] == ["0", "4"]:
        rdf = _updated(rdf, version, path)
    elif version.split(".")[:2] != SUPPORTED_FORMAT.split("."):
        raise ModelError(
            f"{path}: model format_version {version or '(none)'} is not supported (unet-sdk reads "
            f"{SUPPORTED_FORMAT}.x, and 0.4.x with bioimageio.spec installed)"
        )
    return rdf


def _updated(rdf: dict[str, Any], version: str, path: Path) -> dict[str, Any]:
    """A format 0.4 rdf in format 0.5, converted by bioimageio.spec (the zoo's own converter)."""
    try:
        from bioimageio.spec import ValidationContext, build_description, dump_description
    except ImportError:
        raise ModelError(
            f"{path}: model format_version {version} needs bioimageio.spec to be converted to "
            f"{SUPPORTED_FORMAT}: pip install bioimageio.spec, or convert it once with `bioimageio update-format`"
        ) from None
    descr = build_description(rdf, context=ValidationContext(perform_io_checks=False), format_version="latest")
    if descr.validation_summary.status not in ("valid-format", "passed"):
        errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in descr.validation_summary.errors[:3])
        raise ModelError(f"{path}: the format {version} rdf does not convert to {SUPPORTED_FORMAT} ({errors})")
    logger.info("%s: format %s converted to %s by bioimageio.spec", path, version, SUPPORTED_FORMAT)
    return dump_description(descr)


def load_package(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> ZooModel:
    """Read a zoo package into a :class:`ZooModel`; :class:`ModelError` naming what is malformed or
    unsupported."""
    where = str(path)
    with _PackageFiles(Path(path)) as files:
        rdf = _parse_rdf(files)
        metadata = metadata_from_rdf(rdf, where=where)
        onnx_bytes, weights_format = _onnx_weights(rdf, files, where, cache_dir)
    own = _own_metadata(onnx_bytes, where)
    metadata_source = "rdf"
    if own is not None:
        if _same_model(own, metadata, rdf):
            metadata, metadata_source = own, "onnx"
        else:
            logger.warning(
                "%s: the ONNX file's own unet-sdk metadata disagrees with the rdf; following the rdf", where
            )
    name = str(rdf.get("name", Path(where).stem))
    logger.info("read BioImage Model Zoo package %s (%r)", where, name)
    return ZooModel(
        onnx=onnx_bytes, metadata=metadata, source=where, name=name, rdf=rdf, weights_format=weights_format,
        weights_verified="sha256" in rdf["weights"][weights_format], metadata_source=metadata_source,
    )


def _only(items: Any, what: str, where: str) -> dict[str, Any]:
    if not isinstance(items, list) or not items:
        raise ModelError(f"{where}: the rdf has no {what}")
    if len(items) != 1:
        raise ModelError(f"{where}: the model has {len(items)} {what}; unet-sdk runs models with exactly one")
    if not isinstance(items[0], dict):
        raise ModelError(f"{where}: {what}[0] is not a mapping")
    return items[0]


AXIS_TYPES = ("batch", "channel", "space", "index", "time")


def _axes(tensor: dict[str, Any], role: str, where: str) -> tuple[dict, dict, list[dict]]:
    """The batch, channel and space axes of a tensor, which must come in this order."""
    axes = tensor.get("axes")
    if not isinstance(axes, list) or not all(isinstance(a, dict) for a in axes):
        raise ModelError(f"{where}: {role} tensor has no list of axes")
    kinds = [a.get("type") for a in axes]
    unknown = [k for k in kinds if k not in AXIS_TYPES]
    if unknown:
        raise ModelError(f"{where}: {role} axis type {unknown[0]!r} is unknown (axis types: {', '.join(AXIS_TYPES)})")
    for kind in ("index", "time"):
        if kind in kinds:
            raise ModelError(f"{where}: {role} has a {kind!r} axis; unet-sdk runs batch, channel, space axes only")
    spatial = len(kinds) - 2
    if kinds[:2] != ["batch", "channel"] or kinds[2:] != ["space"] * spatial or spatial not in (2, 3):
        raise ModelError(
            f"{where}: {role} axes are ({', '.join(kinds)}); unet-sdk runs (batch, channel, 2 or 3 space) "
            "axes in this order"
        )
    if axes[0].get("size") is not None:
        raise ModelError(f"{where}: {role} batch size is fixed to {axes[0]['size']}; unet-sdk batches tiles freely")
    names = axes[1].get("channel_names")
    if not isinstance(names, list) or not names:
        raise ModelError(f"{where}: {role} channel axis has no channel_names")
    return axes[0], axes[1], axes[2:]


def metadata_from_rdf(rdf: Mapping[str, Any], *, where: str = "rdf") -> ModelMetadata:
    """Our :class:`ModelMetadata` for the model an rdf (format 0.5) describes."""
    inp = _only(rdf.get("inputs"), "inputs", where)
    out = _only(rdf.get("outputs"), "outputs", where)
    _, in_channel, in_space = _axes(inp, "input", where)
    _, out_channel, out_space = _axes(out, "output", where)
    input_id = inp.get("id", "input")
    space_ids = [a.get("id") for a in in_space]
    if [a.get("id") for a in out_space] != space_ids:
        raise ModelError(f"{where}: output space axes {[a.get('id') for a in out_space]} differ from the input's {space_ids}")
    rules = {_size_rule(a, where) for a in in_space}
    if len(rules) != 1:
        raise ModelError(f"{where}: the input's space axes have different size rules {sorted(rules)}; unet-sdk needs one")
    (minimum, step), = rules
    crops, halos = set(), set()
    for axis in out_space:
        crops.add(_output_crop(axis, input_id, in_space, where))
        halo = axis.get("halo", 0)
        if not isinstance(halo, int) or halo < 0:
            raise ModelError(f"{where}: output axis {axis.get('id')!r} halo {halo!r} is not a non-negative integer")
        halos.add(halo)
    if len(crops) != 1 or len(halos) != 1:
        raise ModelError(f"{where}: output axes crop or halo differ between axes ({sorted(crops)}, {sorted(halos)})")
    (margin,), (halo,) = crops, halos
    if margin and halo:
        raise ModelError(f"{where}: an output halo on top of the network's own crop (offset {-2 * margin}) is unsupported")
    spatial_dims = len(space_ids)
    size_fields = dict(min_input_size=minimum, input_size_multiple=step, input_size_offset=minimum % step)
    tiling: dict[str, Any] = {"blend": "gaussian"}
    if margin:
        tiling = {"blend": "none", "tile_overlap": 0.0}
    elif halo:
        # a tile several halos wide, so that the overlap stays a modest share of the work
        tile = max(DEFAULT_TILE[spatial_dims], 8 * halo, minimum)
        tile += (minimum - tile) % step
        tiling = {"blend": "none", "tile_size": (tile,) * spatial_dims, "tile_overlap": 2 * halo / tile}
    class_names = tuple(str(n) for n in out_channel["channel_names"])
    metadata = ModelMetadata(
        spatial_dims=spatial_dims,
        in_channels=len(in_channel["channel_names"]),
        class_names=class_names,
        padding="valid" if margin else "same",
        output_margin=margin,
        output_activation=activation_of(out.get("postprocessing") or [], where),
        foreground_class=1 if len(class_names) > 1 else 0,
        training={"bioimageio": {k: rdf[k] for k in ("name", "id", "version", "license") if k in rdf}},
        **size_fields,
        **tiling,
    )
    # ModelMetadata validates the normalizations an ONNX file can store (our modes); a zoo chain is never
    # stored, only held in memory, and preprocessing_steps has validated it: attach it after the check
    object.__setattr__(metadata, "normalization", ZooPreprocessing(steps=preprocessing_steps(inp, in_channel, in_space, where)))
    return metadata


def _size_rule(axis: dict[str, Any], where: str) -> tuple[int, int]:
    size = axis.get("size")
    if isinstance(size, dict) and set(size) <= {"min", "step"} and {"min", "step"} <= set(size):
        minimum, step = size["min"], size["step"]
        if isinstance(minimum, int) and isinstance(step, int) and minimum > 0 and step > 0:
            return minimum, step
    if isinstance(size, int):
        raise ModelError(
            f"{where}: input axis {axis.get('id')!r} has the fixed size {size}; unet-sdk tiles with a size rule "
            "{min, step} (a fixed-size input is unsupported)"
        )
    if isinstance(size, dict) and "axis_id" in size:
        raise ModelError(f"{where}: input axis {axis.get('id')!r} size refers to another axis; unsupported")
    raise ModelError(f"{where}: input axis {axis.get('id')!r} size {size!r} is not {{min, step}}")


def _output_crop(axis: dict[str, Any], input_id: str, in_space: list[dict], where: str) -> int:
    size = axis.get("size")
    if not (isinstance(size, dict) and size.get("tensor_id") == input_id and size.get("axis_id") == axis.get("id")):
        raise ModelError(
            f"{where}: output axis {axis.get('id')!r} size {size!r} is not tied to the same input axis; unet-sdk "
            "runs networks whose output follows the input size"
        )
    source = next(a for a in in_space if a.get("id") == axis.get("id"))
    if axis.get("scale", 1.0) != source.get("scale", 1.0):
        raise ModelError(f"{where}: output axis {axis.get('id')!r} is resampled (scale differs from the input's); unsupported")
    offset = size.get("offset", 0)
    if not isinstance(offset, int) or offset > 0 or offset % 2:
        raise ModelError(f"{where}: output axis {axis.get('id')!r} offset {offset!r}: unet-sdk needs an even crop <= 0")
    return -offset // 2


def _same_model(own: ModelMetadata, read: ModelMetadata, rdf: Mapping[str, Any]) -> bool:
    """Whether the rdf says exactly what our exporter writes for ``own`` (then ``own`` is used)."""
    keys = ("spatial_dims", "in_channels", "class_names", "padding", "output_margin", "input_size_multiple", "output_activation")
    if any(getattr(own, k) != getattr(read, k) for k in keys) or not own.is_valid_input_size(read.min_input_size):
        return False  # (the rdf's minimum may be larger: the zoo wants room for the halo)
    inp = rdf["inputs"][0]
    space = [a["id"] for a in inp["axes"][2:]]
    declared = [s for s in inp.get("preprocessing") or [] if not (s.get("id") == "ensure_dtype" and (s.get("kwargs") or {}).get("dtype") == "float32")]
    try:
        expected = preprocessing_for(own.normalization, space)
    except ModelError:
        return False
    return _plain(declared) == _plain(expected)


def _plain(value: Any) -> Any:
    """Nested data with numbers as floats, for comparing rdf values with ours."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


# -- weights -------------------------------------------------------------------------------------
def _checked(data: bytes, entry: dict[str, Any], what: str, where: str) -> bytes:
    expected = entry.get("sha256")
    if expected is None:
        logger.warning("%s: %s weights have no sha256 in the rdf; they are not verified", where, what)
        return data
    actual = hashlib.sha256(data).hexdigest()
    if str(expected).lower() != actual:
        raise ModelError(f"{where}: {what} weights {entry.get('source')!r} have sha256 {actual}, the rdf says {expected}")
    return data


def _onnx_weights(rdf: Mapping[str, Any], files: _PackageFiles, where: str, cache_dir: Any) -> tuple[bytes, str]:
    """The ONNX weights and the weights format they come from: the onnx entry, else TorchScript or PyTorch
    state-dict weights converted once (cached, needs torch)."""
    from . import bioimageio_weights

    weights = rdf.get("weights")
    if not isinstance(weights, dict) or not weights:
        raise ModelError(f"{where}: the rdf lists no weights")
    onnx_entry = weights.get("onnx")
    if isinstance(onnx_entry, dict):
        if onnx_entry.get("external_data"):
            raise ModelError(f"{where}: ONNX weights with external data are unsupported; pack them into one file")
        return _checked(files.read(onnx_entry.get("source"), "the onnx weights"), onnx_entry, "onnx", where), "onnx"
    metadata = metadata_from_rdf(rdf, where=where)
    torchscript = weights.get("torchscript")
    if isinstance(torchscript, dict):
        data = _checked(files.read(torchscript.get("source"), "the torchscript weights"), torchscript, "torchscript", where)
        return bioimageio_weights.torchscript_to_onnx(data, metadata, where=where, cache_dir=cache_dir), "torchscript"
    state = weights.get("pytorch_state_dict")
    if isinstance(state, dict):
        data = _checked(files.read(state.get("source"), "the pytorch_state_dict weights"), state, "pytorch_state_dict", where)
        architecture = state.get("architecture")
        if not isinstance(architecture, dict) or not isinstance(architecture.get("callable"), str):
            raise ModelError(f"{where}: pytorch_state_dict weights without an architecture callable")
        code = None
        if "source" in architecture:
            code = _checked(files.read(architecture["source"], "the architecture source"), architecture, "architecture", where)
        converted = bioimageio_weights.state_dict_to_onnx(
            data, architecture, code, metadata, where=where, cache_dir=cache_dir, strict=bool(state.get("strict", True))
        )
        return converted, "pytorch_state_dict"
    raise ModelError(
        f"{where}: no weights unet-sdk can run (onnx; torchscript or pytorch_state_dict, converted): the package "
        f"has {', '.join(sorted(weights))}"
    )


# -- the ONNX file's own metadata ---------------------------------------------------------------
def _own_metadata(data: bytes, where: str) -> ModelMetadata | None:
    from .model_file import read_model_file

    props = read_model_file(data, where).props
    if not any(k.startswith("unet_sdk.") for k in props):
        return None
    return ModelMetadata.from_props(props)
