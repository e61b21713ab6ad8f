"""What the Evaluate widget computes, as a plain function over :mod:`sdk.metrics` (no napari, no Qt).

:func:`evaluate_segmentation` scores a proposal (probabilities of foreground, or a labels image) against a
ground truth, either at one threshold or with the ISBI 2012 sweep (the threshold that minimises the
warping error then classifies the errors shown), and collects what a viewer shows: the warping error's
classified pixels and their clusters, and the variation of information object by object.

Objects: a label image with more than one nonzero value is an instance labelling and is used as it is;
anything else is a foreground mask (truth > 0, proposal > threshold) whose 4-connected components are
the objects, as the ISBI 2012 Rand error counts them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ..metrics import (
    WarpingResult,
    adapted_rand_error,
    isbi2012,
    label_components,
    rand_error,
    variation_of_information,
    warping_error,
)
from ..metrics.isbi import ISBI_RADIUS, fiji_fscore
from .error_clusters import ErrorClusters, error_clusters
from .object_vi import ObjectEntropies, object_vi


@dataclass(frozen=True)
class Evaluation:
    """``scores``: name -> value, in display order; ``threshold``: the one the errors and objects were
    taken at; ``warping``: the :class:`~sdk.metrics.WarpingResult` there; ``clusters``: its error
    clusters; ``truth_objects`` / ``proposal_objects``: the label images the VI compares;
    ``split_objects`` / ``merge_objects``: per-object VI entropies (:func:`.object_vi.object_vi`)."""

    scores: dict
    threshold: float
    warping: WarpingResult
    clusters: ErrorClusters
    truth_objects: np.ndarray
    proposal_objects: np.ndarray
    split_objects: ObjectEntropies
    merge_objects: ObjectEntropies


def is_instance_labelling(labels: np.ndarray) -> bool:
    """True if an integer image has more than one nonzero value (objects are its labels, not components)."""
    if labels.dtype.kind not in "iu":
        return False
    nonzero = labels[labels != 0]
    return nonzero.size > 0 and bool((nonzero != nonzero.flat[0]).any())


def objects_of(image: np.ndarray, *, threshold: float | None = None) -> np.ndarray:
    """Object labels of ``image``: its own labels if it is an instance labelling, else the 4-connected
    components (per slice of a stack) of ``image > threshold`` (``> 0`` when ``threshold`` is None)."""
    if is_instance_labelling(image):
        return image
    mask = image > (0 if threshold is None else np.float64(threshold))
    return label_components(mask, mode="2d")


def evaluate_segmentation(truth, proposal, *, threshold: float | None = None, proposal_labels=None) -> Evaluation:
    """Score ``proposal`` against ``truth`` (2D images or (Z, H, W) stacks, scored slice by slice).

    ``proposal``: probabilities of foreground in [0, 1] (float or bool). ``threshold``: None for the
    ISBI 2012 sweep (Fiji's thresholds; errors shown at the warping error's best threshold, objects at
    the Rand error's), else the one threshold ``p > threshold``. ``proposal_labels``: the proposal's own
    instance labels, if it has them (then used for the VI instead of the thresholded components).
    """
    truth = np.asarray(truth)
    proposal = np.asarray(proposal)
    if truth.ndim not in (2, 3):
        raise InvalidInputError(f"truth: expected a 2D image or a (Z, H, W) stack, got shape {truth.shape}")
    scores: dict = {}
    if threshold is None:
        isbi = isbi2012(truth, proposal)
        warp_threshold, object_threshold = isbi.warping_threshold, isbi.rand_threshold
        scores["warping error (ISBI)"] = isbi.warping_error
        scores["Rand error (ISBI)"] = isbi.rand_error
        scores["pixel error (ISBI)"] = isbi.pixel_error
        scores["warping threshold"] = isbi.warping_threshold
        scores["Rand threshold"] = isbi.rand_threshold
        scores["pixel threshold"] = isbi.pixel_threshold
        warping = warping_error(truth, proposal, threshold=warp_threshold, radius=ISBI_RADIUS)
    else:
        warp_threshold = object_threshold = threshold
        warping = warping_error(truth, proposal, threshold=threshold, radius=ISBI_RADIUS)
        foreground, predicted = truth > 0, proposal > np.float64(threshold)
        tp = int(np.count_nonzero(foreground & predicted))
        fp = int(np.count_nonzero(predicted)) - tp
        fn = int(np.count_nonzero(foreground)) - tp
        scores["warping error"] = (warping.splits + warping.mergers) / truth.size
        scores["Rand error"] = rand_error(label_components(foreground, mode="2d"), label_components(predicted, mode="2d"))
        scores["pixel error"] = 1.0 - fiji_fscore(tp, fp, fn)
        scores["threshold"] = threshold
    scores["topological errors (all types)"] = warping.error
    truth_objects = objects_of(truth)
    proposal_objects = proposal_labels if proposal_labels is not None else objects_of(proposal, threshold=object_threshold)
    vi = variation_of_information(truth_objects, proposal_objects, ignore_labels=(0,))
    scores["VI split (bits)"] = vi.split
    scores["VI merge (bits)"] = vi.merge
    scores["adapted Rand error"] = adapted_rand_error(truth_objects, proposal_objects).error
    split_objects, merge_objects = object_vi(truth_objects, proposal_objects, ignore_labels=(0,))
    return Evaluation(
        scores=scores,
        threshold=warp_threshold,
        warping=warping,
        clusters=error_clusters(warping),
        truth_objects=truth_objects,
        proposal_objects=proposal_objects,
        split_objects=split_objects,
        merge_objects=merge_objects,
    )
