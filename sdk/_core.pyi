"""Type stubs of the C++ extension ``sdk._core`` (csrc/bindings.cpp). Internal: use :mod:`sdk.metrics`,
which validates arguments; these functions expect already-checked arrays."""
from typing import Optional, Sequence, TypedDict

import numpy as np
import numpy.typing as npt

class _ClusterCounts(TypedDict):
    splits: int
    mergers: int
    hole_additions: int
    hole_deletions: int
    object_additions: int
    object_deletions: int

class _Warping(_ClusterCounts):  # the six counts in pixels; clusters counts them as clusters
    mismatches: int
    clusters: _ClusterCounts
    warped: npt.NDArray[np.uint8]  # (Z, H, W), 0/1
    classification: npt.NDArray[np.uint8]  # (Z, H, W), ErrorType codes

class _Sweep(TypedDict):
    splits: npt.NDArray[np.int64]
    mergers: npt.NDArray[np.int64]
    pixel_tp: npt.NDArray[np.int64]
    pixel_fp: npt.NDArray[np.int64]
    pixel_fn: npt.NDArray[np.int64]
    rand_tp: npt.NDArray[np.int64]
    rand_fp: npt.NDArray[np.int64]
    rand_fn: npt.NDArray[np.int64]
    rand_slices: int
    probabilities: bool  # False: a value is NaN, infinite or outside [0, 1]; the sweep stopped, arrays empty

def proposal_summary(proposal: npt.NDArray, threads: int) -> tuple[bool, float, float]:
    """(all finite, min, max) of a 3-d float32/float64/bool array; min/max over the non-NaN values."""

def probability_violation(proposal: npt.NDArray, threads: int) -> Optional[tuple[bool, float, float]]:
    """None if every value of a 3-d float32/float64/bool array lies in [0, 1] (one fast pass), else
    (all finite, min, max) as proposal_summary, which says what is wrong."""

def warping_error(
    truth: npt.NDArray,
    proposal: npt.NDArray,
    mask: Optional[npt.NDArray],
    threshold: float,
    radius: int,
    volumetric: bool,
    threads: int,
) -> _Warping:
    """Warp and classify a (Z, H, W) stack slice by slice (volumetric=False) or as a volume."""

def isbi_sweep(
    truth: npt.NDArray,
    proposal: npt.NDArray,
    thresholds: Sequence[float],
    n_warp: int,
    radius: int,
    threads: int,
) -> _Sweep:
    """Per-threshold ISBI 2012 accumulators of a (Z, H, W) stack; the first n_warp thresholds are warped.

    The proposal's values are checked on the way; if one is not a probability (NaN, infinite or outside
    [0, 1]) the sweep stops, ``probabilities`` is False and the per-threshold arrays are empty."""

def contingency_table(
    truth: npt.NDArray, proposal: npt.NDArray, threads: int
) -> tuple[
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]:
    """(truth label bits, proposal label bits, row ids, col ids, counts, truth sizes, proposal sizes) of
    two integer label arrays; labels sorted by value, entries by (row, col)."""

class _ContingencySummary(TypedDict):
    total: int
    sum_sq_counts: int
    sum_sq_truth: int
    sum_sq_proposal: int
    xlogx_counts: float
    xlogx_truth: float
    xlogx_proposal: float
    zero_total: int
    zero_sum_sq_counts: int

def contingency_summary(
    truth: npt.NDArray, proposal: npt.NDArray, ignore_bits: npt.NDArray[np.uint64], threads: int
) -> _ContingencySummary:
    """Sums of the contingency table of two integer label arrays over the truth labels whose bits are not
    in ignore_bits: N, sums of squares and of x log2 x of the entries, truth sizes and proposal sizes
    (kept rows), and proposal label 0's column total and sum of squared entries. Exact integers."""

def seeded_watershed(
    priority: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    labels: npt.NDArray[np.uint32],
    mask: npt.NDArray[np.uint8] | None,
    volumetric: bool,
    full: bool,
    lines: bool,
    threads: int,
) -> None:
    """Flood the seeds in ``labels`` (C-contiguous (Z, H, W), changed in place) by increasing ``priority``
    within ``mask``; per slice (slices in parallel) or in 3D; ``lines``: one-pixel watershed lines (0)."""

def label_components(
    mask: npt.NDArray, volumetric: bool, full: bool
) -> tuple[npt.NDArray[np.uint32], int]:
    """Connected components of mask > 0 in a (Z, H, W) array, numbered 1..count in raster order; per
    slice (volumetric=False, labels unique across slices) or in 3D; face (4/6) or full (8/26) connectivity."""

def simple_table_2d() -> npt.NDArray[np.uint8]:
    """256-entry 2D simple-point table (foreground 4-, background 8-connected); bit k = neighbour k,
    neighbours in raster order (dy, dx) with the centre skipped."""

def is_simple_3d(code: int) -> bool:
    """Is the centre of a 3x3x3 neighbourhood simple (foreground 6-, background 26-connected)?
    Bit k = neighbour k in raster order (dz, dy, dx), centre skipped."""

def release_memory() -> None:
    """Frees the scratch memory kept between calls (workspaces of small images, small contingency
    workspaces); calls running now keep theirs until they finish."""

def contingency_cache_bytes() -> int:
    """Bytes held by the contingency workspaces kept between calls (each at most 96 MB, at most one per
    hardware thread)."""

def max_threads() -> int:
    """Most threads one call starts: 2 per hardware thread (as the Segmenter) (fewer when there is less work)."""
