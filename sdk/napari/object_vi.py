"""Variation of information object by object (plain numpy over :func:`sdk.metrics.contingency_table`).

VI = H(Y|X) + H(X|Y) (Meila 2007) says *how much* a segmentation Y over- and under-segments the truth
X; a viewer also wants *where*. Both conditional entropies are sums over objects. With c_ij the pixels
in truth object i and proposal object j, a_i = sum_j c_ij, b_j = sum_i c_ij and N = sum_ij c_ij::

    split(i) = -sum_j (c_ij / a_i) log2(c_ij / a_i)     (bits: how many pieces truth object i is cut into)
    merge(j) = -sum_i (c_ij / b_j) log2(c_ij / b_j)     (bits: how many truth objects proposal j joins)
    H(Y|X) = sum_i (a_i / N) split(i),   H(X|Y) = sum_j (b_j / N) merge(j)

so ``share = size / N * entropy`` of every object adds up to the split and merge parts of
:func:`sdk.metrics.variation_of_information` with the same ``ignore_labels``.
Reference: M. Meila, J. Multivariate Anal. 98(5):873-895, 2007, doi:10.1016/j.jmva.2006.11.013.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import contingency_table

__all__ = ["ObjectEntropies", "object_vi"]


@dataclass(frozen=True)
class ObjectEntropies:
    """Per object of one side: ``labels``, ``sizes`` (pixels counted), ``entropy`` (bits, the object's
    conditional entropy) and ``share`` (bits, its term of the VI part: size / N * entropy)."""

    labels: np.ndarray
    sizes: np.ndarray
    entropy: np.ndarray
    share: np.ndarray


def _conditional_entropies(groups: np.ndarray, counts: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.bincount(groups, weights=counts, minlength=n_groups)
    p = counts / sizes[groups]
    entropy = np.bincount(groups, weights=-p * np.log2(p), minlength=n_groups)
    return sizes.astype(np.int64), np.maximum(entropy, 0.0)  # -0.0 and rounding below 0 are 0


def object_vi(truth_labels, proposal_labels, *, ignore_labels=(0,), threads=None) -> tuple[ObjectEntropies, ObjectEntropies]:
    """Split entropy of every truth object and merge entropy of every proposal object.

    Truth pixels with a label in ``ignore_labels`` (default: background 0) are left out, as
    ``variation_of_information(..., ignore_labels=...)`` does; proposal objects left without pixels are
    dropped. Returns ``(truth, proposal)``; the truth side's ``share`` sums to the VI split, the
    proposal side's to the VI merge.
    """
    table = contingency_table(truth_labels, proposal_labels, threads=threads)
    keep = ~np.isin(table.truth_labels, np.asarray(ignore_labels, dtype=object).ravel().tolist())[table.rows]
    rows, cols, counts = table.rows[keep], table.cols[keep], table.counts[keep].astype(np.float64)
    total = counts.sum()
    sides = []
    for groups, labels in ((rows, table.truth_labels), (cols, table.proposal_labels)):
        sizes, entropy = _conditional_entropies(groups, counts, labels.size)
        present = sizes > 0
        share = sizes[present] / total * entropy[present] if total else np.zeros(int(present.sum()))
        sides.append(ObjectEntropies(labels[present], sizes[present], entropy[present], share))
    return sides[0], sides[1]
