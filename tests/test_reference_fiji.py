"""Validate the pure-numpy reference (tests/reference_warping.py) itself against Fiji's answers.

This checks the oracle, not sdk.metrics: every number of ../shared/data/fiji_reference/expected.json
(pixel counts exactly, errors to 1e-12), plus hand-reasoned cases for what the data does not pin down.
"""
import itertools
import json

import numpy as np
import pytest

import reference_warping as ref
from conftest import require_shared

FIJI_DIR = require_shared("fiji_reference")
EXPECTED = json.loads((FIJI_DIR / "expected.json").read_text())
CASES = sorted(EXPECTED["cases"])


def _load(case):
    spec = EXPECTED["cases"][case]
    return np.load(FIJI_DIR / spec["truth"]), np.load(FIJI_DIR / spec["proposal"]), spec


def test_fiji_reference_data_is_present():
    assert len(CASES) == 11, f"expected the 11 development cases in {FIJI_DIR}"


@pytest.mark.parametrize("case", CASES)
def test_reference_warping_at_half_matches_fiji(case):
    truth, proposal, spec = _load(case)
    r = ref.warping_error(truth, proposal, threshold=0.5, radius=20)
    assert r.mismatches == spec["mismatches_at_0.5"]
    assert r.error == pytest.approx(spec["warping_error_at_0.5"], abs=1e-12)
    assert r.counts == spec["pixel_counts_by_type_at_0.5_radius20"]
    assert r.clusters == spec["clustered_counts_at_0.5_radius20"]
    # Every mismatch left after warping is classified, and nothing else is.
    assert np.count_nonzero(r.classification) == r.mismatches
    assert np.count_nonzero(r.warped != (proposal > 0.5)) == r.mismatches


@pytest.mark.parametrize("case", CASES)
def test_reference_isbi_scores_match_fiji(case):
    truth, proposal, spec = _load(case)
    s = ref.isbi2012(truth, proposal)
    assert s["warping_error"] == pytest.approx(spec["isbi_warping_error"], abs=1e-12)
    assert s["warping_threshold"] == spec["isbi_warping_best_threshold"]
    best = s["warping_rows"][ref.WARPING_THRESHOLDS.index(s["warping_threshold"])]
    assert best["splits"] + best["mergers"] == spec["isbi_warping_pixels"]
    assert s["pixel_error"] == pytest.approx(spec["isbi_pixel_error"], abs=1e-12)
    assert s["rand_error"] == pytest.approx(spec["isbi_rand_error"], abs=1e-12)
    for row, expected in zip(s["warping_rows"], spec.get("isbi_sweep", [])):
        assert row["threshold"] == expected["threshold"]
        assert (row["splits"], row["mergers"]) == (expected["splits"], expected["mergers"])
        assert (row["splits"] + row["mergers"]) / truth.size == pytest.approx(expected["error"], abs=1e-12)


def test_fiji_threshold_loops_are_reproduced_exactly():
    assert len(ref.WARPING_THRESHOLDS) == 10 and len(ref.FSCORE_THRESHOLDS) == 11
    assert ref.WARPING_THRESHOLDS[3] == 0.30000000000000004
    assert ref.WARPING_THRESHOLDS[-1] == 0.8999999999999999
    assert ref.FSCORE_THRESHOLDS[-1] == 0.9999999999999999
    # A proposal of exactly 1.0 is foreground at the last threshold; float32(0.7) > 0.7 is false.
    assert ref.binarize_proposal(np.float32([1.0, 0.7, 0.1]), 0.9999999999999999).tolist() == [True, False, False]
    assert ref.binarize_proposal(np.float32([0.7, 0.1]), 0.7).tolist() == [False, False]
    assert ref.binarize_proposal(np.float32([0.1]), 0.1).tolist() == [True]


def test_2d_simple_points_agree_with_the_3d_test_on_a_flat_patch():
    """Fiji decides 2D simplicity with its 3D (6, 26) test on the patch placed between two empty planes.

    Our 2D rule (4/8 components) and our 3D rule (geodesic neighbourhoods) were written independently;
    they must agree on all 256 configurations.
    """
    planar = [o for o in ref.OFFSETS_3D if o[0] == 0]
    for config in itertools.product((False, True), repeat=8):
        value = dict(zip(ref.OFFSETS_2D, config))
        embedded = tuple(o[0] == 0 and value[(o[1], o[2])] for o in ref.OFFSETS_3D)
        assert ref.is_simple_2d(config) == ref.is_simple_3d(embedded), config
    assert len(planar) == 8


@pytest.mark.parametrize(
    ("config", "simple"),
    [
        ((False,) * 8, False),  # isolated pixel: removing it deletes an object
        ((True,) * 8, False),  # interior pixel: removing it creates a hole
        # offsets order: (-1,-1) (-1,0) (-1,1) (0,-1) (0,1) (1,-1) (1,0) (1,1)
        ((False, True, False, False, False, False, False, False), True),  # end of a line
        ((False, True, False, False, False, False, True, False), False),  # middle of a vertical line
        ((True, False, False, False, False, False, False, False), False),  # only a diagonal neighbour
        ((True, True, True, True, True, False, False, False), True),  # edge of a region
    ],
)
def test_2d_simple_point_textbook_cases(config, simple):
    assert ref.is_simple_2d(config) is simple


def test_tie_order_is_column_major():
    """All keys tie (a binary proposal), so only the scan order decides which pixel survives.

    Hand trace, x outer / y inner: pass 1 flips (3,0), (0,1), (3,1); pass 2 flips (0,0), (1,0), (2,0);
    (2,1) is then isolated and stays. A row-major scan would keep (3,0) instead.
    """
    truth = np.array([[1, 1], [1, 0], [1, 1], [1, 1]], dtype=np.uint8)
    warped, left = ref.warp_slice(truth, np.zeros(truth.shape, np.float32), 0.5)
    assert left == [(2, 1)]
    assert warped.astype(int).tolist() == [[0, 0], [0, 0], [0, 1], [0, 0]]


def test_most_confident_pixels_flip_first():
    truth = np.array([[1, 1]], dtype=np.uint8)
    _, left = ref.warp_slice(truth, np.float32([[0.0, 0.3]]), 0.5)  # keys 0.5, 0.2: (0,0) goes first
    assert left == [(0, 1)]
    _, left = ref.warp_slice(truth, np.float32([[0.3, 0.0]]), 0.5)
    assert left == [(0, 0)]


def test_all_foreground_slice_is_classified_correctly():
    """Fiji blanks an all-foreground truth slice and calls everything an object addition; we do not."""
    truth = np.ones((9, 9), dtype=np.uint8)
    proposal = np.ones((9, 9), dtype=np.float32)
    proposal[4, :] = 0.0  # a full-width membrane splits the cell in two
    r = ref.warping_error(truth, proposal, threshold=0.5)
    assert r.mismatches == 1 and r.splits == 1


def test_rand_leaves_out_slices_without_truth_foreground():
    truth = np.zeros((2, 8, 8), dtype=np.uint8)
    truth[0, 2:6, 2:6] = 1
    proposal = truth.astype(np.float32)
    s = ref.isbi2012(truth, proposal)
    assert s["rand_error"] == 0.0 and s["pixel_error"] == 0.0
    assert np.isnan(ref.isbi2012(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32))["rand_error"])
