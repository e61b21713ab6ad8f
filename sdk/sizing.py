"""Tile and block sizes from a memory budget: the largest tile that fits.

Larger tiles recompute less halo and run as fast per pixel, so the best tile is the largest one whose
working memory fits (benchmarks/README.md: 2048-px tiles 2.18x MONAI at 2048², 1024-px tiles 1.54x).
What a tile costs is measured, not guessed: ONNX Runtime keeps a tile's activations in its arena, so the
resident memory a run adds, divided by the tile's pixels, is the network's bytes per pixel (384 for the
embedded ISBI model; linear in the tile's pixel count, measured once per model and process).

* :func:`memory_budget` — the budget: a fraction (:data:`DEFAULT_BUDGET_FRACTION`) of the memory available
  now, or ``UNET_SDK_MEMORY_BUDGET``, or an explicit number of bytes (``"2GiB"``: :func:`parse_bytes`).
* :func:`largest_tile` — the largest accepted tile side whose activations fit in a budget.
* :func:`default_tile` — what :class:`~sdk.segmenter.Segmenter` uses when no ``tile`` is given.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError

logger = logging.getLogger(__name__)

DEFAULT_BUDGET_FRACTION = 0.25  # of the memory available when the budget is taken (the machine is shared)
BUDGET_VARIABLE = "UNET_SDK_MEMORY_BUDGET"  # the default budget for every Segmenter of a process, e.g. "1GB"
MIN_TILE = {2: 256, 3: 48}  # below this a tile recomputes more halo than it keeps (96-px halo: 256 keeps ~1/3)
CALIBRATION_SIDES = {2: (256, 512), 3: (32, 64)}  # two tiles: the slope excludes fixed overhead
FALLBACK_BYTES_PER_PIXEL = 1024.0  # where resident memory cannot be read (not Linux) or on a GPU
MIN_MEASURED_BYTES_PER_PIXEL = 8.0  # below this a measurement saw no activations (they were freed)
# ORT's CPU arena grows in power-of-two regions: a large tile can hold up to twice its measured working
# memory (base-32 U-Net: 768 B/px at 512-1024 px, 1347 B/px at 2144 px)
ARENA_HEADROOM = 2.0
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

_measured: dict[tuple[str, str], float] = {}
_measure_lock = threading.Lock()


def parse_bytes(text: str | int) -> int:
    """``"1.5GB"``, ``"512MiB"``, ``"800m"`` or a number of bytes, as an int; :class:`InvalidInputError`
    otherwise."""
    if isinstance(text, (int, np.integer)):
        value = int(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise InvalidInputError(f"memory size {text!r}: give bytes or a number with a unit, e.g. 2GB, 512MiB")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise InvalidInputError(f"memory size {text!r} must be positive")
    return value


def available_memory() -> int:
    """Bytes of memory available to new allocations now (``MemAvailable``, capped by a cgroup limit)."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    try:  # a container's own limit (cgroup v2) may be far below the host's free memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(available, 0)


def memory_budget(budget: int | str | None = None) -> int:
    """``budget`` in bytes; by default the environment's :data:`BUDGET_VARIABLE` (e.g. ``2GB``), else
    :data:`DEFAULT_BUDGET_FRACTION` of :func:`available_memory`."""
    if budget is None:
        budget = os.environ.get(BUDGET_VARIABLE) or None
    if budget is not None:
        return parse_bytes(budget)
    return int(DEFAULT_BUDGET_FRACTION * available_memory())


def _resident_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def tile_bytes_per_pixel(runtime: Any, key: str | None = None) -> float:
    """Working memory of one network input pixel (bytes), measured on ``runtime`` (:class:`sdk.runtime.Runtime`).

    Two fresh-arena runs on small tiles; the slope of the resident memory they add is the per-pixel cost
    (the arena keeps a run's activations until it is released). Measured once per ``key`` (the model) and
    process; :data:`FALLBACK_BYTES_PER_PIXEL` where it cannot be measured (CUDA memory is not resident
    memory; no ``/proc``).
    """
    source = key or getattr(runtime, "source", "<bytes>")
    key = (source, runtime.device)
    with _measure_lock:
        if key in _measured:
            return _measured[key]
        meta = runtime.metadata
        value = FALLBACK_BYTES_PER_PIXEL
        if runtime.device == "cpu" and _resident_bytes() is not None:
            points = []
            for side in CALIBRATION_SIDES[meta.spatial_dims]:
                side = meta.valid_input_size_at_least(side)
                runtime.release_memory()
                before = _resident_bytes()
                runtime.run(np.zeros((1, meta.in_channels) + (side,) * meta.spatial_dims, np.float32))
                points.append((side**meta.spatial_dims, _resident_bytes() - before))
            runtime.release_memory()
            (p0, b0), (p1, b1) = points
            slope = (b1 - b0) / (p1 - p0)
            # a slope swamped by another thread's freeing falls back to the larger run's average; a run that
            # kept nothing resident (no arena) measured nothing, and the conservative constant stands
            value = slope if slope > 0 else b1 / p1
            if value < MIN_MEASURED_BYTES_PER_PIXEL:
                logger.info("tile memory of %s not measurable (%.1f B/px); assuming %g", key[0], value,
                            FALLBACK_BYTES_PER_PIXEL)
                value = FALLBACK_BYTES_PER_PIXEL
        # input and output buffers of the tile (float32) come on top of the activations
        value += 4.0 * (meta.in_channels + meta.num_classes)
        if source != "<bytes>":  # models given as bytes have no name to cache them by
            _measured[key] = value
        logger.debug("tile working memory of %s on %s: %.0f bytes per pixel", key[0], key[1], value)
        return value


def largest_tile(
    rule: Any, bytes_per_pixel: float, budget: int, *, spatial_dims: int, batch_size: int = 1
) -> int:
    """The largest accepted tile side whose batch of ``batch_size`` tiles needs at most ``budget`` bytes
    (``bytes_per_pixel * side**spatial_dims * batch_size`` times :data:`ARENA_HEADROOM`), never below
    :data:`MIN_TILE`."""
    if budget <= 0 or bytes_per_pixel <= 0:
        raise InvalidInputError(f"budget {budget} and bytes per pixel {bytes_per_pixel} must be positive")
    # (the epsilon keeps an exact fit: 68**3 comes back from the cube root as 67.99999999999999)
    side = int(math.floor((budget / (bytes_per_pixel * batch_size * ARENA_HEADROOM)) ** (1.0 / spatial_dims) + 1e-9))
    floor = rule.valid_input_size_at_least(MIN_TILE[spatial_dims])
    accepted = rule.valid_input_size_at_least(max(side, 1))
    if accepted > side:  # round down to an accepted size
        accepted -= rule.input_size_multiple
    return max(accepted, floor)


def default_tile(
    runtime: Any, *, budget: int | str | None = None, batch_size: int = 1, key: str | None = None
) -> tuple[int, ...]:
    """The tile :class:`~sdk.segmenter.Segmenter` uses by default: the largest that fits ``budget`` (default:
    :func:`memory_budget`) on the CPU (``key`` names the model for the per-process cache); on CUDA the model's ``tile_size`` (GPU memory is not measured here),
    else 512 (2D) / 96 (3D)."""
    meta = runtime.metadata
    if runtime.device != "cpu":
        return tuple(meta.tile_size) or ((512,) * 2 if meta.spatial_dims == 2 else (96,) * 3)
    per_pixel = tile_bytes_per_pixel(runtime, key)
    side = largest_tile(meta, per_pixel, memory_budget(budget), spatial_dims=meta.spatial_dims, batch_size=batch_size)
    return (side,) * meta.spatial_dims
