"""The ISBI 2012 EM segmentation challenge scores, exactly as Fiji's evaluation script computes them.

For a ground truth (foreground = value > 0) and a probability map of foreground, over threshold sweeps
written as Fiji's double-precision loop ``for (th = 0.0; th <= max; th += 0.1)``:

- warping error: min over th in 0.0 .. 0.9 (10 values) of (split + merger pixels after warping,
  radius 20) / (W * H * Z); a tie keeps the lowest threshold;
- Rand error: 1 - max over th in 0.0 .. 1.0 (11 values, the last is 0.9999999999999999) of the
  F-score of the foreground-restricted Rand statistics, pooled over slices:
  with c_ij the pixels in truth component i >= 1 and proposal component j (j = 0: proposal
  background, scored as singletons), a_i = sum_j c_ij, b_j = sum_{i>=1} c_ij, C0 = sum_i c_i0,
  tp = sum c_ij^2 + C0, fp = sum b_j^2 - sum c_ij^2, fn = sum a_i^2 - tp (4-connected components);
- pixel error: 1 - max F-score of foreground pixels (tp/fp/fn summed over slices), same 11 thresholds.

F-score as Fiji: precision = 1 if fp = 0, recall = 1 if fn = 0, F = 2PR / (P + R) (0 if P + R = 0); the
best F starts at 0 and only a strictly greater F replaces it.

Where Fiji is wrong we do the right thing: an all-foreground truth slice is classified properly (Fiji
blanks it and scores no split or merger); a truth slice without foreground is left out of the pooled
Rand sums (Fiji reports Rand error 1.0 for the whole stack), and if no slice has foreground the Rand
error is NaN with ``rand_undefined_reason`` saying why; labels are 32-bit (Fiji's wrap past 65,535).

References: I. Arganda-Carreras et al., Front. Neuroanat. 9:142, 2015, doi:10.3389/fnana.2015.00142;
V. Jain et al., CVPR 2010, doi:10.1109/CVPR.2010.5539950.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .. import _core
from ..errors import InvalidInputError
from . import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["ISBIResult", "isbi2012", "pool_isbi2012", "fiji_thresholds", "fiji_fscore",
           "WARPING_THRESHOLDS", "FSCORE_THRESHOLDS", "ISBI_RADIUS"]


def fiji_thresholds(minimum: float, maximum: float, step: float) -> tuple:
    """The thresholds of Fiji's loop ``for (th = minimum; th <= maximum; th += step)`` (in doubles)."""
    out = []
    th = minimum
    while th <= maximum:
        out.append(th)
        th += step
    return tuple(out)


#: Thresholds of the warping sweep (10 values, 0.0 .. 0.8999999999999999).
WARPING_THRESHOLDS = fiji_thresholds(0.0, 0.9, 0.1)
#: Thresholds of the pixel and Rand sweeps (11 values, 0.0 .. 0.9999999999999999).
FSCORE_THRESHOLDS = fiji_thresholds(0.0, 1.0, 0.1)
#: Classification radius of the ISBI script.
ISBI_RADIUS = 20

# The warping thresholds are the first ten pixel/Rand thresholds: one sweep computes all three.
assert FSCORE_THRESHOLDS[: len(WARPING_THRESHOLDS)] == WARPING_THRESHOLDS

_COUNT_KEYS = ("splits", "mergers", "pixel_tp", "pixel_fp", "pixel_fn", "rand_tp", "rand_fp", "rand_fn")

NO_FOREGROUND_REASON = (
    "no slice of the ground truth has foreground (value > 0): the foreground-restricted Rand error is undefined"
)


def fiji_fscore(tp: int, fp: int, fn: int) -> float:
    """F-score with Fiji's conventions: precision = 1 if fp = 0, recall = 1 if fn = 0."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


@dataclass(frozen=True)
class ISBIResult:
    """The ISBI 2012 scores and the raw accumulators they come from.

    Fields: ``warping_error``, ``warping_threshold``, ``rand_error``, ``rand_threshold``,
    ``pixel_error``, ``pixel_threshold`` (the thresholds attaining them, Fiji loop values);
    ``n_pixels`` (W*H*Z), ``n_slices``, ``rand_slices`` (slices with truth foreground, the ones in the
    Rand sums), ``rand_undefined_reason`` (None, or why ``rand_error`` is NaN).

    ``table`` has one dict per threshold of :data:`FSCORE_THRESHOLDS` with keys ``threshold``,
    ``splits``, ``mergers``, ``warping_error`` (these three are None on the last row, which is not
    part of the warping sweep), ``pixel_tp``, ``pixel_fp``, ``pixel_fn``, ``pixel_fscore``, ``rand_tp``,
    ``rand_fp``, ``rand_fn``, ``rand_fscore`` (NaN when no slice has foreground). Counts are exact ints.
    """

    warping_error: float
    warping_threshold: float
    rand_error: float
    rand_threshold: float
    pixel_error: float
    pixel_threshold: float
    table: tuple = field(repr=False)
    n_pixels: int = 0
    n_slices: int = 0
    rand_slices: int = 0
    rand_undefined_reason: Optional[str] = None


def _summarise(columns: dict, n_pixels: int, n_slices: int, rand_slices: int) -> ISBIResult:
    """Scores from pooled per-threshold accumulators (columns: key -> sequence of ints per threshold)."""
    n_warp = len(WARPING_THRESHOLDS)
    rows = []
    best_warp, best_warp_th = math.inf, WARPING_THRESHOLDS[0]
    best_pixel_f, best_pixel_th = 0.0, FSCORE_THRESHOLDS[0]
    best_rand_f, best_rand_th = 0.0, FSCORE_THRESHOLDS[0]
    for i, th in enumerate(FSCORE_THRESHOLDS):
        row = {"threshold": th}
        row.update({k: int(columns[k][i]) for k in _COUNT_KEYS})
        if i < n_warp:
            row["warping_error"] = (row["splits"] + row["mergers"]) / n_pixels
            if row["warping_error"] < best_warp:
                best_warp, best_warp_th = row["warping_error"], th
        else:
            row["splits"] = row["mergers"] = row["warping_error"] = None
        row["pixel_fscore"] = fiji_fscore(row["pixel_tp"], row["pixel_fp"], row["pixel_fn"])
        if row["pixel_fscore"] > best_pixel_f:
            best_pixel_f, best_pixel_th = row["pixel_fscore"], th
        if rand_slices:
            row["rand_fscore"] = fiji_fscore(row["rand_tp"], row["rand_fp"], row["rand_fn"])
            if row["rand_fscore"] > best_rand_f:
                best_rand_f, best_rand_th = row["rand_fscore"], th
        else:
            row["rand_fscore"] = math.nan
        rows.append(row)
    reason = None if rand_slices else NO_FOREGROUND_REASON
    if reason:
        logger.warning("isbi2012: %s", reason)
    return ISBIResult(
        warping_error=best_warp,
        warping_threshold=best_warp_th,
        rand_error=1.0 - best_rand_f if rand_slices else math.nan,
        rand_threshold=best_rand_th if rand_slices else math.nan,
        pixel_error=1.0 - best_pixel_f,
        pixel_threshold=best_pixel_th,
        table=tuple(rows),
        n_pixels=n_pixels,
        n_slices=n_slices,
        rand_slices=rand_slices,
        rand_undefined_reason=reason,
    )


def isbi2012(truth, proposal, *, threads=None) -> ISBIResult:
    """ISBI 2012 warping, Rand and pixel errors of a 2D image or a (Z, H, W) stack, Fiji-exact.

    Parameters
    ----------
    truth : ndarray (H, W) or (Z, H, W)
        Ground truth, foreground (cell) = value > 0.
    proposal : ndarray, same shape
        Probability of foreground in [0, 1] (float32/float64, or bool as 0/1).
    threads : int, optional
        Worker threads (default, None or 0: all cores); the thresholds x slices are independent tasks and the
        GIL is released.
    """
    threads = v.resolve_threads(threads)
    truth = v.check_truth(truth, "truth", threads=threads)
    t3 = v.as_stack(truth, "truth", mode="2d")  # shape checks before the proposal's value scan
    # the sweep reads every value once anyway: it checks that they are probabilities on the way and
    # stops if not, instead of a validation pass of its own (3-5 ms of 0.3 s for 30x512x512 on 2 cores)
    proposal = v.check_proposal(proposal, "proposal", scan_values=False)
    v.check_same_shape(truth, proposal, "truth", "proposal")
    p3 = v.as_stack(proposal, "proposal", mode="2d")
    raw = _core.isbi_sweep(t3, p3, list(FSCORE_THRESHOLDS), len(WARPING_THRESHOLDS), ISBI_RADIUS, threads)
    if not raw["probabilities"]:
        v.check_proposal(p3, "proposal", threads=threads)  # raises, naming the problem
        raise AssertionError("internal: the sweep rejected a proposal that the value check accepts")
    columns = {k: raw[k].tolist() for k in _COUNT_KEYS}
    return _summarise(columns, n_pixels=int(t3.size), n_slices=int(t3.shape[0]), rand_slices=int(raw["rand_slices"]))


def pool_isbi2012(results: Sequence[ISBIResult]) -> ISBIResult:
    """Pool several :func:`isbi2012` results as if their slices formed one stack.

    The raw accumulators (split/merger pixels, pixel and Rand tp/fp/fn) and pixel counts are summed and
    the scores recomputed, so ``pool_isbi2012([isbi2012(a, p), isbi2012(b, q)])`` equals
    ``isbi2012(np.concatenate([a, b]), np.concatenate([p, q]))`` for stacks of equal slice size (and
    is the ISBI pooled definition for items of different sizes).
    """
    results = list(results)
    if not results:
        raise InvalidInputError("pool_isbi2012: no results to pool")
    for r in results:
        if not isinstance(r, ISBIResult):
            raise InvalidInputError(f"pool_isbi2012: expected ISBIResult items, got {type(r).__name__}")
    columns = {}
    for k in _COUNT_KEYS:
        columns[k] = [sum((r.table[i][k] or 0) for r in results) for i in range(len(FSCORE_THRESHOLDS))]
    return _summarise(
        columns,
        n_pixels=sum(r.n_pixels for r in results),
        n_slices=sum(r.n_slices for r in results),
        rand_slices=sum(r.rand_slices for r in results),
    )
