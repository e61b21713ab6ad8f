"""The plugin's reader, labels writer and sample data, as napari's "layer data" tuples (no napari import).

The reader opens what unet-sdk writes (``unet-sdk predict`` and the Segment widget): files named
``STEM_labels``, ``STEM_proba`` or ``STEM_instances`` with suffix .tif/.tiff, .npy or .zarr (OME-Zarr or a
plain zarr array). TIFF and zarr outputs carry unet-sdk's record (which kind of output, class names,
foreground class) and their pixel size (:func:`sdk.io.load_image`); class labels and instances become
labels layers, probabilities one image layer per class. zarr is opened lazily (dask), so outputs larger
than memory open at once. Other files are left to other readers.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..calibration import Calibration
from ..io import RECORD_KEY, image_stem, load_image, read_image, write_array
from ..models import sample_image_path

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict, str]
_OUTPUT_NAME = re.compile(r"_(labels|proba|instances)(\.ome)?\.(tiff?|npy|zarr)$", re.IGNORECASE)
_KINDS = {"labels": "labels", "proba": "probabilities", "instances": "instances"}
_SPATIAL_AXES = {2: "YX", 3: "ZYX", 4: "TZYX"}


def output_kind(path: str | os.PathLike) -> str | None:
    """``"labels"``, ``"probabilities"`` or ``"instances"`` if ``path`` is named like a unet-sdk output."""
    match = _OUTPUT_NAME.search(Path(path).name)
    return _KINDS[match.group(1).lower()] if match else None


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: :func:`read_output` for one unet-sdk output, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if len(paths) != 1 or output_kind(paths[0]) is None:
        return None
    return read_output


def _open(path: Path) -> tuple[Any, Calibration | None, dict | None, tuple[float, ...] | None]:
    """(array, calibration, record, translation); zarr lazily (dask), the rest in memory (NPY memory-mapped)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False), None, None, None
    if suffix != ".zarr":
        loaded = load_image(path)
        return loaded.array, loaded.calibration, loaded.record, None
    import dask.array as da
    import zarr

    from ..ngff import is_ngff, read_ngff

    if is_ngff(path):
        image = read_ngff(path)
        record = zarr.open_group(str(path), mode="r").attrs.get(RECORD_KEY)
        return da.from_zarr(image.array), image.calibration, record, image.translation
    array = zarr.open_array(str(path), mode="r")
    return da.from_zarr(array), None, array.attrs.get(RECORD_KEY), None


def read_output(path: str | list[str]) -> list[LayerData]:
    """Layers of a unet-sdk output file (see the module docstring)."""
    path = Path(path if isinstance(path, (str, os.PathLike)) else path[0])
    array, calibration, record, translation = _open(path)
    record = record if isinstance(record, dict) else {}
    kind = record.get("kind") or output_kind(path)
    axes = calibration.axes if calibration is not None else str(record.get("axes", ""))
    name = image_stem(path)
    meta = {"unet_sdk": record} if record else {}
    channel_axis = None
    if kind == "probabilities":
        channel_axis = axes.index("C") if "C" in axes else 0
    placement = {}
    if calibration is not None:
        placement["scale"] = tuple(s for a, s in zip(calibration.axes, calibration.scale) if a != "C")
        if translation is not None:
            placement["translate"] = tuple(t for a, t in zip(calibration.axes, translation) if a != "C")
        units = [u for a, u in zip(calibration.axes, calibration.units) if a != "C"]
        if all(units):
            placement["units"] = tuple(units)
    if kind != "probabilities":
        return [(array, dict(name=name, metadata=meta, **placement), "labels")]
    classes = array.shape[channel_axis]
    class_names = record.get("class_names") or [f"class {c}" for c in range(classes)]
    foreground = record.get("foreground_class", classes - 1)
    kwargs = dict(
        name=[f"{name} P({class_names[c] if c < len(class_names) else c})" for c in range(classes)],
        channel_axis=channel_axis, colormap="magma", contrast_limits=[(0.0, 1.0)] * classes,
        visible=[c == foreground for c in range(classes)], metadata=meta, **placement,
    )
    return [(array, kwargs, "image")]


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """napari's labels writer: :func:`sdk.io.write_array` by suffix (.tif/.tiff, .png, .npy, .zarr) with the
    layer's pixel size and unet-sdk record; atomic, and an existing file is never replaced."""
    array = np.asarray(data)
    axes = _SPATIAL_AXES.get(array.ndim)
    scale = tuple(float(s) for s in attributes.get("scale", (1.0,) * array.ndim))
    calibration = Calibration(axes, scale, (None,) * array.ndim) if axes else None
    record = (attributes.get("metadata") or {}).get("unet_sdk")
    try:
        json.dumps(record)
    except (TypeError, ValueError):
        logger.warning("%s: the layer's unet_sdk metadata is not JSON; written without it", path)
        record = None
    kind = record.get("kind") if isinstance(record, dict) else None
    write_array(path, array, calibration=calibration, record=record,
                labels="classes" if kind == "labels" else "instances")
    return [str(path)]


def isbi2012_sample() -> list[LayerData]:
    """The embedded sample: slice 0 of the ISBI 2012 EM test volume (Cardona et al. 2010), 512x512 uint8."""
    return [(read_image(sample_image_path()), {"name": "ISBI 2012 test slice 0"}, "image")]
