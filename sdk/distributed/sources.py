"""Where workers read the input from: one image of a stack, seen as (C, *spatial), read lazily.

A zarr array, a memmap or any object with ``shape``, ``dtype`` and numpy slicing is read in place by
the workers (:class:`StackView`), each reading only the windows it needs. A memmap travels as its file
name (:class:`MemmapSource`), not as its data. In-memory numpy arrays and Dask arrays travel as Dask
chunks instead.
"""
from __future__ import annotations

from typing import Any

import numpy as np

SPATIAL = {2: "YX", 3: "ZYX"}


class MemmapSource:
    """A ``numpy.memmap`` that pickles as its file, offset, dtype, shape and order."""

    def __init__(self, array: np.memmap) -> None:
        self.filename, self.offset = str(array.filename), int(array.offset)
        self.dtype, self.shape = array.dtype, tuple(array.shape)
        self.order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        self._array: np.memmap | None = array

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_array"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _array=None)

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._array is None:
            self._array = np.memmap(self.filename, self.dtype, "r", self.offset, self.shape, self.order)
        return self._array[key]


def readable_source(array: Any) -> Any:
    """``array`` as workers should receive it (memmaps by file name)."""
    if isinstance(array, np.memmap) and array.filename is not None:
        return MemmapSource(array)
    return array


class StackView:
    """Image ``n`` of ``source`` (laid out as ``axes``, e.g. ``"NYX"``, ``"YXC"``, ``"CZYX"``) as a
    (C, *spatial) array that reads ``source`` only where it is indexed."""

    def __init__(self, source: Any, axes: str, n: int = 0) -> None:
        self.source, self.axes, self.n = source, axes, n
        self.spatial = "ZYX" if "Z" in axes else "YX"
        size = dict(zip(axes, source.shape))
        self.shape = (size.get("C", 1),) + tuple(size[a] for a in self.spatial)
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        wanted = dict(zip("C" + self.spatial, key))
        source_key = tuple(self.n if a == "N" else wanted[a] for a in self.axes)
        data = np.asarray(self.source[source_key])
        kept = [a for a in self.axes if a != "N" and not isinstance(wanted[a], (int, np.integer))]
        if "C" not in self.axes and not isinstance(wanted["C"], (int, np.integer)):
            data = data[None][wanted["C"]]
            kept.insert(0, "C")
        order = [a for a in "C" + self.spatial if a in kept]
        return np.transpose(data, [kept.index(a) for a in order])
