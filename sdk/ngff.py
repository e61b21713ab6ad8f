"""OME-Zarr (OME-NGFF) images and label images: read level 0 with its calibration, write one chunk by chunk.

Reading (:func:`read_ngff`) accepts NGFF 0.1-0.5 image or label groups (and a bioformats2raw container,
whose first image is taken): it returns the full-resolution level as a lazy zarr array with its axes,
pixel size and units (the dataset's ``scale`` composed with the multiscale's own transformations).

Writing (:func:`create_ngff`) creates a single-level multiscale group (``0`` is the array) with
``multiscales`` axes and ``coordinateTransformations`` written by hand to the spec
(https://ngff.openmicroscopy.org/0.4/ and /0.5/) and returns the empty level-0 array for the caller to
fill, tile by tile or block by block. NGFF 0.4 (zarr format 2, ``/`` chunk keys) is the default because
every current viewer reads it (napari-ome-zarr, Fiji/BigDataViewer, QuPath, neuroglancer); 0.5 (zarr
format 3) on request. ``labels=True`` marks the group as a label image (``image-label``), which napari
opens as a labels layer. Needs zarr >= 3 (the ``zarr`` extra); the ome-zarr library is not needed.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Calibration, udunits
from .errors import InvalidInputError, OutputExistsError
from .io import require_package

logger = logging.getLogger(__name__)

NGFF_VERSIONS = ("0.4", "0.5")
DEFAULT_NGFF_VERSION = "0.4"
_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


@dataclass(frozen=True)
class NgffImage:
    """Level 0 of an OME-Zarr multiscale: ``array`` (a lazy zarr array), its ``calibration`` (axes
    letters, pixel size and unit per axis) and ``translation`` (physical position of the first pixel)."""

    array: Any
    calibration: Calibration
    translation: tuple[float, ...]
    version: str
    is_label: bool
    name: str | None


def _zarr():
    zarr = require_package("zarr", "zarr")
    if int(zarr.__version__.split(".")[0]) < 3:
        raise InvalidInputError(f"OME-Zarr needs zarr >= 3 (installed: {zarr.__version__}): pip install 'zarr>=3'")
    return zarr


def _ome_attrs(attrs: dict) -> dict:
    """The NGFF attributes: under ``"ome"`` in 0.5, at the top level before."""
    return attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs


def is_ngff(path: str | os.PathLike) -> bool:
    """True if ``path`` is a zarr group holding an OME-Zarr multiscale image (or a bioformats2raw container)."""
    path = Path(path)
    for name in ("zarr.json", ".zattrs"):
        meta = path / name
        if meta.is_file():
            text = meta.read_text(errors="replace")
            return '"multiscales"' in text or '"bioformats2raw.layout"' in text
    return False


def read_ngff(path: str | os.PathLike, *, mode: str = "r") -> NgffImage:
    """Open level 0 of the OME-Zarr image at ``path`` (``mode="r+"`` to write into it, e.g. to resume).

    Raises :class:`InvalidInputError` if ``path`` is not an NGFF image or its metadata are inconsistent.
    """
    zarr = _zarr()
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises its own types for a missing or non-group node
        raise InvalidInputError(f"{path}: not a zarr group ({type(exc).__name__}: {exc})") from exc
    attrs = _ome_attrs(dict(group.attrs))
    if "multiscales" not in attrs and "bioformats2raw.layout" in attrs:
        return read_ngff(path / "0", mode=mode)  # the container's first image
    multiscales = attrs.get("multiscales")
    if not multiscales or not isinstance(multiscales, list):
        raise InvalidInputError(f"{path}: zarr group without OME-Zarr 'multiscales' metadata")
    multiscale = multiscales[0]
    version = str(attrs.get("version") or multiscale.get("version") or "0.4")
    datasets = multiscale.get("datasets") or []
    if not datasets or "path" not in datasets[0]:
        raise InvalidInputError(f"{path}: multiscales lists no datasets")
    try:
        array = zarr.open_array(str(path / datasets[0]["path"]), mode=mode)
    except Exception as exc:
        raise InvalidInputError(f"{path}: cannot open level 0 '{datasets[0]['path']}' ({exc})") from exc
    ndim = array.ndim
    axes_letters, units = _read_axes(multiscale.get("axes"), ndim, path)
    scale, translation = _level_transform(datasets[0], multiscale, ndim, path)
    calibration = Calibration(axes_letters, scale, units)
    return NgffImage(
        array=array,
        calibration=calibration,
        translation=translation,
        version=version,
        is_label="image-label" in attrs,
        name=multiscale.get("name"),
    )


def _read_axes(axes: Any, ndim: int, path: Path) -> tuple[str, tuple[str | None, ...]]:
    if axes is None:  # NGFF 0.1/0.2: always the last ndim of TCZYX
        return "TCZYX"[-ndim:], (None,) * ndim
    if len(axes) != ndim:
        raise InvalidInputError(f"{path}: {len(axes)} axes for a {ndim}-d level 0")
    letters, units = [], []
    for axis in axes:
        name, kind, unit = (axis, None, None) if isinstance(axis, str) else (
            axis.get("name", ""), axis.get("type"), axis.get("unit")
        )
        letter = name.upper() if name.upper() in _AXIS_TYPES else {"time": "T", "channel": "C"}.get(kind, "Q")
        letters.append(letter)
        units.append(udunits(unit))
    if len(set(letters)) != len(letters):
        raise InvalidInputError(f"{path}: axes {[a if isinstance(a, str) else a.get('name') for a in axes]} "
                                "cannot be told apart")
    return "".join(letters), tuple(units)


def _transform(transforms: list | None, kind: str, ndim: int, default: float, path: Path) -> np.ndarray:
    values = np.full(ndim, default, dtype=np.float64)
    for item in transforms or []:
        if item.get("type") == kind:
            if kind not in item:
                raise InvalidInputError(f"{path}: a {kind} given by file ('path') is not supported")
            vector = np.asarray(item[kind], dtype=np.float64)
            if vector.shape != (ndim,):
                raise InvalidInputError(f"{path}: {kind} {item[kind]} does not have {ndim} entries")
            values = vector
    return values


def _level_transform(dataset: dict, multiscale: dict, ndim: int, path: Path):
    """Level 0's scale and translation, composed with the multiscale-wide transformations (spec 0.4 §3.4:
    the dataset's transformations are applied first)."""
    scale = _transform(dataset.get("coordinateTransformations"), "scale", ndim, 1.0, path)
    shift = _transform(dataset.get("coordinateTransformations"), "translation", ndim, 0.0, path)
    outer_scale = _transform(multiscale.get("coordinateTransformations"), "scale", ndim, 1.0, path)
    outer_shift = _transform(multiscale.get("coordinateTransformations"), "translation", ndim, 0.0, path)
    return tuple(map(float, scale * outer_scale)), tuple(map(float, shift * outer_scale + outer_shift))


def multiscales_metadata(
    calibration: Calibration,
    *,
    name: str | None = None,
    version: str = DEFAULT_NGFF_VERSION,
    translation: tuple[float, ...] | None = None,
) -> dict:
    """The group attributes of a single-level image (level ``"0"``) with ``calibration``: ``multiscales``
    (at the top level in 0.4, under ``"ome"`` in 0.5)."""
    if version not in NGFF_VERSIONS:
        raise InvalidInputError(f"NGFF version {version!r}: write one of {', '.join(NGFF_VERSIONS)}")
    _check_axes_order(calibration.axes)
    axes = []
    for letter, unit in zip(calibration.axes, calibration.units):
        axis: dict[str, Any] = {"name": letter.lower()}
        if letter in _AXIS_TYPES:
            axis["type"] = _AXIS_TYPES[letter]
        if unit is not None and axis.get("type") in ("space", "time"):
            axis["unit"] = unit
        axes.append(axis)
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [float(s) for s in calibration.scale]}]
    if translation is not None and any(translation):
        transforms.append({"type": "translation", "translation": [float(t) for t in translation]})
    multiscale: dict[str, Any] = {
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": transforms}],
    }
    if name:
        multiscale["name"] = name
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **multiscale}]}
    return {"ome": {"version": "0.5", "multiscales": [multiscale]}}


def can_write_axes(axes: str) -> bool:
    """NGFF axes: 2 or 3 space axes last, before them at most one time axis (first) and at most one
    channel (or other) axis."""
    space = "".join(a for a in axes if a in "ZYX")
    rest = [a for a in axes if a not in "ZYX"]
    if not axes.endswith(space) or space not in ("YX", "ZYX") or len(rest) > 2:
        return False
    return "T" not in rest or rest[0] == "T" if len(rest) < 2 else rest[0] == "T" and rest[1] != "T"


def _check_axes_order(axes: str) -> None:
    if not can_write_axes(axes):
        raise InvalidInputError(
            f"axes {axes!r} cannot be written as OME-Zarr: it needs [T][C]ZYX or [T][C]YX "
            "(time first, then one channel or other axis, then 2 or 3 space axes)"
        )


def create_ngff(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    dtype,
    *,
    calibration: Calibration | None = None,
    chunks: tuple[int, ...] | None = None,
    labels: bool = False,
    name: str | None = None,
    version: str = DEFAULT_NGFF_VERSION,
    translation: tuple[float, ...] | None = None,
    overwrite: bool = False,
):
    """Create an OME-Zarr image (or label image) group at ``path`` and return its empty level-0 zarr array.

    ``calibration`` defaults to uncalibrated ``YX``/``ZYX``/``CZYX``/``TCZYX`` by dimension. ``chunks``
    default to up to 512 along the last two axes and 1 along the others. Unwritten chunks read as 0.
    For an atomic result create it inside :func:`sdk.atomic.atomic_output`.
    """
    zarr = _zarr()
    path = Path(path)
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    if calibration is None:
        if not 2 <= len(shape) <= 5:
            raise InvalidInputError(f"OME-Zarr images have 2 to 5 axes, got shape {shape}")
        calibration = Calibration.uncalibrated(("YX", "ZYX", "CZYX", "TCZYX")[len(shape) - 2])
    if len(calibration.axes) != len(shape):
        raise InvalidInputError(f"axes {calibration.axes!r} do not match shape {shape}")
    if labels and (not np.issubdtype(dtype, np.integer) or "C" in calibration.axes):
        raise InvalidInputError(f"an OME-Zarr label image is integer without a channel axis, got {dtype} "
                                f"{calibration.axes}")
    attrs = multiscales_metadata(calibration, name=name, version=version, translation=translation)
    if labels:
        record = {"version": version} if version == "0.4" else {}
        (attrs if version == "0.4" else attrs["ome"])["image-label"] = record
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
    chunks = tuple(chunks) if chunks is not None else tuple(
        min(n, 512) if i >= len(shape) - 2 else 1 for i, n in enumerate(shape)
    )
    if version == "0.4":
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        array = group.create_array(
            "0", shape=shape, dtype=dtype, chunks=chunks, fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
    else:
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        array = group.create_array(
            "0", shape=shape, dtype=dtype, chunks=chunks, fill_value=0,
            dimension_names=[a.lower() for a in calibration.axes],
        )
    group.attrs.update(attrs)
    logger.debug("created OME-Zarr %s %s %s %s", path, shape, dtype, calibration)
    return array
