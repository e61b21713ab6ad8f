"""Segmentation metrics with a C++ core (``sdk._core``): Fiji-exact ISBI 2012 scores and label metrics.

Families (one module each):

- :mod:`.warping` -- :func:`warping_error` -> :class:`WarpingResult` (``error``, ``mismatches``,
  ``splits``, ``mergers``, ``hole_additions``, ``hole_deletions``, ``object_additions``,
  ``object_deletions``, ``warped``, ``classification`` with :class:`ErrorType` codes, ``cluster_counts``,
  ``threshold``, ``radius``, ``mode``, ``counts``); 2D per slice as Fiji, or native 3D.
- :mod:`.isbi` -- :func:`isbi2012` -> :class:`ISBIResult` (``warping_error``/``warping_threshold``,
  ``rand_error``/``rand_threshold``, ``pixel_error``/``pixel_threshold``, ``table`` of raw per-threshold
  accumulators, ``n_pixels``, ``n_slices``, ``rand_slices``, ``rand_undefined_reason``);
  :func:`pool_isbi2012` pools results as one stack.
- :mod:`.contingency` -- :func:`contingency_table` -> :class:`ContingencyTable` (``truth_labels``,
  ``proposal_labels``, ``rows``, ``cols``, ``counts``, ``truth_sizes``, ``proposal_sizes``, ``total``,
  ``nnz``; sparse, 64-bit labels) and, computed from it (``table=`` reuses one),
  :func:`rand_error` (ISBI foreground-restricted), :func:`variation_of_information` -> ``(split, merge)``,
  :func:`adapted_rand_error` -> ``(error, precision, recall, fscore)`` (precision over the proposal's
  pairs, recall over the truth's: skimage returns them swapped); :func:`pixel_error` (fraction of
  mismatched pixels at one threshold).
- :mod:`.components` -- :func:`label_components`: connected components of a mask (4/8 or 6/26).

Inputs: truth foreground = value > 0; proposals are probabilities of foreground in [0, 1] (float32/64,
bool as 0/1; integer proposals are rejected). Any memory layout; bad input raises
:class:`sdk.errors.InvalidInputError` naming the problem.
"""
from __future__ import annotations

from .contingency import (
    AdaptedRandResult,
    ContingencyTable,
    VariationOfInformation,
    adapted_rand_error,
    contingency_table,
    pixel_error,
    rand_error,
    variation_of_information,
)
from .components import label_components
from .isbi import FSCORE_THRESHOLDS, WARPING_THRESHOLDS, ISBIResult, isbi2012, pool_isbi2012
from .warping import ErrorType, WarpingResult, warping_error

__all__ = [
    "warping_error",
    "WarpingResult",
    "ErrorType",
    "isbi2012",
    "ISBIResult",
    "pool_isbi2012",
    "WARPING_THRESHOLDS",
    "FSCORE_THRESHOLDS",
    "contingency_table",
    "ContingencyTable",
    "rand_error",
    "pixel_error",
    "variation_of_information",
    "VariationOfInformation",
    "adapted_rand_error",
    "AdaptedRandResult",
    "label_components",
]

# Scoring whole label sets (issue 5): evaluate -> Report; sdk.metrics.plots needs matplotlib (imported there
# only when drawing), Dask only when evaluate(client=...) is used.
from .evaluate import evaluate  # noqa: E402
from .inputs import Failure  # noqa: E402
from .report import ItemResult, Report  # noqa: E402

__all__ += ["evaluate", "Report", "ItemResult", "Failure"]
