"""Label metrics from the sparse contingency table against independent references: scikit-image (VI,
adapted Rand), brute-force pair counting (ISBI Rand), numpy (table, pixel error); on random and real labels,
with 64-bit label ids and any memory layout."""
from __future__ import annotations

import collections
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sdk.metrics import (
    adapted_rand_error,
    contingency_table,
    isbi2012,
    pixel_error,
    rand_error,
    variation_of_information,
)
from sdk.errors import InvalidInputError
from conftest import require_shared

skm = pytest.importorskip("skimage.metrics")
measure = pytest.importorskip("skimage.measure")

DSB_MASK = require_shared("dsb2018_nuclei_stardist_sample", "mask2d.tif")
ISBI_LABELS = require_shared("isbi2012", "train-labels.tif")

TOL = dict(rel=1e-12, abs=1e-12)


def assert_matches_skimage(truth, proposal):
    split, merge = variation_of_information(truth, proposal)
    sk_split, sk_merge = skm.variation_of_information(truth, proposal)
    assert split == pytest.approx(sk_split, **TOL)
    assert merge == pytest.approx(sk_merge, **TOL)
    ours = adapted_rand_error(truth, proposal)
    sk_error, sk_prec, sk_rec = skm.adapted_rand_error(truth, proposal)
    assert ours.error == pytest.approx(sk_error, **TOL)
    # skimage's "precision" divides by the truth's pairs (its issue #6485): it is our recall
    assert ours.recall == pytest.approx(sk_prec, **TOL)
    assert ours.precision == pytest.approx(sk_rec, **TOL)
    assert ours.fscore == pytest.approx(1.0 - sk_error, **TOL)


@pytest.mark.parametrize("shape,n_labels,seed", [((64, 64), 5, 0), ((40, 50), 300, 1), ((8, 16, 12), 20, 2)])
def test_random_labels_match_skimage(shape, n_labels, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, size=shape).astype(np.int32)
    proposal = rng.integers(0, n_labels, size=shape).astype(np.int64)
    assert_matches_skimage(truth, proposal)


def test_vi_ignore_labels_matches_skimage():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 6, size=(30, 30))
    proposal = rng.integers(0, 4, size=(30, 30))
    ours = variation_of_information(truth, proposal, ignore_labels=(0, 2))
    sk = skm.variation_of_information(truth, proposal, ignore_labels=(0, 2))
    assert ours == pytest.approx(tuple(sk), **TOL)


@pytest.mark.skipif(not DSB_MASK.is_file(), reason="dsb2018 sample not available")
def test_real_nuclei_labels_match_skimage():
    tifffile = pytest.importorskip("tifffile")
    truth = tifffile.imread(DSB_MASK)  # uint16 instance labels
    # a realistic imperfect segmentation: shifted by 2 px, some nuclei merged, border pixels dropped
    proposal = np.roll(truth, 2, axis=1).astype(np.int64)
    proposal[(proposal % 7 == 3)] -= 1
    proposal[:, :5] = 0
    assert_matches_skimage(truth, proposal)
    assert_matches_skimage(proposal, truth.astype(np.uint32))


@pytest.mark.skipif(not ISBI_LABELS.is_file(), reason="ISBI 2012 labels not available")
def test_real_isbi_components_match_skimage():
    tifffile = pytest.importorskip("tifffile")
    labels = tifffile.imread(ISBI_LABELS)[:3]
    truth = measure.label(labels > 0, connectivity=1)  # cells as 4-connected components
    other = measure.label(np.roll(labels, 1, axis=0) > 0, connectivity=1)  # neighbouring slices as proposal
    assert_matches_skimage(truth[0], other[0])
    assert_matches_skimage(truth, other)


def test_large_label_ids_give_the_same_answer():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 50, size=(48, 48))
    proposal = rng.integers(0, 30, size=(48, 48))
    base_vi = variation_of_information(truth, proposal)
    base_are = adapted_rand_error(truth, proposal)
    base_rand = rand_error(truth, proposal)
    # map ids injectively into 0 .. 2^40 (0 stays background) and to uint64 ids above 2^63
    big = np.concatenate([[0], rng.choice(2**40, size=60, replace=False) + 1]).astype(np.int64)
    huge = (np.uint64(2**63) + big.astype(np.uint64))
    huge[0] = 0
    for t_ids, p_ids in ((big, big), (huge, huge), (big, huge)):
        t, p = t_ids[truth], p_ids[proposal]
        assert variation_of_information(t, p) == pytest.approx(tuple(base_vi), **TOL)
        assert tuple(adapted_rand_error(t, p)) == pytest.approx(tuple(base_are), **TOL)
        assert rand_error(t, p) == pytest.approx(base_rand, **TOL)
    table = contingency_table(big[truth], huge[proposal])
    assert table.truth_labels.dtype == np.int64 and table.proposal_labels.dtype == np.uint64
    assert set(table.truth_labels.tolist()) == set(big[np.unique(truth)].tolist())
    assert table.proposal_labels.max() >= np.uint64(2**63)


def test_negative_labels_are_labels():
    truth = np.array([[-1, -1, 2], [2, 2, -5]], dtype=np.int32)
    proposal = np.array([[7, 7, 7], [1, 1, 1]], dtype=np.int16)
    assert_matches_skimage(truth - truth.min(), proposal)  # skimage needs non-negative ids
    assert variation_of_information(truth, proposal) == variation_of_information(truth - truth.min(), proposal)


def _reference_table(truth, proposal):
    pairs, counts = np.unique(np.stack([truth.ravel(), proposal.ravel()]), axis=1, return_counts=True)
    return {(int(a), int(b)): int(c) for (a, b), c in zip(pairs.T, counts)}


def test_contingency_table_matches_numpy_and_is_layout_independent():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 9, size=(20, 30, 4)).astype(np.uint32)
    proposal = rng.integers(-3, 5, size=(20, 30, 4)).astype(np.int64)
    expected = _reference_table(truth, proposal)
    layouts = {
        "C": (truth, proposal),
        "F": (np.asfortranarray(truth), np.asfortranarray(proposal)),
        "mixed": (np.asfortranarray(truth), proposal),
        "reversed": (truth[::-1, :, ::-1].copy()[::-1, :, ::-1], proposal),
        "strided": (np.repeat(truth, 2, axis=1)[:, ::2], proposal),
    }
    tables = []
    for name, (t, p) in layouts.items():
        assert np.array_equal(t, truth), name
        table = contingency_table(t, p)
        got = {
            (int(table.truth_labels[r]), int(table.proposal_labels[c])): int(n)
            for r, c, n in zip(table.rows, table.cols, table.counts)
        }
        assert got == expected, name
        tables.append(table)
    for t in tables[1:]:
        for key in ("truth_labels", "proposal_labels", "rows", "cols", "counts"):
            assert np.array_equal(getattr(t, key), getattr(tables[0], key))
    assert tables[0].total == truth.size


def test_metrics_do_not_depend_on_layout():
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 12, size=(33, 17)).astype(np.int64)
    proposal = rng.integers(0, 12, size=(33, 17)).astype(np.int64)
    ref = (variation_of_information(truth, proposal), adapted_rand_error(truth, proposal), rand_error(truth, proposal))
    for t, p in ((truth.T.copy().T, proposal), (np.asfortranarray(truth), proposal[::-1][::-1]),
                 (np.pad(truth, 3)[3:-3, 3:-3], np.pad(proposal, ((0, 0), (2, 0)))[:, 2:])):
        got = (variation_of_information(t, p), adapted_rand_error(t, p), rand_error(t, p))
        assert got[0] == pytest.approx(tuple(ref[0]), **TOL)
        assert tuple(got[1]) == pytest.approx(tuple(ref[1]), **TOL)
        assert got[2] == pytest.approx(ref[2], **TOL)


def test_table_can_be_shared():
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 5, size=(25, 25))
    proposal = rng.integers(0, 5, size=(25, 25))
    table = contingency_table(truth, proposal)
    # the x log x sums are added up in another order from a table: VI agrees to rounding; the pair counts
    # are exact integers either way
    assert variation_of_information(table=table) == pytest.approx(tuple(variation_of_information(truth, proposal)), **TOL)
    assert adapted_rand_error(table=table) == adapted_rand_error(truth, proposal)
    assert rand_error(table=table) == rand_error(truth, proposal)


def _brute_force_rand(truth, proposal):
    """Foreground-restricted Rand tp/fp/fn by enumerating ordered pixel pairs of the truth foreground;
    proposal background pixels are singletons (together only with themselves)."""
    t = truth.ravel()
    p = proposal.ravel()
    fg = np.flatnonzero(t != 0)
    tp = fp = fn = 0
    for u, w in itertools.product(fg, fg):
        same_t = t[u] == t[w]
        same_p = u == w or (p[u] == p[w] and p[u] != 0)
        tp += same_t and same_p
        fp += (not same_t) and same_p
        fn += same_t and not same_p
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 1.0 - (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rand_error_matches_pair_enumeration(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, size=(9, 11))
    proposal = rng.integers(0, 3, size=(9, 11))
    assert rand_error(truth, proposal) == pytest.approx(_brute_force_rand(truth, proposal), **TOL)


def test_rand_error_equals_isbi_statistic_at_one_threshold():
    rng = np.random.default_rng(8)
    truth = (rng.random((40, 40)) > 0.3).astype(np.uint8)
    proposal = np.clip(truth + rng.normal(0, 0.4, truth.shape), 0, 1).astype(np.float32)
    s = isbi2012(truth, proposal)
    for row in s.table:
        th = row["threshold"]
        t_lab = measure.label(truth > 0, connectivity=1)
        p_lab = measure.label(proposal > np.float64(th), connectivity=1)
        assert rand_error(t_lab, p_lab) == pytest.approx(1.0 - row["rand_fscore"], **TOL)


def test_pixel_error_counts_mismatches_in_double_precision():
    truth = np.array([[1, 1]], np.uint8)
    proposal = np.array([[0.1, 0.0]], np.float32)
    # float32(0.1) = 0.10000000149 > 0.1: foreground (Fiji compares the promoted float32); a float32
    # comparison would call it background and count 2 mismatches
    assert pixel_error(truth, proposal, threshold=0.1) == 1 / 2
    rng = np.random.default_rng(9)
    t = rng.integers(0, 3, size=(3, 20, 20)).astype(np.uint16)
    p = rng.random((3, 20, 20))
    expected = np.count_nonzero((t > 0) != (p > 0.37)) / t.size
    assert pixel_error(t, p, threshold=0.37) == expected
    assert pixel_error(t, p > 0.5) == np.count_nonzero((t > 0) != (p > 0.5)) / t.size


@pytest.mark.parametrize("ids", ["dense", "wide"])
def test_parallel_table_equals_numpy_for_any_thread_count(ids):
    # large enough for the threaded path (threads split the elements mid-row), with runs of equal
    # labels crossing the split points; "wide" label values take the hashed-id path
    rng = np.random.default_rng(10)
    truth = np.repeat(rng.integers(0, 3000, size=(3, 500, 80)), 5, axis=2)  # 600,000 elements
    proposal = np.repeat(rng.integers(0, 40, size=(3, 100, 400)), 5, axis=1)
    if ids == "wide":
        truth = truth * np.int64(2**40) - 7
    expected = _reference_table(truth, proposal)
    layouts = [(truth, proposal), (np.asfortranarray(truth), proposal), (truth[:, ::-1], proposal[:, ::-1])]
    tables = [contingency_table(t, p, threads=k) for t, p in layouts for k in (1, 2, 3)]
    for table in tables:
        got = {
            (int(table.truth_labels[r]), int(table.proposal_labels[c])): int(n)
            for r, c, n in zip(table.rows, table.cols, table.counts)
        }
        assert got == expected
        assert np.array_equal(table.truth_sizes, np.bincount(table.rows, weights=table.counts).astype(np.int64))
        assert np.array_equal(table.proposal_sizes,
                              np.bincount(table.cols, weights=table.counts, minlength=table.proposal_labels.size))
    for table in tables[1:3]:  # same layout, other thread counts: identical arrays
        for key in ("truth_labels", "proposal_labels", "rows", "cols", "counts", "truth_sizes", "proposal_sizes"):
            assert np.array_equal(getattr(table, key), getattr(tables[0], key))


# --- the summary path (label images, no table=) against references built from np.unique / Python ints ---

def _reference_scores(truth, proposal, ignore=()):
    """VI (split, merge) and adapted Rand (error, precision, recall) from the pair counts of np.unique,
    with exact Python integers and math.fsum; ``ignore``: truth values left out (some pixels must stay)."""
    t, p = truth.ravel(), proposal.ravel()
    keep = ~np.isin(t, np.asarray(list(ignore), dtype=t.dtype))
    t, p = t[keep], p[keep]
    n = t.size
    t_index = np.unique(t, return_inverse=True)[1].ravel().astype(np.int64)
    p_index = np.unique(p, return_inverse=True)[1].ravel().astype(np.int64)
    pair, c = np.unique(t_index * (p_index.max() + 1) + p_index, return_counts=True)
    rows, cols = np.divmod(pair, p_index.max() + 1)
    a = np.bincount(rows, weights=c).astype(np.int64)
    b = np.bincount(cols, weights=c).astype(np.int64)
    c_l, a_l, b_l = ([int(x) for x in v] for v in (c, a, b))
    split = -math.fsum(x / n * math.log2(x / a_l[i]) for x, i in zip(c_l, rows.tolist()))
    merge = -math.fsum(x / n * math.log2(x / b_l[j]) for x, j in zip(c_l, cols.tolist()))
    both, pairs_t, pairs_p = (sum(x * x for x in v) - n for v in (c_l, a_l, b_l))
    are = (1.0 - 2.0 * both / (pairs_t + pairs_p) if pairs_t + pairs_p else math.nan,
           both / pairs_p if pairs_p else math.nan, both / pairs_t if pairs_t else math.nan)
    return (split, merge), are


def _reference_rand(truth, proposal):
    """ISBI Rand error from pair counts with exact integers: truth 0 left out, proposal 0 singletons."""
    fg = truth.ravel() != 0
    pairs = collections.Counter(zip(truth.ravel()[fg].tolist(), proposal.ravel()[fg].tolist()))
    if not pairs:
        return math.nan
    a, b = collections.Counter(), collections.Counter()
    for (i, j), c in pairs.items():
        a[i] += c
        if j != 0:
            b[j] += c
    c0 = sum(c for (_, j), c in pairs.items() if j == 0)
    sum_c2 = sum(c * c for (_, j), c in pairs.items() if j != 0)
    tp = sum_c2 + c0
    fp = sum(x * x for x in b.values()) - sum_c2
    fn = sum(x * x for x in a.values()) - tp
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 1.0 - (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def _same(x, y):
    return (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, **TOL)


LABEL_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@st.composite
def label_pairs(draw):
    """Two label images of one shape over small pools of distinct values anywhere in their dtypes'
    ranges: narrow pools (direct ids), values far apart (hashed ids), 64-bit values spread over more
    than 2^32 (full-width run records)."""
    shape = draw(st.tuples(st.integers(1, 9), st.integers(1, 9))
                 | st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)))
    images = []
    for _ in range(2):
        info = np.iinfo(draw(st.sampled_from(LABEL_DTYPES)))
        if draw(st.booleans()):  # narrow
            lo = draw(st.integers(int(info.min), int(info.max) - 8))
            values = st.integers(lo, lo + 8)
        else:
            values = st.integers(int(info.min), int(info.max))
        pool = np.array(draw(st.lists(values, min_size=1, max_size=6, unique=True)), dtype=info.dtype)
        images.append(pool[draw(arrays(np.intp, shape, elements=st.integers(0, pool.size - 1)))])
    return images[0], images[1]


@settings(max_examples=150, deadline=None)
@given(pair=label_pairs(), data=st.data())
def test_summary_path_matches_reference_and_table(pair, data):
    truth, proposal = pair
    present = np.unique(truth).tolist()
    ignore = data.draw(st.lists(st.sampled_from(present), max_size=2, unique=True))
    table = contingency_table(truth, proposal)
    calls = [((truth, proposal), {"threads": 1}), ((truth, proposal), {"threads": 2}), ((), {"table": table})]
    if set(ignore) == set(present):
        for args, kwargs in calls:
            with pytest.raises(InvalidInputError, match="no pixels left"):
                variation_of_information(*args, ignore_labels=ignore, **kwargs)
            with pytest.raises(InvalidInputError, match="no truth pixels left"):
                adapted_rand_error(*args, ignore_labels=ignore, **kwargs)
    else:
        (split, merge), (error, precision, recall) = _reference_scores(truth, proposal, ignore)
        for args, kwargs in calls:
            assert variation_of_information(*args, ignore_labels=ignore, **kwargs) == pytest.approx((split, merge), **TOL)
            are = adapted_rand_error(*args, ignore_labels=ignore, **kwargs)
            assert _same(are.error, error) and _same(are.precision, precision) and _same(are.recall, recall)
    expected_rand = _reference_rand(truth, proposal)
    assert _same(rand_error(truth, proposal), expected_rand)
    assert _same(rand_error(table=table), expected_rand)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # skimage's 0 / 0 when no pair is shared
@settings(max_examples=40, deadline=None)
@given(pair=label_pairs())
def test_summary_path_matches_skimage(pair):
    truth, proposal = pair
    # skimage wants non-negative labels: the same partitions, labelled 1.. by value rank, truth 0 kept 0
    t = np.where(truth == 0, 0, np.unique(truth, return_inverse=True)[1].reshape(truth.shape) + 1)
    p = np.unique(proposal, return_inverse=True)[1].reshape(proposal.shape)
    assert variation_of_information(truth, proposal) == pytest.approx(skm.variation_of_information(t, p), **TOL)
    if (t != 0).any():
        ours = adapted_rand_error(truth, proposal)
        sk_error, sk_prec, sk_rec = skm.adapted_rand_error(t, p)
        assert _same(ours.error, sk_error) and _same(ours.recall, sk_prec) and _same(ours.precision, sk_rec)


@pytest.mark.parametrize("ids", ["direct", "hashed", "wide"])
def test_summary_path_threads_and_layouts_agree_with_the_table(ids):
    # large enough for the threaded path (threads split the elements mid-row): "hashed" labels spread
    # wider than the image (hashed ids), "wide" 64-bit labels over more than 2^32 values (full records)
    rng = np.random.default_rng(11)
    truth = np.repeat(rng.integers(0, 3000, size=(3, 500, 80)), 5, axis=2)  # 600,000 elements
    proposal = np.repeat(rng.integers(0, 40, size=(3, 100, 400)), 5, axis=1)
    if ids == "hashed":
        truth, proposal = truth * 100_003 - 5, proposal * 7919
    elif ids == "wide":
        truth, proposal = truth * np.int64(2**40) - 7, (proposal.astype(np.uint64) << np.uint64(33)) + np.uint64(2**63)
    ignore = (0, int(truth.ravel()[123]))
    table = contingency_table(truth, proposal)
    expected = (variation_of_information(table=table, ignore_labels=ignore), adapted_rand_error(table=table),
                rand_error(table=table))
    assert expected[0] == pytest.approx(_reference_scores(truth, proposal, ignore)[0], **TOL)
    assert expected[1].error == pytest.approx(_reference_scores(truth, proposal, (0,))[1][0], **TOL)
    for t, p in ((truth, proposal), (np.asfortranarray(truth), proposal), (truth[:, ::-1], proposal[:, ::-1])):
        for threads in (1, 2, 3):
            vi = variation_of_information(t, p, ignore_labels=ignore, threads=threads)
            assert vi == pytest.approx(tuple(expected[0]), **TOL)
            assert adapted_rand_error(t, p, threads=threads) == expected[1]  # exact integer sums either way
            assert rand_error(t, p, threads=threads) == expected[2]


@pytest.mark.parametrize("case", ["int8 vs bool", "bool vs int8", "bool vs bool"])
def test_summary_path_bool_and_negative_labels(case):
    rng = np.random.default_rng(12)
    labels = rng.integers(-3, 3, size=(30, 30)).astype(np.int8)
    mask = rng.random((30, 30)) > 0.5
    truth, proposal, ignore = {"int8 vs bool": (labels, mask, (-3, 2)), "bool vs int8": (mask, labels, (True,)),
                               "bool vs bool": (mask, ~mask | (labels > 1), (False,))}[case]
    for ignored in ((), ignore):
        (split, merge), (error, precision, recall) = _reference_scores(truth, proposal, ignored)
        assert variation_of_information(truth, proposal, ignore_labels=ignored) == pytest.approx((split, merge), **TOL)
        are = adapted_rand_error(truth, proposal, ignore_labels=ignored)
        assert _same(are.error, error) and _same(are.precision, precision) and _same(are.recall, recall)
    assert _same(rand_error(truth, proposal), _reference_rand(truth, proposal))


def test_ignore_labels_outside_the_dtype_match_nothing_and_bad_ones_are_rejected(caplog):
    truth = np.array([[0, 1, 255], [1, 1, 0]], dtype=np.uint8)
    proposal = np.array([[3, 3, 4], [4, 4, 4]], dtype=np.int64)
    base = variation_of_information(truth, proposal)
    assert variation_of_information(truth, proposal, ignore_labels=(-1, 256, 2**70, 0.5)) == base
    assert variation_of_information(truth, proposal, ignore_labels=[255.0]) == \
        variation_of_information(truth, proposal, ignore_labels=np.array([255], dtype=np.uint64))
    assert variation_of_information(truth, proposal, ignore_labels=[255]) == \
        pytest.approx(_reference_scores(truth, proposal, (255,))[0], **TOL)
    table = contingency_table(truth, proposal)
    assert variation_of_information(table=table, ignore_labels=(-1, 256)) == pytest.approx(tuple(base), **TOL)
    with pytest.raises(InvalidInputError, match="ignore_labels"):
        variation_of_information(truth, proposal, ignore_labels=("background",))
    with pytest.raises(InvalidInputError, match="no pixels left"):
        variation_of_information(truth, proposal, ignore_labels=(0, 1, 255))
    with pytest.raises(InvalidInputError, match="no truth pixels left"):
        adapted_rand_error(np.zeros((4, 4), np.int32), np.ones((4, 4), np.int32))
    with caplog.at_level("WARNING", logger="sdk.metrics.contingency"):
        assert math.isnan(rand_error(np.zeros((4, 4), np.int32), np.ones((4, 4), np.int32)))
    assert "no foreground" in caplog.text
