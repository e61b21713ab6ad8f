"""Reading and writing images and arrays: TIFF, PNG/JPEG, NPY/NPZ, zarr.

Writers are atomic: data goes to a temporary sibling first and is renamed into place, so a crash never
leaves a half-written file, and an existing output is only replaced when ``overwrite=True``.
TIFF and PNG need the ``cpu``/``gpu`` extra (tifffile, Pillow); zarr needs the ``zarr`` extra.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InvalidInputError, OutputExistsError

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
READ_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES + (".npy", ".npz", ".zarr")
WRITE_SUFFIXES = TIFF_SUFFIXES + (".png", ".npy", ".zarr")


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def require_package(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise InvalidInputError(
            f"reading/writing this format needs the '{module}' package: pip install 'unet-sdk[{extra}]'"
        ) from exc


def is_image_path(path: str | os.PathLike) -> bool:
    """True if ``path`` has a suffix :func:`read_image` understands."""
    return _suffix(Path(path)) in READ_SUFFIXES


def read_image(path: str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """Read an image, stack or volume as a numpy array (pages of a multi-page TIFF become axis 0).

    ``key`` selects an array of a ``.npz`` file (default: its only array) or of a zarr group.
    Raises :class:`InvalidInputError` for a missing, unreadable or unsupported file.
    """
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
            tifffile = require_package("tifffile", "cpu")
            return np.asarray(tifffile.imread(path))
        if suffix in PIL_SUFFIXES:
            require_package("PIL", "cpu")
            from PIL import Image

            with Image.open(path) as img:
                return np.asarray(img)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                names = list(data.keys())
                if key is None:
                    if len(names) != 1:
                        raise InvalidInputError(
                            f"{path}: holds arrays {names}; name one with key=... (CLI: PATH.npz:KEY)"
                        )
                    key = names[0]
                if key not in names:
                    raise InvalidInputError(f"{path}: no array {key!r}; it holds {names}")
                return data[key]
        zarr = require_package("zarr", "zarr")
        node = zarr.open(str(path), mode="r")
        if key is not None:
            node = node[key]
        if not hasattr(node, "shape"):
            raise InvalidInputError(f"{path}: is a zarr group; name an array with key=...")
        return np.asarray(node[...])
    except InvalidInputError:
        raise
    except Exception as exc:  # each reader raises its own exception types for corrupt files
        raise InvalidInputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else remove it.

    Raises :class:`OutputExistsError` up front if ``path`` exists and ``overwrite`` is false.
    Works for files and for directories (zarr stores).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInputError(f"{path}: output directory {parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers create it themselves (some refuse an existing file, zarr wants a directory)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # os.replace cannot replace a non-empty directory
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def write_array(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    overwrite: bool = False,
    chunks: tuple[int, ...] | None = None,
) -> Path:
    """Write ``array`` atomically as TIFF (multi-page for 3D), PNG (2D/RGB), NPY or zarr, by suffix."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise InvalidInputError(
            f"{path}: cannot write {suffix or '(no suffix)'}; expected one of {', '.join(WRITE_SUFFIXES)}"
        )
    array = np.asarray(array)
    if suffix == ".png" and not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))
    ):
        raise InvalidInputError(f"{path}: PNG holds 2D or RGB(A) images, got shape {array.shape}")
    with atomic_output(path, overwrite=overwrite) as tmp:
        if suffix in TIFF_SUFFIXES:
            tifffile = require_package("tifffile", "cpu")
            # minisblack: a (Z, H, 3) stack is a stack, not an RGB image
            tifffile.imwrite(tmp, array, photometric="minisblack")
        elif suffix == ".png":
            require_package("PIL", "cpu")
            from PIL import Image

            Image.fromarray(array).save(tmp, format="PNG")
        elif suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        else:
            zarr = require_package("zarr", "zarr")
            store = zarr.open(str(tmp), mode="w", shape=array.shape, dtype=array.dtype, chunks=chunks)
            store[...] = array
    logger.debug("wrote %s %s %s", path, array.shape, array.dtype)
    return path
