"""Property tests of sdk.metrics against the pure-numpy reference (tests/reference_warping.py).

Small random images (8..24 px) and stacks, random probability maps with many ties (quantized values,
exact 0 and 1, binary maps) because the warp's tie order decides the counts. Examples are derandomized so
CI is reproducible; set UNETSDK_PROPERTY_EXAMPLES to explore more (e.g. 2000) locally.
"""
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.measure import label as sk_label

import reference_warping as ref
from sdk.metrics import isbi2012, pixel_error, pool_isbi2012, rand_error, warping_error

SCALE = int(os.environ.get("UNETSDK_PROPERTY_EXAMPLES", "0"))


def examples(n: int) -> settings:
    return settings(max_examples=SCALE or n, deadline=None, derandomize=not SCALE,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


TRUTH_DTYPES = [np.bool_, np.uint8, np.uint16, np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64]
QUANTIZATIONS = [None, 1, 4, 10, 255, "tiny"]  # levels of the map; 1 = binary 0/1; "tiny": see make_proposal
THRESHOLDS = ref.WARPING_THRESHOLDS + [0.25, 1 / 3]


def make_truth(rng, shape, style: str) -> np.ndarray:
    """Binary truth: 'blobs' (upsampled coarse noise: cells, holes, thin necks) or 'noise' (pixel noise)."""
    if style == "noise":
        return rng.random(shape) < rng.uniform(0.3, 0.8)
    block = int(rng.integers(2, 5))
    coarse = rng.random(tuple(math.ceil(s / block) for s in shape)) < rng.uniform(0.4, 0.8)
    fine = coarse
    for axis in range(len(shape)):
        fine = np.repeat(fine, block, axis=axis)
    fine = fine[tuple(slice(0, s) for s in shape)]
    # Thin random membranes / bridges so that splits and mergers occur.
    return fine ^ (rng.random(shape) < 0.08)


def make_proposal(rng, truth: np.ndarray, levels) -> np.ndarray:
    """Probability of foreground near the truth: flips, noise, clipping to exact 0/1, quantization.

    "tiny" levels: binary 0/1, but the zeros become distinct values of order 1e-9 as sigmoid outputs do.
    Their keys |p - th| differ in double and tie in float32, so only float32 keys give Fiji's order.
    """
    p = truth.astype(np.float64)
    p[rng.random(truth.shape) < rng.uniform(0.02, 0.25)] = rng.random()
    if levels == "tiny":
        p = np.round(np.clip(p, 0.0, 1.0))
        return np.where(p == 0, rng.integers(1, 50, truth.shape) * 1e-9, 1.0).astype(np.float32)
    p = p + rng.normal(0.0, rng.uniform(0.0, 0.5), truth.shape)
    p = np.clip(p, 0.0, 1.0)
    if levels is not None:
        p = np.round(p * levels) / levels
    return p.astype(np.float32)


@st.composite
def pairs(draw, min_side=8, max_side=24, max_depth=1):
    depth = draw(st.integers(1, max_depth))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    style = draw(st.sampled_from(["blobs", "noise"]))
    levels = draw(st.sampled_from(QUANTIZATIONS))
    rng = np.random.default_rng(seed)
    shape = (h, w) if max_depth == 1 else (depth, h, w)
    truth = make_truth(rng, shape, style)
    return truth, make_proposal(rng, truth, levels)


def as_truth_dtype(truth: np.ndarray, dtype) -> np.ndarray:
    return truth.astype(dtype) if dtype is np.bool_ else (truth * 7).astype(dtype)


def assert_same_warp(result, expected: ref.ReferenceWarping, context: str = ""):
    assert result.mismatches == expected.mismatches, context
    for name in ref.ERROR_NAMES.values():
        assert getattr(result, name) == expected.counts[name], f"{name} {context}"
    assert result.cluster_counts == expected.clusters, context
    np.testing.assert_array_equal(np.asarray(result.warped, dtype=bool), expected.warped, err_msg=context)
    np.testing.assert_array_equal(np.asarray(result.classification), expected.classification, err_msg=context)
    assert result.error == pytest.approx(expected.error, rel=0, abs=1e-12), context


def count_components(binary: np.ndarray, connectivity: int) -> int:
    return int(sk_label(binary, connectivity=connectivity, background=0).max())


def padded_topology(image: np.ndarray) -> tuple[int, int]:
    """(#foreground components, #background components) with face / full connectivity, outside = background."""
    padded = np.pad(image.astype(bool), 1)
    return count_components(padded, 1), count_components(~padded, padded.ndim)


# ---------------------------------------------------------------------------------------------------------
# 2D: the warp and its classification equal the reference.
# ---------------------------------------------------------------------------------------------------------
@examples(120)
@given(pair=pairs(), threshold=st.sampled_from(THRESHOLDS), radius=st.sampled_from([20, 1, 2, 3, 6, 0, -1, 100]),
       truth_dtype=st.sampled_from(TRUTH_DTYPES), proposal_dtype=st.sampled_from([np.float32, np.float64]))
def test_warping_2d_equals_reference(pair, threshold, radius, truth_dtype, proposal_dtype):
    truth, proposal = pair
    proposal = proposal.astype(proposal_dtype)
    got = warping_error(as_truth_dtype(truth, truth_dtype), proposal, threshold=threshold, radius=radius)
    expected = ref.warping_error(truth, proposal, threshold=threshold, radius=radius)
    assert_same_warp(got, expected, f"threshold={threshold} radius={radius}")


@st.composite
def thin_pairs(draw):
    """Images one to three pixels thin (1x1 included): the classification's edge cases."""
    thin, long = draw(st.integers(1, 3)), draw(st.integers(1, 16))
    shape = (thin, long) if draw(st.booleans()) else (long, thin)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    truth = rng.random(shape) < 0.5
    return truth, make_proposal(rng, truth, draw(st.sampled_from(QUANTIZATIONS)))


@examples(80)
@given(pair=thin_pairs(), threshold=st.sampled_from(THRESHOLDS), radius=st.sampled_from([20, 1, 2, 0, -1]))
def test_thin_images_equal_reference(pair, threshold, radius):
    truth, proposal = pair
    got = warping_error(truth, proposal, threshold=threshold, radius=radius)
    assert_same_warp(got, ref.warping_error(truth, proposal, threshold=threshold, radius=radius))


@examples(60)
@given(pair=pairs(), threshold=st.sampled_from(THRESHOLDS), mask_seed=st.integers(0, 2**32 - 1))
def test_warping_with_mask_equals_reference(pair, threshold, mask_seed):
    truth, proposal = pair
    mask = np.random.default_rng(mask_seed).random(truth.shape) < 0.7
    got = warping_error(truth, proposal, threshold=threshold, mask=mask)
    expected = ref.warping_error(truth, proposal, threshold=threshold, mask=mask)
    assert_same_warp(got, expected, f"threshold={threshold}")


@examples(40)
@given(pair=pairs(), threshold=st.sampled_from(THRESHOLDS))
def test_bool_proposal_is_a_zero_one_map(pair, threshold):
    truth, proposal = pair
    binary = proposal > 0.5
    got = warping_error(truth, binary, threshold=threshold)
    assert_same_warp(got, ref.warping_error(truth, binary.astype(np.float32), threshold=threshold))


# ---------------------------------------------------------------------------------------------------------
# Properties that need no reference.
# ---------------------------------------------------------------------------------------------------------
@examples(60)
@given(pair=pairs(max_depth=3), threshold=st.sampled_from(THRESHOLDS))
def test_identical_inputs_give_zero(pair, threshold):
    truth, _ = pair
    r = warping_error(truth, truth.astype(np.float32), threshold=threshold)
    assert r.error == 0.0 and r.mismatches == 0
    assert not np.any(r.classification)
    np.testing.assert_array_equal(r.warped, truth)


@examples(15)
@given(pair=pairs(max_depth=2))
def test_identical_inputs_score_zero_in_the_isbi_sweep(pair):
    truth, _ = pair
    s = isbi2012(truth, truth.astype(np.float32))
    assert s.warping_error == 0.0 and s.pixel_error == 0.0
    assert s.rand_error == 0.0 or (math.isnan(s.rand_error) and not truth.any())


@examples(80)
@given(pair=pairs(max_depth=2), threshold=st.sampled_from(THRESHOLDS))
def test_warp_only_removes_mismatches_and_preserves_topology(pair, threshold):
    truth, proposal = pair
    r = warping_error(truth, proposal, threshold=threshold)
    target = proposal.astype(np.float64) > threshold
    warped = np.asarray(r.warped, dtype=bool)
    pixel_mismatches = int(np.count_nonzero(truth != target))
    assert r.mismatches == int(np.count_nonzero(warped != target)) <= pixel_mismatches
    # Only mismatched pixels were flipped, and each flip was a simple point: per slice, the numbers of
    # 4-connected foreground and 8-connected background components are unchanged.
    assert not np.any((warped != truth) & (truth == target))
    for t_slice, w_slice in zip(truth.reshape((-1,) + truth.shape[-2:]), warped.reshape((-1,) + truth.shape[-2:])):
        assert padded_topology(w_slice) == padded_topology(t_slice)
    # What is left is not simple any more, and warping the warped truth again changes nothing.
    for index in zip(*np.nonzero(warped != target)):
        z = index[:-2]
        padded = np.pad(warped[z], 1)
        y, x = index[-2] + 1, index[-1] + 1
        assert not ref.is_simple_2d(tuple(bool(padded[y + dy, x + dx]) for dy, dx in ref.OFFSETS_2D))
    again = warping_error(warped, proposal, threshold=threshold)
    assert again.mismatches == r.mismatches
    np.testing.assert_array_equal(again.warped, warped)
    assert r.splits + r.mergers + r.hole_additions + r.hole_deletions + r.object_additions \
        + r.object_deletions == r.mismatches


@examples(60)
@given(pair=pairs(), threshold=st.sampled_from(THRESHOLDS))
def test_label_rand_and_pixel_error_equal_the_reference_statistics(pair, threshold):
    truth, proposal = pair
    target = proposal.astype(np.float64) > threshold
    got = rand_error(sk_label(truth, connectivity=1), sk_label(target, connectivity=1))
    stats = ref.rand_statistics(truth, proposal, threshold)
    if stats is None:
        assert math.isnan(got)
    else:
        assert got == pytest.approx(1.0 - ref.fiji_fscore(*stats), rel=0, abs=1e-12)
    pixel = pixel_error(truth, proposal, threshold=threshold)
    assert pixel == np.count_nonzero(truth != target) / truth.size
    assert warping_error(truth, proposal, threshold=threshold).error <= pixel


# ---------------------------------------------------------------------------------------------------------
# Memory layout and stacks.
# ---------------------------------------------------------------------------------------------------------
def layouts(a: np.ndarray):
    """The same values in other memory layouts: F order, a transposed-back view, a strided slice."""
    yield "C", np.ascontiguousarray(a)
    yield "F", np.asfortranarray(a)
    yield "transposed view", np.ascontiguousarray(a.T).T
    big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
    big[tuple(slice(1, None, 2) for _ in a.shape)] = a
    yield "strided slice", big[tuple(slice(1, None, 2) for _ in a.shape)]
    flipped = np.ascontiguousarray(a[..., ::-1])
    yield "negative stride", flipped[..., ::-1]


@examples(30)
@given(pair=pairs(max_depth=3), threshold=st.sampled_from(THRESHOLDS))
def test_memory_layout_does_not_change_the_warp(pair, threshold):
    truth, proposal = pair
    base = warping_error(truth, proposal, threshold=threshold)
    for (t_name, t), (p_name, p) in zip(layouts(truth.astype(np.uint8)), layouts(proposal)):
        r = warping_error(t, p, threshold=threshold)
        assert r.mismatches == base.mismatches, (t_name, p_name)
        assert (r.splits, r.mergers, r.hole_additions) == (base.splits, base.mergers, base.hole_additions)
        np.testing.assert_array_equal(r.classification, base.classification, err_msg=t_name)
        np.testing.assert_array_equal(r.warped, base.warped, err_msg=t_name)
        assert r.error == base.error


@examples(8)
@given(pair=pairs(max_side=16, max_depth=2))
def test_memory_layout_does_not_change_the_isbi_scores(pair):
    truth, proposal = pair
    base = isbi2012(truth, proposal)
    for (t_name, t), (_, p) in zip(layouts(truth.astype(np.uint8)), layouts(proposal)):
        s = isbi2012(t, p)
        for field in ("warping_error", "warping_threshold", "pixel_error", "pixel_threshold"):
            assert getattr(s, field) == getattr(base, field), (t_name, field)
        assert s.rand_error == base.rand_error or (math.isnan(s.rand_error) and math.isnan(base.rand_error))


@examples(20)
@given(pair=pairs(max_depth=4), threshold=st.sampled_from(THRESHOLDS))
def test_thread_count_does_not_change_the_result(pair, threshold):
    truth, proposal = pair
    one = warping_error(truth, proposal, threshold=threshold, threads=1)
    many = warping_error(truth, proposal, threshold=threshold, threads=3)
    np.testing.assert_array_equal(one.classification, many.classification)
    np.testing.assert_array_equal(one.warped, many.warped)
    assert one.error == many.error
    s1, s3 = isbi2012(truth, proposal, threads=1), isbi2012(truth, proposal, threads=3)
    assert (s1.warping_error, s1.pixel_error) == (s3.warping_error, s3.pixel_error)
    assert s1.rand_error == s3.rand_error or (math.isnan(s1.rand_error) and math.isnan(s3.rand_error))


@examples(40)
@given(pair=pairs(max_depth=4), threshold=st.sampled_from(THRESHOLDS), radius=st.sampled_from([20, 3]))
def test_stack_result_is_the_per_slice_results_combined(pair, threshold, radius):
    truth, proposal = pair
    stack = warping_error(truth, proposal, threshold=threshold, radius=radius)
    slices = [warping_error(t, p, threshold=threshold, radius=radius) for t, p in zip(truth, proposal)]
    assert stack.mismatches == sum(s.mismatches for s in slices)
    for name in ref.ERROR_NAMES.values():
        assert getattr(stack, name) == sum(getattr(s, name) for s in slices), name
        assert stack.cluster_counts[name] == sum(s.cluster_counts[name] for s in slices), name
    np.testing.assert_array_equal(stack.warped, np.stack([s.warped for s in slices]))
    np.testing.assert_array_equal(stack.classification, np.stack([s.classification for s in slices]))
    assert stack.error == pytest.approx(np.mean([s.error for s in slices]), rel=0, abs=1e-15)


# ---------------------------------------------------------------------------------------------------------
# The ISBI 2012 sweep.
# ---------------------------------------------------------------------------------------------------------
def assert_same_scores(s, expected: dict, context=""):
    assert s.warping_error == pytest.approx(expected["warping_error"], rel=0, abs=1e-12), context
    assert s.warping_threshold == expected["warping_threshold"], context
    assert s.pixel_error == pytest.approx(expected["pixel_error"], rel=0, abs=1e-12), context
    assert s.pixel_threshold == expected["pixel_threshold"], context
    if math.isnan(expected["rand_error"]):
        assert math.isnan(s.rand_error), context
    else:
        assert s.rand_error == pytest.approx(expected["rand_error"], rel=0, abs=1e-12), context
        assert s.rand_threshold == expected["rand_threshold"], context


def assert_same_table(s, expected: dict):
    """The raw per-threshold sums: split/merger pixels, pixel and Rand tp/fp/fn (exact integers)."""
    rows = list(s.table)
    assert [row["threshold"] for row in rows] == ref.FSCORE_THRESHOLDS
    for row, warp in zip(rows, expected["warping_rows"]):
        assert (row["splits"], row["mergers"]) == (warp["splits"], warp["mergers"]), row["threshold"]
    for row, fscore in zip(rows, expected["fscore_rows"]):
        for key in ("pixel_tp", "pixel_fp", "pixel_fn", "rand_tp", "rand_fp", "rand_fn"):
            assert row[key] == fscore[key], (key, row["threshold"])


@examples(25)
@given(pair=pairs(max_side=20, max_depth=3))
def test_isbi2012_equals_reference(pair):
    truth, proposal = pair
    s, expected = isbi2012(truth, proposal), ref.isbi2012(truth, proposal)
    assert_same_scores(s, expected)
    assert_same_table(s, expected)


@examples(20)
@given(first=pairs(max_side=16, max_depth=2), seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 2))
def test_pooling_items_equals_scoring_their_concatenation(first, seed, depth):
    truth_a, proposal_a = first
    rng = np.random.default_rng(seed)
    truth_b = make_truth(rng, (depth,) + truth_a.shape[1:], "blobs")
    proposal_b = make_proposal(rng, truth_b, 10)
    pooled = pool_isbi2012([isbi2012(truth_a, proposal_a), isbi2012(truth_b, proposal_b)])
    whole = isbi2012(np.concatenate([truth_a, truth_b]), np.concatenate([proposal_a, proposal_b]))
    for field in ("warping_error", "warping_threshold", "pixel_error", "pixel_threshold", "rand_threshold"):
        assert getattr(pooled, field) == getattr(whole, field), field
    assert pooled.rand_error == whole.rand_error or (math.isnan(pooled.rand_error) and math.isnan(whole.rand_error))
    assert_same_scores(pooled, ref.isbi2012(np.concatenate([truth_a, truth_b]),
                                            np.concatenate([proposal_a, proposal_b])))


@examples(10)
@given(first=pairs(max_side=14, max_depth=2), second=pairs(min_side=15, max_side=20, max_depth=2))
def test_pooling_items_of_different_sizes_equals_reference_pooling(first, second):
    pooled = pool_isbi2012([isbi2012(*first), isbi2012(*second)])
    assert_same_scores(pooled, ref.pool([ref.isbi2012(*first), ref.isbi2012(*second)]))
