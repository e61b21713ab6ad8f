"""The warp on its adversarial inputs: paths grown one pixel per pass (tests/adversarial_shapes.py).

A greedy pass that re-walks the whole list made these O(n^2) (a 1024^2 serpentine: two minutes); the core
now visits only the pixels whose neighbourhood changed, switching to indexed passes once walks get costly
(csrc/include/unetsdk/warping.hpp). Those passes must reproduce Fiji's pass order exactly, so every test
here compares with the pure-numpy reference (tests/reference_warping.py), which re-scans the image on every
pass: serpentines, spirals and 3D serpentines of several sizes, perturbed at random (noise and ties in the
probabilities, segments rising the other way, stray truth pixels and mismatches, masks), and the ISBI
sweep. The cost itself is bounded in the C++ test (csrc/tests/test_core.cpp, run by test_core_cpp.py),
which counts the list entries visited; speed is in benchmarks/bench_worst_cases.py.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_warping as ref
from adversarial_shapes import closed_loop, growth_pair, serpentine_path, serpentine_path_3d, spiral_path
from sdk.metrics import isbi2012, warping_error
from test_warping_properties import assert_same_scores, assert_same_table, assert_same_warp

SCALE = int(os.environ.get("UNETSDK_PROPERTY_EXAMPLES", "0"))


def examples(n: int) -> settings:
    return settings(max_examples=SCALE or n, deadline=None, derandomize=not SCALE,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_same_warp_3d(result, expected: ref.ReferenceWarping):
    np.testing.assert_array_equal(np.asarray(result.warped, dtype=bool), expected.warped)
    np.testing.assert_array_equal(np.asarray(result.classification), expected.classification)
    assert result.mismatches == expected.mismatches
    assert result.counts == expected.counts
    assert result.cluster_counts == expected.clusters


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (3, 5), (8, 8), (11, 16), (16, 11)])
def test_serpentine_grows_whole_as_the_reference(shape):
    path = serpentine_path(*shape)
    truth, proposal = growth_pair(shape, path)
    result, expected = warping_error(truth, proposal), ref.warping_error(truth, proposal)
    assert_same_warp(result, expected, str(shape))
    assert result.mismatches == 0 and int(result.warped.sum()) == len(path)  # the path is simple all along


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 13])
def test_spiral_grows_whole_as_the_reference(size):
    path = spiral_path(size)
    truth, proposal = growth_pair((size, size), path)
    result, expected = warping_error(truth, proposal), ref.warping_error(truth, proposal)
    assert_same_warp(result, expected, str(size))
    assert result.mismatches == 0 and int(result.warped.sum()) == len(path)


@pytest.mark.parametrize("shape", [(1, 6, 7), (3, 3, 4), (5, 6, 5)])
def test_3d_serpentine_grows_whole_as_the_reference(shape):
    path = serpentine_path_3d(*shape)
    truth, proposal = growth_pair(shape, path)
    result = warping_error(truth, proposal, mode="3d")
    assert_same_warp_3d(result, ref.warping_error_3d(truth, proposal))
    assert result.mismatches == 0 and int(result.warped.sum()) == len(path)


@pytest.mark.parametrize("meet", [1, 5, 20, 37, 38])
def test_two_fronts_stop_where_the_reference_does(meet):
    """Fronts from both ends add one pixel per pass each, so where they stop depends on the order of the
    passes (not only on the probabilities): a warp that tested the pixels it made dirty too early, or too
    late, would leave the gap elsewhere."""
    path = serpentine_path(7, 10)
    truth, proposal = growth_pair((7, 10), path, meet=meet)
    result, expected = warping_error(truth, proposal), ref.warping_error(truth, proposal)
    assert_same_warp(result, expected, str(meet))
    assert result.mismatches == 1  # one gap pixel keeps the two objects apart


def perturbed_path_pair(kind: str, seed: int):
    """A growth pair on a random path (one front or two), perturbed so that the passes interleave in many
    ways: noisy and quantized (tied) probabilities, a segment rising the other way, path pixels below the threshold
    (growth stops there), stray truth pixels and stray proposal values off the path."""
    rng = np.random.default_rng(seed)
    if kind == "serpentine":
        shape = tuple(int(s) for s in rng.integers(3, 15, size=2))
        path = serpentine_path(*shape)
    elif kind == "spiral":
        size = int(rng.integers(4, 15))
        shape, path = (size, size), spiral_path(size)
    else:
        shape = tuple(int(s) for s in rng.integers(2, 7, size=3))
        path = serpentine_path_3d(*shape)
    meet = int(rng.integers(1, len(path) - 1)) if len(path) > 2 and rng.random() < 0.5 else None
    truth, proposal = growth_pair(shape, path, low=float(rng.choice([0.3, 0.5, 0.6])), meet=meet)
    on_path = tuple(path.T)
    values = proposal[on_path].astype(np.float64)
    if rng.random() < 0.5:  # a segment rising the other way (processed in path order)
        a, b = sorted(rng.integers(0, len(path), size=2))
        values[a:b] = values[a:b][::-1]
    values += rng.normal(0.0, rng.choice([0.0, 0.002, 0.05]), size=values.shape)
    levels = rng.choice([0, 20, 255])
    if levels:  # ties: Fiji's order breaks them by column-major scan, not along the path
        values = np.round(values * levels) / levels
    proposal[on_path] = np.clip(values, 0.0, 1.0)
    stray = rng.random(shape) < rng.uniform(0.0, 0.08)
    truth[stray] ^= 1
    noisy = rng.random(shape) < rng.uniform(0.0, 0.08)
    proposal[noisy] = rng.random(int(noisy.sum()))
    mask = rng.random(shape) > 0.05 if rng.random() < 0.3 else None
    return truth, proposal.astype(np.float32), mask


@examples(30)
@given(kind=st.sampled_from(["serpentine", "spiral"]), seed=st.integers(0, 2**32 - 1),
       threshold=st.sampled_from([0.25, 0.5, 0.7, ref.WARPING_THRESHOLDS[3]]))
def test_perturbed_paths_equal_reference_2d(kind, seed, threshold):
    truth, proposal, mask = perturbed_path_pair(kind, seed)
    result = warping_error(truth, proposal, threshold=threshold, mask=mask)
    expected = ref.warping_error(truth, proposal, threshold=threshold, mask=mask)
    assert_same_warp(result, expected, f"{kind} seed={seed} th={threshold}")


@examples(12)
@given(seed=st.integers(0, 2**32 - 1), threshold=st.sampled_from([0.25, 0.5, 0.7]))
def test_perturbed_paths_equal_reference_3d(seed, threshold):
    truth, proposal, _ = perturbed_path_pair("serpentine_3d", seed)
    result = warping_error(truth, proposal, threshold=threshold, mode="3d")
    assert_same_warp_3d(result, ref.warping_error_3d(truth, proposal, threshold=threshold))


@pytest.mark.parametrize("low", [0.0, 0.9])
def test_isbi2012_on_a_serpentine_equals_reference(low):
    """low = 0.9: the path is grown at every warping threshold; low = 0: each threshold cuts the path
    where its probabilities cross it, so only the part beyond is grown (from its far end, which the
    truth's second seed provides)."""
    path = serpentine_path(12, 13)
    truth, proposal = growth_pair((12, 13), path, low=low)
    truth[tuple(path[-1])] = 1
    s, expected = isbi2012(truth, proposal), ref.isbi2012(truth, proposal)
    assert_same_scores(s, expected)
    assert_same_table(s, expected)


@pytest.mark.parametrize("size", [4, 8, 12, 20])
@pytest.mark.parametrize("radius", [-1, 0, 3, 20])
def test_erased_closed_loop_classified_as_the_reference(size, radius):
    """Every pixel of the loop is left; within the whole image (radius < 1, or wider than the image)
    removing one never disconnects the loop (hole deletions), within a small window it does (splits)."""
    loop = closed_loop(size)
    proposal = np.zeros(loop.shape, dtype=np.float32)
    result, expected = warping_error(loop, proposal, radius=radius), ref.warping_error(loop, proposal, radius=radius)
    assert_same_warp(result, expected, f"size={size} radius={radius}")
    assert result.mismatches == int(loop.sum())


@examples(25)
@given(seed=st.integers(0, 2**32 - 1), radius=st.sampled_from([-1, 0, 2, 5]), volumetric=st.booleans())
def test_perturbed_loops_classified_as_the_reference(seed, radius, volumetric):
    """Loops with stray pixels, extra bridges and thick parts (articulation points of every kind:
    pixels whose removal cuts off one, two or three pieces, or none), partly erased, in 2D and stacked
    into 3D (there a whole-image search runs through the planes)."""
    rng = np.random.default_rng(seed)
    size = int(rng.choice([8, 12, 16]))
    loop = closed_loop(size)
    loop[rng.random(loop.shape) < rng.uniform(0.0, 0.15)] ^= 1
    truth = np.stack([loop, np.roll(loop, int(rng.integers(0, 3)), axis=1) & (rng.random(loop.shape) < 0.7)]) \
        if volumetric else loop
    proposal = np.where(rng.random(truth.shape) < rng.uniform(0.5, 1.0), 0.0, rng.random(truth.shape))
    proposal = proposal.astype(np.float32)
    if volumetric:
        result = warping_error(truth, proposal, radius=radius, mode="3d")
        assert_same_warp_3d(result, ref.warping_error_3d(truth, proposal, radius=radius))
    else:
        result = warping_error(truth, proposal, radius=radius)
        assert_same_warp(result, ref.warping_error(truth, proposal, radius=radius), f"seed={seed} radius={radius}")


def adversarial_stack() -> tuple[np.ndarray, np.ndarray]:
    """Slices of 96x96 growth pairs: serpentines, spirals, perturbed ones (the core only: too slow for
    the reference at this size)."""
    truths, proposals = [], []
    for k in range(6):
        path = serpentine_path(96, 96) if k % 2 == 0 else spiral_path(96)
        truth, proposal = growth_pair((96, 96), path, low=0.5 + 0.05 * k)
        if k >= 2:
            rng = np.random.default_rng(k)
            truth[rng.random(truth.shape) < 0.02] ^= 1
            proposal[rng.random(truth.shape) < 0.02] = rng.random()
        truths.append(truth)
        proposals.append(proposal)
    return np.stack(truths), np.stack(proposals)


def test_results_bit_identical_across_thread_counts():
    truth, proposal = adversarial_stack()
    one = warping_error(truth, proposal, threads=1)
    one_sweep = isbi2012(truth, proposal, threads=1)
    assert one.mismatches > 0 and one.warped.sum() > 3 * 96 * 96 // 2  # the paths grew
    for threads in (2, 3):
        other = warping_error(truth, proposal, threads=threads)
        np.testing.assert_array_equal(other.warped, one.warped)
        np.testing.assert_array_equal(other.classification, one.classification)
        assert other.counts == one.counts and other.cluster_counts == one.cluster_counts
        assert list(isbi2012(truth, proposal, threads=threads).table) == list(one_sweep.table)
