"""Slow, obviously-correct pure-numpy reference of the ISBI 2012 metrics (Fiji semantics) and of a 3D warp.

This module is the *independent* oracle that ``sdk.metrics`` is tested against. It shares no code with the
C++ core and takes no shortcut that the core takes:

* simple points are decided from first principles, by counting connected components of the foreground and
  of the background inside the 3x3 (or 3x3x3) neighbourhood (the answers are memoised per configuration,
  never taken from a table);
* the warp re-scans the whole image on every pass exactly as Fiji's ``simplePointWarp2d`` does (column-major
  list of mismatches, ``float32(|p - threshold|)`` keys, stable descending sort, flip every pixel that is
  simple in the current state, repeat until a pass flips nothing) instead of sorting once;
* the classification relabels the whole image (or the window) for every ambiguous pixel, as Fiji does.

Semantics (see ``shared/notes/isbi2012-metrics.md``; Fiji: ``trainableSegmentation.metrics.WarpingError``,
``RandError``, ``PixelError``; Jain et al., CVPR 2010): truth foreground = value > 0; proposal foreground =
``float64(p) > threshold``; the image is padded with background for the simple-point test. Where Fiji's own
code is wrong (all-foreground truth slice, truth slice without foreground in the Rand statistics, labels
past 65,535), this reference does the right thing, as ``sdk.metrics`` must.

Pixel and Rand statistics binarize the truth with ``> 0`` (the API's definition); Fiji binarizes it with
``> threshold``, which is the same for every truth whose values are 0 or >= 1 (labels, masks, 0/255).

Only numpy, the standard library and ``skimage.measure.label`` (for labelling whole images) are used.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from skimage.measure import label as _sk_label

# Error codes of the classification image (sdk.metrics.ErrorType uses the same numbers).
NO_ERROR, SPLIT, MERGER, HOLE_ADDITION, HOLE_DELETION, OBJECT_ADDITION, OBJECT_DELETION = range(7)
ERROR_NAMES = {
    SPLIT: "splits",
    MERGER: "mergers",
    HOLE_ADDITION: "hole_additions",
    HOLE_DELETION: "hole_deletions",
    OBJECT_ADDITION: "object_additions",
    OBJECT_DELETION: "object_deletions",
}


# --------------------------------------------------------------------------------------------------
# Thresholds exactly as Fiji's `for (th = min; th <= max; th += step)` produces them.
# --------------------------------------------------------------------------------------------------
def fiji_thresholds(minimum: float, maximum: float, step: float = 0.1) -> list[float]:
    values = []
    th = minimum
    while th <= maximum:
        values.append(th)
        th += step
    return values


WARPING_THRESHOLDS = fiji_thresholds(0.0, 0.9)  # 10 values, the last 0.8999999999999999
FSCORE_THRESHOLDS = fiji_thresholds(0.0, 1.0)  # 11 values, the last 0.9999999999999999


# --------------------------------------------------------------------------------------------------
# Simple points, by counting components in the neighbourhood.
# --------------------------------------------------------------------------------------------------
def _components(points, adjacent) -> list[list[tuple]]:
    """Connected components of a small set of lattice points under the predicate ``adjacent``."""
    points = list(points)
    seen: set = set()
    comps = []
    for start in points:
        if start in seen:
            continue
        seen.add(start)
        comp, stack = [], [start]
        while stack:
            q = stack.pop()
            comp.append(q)
            for r in points:
                if r not in seen and adjacent(q, r):
                    seen.add(r)
                    stack.append(r)
        comps.append(comp)
    return comps


def _chebyshev(a, b) -> int:
    return max(abs(i - j) for i, j in zip(a, b))


def _manhattan(a, b) -> int:
    return sum(abs(i - j) for i, j in zip(a, b))


def _face_adjacent(a, b) -> bool:  # 4-adjacency in 2D, 6-adjacency in 3D
    return _manhattan(a, b) == 1


def _any_adjacent(a, b) -> bool:  # 8-adjacency in 2D, 26-adjacency in 3D
    return _chebyshev(a, b) == 1


OFFSETS_2D = [o for o in itertools.product((-1, 0, 1), repeat=2) if o != (0, 0)]
OFFSETS_3D = [o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)]


@functools.lru_cache(maxsize=None)
def is_simple_2d(neighbours: tuple[bool, ...]) -> bool:
    """Simple-point test, foreground 4-connected / background 8-connected.

    ``neighbours`` are the 8 values (True = foreground) at ``OFFSETS_2D`` around the centre, whose own
    value does not matter. Simple iff the foreground neighbours have exactly one 4-component 4-adjacent to
    the centre, and the background neighbours exactly one 8-component (all of them are 8-adjacent to it).
    """
    fg = [o for o, v in zip(OFFSETS_2D, neighbours) if v]
    bg = [o for o, v in zip(OFFSETS_2D, neighbours) if not v]
    t4 = sum(1 for comp in _components(fg, _face_adjacent) if any(_manhattan(q, (0, 0)) == 1 for q in comp))
    t8_background = len(_components(bg, _any_adjacent))
    return t4 == 1 and t8_background == 1


@functools.lru_cache(maxsize=None)
def is_simple_3d(neighbours: tuple[bool, ...]) -> bool:
    """Simple-point test, foreground 6-connected / background 26-connected (Bertrand & Malandain 1994).

    ``neighbours`` are the 26 values at ``OFFSETS_3D``. With X the foreground, the geodesic neighbourhood
    G6(x, X) = union over y in N6*(x) & X of N6(y) & N18*(x) & X; T6 = number of 6-components of G6, and
    T26 of the background = number of 26-components of N26*(x) minus X. Simple iff T6 == 1 and T26 == 1.
    """
    fg = {o for o, v in zip(OFFSETS_3D, neighbours) if v}
    bg = [o for o, v in zip(OFFSETS_3D, neighbours) if not v]
    centre = (0, 0, 0)
    faces = [y for y in fg if _manhattan(y, centre) == 1]
    n18 = [z for z in fg if _manhattan(z, centre) <= 2]  # faces and edges, not corners
    geodesic = set(faces) | {z for z in n18 if any(_face_adjacent(z, y) for y in faces)}
    t6 = len(_components(geodesic, _face_adjacent))
    t26_background = len(_components(bg, _any_adjacent))
    return t6 == 1 and t26_background == 1


# --------------------------------------------------------------------------------------------------
# The warp.
# --------------------------------------------------------------------------------------------------
def binarize_proposal(proposal: np.ndarray, threshold: float) -> np.ndarray:
    """Foreground where the proposal value, promoted to double, is > the double threshold (as Fiji)."""
    return np.asarray(proposal).astype(np.float64) > threshold


def sort_keys(proposal: np.ndarray, threshold: float) -> np.ndarray:
    """``float32(|p - threshold|)``, the difference taken in double (as Fiji's Point3f.z)."""
    return np.abs(np.asarray(proposal).astype(np.float64) - threshold).astype(np.float32)


def _mismatches_in_scan_order(current: np.ndarray, target: np.ndarray, allowed: np.ndarray) -> list[tuple]:
    """Mismatched positions, first axis fastest: for (y, x) Fiji's column-major scan (x outer, y inner);
    for (z, y, x) x outer, then y, then z."""
    # np.nonzero walks the transposed array in C order, i.e. the original with its first axis fastest.
    reversed_index = np.nonzero(((current != target) & allowed).T)
    return list(zip(*(axis.tolist() for axis in reversed_index[::-1])))


def _warp(truth, proposal, threshold: float, mask, offsets, is_simple) -> tuple[np.ndarray, list[tuple]]:
    """Fiji's greedy simple-point relaxation of a binary truth toward ``proposal > threshold``.

    Every pass rebuilds the list of mismatches in scan order, stable-sorts it by float32 key descending
    and flips each pixel that is simple in the current state (immediately); passes repeat until one flips
    nothing. Returns the warped truth (bool) and the leftover mismatches in the final list order.
    """
    truth = np.asarray(truth)
    padded = np.pad(truth > 0, 1)  # outside the image counts as background
    inner = tuple(slice(1, -1) for _ in range(truth.ndim))
    current = padded[inner]  # a view: flips in `padded` show here
    target = binarize_proposal(proposal, threshold)
    keys = sort_keys(proposal, threshold)
    allowed = np.ones(truth.shape, dtype=bool) if mask is None else (np.asarray(mask) != 0)
    while True:
        # Python's sort is stable: equal keys keep the scan order.
        mismatches = sorted(_mismatches_in_scan_order(current, target, allowed), key=lambda i: -float(keys[i]))
        flipped = 0
        for index in mismatches:
            centre = tuple(c + 1 for c in index)
            neighbours = tuple(bool(padded[tuple(c + o for c, o in zip(centre, off))]) for off in offsets)
            if is_simple(neighbours):
                padded[centre] = not padded[centre]
                flipped += 1
        if flipped == 0:
            return current.copy(), mismatches
        if flipped == len(mismatches):
            return current.copy(), []


def warp_slice(truth, proposal, threshold: float, mask=None) -> tuple[np.ndarray, list[tuple]]:
    """Warp one 2D ground-truth slice toward the binarized proposal by flipping simple points only.

    Returns the warped truth (bool) and the pixels (y, x) still mismatched, in Fiji's final list order.
    ``mask`` (optional): only pixels where it is nonzero may be counted as mismatches and flipped.
    """
    return _warp(truth, proposal, threshold, mask, OFFSETS_2D, is_simple_2d)


# --------------------------------------------------------------------------------------------------
# Classification of the pixels left mismatched (Fiji's classifyMismatches2d).
# --------------------------------------------------------------------------------------------------
def _label_faces(image: np.ndarray) -> np.ndarray:
    """Components of the foreground, face-connected (4 in 2D, 6 in 3D); 0 = background."""
    return _sk_label(np.asarray(image, dtype=bool), connectivity=1, background=0).astype(np.int64)


def _neighbour_labels(labels: np.ndarray, centre: tuple) -> set:
    """Distinct labels of the in-image neighbours (8 in 2D, 26 in 3D) of ``centre``."""
    offsets = OFFSETS_2D if labels.ndim == 2 else OFFSETS_3D
    ids = set()
    for offset in offsets:
        q = tuple(c + o for c, o in zip(centre, offset))
        if all(0 <= qi < n for qi, n in zip(q, labels.shape)):
            ids.add(int(labels[q]))
    return ids


def _splits_when_removed(warped: np.ndarray, centre: tuple, radius: int) -> bool:
    """Fiji's test for a foreground pixel between exactly two labels: remove it, relabel, count labels."""
    if radius < 1 or any(radius > n for n in warped.shape):
        region = warped.copy()
        local = centre
    else:
        region = np.zeros((2 * radius + 1,) * warped.ndim, dtype=bool)  # outside the image is 0
        inside = tuple(slice(max(c - radius, 0), min(c + radius + 1, n)) for c, n in zip(centre, warped.shape))
        region[tuple(slice(s.start - c + radius, s.stop - c + radius) for s, c in zip(inside, centre))] = warped[inside]
        local = (radius,) * warped.ndim
    region[local] = False
    return len(_neighbour_labels(_label_faces(region), local)) > 2


def classify(warped: np.ndarray, mismatches, radius: int = 20) -> np.ndarray:
    """uint8 image: the error type of every leftover mismatch (0 elsewhere); 2D as Fiji, 3D alike.

    In 3D (ours): 6-connected labels, the 26 neighbours, a (2r+1)^3 window.
    """
    labels = _label_faces(warped)
    out = np.zeros(warped.shape, dtype=np.uint8)
    for centre in mismatches:
        # A 1x1 image has no neighbour in the image: its outside is background, as in the warp. (Fiji's
        # code would fall through to split/merger there; the notes' table has no such row.)
        ids = _neighbour_labels(labels, centre) or {0}
        foreground = bool(warped[centre])
        if ids == {0}:
            kind = OBJECT_DELETION if foreground else OBJECT_ADDITION
        elif len(ids) == 1:
            kind = HOLE_ADDITION if foreground else HOLE_DELETION
        elif len(ids) == 2:
            if not foreground:
                kind = HOLE_ADDITION
            else:
                kind = SPLIT if _splits_when_removed(warped, centre, radius) else HOLE_DELETION
        else:  # three or more labels
            kind = SPLIT if foreground else MERGER
        out[centre] = kind
    return out


def cluster_counts(warped: np.ndarray, classification: np.ndarray) -> dict:
    """Leftover mismatches counted as connected clusters per type (Fiji's clusterMismatchesByError).

    Fiji splits the hole types by the warped value and clusters each of its 8 groups separately: mergers
    and hole additions on foreground pixels 8-connected (26 in 3D), the other groups 4-connected (6 in 3D).
    """
    warped = np.asarray(warped, dtype=bool)
    groups = [  # (counted as, pixels, face-connected only?)
        ("object_additions", classification == OBJECT_ADDITION, True),
        ("hole_deletions", (classification == HOLE_DELETION) & ~warped, True),
        ("mergers", classification == MERGER, False),
        ("hole_additions", (classification == HOLE_ADDITION) & ~warped, True),
        ("object_deletions", classification == OBJECT_DELETION, True),
        ("hole_additions", (classification == HOLE_ADDITION) & warped, False),
        ("splits", classification == SPLIT, True),
        ("hole_deletions", (classification == HOLE_DELETION) & warped, True),
    ]
    counts = {name: 0 for name in ERROR_NAMES.values()}
    for name, pixels, faces_only in groups:
        counts[name] += int(_sk_label(pixels, connectivity=1 if faces_only else pixels.ndim, background=0).max())
    return counts


# --------------------------------------------------------------------------------------------------
# Public reference entry points.
# --------------------------------------------------------------------------------------------------
@dataclass
class ReferenceWarping:
    warped: np.ndarray  # bool, same shape as the input
    classification: np.ndarray  # uint8 error codes, same shape
    error: float  # mismatches / pixels (a stack: mean of the per-slice errors)
    mismatches: int
    counts: dict = field(default_factory=dict)  # ERROR_NAMES value -> pixel count
    clusters: dict = field(default_factory=dict)  # ERROR_NAMES value -> cluster count (per slice in 2D)

    @property
    def splits(self) -> int:
        return self.counts["splits"]

    @property
    def mergers(self) -> int:
        return self.counts["mergers"]


def _counts(classification: np.ndarray) -> dict:
    return {name: int(np.count_nonzero(classification == code)) for code, name in ERROR_NAMES.items()}


def warping_error(truth, proposal, *, threshold: float = 0.5, radius: int = 20, mask=None) -> ReferenceWarping:
    """Fiji's warping error of a 2D image or a (Z, H, W) stack scored slice by slice."""
    truth = np.asarray(truth)
    proposal = np.asarray(proposal)
    squeeze = truth.ndim == 2
    truth3 = truth[None] if squeeze else truth
    proposal3 = proposal[None] if squeeze else proposal
    mask3 = None if mask is None else (np.asarray(mask)[None] if squeeze else np.asarray(mask))
    warped = np.zeros(truth3.shape, dtype=bool)
    classification = np.zeros(truth3.shape, dtype=np.uint8)
    slice_errors = []
    for z in range(truth3.shape[0]):
        warped[z], left = warp_slice(truth3[z], proposal3[z], threshold, None if mask3 is None else mask3[z])
        classification[z] = classify(warped[z], left, radius)
        slice_errors.append(len(left) / truth3[z].size)
    total = int(np.count_nonzero(classification))
    clusters = {name: 0 for name in ERROR_NAMES.values()}
    for z in range(truth3.shape[0]):
        for name, n in cluster_counts(warped[z], classification[z]).items():
            clusters[name] += n
    return ReferenceWarping(
        warped=warped[0] if squeeze else warped,
        classification=classification[0] if squeeze else classification,
        error=float(np.mean(slice_errors)),
        mismatches=total,
        counts=_counts(classification),
        clusters=clusters,
    )


def fiji_fscore(tp: float, fp: float, fn: float) -> float:
    """F-score as Fiji's ClassificationStatistics: P = 1 if fp == 0, R = 1 if fn == 0, F = 0 if P + R == 0."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def pixel_statistics(truth_slice, proposal_slice, threshold: float) -> tuple[int, int, int]:
    t = np.asarray(truth_slice) > 0
    p = binarize_proposal(proposal_slice, threshold)
    return int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p))


def rand_statistics(truth_slice, proposal_slice, threshold: float) -> tuple[int, int, int] | None:
    """Foreground-restricted Rand tp, fp, fn of one slice (times n^2, exact integers); None if no truth.

    With c_ij the pixel counts of (truth component i, proposal component j), components 4-connected,
    0 = background, n = truth-foreground pixels, aux = sum_{i>=1} c_i0:
    tp = sum_{i,j>=1} c_ij^2 + aux, fp = sum_{j>=1} (sum_{i>=1} c_ij)^2 + aux - tp,
    fn = sum_{i>=1} (sum_j c_ij)^2 - tp.
    """
    truth_labels = _label_faces(np.asarray(truth_slice) > 0)
    proposal_labels = _label_faces(binarize_proposal(proposal_slice, threshold))
    inside = truth_labels > 0
    if not inside.any():
        return None
    pairs: dict[tuple[int, int], int] = {}
    for i, j in zip(truth_labels[inside].tolist(), proposal_labels[inside].tolist()):
        pairs[(i, j)] = pairs.get((i, j), 0) + 1
    rows: dict[int, int] = {}
    cols: dict[int, int] = {}
    aux = 0
    sum_ab2 = 0
    for (i, j), c in pairs.items():
        rows[i] = rows.get(i, 0) + c
        if j == 0:
            aux += c
        else:
            cols[j] = cols.get(j, 0) + c
            sum_ab2 += c * c
    tp = sum_ab2 + aux
    fp = sum(b * b for b in cols.values()) + aux - tp
    fn = sum(a * a for a in rows.values()) - tp
    return tp, fp, fn


def _best(scores: list[float], thresholds: list[float]) -> tuple[float, float]:
    best, best_th = 0.0, thresholds[0]
    for f, th in zip(scores, thresholds):
        if f > best:
            best, best_th = f, th
    return best, best_th


def isbi2012(truth, proposal, *, radius: int = 20) -> dict:
    """The ISBI 2012 challenge scores of a 2D pair or a (Z, H, W) stack, with the raw per-threshold sums.

    Returns a dict: warping_error, warping_threshold, rand_error, rand_threshold, pixel_error,
    pixel_threshold, and the per-threshold rows `warping_rows` (threshold, splits, mergers) and
    `fscore_rows` (threshold, pixel_tp/fp/fn, rand_tp/fp/fn, rand_slices).
    """
    truth = np.asarray(truth)
    proposal = np.asarray(proposal)
    if truth.ndim == 2:
        truth, proposal = truth[None], proposal[None]
    warping_rows = []
    for th in WARPING_THRESHOLDS:
        r = warping_error(truth, proposal, threshold=th, radius=radius)
        warping_rows.append({"threshold": th, "splits": r.splits, "mergers": r.mergers})
    fscore_rows = []
    for th in FSCORE_THRESHOLDS:
        row = {"threshold": th, "pixel_tp": 0, "pixel_fp": 0, "pixel_fn": 0,
               "rand_tp": 0, "rand_fp": 0, "rand_fn": 0, "rand_slices": 0}
        for z in range(truth.shape[0]):
            tp, fp, fn = pixel_statistics(truth[z], proposal[z], th)
            row["pixel_tp"] += tp
            row["pixel_fp"] += fp
            row["pixel_fn"] += fn
            rand = rand_statistics(truth[z], proposal[z], th)
            if rand is not None:  # a slice without truth foreground is left out (Fiji: NaN)
                row["rand_tp"] += rand[0]
                row["rand_fp"] += rand[1]
                row["rand_fn"] += rand[2]
                row["rand_slices"] += 1
        fscore_rows.append(row)
    return summarize(warping_rows, fscore_rows, truth.size)


def summarize(warping_rows: list[dict], fscore_rows: list[dict], n_pixels: int) -> dict:
    """Scores from raw per-threshold sums (also how several items are pooled: add the rows, then this)."""
    errors = [(row["splits"] + row["mergers"]) / n_pixels for row in warping_rows]
    best_error, best_th = errors[0], warping_rows[0]["threshold"]
    for e, row in zip(errors, warping_rows):
        if e < best_error:
            best_error, best_th = e, row["threshold"]
    thresholds = [row["threshold"] for row in fscore_rows]
    pixel_f = [fiji_fscore(r["pixel_tp"], r["pixel_fp"], r["pixel_fn"]) for r in fscore_rows]
    pixel_best, pixel_th = _best(pixel_f, thresholds)
    if all(r["rand_slices"] == 0 for r in fscore_rows):
        rand_error, rand_th = math.nan, math.nan
    else:
        rand_f = [fiji_fscore(r["rand_tp"], r["rand_fp"], r["rand_fn"]) for r in fscore_rows]
        rand_best, rand_th = _best(rand_f, thresholds)
        rand_error = 1.0 - rand_best
    return {
        "warping_error": best_error,
        "warping_threshold": best_th,
        "warping_errors": errors,
        "rand_error": rand_error,
        "rand_threshold": rand_th,
        "pixel_error": 1.0 - pixel_best,
        "pixel_threshold": pixel_th,
        "warping_rows": warping_rows,
        "fscore_rows": fscore_rows,
        "n_pixels": n_pixels,
    }


def pool(results: list[dict]) -> dict:
    """Pool several `isbi2012` results as if their slices formed one stack."""
    warping_rows = [
        {"threshold": rows[0]["threshold"], "splits": sum(r["splits"] for r in rows),
         "mergers": sum(r["mergers"] for r in rows)}
        for rows in zip(*(res["warping_rows"] for res in results))
    ]
    fscore_rows = []
    for rows in zip(*(res["fscore_rows"] for res in results)):
        pooled = {"threshold": rows[0]["threshold"]}
        for key in rows[0]:
            if key != "threshold":
                pooled[key] = sum(r[key] for r in rows)
        fscore_rows.append(pooled)
    return summarize(warping_rows, fscore_rows, sum(res["n_pixels"] for res in results))


# --------------------------------------------------------------------------------------------------
# Native 3D warp (Fiji has none): foreground 6-, background 26-connected simple points.
# --------------------------------------------------------------------------------------------------
def warp_volume(truth, proposal, threshold: float = 0.5) -> tuple[np.ndarray, list[tuple]]:
    """Warp a 3D truth toward the binarized proposal with 3D simple points; same greedy passes as 2D.

    Tied keys are ordered x outer, then y, then z (a one-slice volume is ordered as Fiji's 2D scan).
    Returns the warped truth and the leftover voxels (z, y, x).
    """
    return _warp(truth, proposal, threshold, None, OFFSETS_3D, is_simple_3d)


def warping_error_3d(truth, proposal, *, threshold: float = 0.5, radius: int = 20) -> ReferenceWarping:
    """Native 3D warping error with the 3D classification (see :func:`warp_volume`, :func:`classify`)."""
    warped, left = warp_volume(truth, proposal, threshold)
    classification = classify(warped, left, radius)
    return ReferenceWarping(warped=warped, classification=classification, error=len(left) / warped.size,
                            mismatches=len(left), counts=_counts(classification),
                            clusters=cluster_counts(warped, classification))
