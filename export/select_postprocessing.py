"""Choose a model's post-processing on held-out data and record it in the model (``unet-export postprocess``).

The candidates are watershed boundaries (:mod:`sdk.postprocessing`) at each seed threshold of a grid, and
none. Each is scored with the ISBI 2012 metrics (:func:`sdk.metrics.isbi2012`) on the held-out samples, as
``Segmenter.predict_proba`` would produce them (default inference, no test-time augmentation); the lowest
Rand error wins (then the lowest warping error), and "none" stays unless a candidate beats it.

The held-out samples pick the setting and are scored with it, which flatters the score a little. So the
record also holds a two-fold figure: the samples split in halves, the setting chosen on each half scored on
the other, the counts pooled (:func:`sdk.metrics.pool_isbi2012`). It also gives the scores with the
chosen setting under dihedral test-time augmentation (``Segmenter(tta="dihedral")``).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sdk.atomic import atomic_output
from sdk.errors import InvalidInputError
from sdk.metrics import ISBIResult, isbi2012, pool_isbi2012
from sdk.model_metadata import Postprocessing
from sdk.postprocessing import apply_postprocessing

logger = logging.getLogger(__name__)

DEFAULT_SEED_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
NONE = "none"


def _scores(result: ISBIResult) -> dict[str, float]:
    return {"warping_error": float(result.warping_error), "rand_error": float(result.rand_error),
            "pixel_error": float(result.pixel_error)}


def _key(result: ISBIResult) -> tuple[float, float]:
    return (result.rand_error, result.warping_error)


def _probabilities(model: str | os.PathLike, images: np.ndarray, *, tta: str, threads: int | None):
    """The network's probabilities (K, N, H, W) of the slices, and the model's metadata."""
    from sdk import Segmenter

    segmenter = Segmenter(model, postprocess=False, tta=tta, threads=threads)
    return segmenter.predict_proba(images, axes="NYX"), segmenter.metadata


def boundary_foreground(proba: np.ndarray, metadata, seed: float) -> np.ndarray:
    """Foreground probability (N, H, W) of a stack's probabilities (K, N, H, W) after watershed boundaries
    with ``seed``, each slice flooded on its own (as ``predict`` does)."""
    post = dataclasses.replace(metadata, postprocessing=Postprocessing("watershed", seed))
    fg = metadata.foreground_class
    return np.stack([apply_postprocessing(proba[:, n].copy(), post)[fg] for n in range(proba.shape[1])])


def _candidate_proposals(proba: np.ndarray, metadata, seeds: Sequence[float]) -> dict[str, np.ndarray]:
    """Foreground probability (N, H, W) of each candidate: "none", and "watershed <seed>" per seed."""
    out = {NONE: proba[metadata.foreground_class]}
    for seed in seeds:
        out[f"watershed {seed:g}"] = boundary_foreground(proba, metadata, seed)
    return out


def _best(results: dict[str, ISBIResult]) -> str:
    best = NONE
    for name, result in results.items():
        if _key(result) < _key(results[best]):
            best = name
    return best


def select_postprocessing(
    model: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seeds: Sequence[float] = DEFAULT_SEED_THRESHOLDS,
    samples: str = "",
    threads: int | None = None,
) -> tuple[Postprocessing, dict]:
    """The best post-processing of ``model`` on held-out ``images`` / ``labels`` (N, H, W stacks; label >
    0 = foreground), with its selection record (every candidate's scores, the two-fold figure, TTA)."""
    if images.ndim != 3 or images.shape != labels.shape or len(images) < 2:
        raise InvalidInputError(f"images {images.shape} and labels {labels.shape}: give two or more equal (N, H, W) slices")
    if not all(0 < s <= 1 for s in seeds):
        raise InvalidInputError(f"seed thresholds {list(seeds)} must lie in (0, 1]")
    proba, metadata = _probabilities(model, images, tta="none", threads=threads)
    truth = (labels > 0).astype(np.uint8)
    proposals = _candidate_proposals(proba, metadata, seeds)
    per_slice = {name: [isbi2012(truth[n:n + 1], p[n:n + 1]) for n in range(len(truth))] for name, p in proposals.items()}
    pooled = {name: pool_isbi2012(results) for name, results in per_slice.items()}
    chosen = _best(pooled)
    half = len(truth) // 2
    folds = (range(0, half), range(half, len(truth)))
    cross = []
    for pick, score in (folds, folds[::-1]):
        on_pick = {name: pool_isbi2012([results[n] for n in pick]) for name, results in per_slice.items()}
        cross.append(pool_isbi2012([per_slice[_best(on_pick)][n] for n in score]))
    postprocessing = Postprocessing("none") if chosen == NONE else Postprocessing(
        "watershed", float(chosen.split()[1]))
    tta_proba, _ = _probabilities(model, images, tta="dihedral", threads=threads)
    tta_fg = _candidate_proposals(tta_proba, metadata, [postprocessing.seed_threshold] if postprocessing.active else [])
    record = {
        "chosen_on": samples or f"{len(truth)} held-out samples",
        "criterion": "lowest Rand error, then warping error, of the candidates below (Segmenter.predict_proba, no TTA)",
        "held_out": {
            "none": _scores(pooled[NONE]),
            "chosen": _scores(pooled[chosen]),
            "two_fold": _scores(pool_isbi2012(cross)),
            "chosen_with_tta_dihedral": _scores(isbi2012(truth, tta_fg[chosen if postprocessing.active else NONE])),
        },
        "candidates": {name: _scores(result) for name, result in pooled.items()},
        "measured_with": "sdk.metrics.isbi2012 (Fiji's ISBI 2012 metrics), label > 0 = foreground",
    }
    logger.info("post-processing %s: held-out %s", chosen, record["held_out"])
    return dataclasses.replace(postprocessing, selection=record), record


def write_postprocessing(model: str | os.PathLike, output: str | os.PathLike, postprocessing: Postprocessing, *,
                         overwrite: bool = False) -> Path:
    """Copy ``model`` to ``output`` (atomically; an existing file only with ``overwrite``) with its metadata's
    ``postprocessing`` replaced, weights and digest unchanged."""
    from .onnx_export import stamp_model

    model, output = Path(model), Path(output)
    if output.resolve() == model.resolve():
        if not overwrite:
            raise InvalidInputError(f"{output} is the model itself: pass --force to rewrite it in place")
    else:
        with atomic_output(output, overwrite=overwrite) as tmp:
            Path(tmp).write_bytes(model.read_bytes())
    stamp_model(output, postprocessing=postprocessing)
    return output
