"""Topology-preserving warping error (Jain et al. 2010), Fiji-exact in 2D, with a native 3D mode.

The ground truth L is warped toward the binarised proposal T = (p > threshold) by flipping only simple
points of L, most confident proposal pixels first; the pixels still mismatched are topological errors:

    warping error = |{x : L*(x) != T(x)}| / N,    L* = argmin over L' ~ L (same topology) of |L' xor T|

(greedy, as in Fiji's ``trainableSegmentation.metrics.WarpingError``). Each leftover pixel is classified
as split, merger, hole addition/deletion or object addition/deletion from the components of the warped
truth around it (radius ``radius``), as Fiji does.

References: V. Jain et al., "Boundary learning by optimization with topological constraints", CVPR 2010,
doi:10.1109/CVPR.2010.5539950. I. Arganda-Carreras et al., "Crowdsourcing the creation of image
segmentation algorithms for connectomics", Front. Neuroanat. 9:142, 2015, doi:10.3389/fnana.2015.00142.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from . import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["ErrorType", "WarpingResult", "warping_error"]

MODES = ("2d", "3d")


class ErrorType(enum.IntEnum):
    """Codes of :attr:`WarpingResult.classification`."""

    NONE = 0
    SPLIT = 1
    MERGER = 2
    HOLE_ADDITION = 3
    HOLE_DELETION = 4
    OBJECT_ADDITION = 5
    OBJECT_DELETION = 6


@dataclass(frozen=True)
class WarpingResult:
    """Outcome of :func:`warping_error`.

    ``error`` is ``mismatches / truth.size`` (for a stack this equals the mean of the per-slice errors,
    Fiji's value, since all slices have the same size). The six counts are pixel counts of the leftover
    mismatches by type and add up to ``mismatches``. ``warped`` is the warped ground truth (bool, shape
    of ``truth``); ``classification`` holds an :class:`ErrorType` code per pixel (uint8, 0 = no error).
    ``cluster_counts`` counts connected clusters of each type instead of pixels, as Fiji's
    ``clusterMismatchesByError`` (per slice in 2D): mergers and foreground hole additions are
    8-connected (26 in 3D), the others 4-connected (6 in 3D).
    """

    error: float
    mismatches: int
    splits: int
    mergers: int
    hole_additions: int
    hole_deletions: int
    object_additions: int
    object_deletions: int
    warped: np.ndarray = field(repr=False)
    classification: np.ndarray = field(repr=False)
    cluster_counts: dict = field(default_factory=dict)
    threshold: float = 0.5
    radius: int = 20
    mode: str = "2d"

    @property
    def counts(self) -> dict:
        """The six per-type pixel counts as a dict keyed by field name."""
        return {
            "splits": self.splits,
            "mergers": self.mergers,
            "hole_additions": self.hole_additions,
            "hole_deletions": self.hole_deletions,
            "object_additions": self.object_additions,
            "object_deletions": self.object_deletions,
        }


def warping_error(truth, proposal, *, threshold=0.5, radius=20, mode="2d", mask=None, threads=None) -> WarpingResult:
    """Warping error of a ground truth against a probability map.

    Parameters
    ----------
    truth : ndarray (H, W), (Z, H, W)
        Ground truth; foreground (cell interior) is value > 0. bool, integer or float dtype.
    proposal : ndarray, same shape
        Probability of foreground in [0, 1] (float32/float64; bool is taken as 0/1). Foreground where
        ``p > threshold``, comparing the stored value promoted to double with the double threshold
        (as Fiji: float32(0.1) > 0.1 is true).
    threshold : float in [0, 1]
    radius : int
        Half-size of the window used to tell splits from hole deletions (Fiji's ISBI script: 20).
        The whole image is used when ``radius < 1`` or larger than an image side.
    mode : {"2d", "3d"}
        "2d": each slice of a stack separately, exactly as Fiji (foreground 4-, background
        8-connected; outside the image is background). "3d": the volume as a whole with 3D simple
        points (foreground 6-, background 26-connected), 26-neighbourhood classification.
    mask : ndarray of bool, optional
        Where False, pixels are never flipped and never counted (Fiji's warping mask).
    threads : int, optional
        Worker threads for the slices of a stack in mode "2d" (default, None or 0: all cores); a 3D
        volume is warped on one thread. The GIL is released.

    Returns
    -------
    WarpingResult
    """
    mode = v.check_option(mode, "mode", MODES)
    threshold = v.check_threshold(threshold)
    radius = v.check_radius(radius)
    threads = v.resolve_threads(threads)
    truth = v.check_truth(truth, "truth", threads=threads)
    t3 = v.as_stack(truth, "truth", mode=mode)  # shape checks before the proposal's value scan
    proposal = v.check_proposal(proposal, "proposal", threads=threads)
    v.check_same_shape(truth, proposal, "truth", "proposal")
    mask = v.check_mask(mask, truth.shape)
    p3 = v.as_stack(proposal, "proposal", mode=mode)
    m3 = None if mask is None else v.as_stack(mask, "mask", mode=mode)
    raw = _core.warping_error(t3, p3, m3, threshold, radius, mode == "3d", threads)
    warped = raw["warped"].view(np.bool_).reshape(truth.shape)
    classification = raw["classification"].reshape(truth.shape)
    mismatches = int(raw["mismatches"])
    result = WarpingResult(
        error=mismatches / truth.size,
        mismatches=mismatches,
        splits=int(raw["splits"]),
        mergers=int(raw["mergers"]),
        hole_additions=int(raw["hole_additions"]),
        hole_deletions=int(raw["hole_deletions"]),
        object_additions=int(raw["object_additions"]),
        object_deletions=int(raw["object_deletions"]),
        warped=warped,
        classification=classification,
        cluster_counts={k: int(c) for k, c in raw["clusters"].items()},
        threshold=threshold,
        radius=radius,
        mode=mode,
    )
    logger.debug("warping_error(mode=%s, threshold=%r): %d mismatches", mode, threshold, mismatches)
    return result
