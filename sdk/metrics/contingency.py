"""Label-image metrics from one sparse contingency table: Rand error (ISBI 2012 foreground-restricted),
variation of information, SNEMI3D adapted Rand error; and the pixel error of a probability map.

The table counts, for every pair (truth label i, proposal label j) that occurs, the pixels c_ij carrying
both. It is built in C++ in one pass over the two arrays (threads split the pixels; runs of equal label
pairs are counted per truth label; labels become ids directly when their value range is small, and are
renumbered by sorting otherwise), with no dense label x label matrix (millions of segments
are fine), in any memory layout, with the GIL released; :func:`contingency_table` returns it so several
metrics can share it (``table=``). Called on label images, the metrics skip the table: the C++ core folds
each truth label's entries into the few sums they need (sum c_ij^2, sum c_ij log2 c_ij, the same of the
label sizes; exact 128-bit integers and compensated floating-point sums) as it counts them, without
handing arrays to Python. Scratch memory is kept for the next call only when it is small (at most 96 MB
per workspace, enough for 2048² label images, one workspace per core); :func:`sdk.metrics.release_memory`
frees it. Peak memory: at most about 2.75x the inputs' bytes (labels spread over the int64 range).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from . import _validation as v

logger = logging.getLogger(__name__)

__all__ = [
    "ContingencyTable",
    "contingency_table",
    "rand_error",
    "variation_of_information",
    "VariationOfInformation",
    "adapted_rand_error",
    "AdaptedRandResult",
    "pixel_error",
]

# Above this many pixels, sums of squared counts may overflow int64: use Python integers.
_INT64_SAFE_TOTAL = 3_037_000_499


@dataclass(frozen=True)
class ContingencyTable:
    """Sparse contingency table in coordinate form.

    ``truth_labels`` / ``proposal_labels``: the distinct labels, sorted, in the input dtypes.
    ``rows`` / ``cols``: for each nonzero entry, the index of its truth / proposal label (intp);
    entries are sorted by (row, col). ``counts``: pixels of each entry (int64). ``truth_sizes`` /
    ``proposal_sizes``: pixels per label (the row and column sums, int64).
    """

    truth_labels: np.ndarray = field(repr=False)
    proposal_labels: np.ndarray = field(repr=False)
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)
    truth_sizes: np.ndarray = field(repr=False)
    proposal_sizes: np.ndarray = field(repr=False)

    @property
    def total(self) -> int:
        """Number of pixels counted."""
        return int(self.truth_sizes.sum())

    @property
    def nnz(self) -> int:
        """Number of nonzero entries."""
        return int(self.counts.size)


def _labels_from_bits(bits: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.bool_:
        return bits.astype(np.bool_)
    return bits.astype(np.dtype(f"u{dtype.itemsize}")).view(dtype)


def _label_bits(labels: np.ndarray) -> np.ndarray:
    """The bits the C++ core compares labels by, as uint64."""
    return labels.view(np.dtype(f"u{labels.dtype.itemsize}")).astype(np.uint64)


def _checked_labels(truth_labels, proposal_labels) -> tuple[np.ndarray, np.ndarray]:
    a = v.check_labels(truth_labels, "truth_labels")
    b = v.check_labels(proposal_labels, "proposal_labels")
    v.check_same_shape(a, b, "truth_labels", "proposal_labels")
    if a.size > v.MAX_LABEL_PIXELS:
        raise InvalidInputError(
            f"truth_labels: {a.size} pixels, more than {v.MAX_LABEL_PIXELS} in one table; score the images in parts"
        )
    return a, b


def contingency_table(truth_labels, proposal_labels, *, threads=None) -> ContingencyTable:
    """Sparse contingency table of two label images of equal shape (any integer dtypes, any layout)."""
    a, b = _checked_labels(truth_labels, proposal_labels)
    # canonical from C++: labels sorted by value, entries sorted by (row, col)
    t_bits, p_bits, rows, cols, counts, t_sizes, p_sizes = _core.contingency_table(a, b, v.resolve_threads(threads))
    return ContingencyTable(
        truth_labels=_labels_from_bits(t_bits, a.dtype),
        proposal_labels=_labels_from_bits(p_bits, b.dtype),
        rows=rows.astype(np.intp, copy=False),  # int64 from C++: no copy on 64-bit platforms
        cols=cols.astype(np.intp, copy=False),
        counts=counts,
        truth_sizes=t_sizes,
        proposal_sizes=p_sizes,
    )


class _PairSums(NamedTuple):
    """What the pair-counting metrics need of a contingency table c_ij, over the truth labels kept:
    N = sum c_ij, sums of squares and of x log2 x of the entries c_ij, the truth sizes a_i and the
    proposal sizes b_j (over the kept rows), and proposal label 0's column (b_0, sum_i c_i0^2)."""

    total: int
    sum_sq_counts: int
    sum_sq_truth: int
    sum_sq_proposal: int
    xlogx_counts: float
    xlogx_truth: float
    xlogx_proposal: float
    zero_total: int
    zero_sum_sq_counts: int


def _ignore_bits(ignore_labels, dtype: np.dtype) -> np.ndarray:
    """Truth labels to leave out, as uint64 label bits of ``dtype`` (values it cannot hold match no pixel)."""
    items = np.asarray(ignore_labels, dtype=object).ravel().tolist() if np.iterable(ignore_labels) else [ignore_labels]
    lo, hi = (0, 1) if dtype == np.bool_ else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    whole = []
    for x in items:
        if isinstance(x, (float, np.floating)) and not float(x).is_integer():
            continue  # 0.5 is no label; NaN and Inf neither
        if not isinstance(x, (int, np.integer, float, np.floating)):  # bool is an int
            raise InvalidInputError(f"ignore_labels: expected integer labels, got {x!r}")
        if lo <= int(x) <= hi:
            whole.append(int(x))
    return _label_bits(np.array(whole, dtype=np.uint8 if dtype == np.bool_ else dtype))


def _sum_squares(x: np.ndarray) -> int:
    """Exact sum of squares of non-negative int64 counts."""
    if int(x.sum()) <= _INT64_SAFE_TOTAL:
        return int(np.dot(x, x))
    return sum(int(c) * int(c) for c in x)


def _sum_xlogx(x: np.ndarray) -> float:
    """sum x log2 x over non-negative counts (0 log 0 = 0)."""
    x = x[x > 0].astype(np.float64)
    return float(np.sum(x * np.log2(x)))


def _without_truth_labels(t: ContingencyTable, ignore_labels) -> ContingencyTable:
    ignore = _ignore_bits(ignore_labels, t.truth_labels.dtype)
    if ignore.size == 0:
        return t
    ignored_rows = np.isin(_label_bits(t.truth_labels), ignore)
    if not ignored_rows.any():
        return t
    keep = ~ignored_rows[t.rows]
    rows, cols, counts = t.rows[keep], t.cols[keep], t.counts[keep]
    truth_sizes = np.where(ignored_rows, 0, t.truth_sizes)
    proposal_sizes = np.bincount(cols, weights=counts, minlength=t.proposal_labels.size).astype(np.int64)
    return ContingencyTable(t.truth_labels, t.proposal_labels, rows, cols, counts, truth_sizes, proposal_sizes)


def _sums_of_table(t: ContingencyTable, ignore_labels) -> _PairSums:
    t = _without_truth_labels(t, ignore_labels)
    zero_col = np.flatnonzero(t.proposal_labels == 0)
    zero = t.cols == zero_col[0] if zero_col.size else np.zeros(t.nnz, dtype=bool)
    return _PairSums(
        total=t.total,
        sum_sq_counts=_sum_squares(t.counts),
        sum_sq_truth=_sum_squares(t.truth_sizes),
        sum_sq_proposal=_sum_squares(t.proposal_sizes),
        xlogx_counts=_sum_xlogx(t.counts),
        xlogx_truth=_sum_xlogx(t.truth_sizes),
        xlogx_proposal=_sum_xlogx(t.proposal_sizes),
        zero_total=int(t.counts[zero].sum()),
        zero_sum_sq_counts=_sum_squares(t.counts[zero]),
    )


def _pair_sums(truth_labels, proposal_labels, table, ignore_labels, threads) -> _PairSums:
    """The sums of ``table=`` if given, else computed by the C++ core straight from the label images."""
    threads = v.resolve_threads(threads)
    if table is not None:
        if not isinstance(table, ContingencyTable):
            raise InvalidInputError(f"table: expected a ContingencyTable, got {type(table).__name__}")
        return _sums_of_table(table, ignore_labels)
    if truth_labels is None or proposal_labels is None:
        raise InvalidInputError("give truth_labels and proposal_labels, or table=")
    a, b = _checked_labels(truth_labels, proposal_labels)
    ignore = _ignore_bits(ignore_labels, a.dtype)
    return _PairSums(**_core.contingency_summary(a, b, ignore, threads))


def rand_error(truth_labels=None, proposal_labels=None, *, table: Optional[ContingencyTable] = None,
               threads=None) -> float:
    """ISBI 2012 foreground-restricted Rand error of two label images: 1 - F-score of pair counts.

    Truth label 0 is background and ignored; proposal label 0 is background, each of its pixels a
    singleton. With c_ij pixels in truth label i != 0 and proposal label j (C0 = those with j = 0),
    a_i = sum_j c_ij and b_j = sum_{i != 0} c_ij for j != 0::

        tp = sum_{i,j != 0} c_ij^2 + C0,  fp = sum_j b_j^2 - sum_{i,j != 0} c_ij^2,  fn = sum_i a_i^2 - tp

    and F with Fiji's conventions (:func:`sdk.metrics.isbi.fiji_fscore`). Equals the Rand statistic of
    :func:`sdk.metrics.isbi2012` at one threshold on a single image. NaN (with a warning) if the truth
    has no foreground. Reference: Arganda-Carreras et al., Front. Neuroanat. 9:142 (2015).
    """
    from .isbi import fiji_fscore

    s = _pair_sums(truth_labels, proposal_labels, table, (0,), threads)
    if s.total == 0:
        logger.warning("rand_error: the truth has no foreground (no label != 0); the Rand error is undefined (NaN)")
        return math.nan
    c0 = s.zero_total
    sum_c2 = s.sum_sq_counts - s.zero_sum_sq_counts  # over proposal labels j != 0
    tp = sum_c2 + c0
    fp = (s.sum_sq_proposal - c0 * c0) - sum_c2
    fn = s.sum_sq_truth - tp
    return 1.0 - fiji_fscore(tp, fp, fn)


class VariationOfInformation(NamedTuple):
    """Conditional entropies in bits: ``split`` = H(proposal | truth) (over-segmentation),
    ``merge`` = H(truth | proposal) (under-segmentation); VI = split + merge. Same order as
    ``skimage.metrics.variation_of_information(truth, proposal)``."""

    split: float
    merge: float

    @property
    def total(self) -> float:
        return self.split + self.merge


def variation_of_information(truth_labels=None, proposal_labels=None, *, table: Optional[ContingencyTable] = None,
                             ignore_labels=(), threads=None) -> VariationOfInformation:
    """Variation of information VI(X, Y) = H(X | Y) + H(Y | X) (Meila 2007), X = truth, Y = proposal.

    With p_ij = c_ij / N, p_i = sum_j p_ij, p_j = sum_i p_ij::

        split = H(Y | X) = -sum_ij p_ij log2(p_ij / p_i),   merge = H(X | Y) = -sum_ij p_ij log2(p_ij / p_j)

    ``ignore_labels``: truth labels whose pixels are left out (skimage's ``ignore_labels``).
    Reference: M. Meila, J. Multivariate Anal. 98(5):873-895, 2007, doi:10.1016/j.jmva.2006.11.013.
    """
    s = _pair_sums(truth_labels, proposal_labels, table, ignore_labels, threads)
    if s.total == 0:
        raise InvalidInputError("variation_of_information: no pixels left after ignoring ignore_labels")
    # split = (sum_i a_i log2 a_i - sum_ij c_ij log2 c_ij) / N (the log2 N terms cancel); >= 0, so a
    # rounding below 0 (or -0.0) is 0
    split = (s.xlogx_truth - s.xlogx_counts) / s.total
    merge = (s.xlogx_proposal - s.xlogx_counts) / s.total
    return VariationOfInformation(split=max(split, 0.0), merge=max(merge, 0.0))


class AdaptedRandResult(NamedTuple):
    """SNEMI3D adapted Rand scores.

    ``precision``: of the pixel pairs the *proposal* puts in one segment, the fraction the truth also
    puts together (sum c_ij^2 / sum b_j^2, minus the trivial pairs); ``recall``: of the pairs the
    *truth* puts together, the fraction the proposal keeps together (/ sum a_i^2). ``fscore`` is their
    harmonic mean and ``error = 1 - fscore``. Note: ``skimage.metrics.adapted_rand_error`` returns
    (error, recall, precision) in these terms: its "precision" divides by the truth pairs (its issue
    #6485), so its second value is our ``recall`` and its third our ``precision``.
    """

    error: float
    precision: float
    recall: float
    fscore: float


def adapted_rand_error(truth_labels=None, proposal_labels=None, *, table: Optional[ContingencyTable] = None,
                       ignore_labels=(0,), threads=None) -> AdaptedRandResult:
    """Adapted Rand error of the SNEMI3D challenge (Arganda-Carreras et al. 2015).

    Truth pixels with a label in ``ignore_labels`` (default: background 0) are left out; proposal
    label 0 is an ordinary segment. With N counted pixels, a_i truth and b_j proposal segment sizes::

        P = (sum c_ij^2 - N) / (sum b_j^2 - N),  R = (sum c_ij^2 - N) / (sum a_i^2 - N),
        error = 1 - 2 P R / (P + R)

    Equals skimage's ``adapted_rand_error`` (whose precision/recall are swapped, see
    :class:`AdaptedRandResult`). Reference: Front. Neuroanat. 9:142, 2015, doi:10.3389/fnana.2015.00142.
    """
    s = _pair_sums(truth_labels, proposal_labels, table, ignore_labels, threads)
    n = s.total
    if n == 0:
        raise InvalidInputError("adapted_rand_error: no truth pixels left after ignoring ignore_labels")
    pairs_both = s.sum_sq_counts - n
    pairs_truth = s.sum_sq_truth - n
    pairs_prop = s.sum_sq_proposal - n
    precision = pairs_both / pairs_prop if pairs_prop else math.nan
    recall = pairs_both / pairs_truth if pairs_truth else math.nan
    fscore = 2.0 * pairs_both / (pairs_truth + pairs_prop) if (pairs_truth + pairs_prop) else math.nan
    return AdaptedRandResult(error=1.0 - fscore, precision=precision, recall=recall, fscore=fscore)


def pixel_error(truth, proposal, *, threshold=0.5) -> float:
    """Classic pixel error: the fraction of pixels where (truth > 0) != (proposal > threshold).

    Fiji's ``PixelError.getMetricValue`` (mean over slices, equal to the overall fraction since slices
    have equal size). The proposal value is compared in double precision (float32(0.1) > 0.1 holds).
    The ISBI 2012 pixel error (1 - best F-score over a threshold sweep) is :func:`sdk.metrics.isbi2012`.
    """
    truth = v.check_truth(truth, "truth")
    proposal = v.check_proposal(proposal, "proposal")
    v.check_same_shape(truth, proposal, "truth", "proposal")
    th = np.float64(v.check_threshold(threshold))
    # np.float64 keeps the comparison in double: a Python float would be cast down to float32.
    wrong = np.count_nonzero((truth > 0) != (proposal > th))
    return wrong / truth.size
