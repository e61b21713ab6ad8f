"""Reading and writing images and arrays: TIFF (ImageJ, OME), PNG/JPEG, NPY/NPZ, zarr and OME-Zarr.

Paths may name an array inside a container: ``PATH.npz:KEY`` and ``PATH.zarr/ARRAY`` (or ``key=``).
:func:`load_image` returns the array with what the file says about it: its axes, pixel size and units
(:class:`~sdk.calibration.Calibration`, from ImageJ or OME-TIFF metadata, OME-Zarr ``multiscales`` or zarr
dimension names) and the record unet-sdk wrote into its own outputs (e.g. which class a probability
channel is). :func:`write_array` writes that calibration back: TIFF as an ImageJ hyperstack when ImageJ
can hold the data type (Fiji and napari read the pixel size), else as OME-TIFF; zarr as OME-Zarr.

Writers are atomic (:func:`sdk.atomic.atomic_output`): a crash never leaves a half-written file under
the real name, and an existing output (also a dangling symlink) is only replaced when ``overwrite=True``. TIFF and PNG need the ``cpu``/``gpu`` extra (tifffile,
Pillow); zarr needs the ``zarr`` extra.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_output
from .calibration import Calibration, imagej_unit, ome_unit, udunits
from .errors import InvalidInputError

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
READ_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES + (".npy", ".npz", ".zarr")
WRITE_SUFFIXES = TIFF_SUFFIXES + (".png", ".npy", ".zarr")
RECORD_KEY = "unet_sdk"  # where unet-sdk's own record lives in ImageJ properties, OME, zarr attributes
IMAGEJ_ORDER = "TZCYX"
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_NPZ_KEY = re.compile(r"^(?P<path>.*\.npz):(?P<key>[^/\\:]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class LoadedImage:
    """An array read from a file, with the file's ``calibration`` (None when it names no axes) and the
    ``record`` unet-sdk wrote into it (None for other files)."""

    array: np.ndarray
    calibration: Calibration | None
    record: dict | None


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def require_package(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise InvalidInputError(
            f"reading/writing this format needs the '{module}' package: pip install 'unet-sdk[{extra}]'"
        ) from exc


def split_image_path(path: str | os.PathLike) -> tuple[Path, str | None]:
    """``"a.npz:img"`` -> ``(a.npz, "img")``; ``"a.zarr/raw/0"`` -> ``(a.zarr, "raw/0")``; else ``(path, None)``."""
    text = os.fspath(path)
    match = _NPZ_KEY.match(text)
    if match and not os.path.exists(text):
        return Path(match["path"]), match["key"]
    whole = Path(text)
    if _suffix(whole) == ".zarr":
        return whole, None
    for parent in whole.parents:
        if _suffix(parent) == ".zarr":
            return parent, whole.relative_to(parent).as_posix()
    return whole, None


def is_image_path(path: str | os.PathLike) -> bool:
    """True if ``path`` (or the container it names an array of) has a suffix :func:`read_image` understands."""
    return _suffix(split_image_path(path)[0]) in READ_SUFFIXES


def image_stem(path: str | os.PathLike) -> str:
    """The name an output derived from ``path`` is based on: ``vol.ome.tif`` -> ``vol``,
    ``a.npz:img`` -> ``a_img``, ``b.zarr/raw/0`` -> ``b_raw_0``."""
    container, key = split_image_path(path)
    stem = container.stem
    if stem.lower().endswith(".ome"):
        stem = stem[: -len(".ome")]
    return stem + ("_" + key.strip("/").replace("/", "_") if key else "")


def read_image(path: str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """Read an image, stack or volume as a numpy array (pages of a multi-page TIFF become axis 0).

    ``key`` selects an array of a ``.npz`` file (default: its only array) or of a zarr group (also
    written ``PATH.npz:KEY``, ``PATH.zarr/KEY``); an OME-Zarr image gives its full-resolution level.
    Raises :class:`InvalidInputError` for a missing, unreadable or unsupported file.
    """
    return load_image(path, key=key).array


def load_image(path: str | os.PathLike, *, key: str | None = None) -> LoadedImage:
    """:func:`read_image` with the file's calibration and unet-sdk record (see :class:`LoadedImage`)."""
    if key is None:
        path, key = split_image_path(path)
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in READ_SUFFIXES:
        raise InvalidInputError(
            f"{path}: unsupported file type {suffix or '(none)'}; expected one of {', '.join(READ_SUFFIXES)}"
        )
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file or directory")
    try:
        if suffix in TIFF_SUFFIXES:
            return _load_tiff(path)
        if suffix in PIL_SUFFIXES:
            require_package("PIL", "cpu")
            from PIL import Image

            with Image.open(path) as img:
                array = np.asarray(img)
            return LoadedImage(array, Calibration.uncalibrated("YXC"[: array.ndim]), None)
        if suffix == ".npy":
            return LoadedImage(np.load(path, allow_pickle=False), None, None)
        if suffix == ".npz":
            return LoadedImage(_load_npz(path, key), None, None)
        return _load_zarr(path, key)
    except InvalidInputError:
        raise
    except Exception as exc:  # each reader raises its own exception types for corrupt files
        raise InvalidInputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def peek_shape(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The array shape of an NPY, TIFF or zarr file without reading its pixels; None for other files or
    when the file cannot tell (the readers then say what is wrong)."""
    container, key = split_image_path(path)
    suffix = _suffix(container)
    try:
        if suffix == ".npy":
            return tuple(np.load(container, mmap_mode="r", allow_pickle=False).shape)
        if suffix in TIFF_SUFFIXES:
            tifffile = require_package("tifffile", "cpu")
            with tifffile.TiffFile(container) as tif:
                return tuple(tif.series[0].shape)
        if suffix == ".zarr" and key is not None:
            zarr = require_package("zarr", "zarr")
            node = zarr.open(str(container), mode="r")[key]
            return tuple(node.shape) if hasattr(node, "shape") else None
    except Exception:  # unreadable: reported by the real read
        return None
    return None


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        names = list(data.keys())
        if key is None:
            if len(names) != 1:
                raise InvalidInputError(f"{path}: holds arrays {names}; name one with key=... (CLI: {path}:KEY)")
            key = names[0]
        if key not in names:
            raise InvalidInputError(f"{path}: no array {key!r}; it holds {names}")
        return data[key]


def _load_zarr(path: Path, key: str | None) -> LoadedImage:
    from . import ngff

    zarr = require_package("zarr", "zarr")
    location = path / key if key else path
    if ngff.is_ngff(location):
        image = ngff.read_ngff(location)
        record = _ngff_record(location)
        return LoadedImage(np.asarray(image.array[...]), image.calibration, record)
    node = zarr.open(str(path), mode="r")
    if key is not None:
        try:
            node = node[key]
        except KeyError:
            names = sorted(node.keys()) if hasattr(node, "keys") else []
            raise InvalidInputError(f"{path}: no array {key!r}; it holds {names}") from None
    if not hasattr(node, "shape"):
        names = sorted(node.keys())
        raise InvalidInputError(f"{path}: is a zarr group holding {names}; name an array as {path}/NAME")
    names = getattr(node.metadata, "dimension_names", None)
    letters = "".join(n.upper() for n in names) if names and all(n and n.upper() in "TCZYX" for n in names) else ""
    calibration = Calibration.uncalibrated(letters) if len(set(letters)) == node.ndim else None
    return LoadedImage(np.asarray(node[...]), calibration, node.attrs.get(RECORD_KEY))


def _ngff_record(location: Path) -> dict | None:
    zarr = require_package("zarr", "zarr")
    attrs = dict(zarr.open_group(str(location), mode="r").attrs)
    return attrs.get(RECORD_KEY)


# -- TIFF metadata --------------------------------------------------------------------------------
def _load_tiff(path: Path) -> LoadedImage:
    tifffile = require_package("tifffile", "cpu")
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array = np.asarray(series.asarray())
        axes = _known_axes(series.axes)
        record: dict | None = None
        scales: dict[str, tuple[float, str | None]] = {}
        if tif.is_imagej and tif.imagej_metadata is not None:
            scales, record = _imagej_calibration(tif.imagej_metadata, tif.pages[0])
        elif tif.is_ome and tif.ome_metadata:
            scales, record = _ome_calibration(tif.ome_metadata)
        elif tif.is_shaped and tif.shaped_metadata:
            record = tif.shaped_metadata[0].get(RECORD_KEY)
            axes = _shaped_axes(tif.shaped_metadata[0], array.shape) or axes
    if axes is None or len(axes) != array.ndim:
        return LoadedImage(array, None, record)
    steps = [scales.get(a, (1.0, None)) for a in axes]
    calibration = Calibration(axes, tuple(s for s, _ in steps), tuple(u for _, u in steps))
    return LoadedImage(array, calibration, record)


def _known_axes(letters: str) -> str | None:
    """tifffile's axes in our letters: ``S`` (samples, RGB) is the channel axis; one generic page axis
    (``I``/``Q``) is a stack (``Z``). None when that leaves an unknown or repeated letter."""
    letters = letters.upper().replace("S", "C") if "C" not in letters.upper() else letters.upper()
    generic = [a for a in letters if a in "IQ"]
    if len(generic) == 1 and "Z" not in letters:
        letters = letters.replace(generic[0], "Z")
    if set(letters) - set(IMAGEJ_ORDER) or len(set(letters)) != len(letters):
        return None
    return letters


def _shaped_axes(meta: dict, shape: tuple[int, ...]) -> str | None:
    """Axes of a tifffile "shaped" TIFF (it stores the writer's numpy shape): the ones it names, else a
    trailing axis of at most 4 after two larger ones is channels-last, numpy's and scikit-image's
    convention, as in (H, W, 2) or (Z, H, W, 3)."""
    named = meta.get("axes")
    if isinstance(named, str):
        return _known_axes(named)
    if len(shape) in (3, 4) and shape[-1] <= 4 < min(shape[-3:-1]):
        return "ZYXC"[-len(shape):]
    return None


def _imagej_calibration(meta: dict, page) -> tuple[dict, dict | None]:
    unit = meta.get("unit")
    if isinstance(unit, str) and "\\u" in unit:  # ImageJ escapes non-ASCII: \u00B5m
        unit = unit.encode("ascii", "backslashreplace").decode("unicode_escape")
    unit = udunits(unit)
    scales: dict[str, tuple[float, str | None]] = {}
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in page.tags:
            num, den = page.tags[tag].value
            if num > 0 and den > 0 and (num != den or unit is not None):
                scales[axis] = (den / num, unit)
    if meta.get("spacing"):
        scales["Z"] = (float(meta["spacing"]), unit)
    if meta.get("finterval"):
        scales["T"] = (float(meta["finterval"]), udunits(meta.get("tunit")) or "second")
    text = (meta.get("Properties") or {}).get(RECORD_KEY)
    return scales, json.loads(text) if text else None


def _ome_calibration(xml: str) -> tuple[dict, dict | None]:
    root = ElementTree.fromstring(xml)
    ns = {"ome": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    prefix = "ome:" if ns else ""
    image = root.find(f"{prefix}Image", ns)
    pixels = image.find(f"{prefix}Pixels", ns) if image is not None else None
    scales: dict[str, tuple[float, str | None]] = {}
    if pixels is not None:
        for axis in "XYZ":
            size = pixels.get(f"PhysicalSize{axis}")
            if size is not None:
                scales[axis] = (float(size), udunits(pixels.get(f"PhysicalSize{axis}Unit", "µm")))
        if pixels.get("TimeIncrement") is not None:
            scales["T"] = (float(pixels.get("TimeIncrement")), udunits(pixels.get("TimeIncrementUnit", "s")))
    description = image.find(f"{prefix}Description", ns) if image is not None else None
    record = None
    if description is not None and description.text:
        with contextlib.suppress(ValueError):
            record = json.loads(description.text).get(RECORD_KEY)
    return scales, record


# -- writers --------------------------------------------------------------------------------------
def write_array(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    overwrite: bool = False,
    chunks: tuple[int, ...] | None = None,
    calibration: Calibration | None = None,
    record: dict | None = None,
    labels: str | None = None,
    channel_names: list[str] | None = None,
) -> Path:
    """Write ``array`` atomically as TIFF (multi-page for 3D), PNG (2D/RGB), NPY or zarr, by suffix.

    With ``calibration`` (its axes must match ``array``) TIFF becomes an ImageJ hyperstack (or OME-TIFF
    for data types ImageJ cannot hold) with the pixel size and unit, and zarr an OME-Zarr image.
    ``record`` (JSON-able) is stored where :func:`load_image` finds it again (not in PNG/NPY).
    ``labels`` (``"classes"`` or ``"instances"``) marks a label image: TIFF gets a display range
    (and a random-colour LUT for instances) so it opens visibly in Fiji, OME-Zarr an ``image-label``.
    ``channel_names`` name the ``C`` axis (ImageJ slice labels: Fiji shows them per channel).
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise InvalidInputError(
            f"{path}: cannot write {suffix or '(no suffix)'}; expected one of {', '.join(WRITE_SUFFIXES)}"
        )
    array = np.asarray(array)
    if calibration is not None and len(calibration.axes) != array.ndim:
        raise InvalidInputError(f"{path}: axes {calibration.axes!r} do not match shape {array.shape}")
    if suffix == ".png" and not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))
    ):
        raise InvalidInputError(f"{path}: PNG holds 2D or RGB(A) images, got shape {array.shape}")
    with atomic_output(path, overwrite=overwrite) as tmp:
        if suffix in TIFF_SUFFIXES:
            write_tiff(tmp, array, calibration=calibration, record=record, labels=labels,
                       channel_names=channel_names)
        elif suffix == ".png":
            require_package("PIL", "cpu")
            from PIL import Image

            Image.fromarray(array).save(tmp, format="PNG")
        elif suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        else:
            store = create_zarr(tmp, array.shape, array.dtype, chunks=chunks, calibration=calibration,
                                record=record, labels=labels)
            store[...] = array
    logger.debug("wrote %s %s %s", path, array.shape, array.dtype)
    return path


def create_zarr(
    path: Path,
    shape: tuple[int, ...],
    dtype,
    *,
    chunks: tuple[int, ...] | None = None,
    calibration: Calibration | None = None,
    record: dict | None = None,
    labels: str | None = None,
) -> Any:
    """An empty zarr array at ``path`` to fill (e.g. tile by tile): OME-Zarr when ``calibration`` is given
    and its axes are valid NGFF axes, else a plain array; ``record`` goes into the attributes."""
    from . import ngff

    zarr = require_package("zarr", "zarr")
    if calibration is not None and ngff.can_write_axes(calibration.axes):
        array = ngff.create_ngff(path, shape, dtype, calibration=calibration, chunks=chunks,
                                 labels=labels is not None and "C" not in calibration.axes)
        if record is not None:
            zarr.open_group(str(path), mode="r+").attrs[RECORD_KEY] = record
        return array
    chunks = chunks or tuple(min(n, 512) if i >= len(shape) - 2 else 1 for i, n in enumerate(shape))
    array = zarr.open(str(path), mode="w", shape=tuple(shape), dtype=dtype, chunks=chunks)
    if record is not None:
        array.attrs[RECORD_KEY] = record
    return array


def write_tiff(
    path: Path,
    array: np.ndarray,
    *,
    calibration: Calibration | None = None,
    record: dict | None = None,
    labels: str | None = None,
    channel_names: list[str] | None = None,
) -> None:
    """Write a (non-atomic) TIFF: an ImageJ hyperstack when the axes and data type allow it (integer
    labels that fit are stored as 16-bit), else OME-TIFF with the calibration, else a plain TIFF."""
    tifffile = require_package("tifffile", "cpu")
    if calibration is None or set(calibration.axes) - set(IMAGEJ_ORDER):
        metadata = {RECORD_KEY: record} if record is not None else {}
        # minisblack: a (Z, H, 3) stack is a stack, not an RGB image
        tifffile.imwrite(path, array, photometric="minisblack", metadata=metadata or None)
        return
    imagej_array = _imagej_compatible(array, labels)
    if imagej_array is None:
        _write_ome_tiff(tifffile, path, array, calibration, record)
        return
    order = sorted(calibration.axes, key=IMAGEJ_ORDER.index)
    imagej_array = np.transpose(imagej_array, [calibration.axes.index(a) for a in order])
    axes = "".join(order)
    metadata: dict[str, Any] = {"axes": axes}
    unit = imagej_unit(calibration.spatial_unit())
    if unit is not None:
        metadata["unit"] = unit
    z_step, _ = calibration.of("Z")
    if "Z" in axes:
        metadata["spacing"] = z_step
    t_step, t_unit = calibration.of("T")
    if "T" in axes and t_unit is not None:
        metadata["finterval"] = t_step
        metadata["tunit"] = ome_unit(t_unit)
    if labels is not None and imagej_array.size:
        metadata["min"], metadata["max"] = 0, max(1, int(imagej_array.max()))
        if labels == "instances":
            metadata["LUTs"] = [_instance_lut()]
    if record is not None:
        metadata["Properties"] = {RECORD_KEY: json.dumps(record)}
    if channel_names is not None and "C" in axes and len(channel_names) == imagej_array.shape[axes.index("C")]:
        # one label per page, pages in TZC order (C varies fastest)
        pages = int(np.prod(imagej_array.shape[: axes.index("Y")]))
        metadata["Labels"] = [channel_names[i % len(channel_names)] for i in range(pages)]
    x_step, _ = calibration.of("X")
    y_step, _ = calibration.of("Y")
    tifffile.imwrite(path, imagej_array, imagej=True, resolution=(1.0 / x_step, 1.0 / y_step), metadata=metadata)


def _imagej_compatible(array: np.ndarray, labels: str | None) -> np.ndarray | None:
    """``array`` in a type ImageJ opens (8/16-bit, float32), converting labels losslessly; None if not."""
    if array.dtype in _IMAGEJ_DTYPES:
        return array
    if array.dtype == np.bool_:
        return array.view(np.uint8)
    if labels is not None and array.dtype.kind in "iu" and array.size and array.min() >= 0 and array.max() <= 65535:
        return array.astype(np.uint16)
    return None


def _instance_lut() -> np.ndarray:
    """ImageJ LUT (3, 256): 0 black, every other value a random but fixed colour."""
    lut = np.random.default_rng(1).integers(64, 256, (3, 256), dtype=np.uint8)
    lut[:, 0] = 0
    return lut


def _write_ome_tiff(tifffile, path: Path, array: np.ndarray, calibration: Calibration, record: dict | None) -> None:
    metadata: dict[str, Any] = {"axes": calibration.axes}
    for axis in "XYZ":
        step, unit = calibration.of(axis)
        if axis in calibration.axes and (step != 1.0 or unit is not None):
            metadata[f"PhysicalSize{axis}"] = step
            if unit is not None:
                metadata[f"PhysicalSize{axis}Unit"] = ome_unit(unit)
    if record is not None:
        metadata["Description"] = json.dumps({RECORD_KEY: record})
    tifffile.imwrite(path, array, ome=True, photometric="minisblack", metadata=metadata)
