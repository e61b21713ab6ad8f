"""Native 3D warping (mode="3d": foreground 6-, background 26-connected simple points).

Hand-made volumes whose 3D answer differs from the slice-by-slice (Fiji, mode="2d") answer, with the counts
reasoned out by hand in each docstring and cross-checked with the pure-numpy 3D reference; then random
small volumes against that reference.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.measure import label as sk_label

import reference_warping as ref
from sdk.metrics import warping_error

SCALE = int(os.environ.get("UNETSDK_PROPERTY_EXAMPLES", "0"))


def both_modes(truth, proposal):
    return (warping_error(truth, proposal, threshold=0.5, mode="3d"),
            warping_error(truth, proposal, threshold=0.5, mode="2d"))


def check_against_reference(result, truth, proposal, threshold=0.5, radius=20):
    expected = ref.warping_error_3d(truth, proposal, threshold=threshold, radius=radius)
    np.testing.assert_array_equal(np.asarray(result.warped, dtype=bool), expected.warped)
    np.testing.assert_array_equal(np.asarray(result.classification), expected.classification)
    assert result.mismatches == expected.mismatches
    for name in ref.ERROR_NAMES.values():
        assert getattr(result, name) == expected.counts[name], name
    assert result.cluster_counts == expected.clusters
    assert result.error == pytest.approx(expected.error, rel=0, abs=1e-15)


def test_bump_on_an_object_is_no_error_in_3d():
    """One voxel added on top of a block, in a slice where the truth is empty.

    Per slice it is an isolated pixel (object addition, not simple). In 3D it touches the block through
    a face and leaves the background connected: simple, so it is warped away.
    """
    truth = np.zeros((8, 8, 8), np.uint8)
    truth[1:5, 2:6, 2:6] = 1
    proposal = truth.astype(np.float32)
    proposal[0, 3, 3] = 1.0
    r3, r2 = both_modes(truth, proposal)
    assert r3.mismatches == 0 and r3.error == 0.0
    assert r2.mismatches == 1 and r2.object_additions == 1
    check_against_reference(r3, truth, proposal)


def test_tunnel_through_a_block_is_one_voxel_in_3d():
    """The proposal drills a 1-voxel tunnel along z through a 5x5x5 block.

    Per slice the tunnel is a 1-pixel hole in each of the 5 slices: 5 hole additions. In 3D the tunnel
    is dug greedily from its first end (z ascending among tied voxels): each next voxel is a dent, simple,
    until the last one, whose removal would open the tunnel (two background components around it).
    """
    truth = np.zeros((7, 7, 7), np.uint8)
    truth[1:6, 1:6, 1:6] = 1
    proposal = truth.astype(np.float32)
    proposal[1:6, 3, 3] = 0.0
    r3, r2 = both_modes(truth, proposal)
    assert r2.mismatches == 5 and r2.hole_additions == 5
    assert r3.mismatches == 1
    assert np.argwhere(np.asarray(r3.warped) != (proposal > 0.5)).tolist() == [[5, 3, 3]]
    check_against_reference(r3, truth, proposal)


def test_cavity_shrinks_to_one_voxel_in_3d():
    """The truth has a 3x3x3 cavity in a 7x7x7 cube; the proposal fills it.

    Per slice: three 3x3 holes, each shrinks to one pixel: 3 hole deletions. In 3D the cavity shrinks to
    one voxel, which cannot be filled without deleting the cavity: 1 mismatch.
    """
    truth = np.zeros((9, 9, 9), np.uint8)
    truth[1:8, 1:8, 1:8] = 1
    truth[3:6, 3:6, 3:6] = 0
    proposal = np.zeros(truth.shape, np.float32)
    proposal[1:8, 1:8, 1:8] = 1.0
    r3, r2 = both_modes(truth, proposal)
    assert r2.mismatches == 3 and r2.hole_deletions == 3
    assert r3.mismatches == 1
    check_against_reference(r3, truth, proposal)


def _two_plates(with_neck: bool) -> np.ndarray:
    volume = np.zeros((5, 5, 5), np.uint8)
    volume[1, 1:4, 1:4] = 1
    volume[3, 1:4, 1:4] = 1
    volume[2, 2, 2] = with_neck
    return volume


def test_cut_neck_is_a_split_only_in_3d():
    """Two plates joined by a one-voxel neck in the slice between them; the proposal cuts the neck.

    Per slice the neck is an isolated pixel: an object deletion. In 3D it joins the plates: removing it
    splits one object into two (3 labels around it once removed): a split.
    """
    truth = _two_plates(with_neck=True)
    proposal = _two_plates(with_neck=False).astype(np.float32)
    r3, r2 = both_modes(truth, proposal)
    assert r2.mismatches == 1 and r2.object_deletions == 1 and r2.splits == 0
    assert r3.mismatches == 1 and r3.splits == 1
    check_against_reference(r3, truth, proposal)


def test_added_neck_is_a_merger_only_in_3d():
    """The reverse: two separate plates, the proposal adds the neck between them.

    Per slice: an isolated pixel added (object addition). In 3D the voxel touches both plates (two
    objects plus background around it): a merger.
    """
    truth = _two_plates(with_neck=False)
    proposal = _two_plates(with_neck=True).astype(np.float32)
    r3, r2 = both_modes(truth, proposal)
    assert r2.mismatches == 1 and r2.object_additions == 1 and r2.mergers == 0
    assert r3.mismatches == 1 and r3.mergers == 1
    check_against_reference(r3, truth, proposal)


def test_a_single_slice_volume_is_warped_like_the_2d_image():
    """A one-slice volume: 6/26 simple points on a flat patch are the 2D 4/8 simple points and the tie
    order (x outer, y, z inner) is the 2D column-major order, so the warped image is Fiji's."""
    rng = np.random.default_rng(5)
    truth = rng.random((1, 12, 10)) < 0.6
    proposal = np.clip(truth + rng.normal(0, 0.4, truth.shape), 0, 1).round(1).astype(np.float32)
    r3 = warping_error(truth, proposal, threshold=0.5, mode="3d")
    r2 = ref.warping_error(truth[0], proposal[0], threshold=0.5)
    np.testing.assert_array_equal(np.asarray(r3.warped, dtype=bool)[0], r2.warped)
    assert r3.mismatches == r2.mismatches


@st.composite
def volumes(draw):
    shape = tuple(draw(st.integers(3, 7)) for _ in range(3))
    seed = draw(st.integers(0, 2**32 - 1))
    levels = draw(st.sampled_from([None, 1, 4, 10]))
    rng = np.random.default_rng(seed)
    truth = rng.random(shape) < rng.uniform(0.3, 0.8)
    p = np.clip(truth + rng.normal(0.0, rng.uniform(0.1, 0.6), shape), 0.0, 1.0)
    if levels is not None:
        p = np.round(p * levels) / levels
    return truth, p.astype(np.float32)


@settings(max_examples=SCALE or 60, deadline=None, derandomize=not SCALE,
          suppress_health_check=[HealthCheck.too_slow])
@given(pair=volumes(), threshold=st.sampled_from([0.5, 0.0, 0.30000000000000004, 0.7, 0.8999999999999999]),
       radius=st.sampled_from([20, 1, 2, 0]))
def test_random_volumes_equal_the_3d_reference_and_keep_their_topology(pair, threshold, radius):
    truth, proposal = pair
    r = warping_error(truth.astype(np.uint8), proposal, threshold=threshold, radius=radius, mode="3d")
    check_against_reference(r, truth, proposal, threshold, radius)
    warped = np.pad(np.asarray(r.warped, dtype=bool), 1)
    padded_truth = np.pad(truth, 1)
    # Flipping simple points keeps the 6-components of the foreground and 26-components of the background.
    assert sk_label(warped, connectivity=1).max() == sk_label(padded_truth, connectivity=1).max()
    assert sk_label(~warped, connectivity=3).max() == sk_label(~padded_truth, connectivity=3).max()
