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
bool as 0/1; integer proposals are rejected). Any memory layout, byte order or offset; bad input raises
:class:`sdk.errors.InvalidInputError` naming the problem. ``threads``: None or 0 = all cores, else at most
:data:`MAX_THREADS`; the core starts no more than 2 per core and than there is work for.
:func:`release_memory` frees the scratch memory kept between calls (bounded: workspaces of small images).
"""
from __future__ import annotations

try:
    from .. import _core
except ImportError as exc:  # the source tree imported instead of an installed copy that has the build
    import os as _os

    raise ImportError(
        f"unet-sdk's compiled core sdk._core is missing from {_os.path.dirname(_os.path.dirname(__file__))}. "
        "This usually means Python imported the source folder of a checkout (the current directory comes "
        "first on sys.path) while unet-sdk was installed with a non-editable 'pip install .', whose build "
        "is in site-packages. Run from another directory, or install editable: pip install -e '.[cpu]' "
        "(builds sdk/_core in the checkout)."
    ) from exc

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
from ._validation import MAX_THREADS
from .warping import ErrorType, WarpingResult, warping_error


def release_memory() -> None:
    """Free the scratch memory the metrics keep between calls (the workspaces of images up to 1024 x 1024
    pixels and small contingency tables, at most one per core and kind); calls running now keep theirs."""
    _core.release_memory()


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
    "release_memory",
    "MAX_THREADS",
]

# Scoring whole label sets (issue 5): evaluate -> Report; sdk.metrics.plots needs matplotlib (imported there
# only when drawing), Dask only when evaluate(client=...) is used.
from .evaluate import evaluate  # noqa: E402
from .inputs import Failure  # noqa: E402
from .report import ItemResult, Report  # noqa: E402

__all__ += ["evaluate", "Report", "ItemResult", "Failure"]
