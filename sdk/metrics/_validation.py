"""Input checks shared by the metric families: one place that turns bad arrays into
:class:`~sdk.errors.InvalidInputError` with a message naming the problem (and the fix, where there is one).

Nothing here copies an array unless its layout makes the C++ core unable to read it: non-native byte order
(big-endian data, e.g. from a ``.npy`` file written on another machine) is converted once, in
:func:`as_array`. The core reads any strides, offsets (unaligned too) and read-only or broadcast arrays.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from .. import _core
from ..errors import InvalidInputError

#: Ground truth: foreground is value > 0.
TRUTH_DTYPES = frozenset(
    np.dtype(t) for t in (np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32,
                          np.int64, np.float32, np.float64)
)
#: Proposals: probabilities of foreground in [0, 1]; bool is taken as 0/1.
PROPOSAL_DTYPES = frozenset(np.dtype(t) for t in (np.bool_, np.float32, np.float64))
#: Label images (the contingency family): integers of any width, or bool.
LABEL_DTYPES = frozenset(
    np.dtype(t) for t in (np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64)
)

# The core orders a slice's (2D) or a volume's (3D) pixels by 32-bit scan positions packing the
# coordinates: the bit widths of the axis sizes must add up to at most 32.
SCAN_POSITION_BITS = 32
# Runs of foreground along a row have 32-bit signed column bounds, and run ids are 32-bit.
MAX_ROW_WIDTH = 2**31 - 1
MAX_RUNS = 2**32 - 1
# The contingency table's runs and label ids are 32-bit.
MAX_LABEL_PIXELS = 2**32 - 1
#: Most ``threads`` a metric accepts; the C++ core starts at most 2 per core and no more than there is
#: work for.
MAX_THREADS = 2**16
# The core's radius is a 32-bit int.
RADIUS_RANGE = (-(2**31), 2**31 - 1)


def native_byte_order(a: np.ndarray) -> np.ndarray:
    """``a``, or a copy in native byte order if it is not (big-endian data on a little-endian machine)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _as_3d(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3:
        return a
    if a.ndim == 0:
        return a.reshape(1, 1, 1)
    return a.reshape(1, -1, a.shape[-1])  # a view for 1D/2D; for ndim > 3 numpy copies only if the axes cannot be merged


def _summary(a: np.ndarray, threads: int) -> tuple:
    """(all finite, min, max) of a float/bool array, computed in C++ in one pass without temporaries."""
    return _core.proposal_summary(_as_3d(a), threads)


def as_array(x, name: str) -> np.ndarray:
    """``x`` as an ndarray in native byte order (no copy for native arrays), rejecting objects numpy
    cannot turn into numbers."""
    if isinstance(x, np.ndarray):
        return native_byte_order(x)
    try:
        a = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the caller's bad input
        raise InvalidInputError(f"{name}: cannot be converted to an array ({exc})") from exc
    if a.dtype == object:
        raise InvalidInputError(f"{name}: not a numeric array (object dtype)")
    return native_byte_order(a)


def check_nonempty(a: np.ndarray, name: str) -> None:
    if a.size == 0:
        raise InvalidInputError(f"{name}: empty array of shape {a.shape}")


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise InvalidInputError(f"shape mismatch: {name_a} has shape {a.shape}, {name_b} has shape {b.shape}")


def check_truth(x, name: str = "truth", *, threads: int = 1) -> np.ndarray:
    """A ground-truth image (foreground = value > 0) of a supported dtype, without NaN (float values
    scanned with ``threads`` threads)."""
    a = as_array(x, name)
    if a.dtype not in TRUTH_DTYPES:
        raise InvalidInputError(
            f"{name}: unsupported dtype {a.dtype}; use bool, uint8/16/32/64, int8/16/32/64, float32 or float64"
        )
    check_nonempty(a, name)
    if a.dtype.kind == "f":
        finite, _, _ = _summary(a, threads)
        if not finite:
            raise InvalidInputError(f"{name}: contains NaN or Inf")
    return a


def check_proposal(x, name: str = "proposal", *, threads: int = 1, scan_values: bool = True) -> np.ndarray:
    """A probability map of foreground in [0, 1] (float32/float64, or bool as 0/1), finite (scanned
    with ``threads`` threads). ``scan_values=False`` checks only type and size, for callers whose C++
    core checks the values as it reads them (``isbi2012``)."""
    a = as_array(x, name)
    if a.dtype.kind in "iu":
        raise InvalidInputError(
            f"{name}: integer dtype {a.dtype} is ambiguous (0..255 or labels?); pass probabilities of "
            f"foreground in [0, 1] as float32/float64, e.g. image.astype(np.float32) / 255, or a bool mask"
        )
    if a.dtype not in PROPOSAL_DTYPES:
        raise InvalidInputError(f"{name}: unsupported dtype {a.dtype}; use float32, float64 or bool")
    check_nonempty(a, name)
    if scan_values and a.dtype.kind == "f":
        violation = _core.probability_violation(_as_3d(a), threads)  # None: all in [0, 1]
        if violation is not None:
            _raise_for_proposal_values(violation, name)
    return a


def _raise_for_proposal_values(summary: tuple, name: str) -> None:
    """Raises the error that ``summary`` = (all finite, min, max) of a proposal outside [0, 1] calls for."""
    finite, lo, hi = summary
    if not finite:
        raise InvalidInputError(f"{name}: contains NaN or Inf; probabilities must be finite")
    if lo < 0.0 or hi > 1.0:
        raise InvalidInputError(
            f"{name}: values outside [0, 1] (min {lo:g}, max {hi:g}); pass probabilities of foreground"
        )
    raise AssertionError(f"internal: {name} was rejected, but its values {summary} are probabilities")


def check_labels(x, name: str) -> np.ndarray:
    """A label image of integers (or bool)."""
    a = as_array(x, name)
    if a.dtype not in LABEL_DTYPES:
        hint = " (float labels: convert with .astype(np.int64) if they are whole numbers)" if a.dtype.kind == "f" else ""
        raise InvalidInputError(f"{name}: unsupported label dtype {a.dtype}; use an integer dtype{hint}")
    check_nonempty(a, name)
    return a


def check_mask(x, shape: tuple, name: str = "mask") -> Optional[np.ndarray]:
    """An optional bool/integer mask of the given shape (nonzero = warping allowed and scored)."""
    if x is None:
        return None
    a = as_array(x, name)
    if a.dtype.kind not in "biu":
        raise InvalidInputError(f"{name}: unsupported dtype {a.dtype}; use bool (True = scored)")
    if a.shape != shape:
        raise InvalidInputError(f"shape mismatch: {name} has shape {a.shape}, truth has shape {shape}")
    return a


def check_threshold(threshold, name: str = "threshold") -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name}: must be a number in [0, 1], got {threshold!r}") from exc
    if not (0.0 <= t <= 1.0):
        raise InvalidInputError(f"{name}: must be in [0, 1], got {threshold!r}")
    return t


def check_int(value, name: str, *, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name}: must be an integer, got {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise InvalidInputError(f"{name}: must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise InvalidInputError(f"{name}: must be <= {maximum}, got {v}")
    return v


def check_radius(radius) -> int:
    """The warping classification radius: an int the core can hold (a radius of an image side or more
    already means the whole image)."""
    lo, hi = RADIUS_RANGE
    if isinstance(radius, (int, np.integer)) and not isinstance(radius, bool) and not lo <= int(radius) <= hi:
        raise InvalidInputError(
            f"radius: must be between {lo} and {hi}, got {int(radius)}; any radius of an image side or more "
            f"(or < 1) uses the whole image"
        )
    return check_int(radius, "radius")


def resolve_threads(threads) -> int:
    """``None`` or 0 = every core this process may use; else an integer in [1, :data:`MAX_THREADS`]. The
    core starts no more threads than 2 per core, and than there is work for."""
    n = 0 if threads is None else check_int(threads, "threads", maximum=MAX_THREADS)
    if n < 0:
        raise InvalidInputError(f"threads: must be >= 1 (or None / 0 for every core), got {n}")
    if n:
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_option(value, name: str, allowed: tuple) -> str:
    if value not in allowed:
        raise InvalidInputError(f"{name}: must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def as_stack(a: np.ndarray, name: str, *, mode: str) -> np.ndarray:
    """A (Z, H, W) view: 2D images become one-slice stacks; 3D stays. mode '3d' needs a 3D volume."""
    if mode == "3d":
        if a.ndim != 3:
            raise InvalidInputError(f"{name}: mode='3d' needs a 3D volume (Z, H, W), got ndim={a.ndim} shape {a.shape}")
        stack = a
    elif a.ndim == 2:
        stack = a[np.newaxis]
    elif a.ndim == 3:
        stack = a
    else:
        raise InvalidInputError(f"{name}: expected a 2D image (H, W) or a stack (Z, H, W), got ndim={a.ndim} shape {a.shape}")
    if stack.shape[-1] > MAX_ROW_WIDTH:
        raise InvalidInputError(
            f"{name}: rows of {stack.shape[-1]} pixels are too wide (at most {MAX_ROW_WIDTH}); split the image into tiles"
        )
    axes = stack.shape if mode == "3d" else stack.shape[1:]
    bits = sum(max(0, int(s) - 1).bit_length() for s in axes)
    if bits > SCAN_POSITION_BITS:
        unit = "volume" if mode == "3d" else "slice"
        raise InvalidInputError(
            f"{name}: a {unit} of shape {tuple(axes)} is too large (coordinates need {bits} bits, at most "
            f"{SCAN_POSITION_BITS}); split it into tiles or slices"
        )
    return stack
