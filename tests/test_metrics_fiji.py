"""Parity with Fiji's ISBI 2012 metrics on the development cases of ../shared/data/fiji_reference, and the
documented degenerate cases where Fiji is wrong and we do the right thing."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sdk.metrics import (
    ErrorType,
    FSCORE_THRESHOLDS,
    WARPING_THRESHOLDS,
    isbi2012,
    pool_isbi2012,
    rand_error,
    warping_error,
)
from conftest import require_shared

REF = require_shared("fiji_reference")

COUNT_KEYS = ("splits", "mergers", "hole_additions", "hole_deletions", "object_additions", "object_deletions")


def _cases():
    if not REF.is_dir():
        return []
    return sorted(json.loads((REF / "expected.json").read_text())["cases"].items())


def _load(case):
    return np.load(REF / case["truth"]), np.load(REF / case["proposal"])


@pytest.mark.parametrize("name,case", _cases(), ids=[n for n, _ in _cases()])
def test_warping_at_half_matches_fiji(name, case):
    truth, proposal = _load(case)
    r = warping_error(truth, proposal, threshold=0.5, radius=20)
    assert r.mismatches == case["mismatches_at_0.5"]
    assert r.error == pytest.approx(case["warping_error_at_0.5"], abs=1e-12, rel=0)
    assert r.counts == case["pixel_counts_by_type_at_0.5_radius20"]
    assert r.cluster_counts == case["clustered_counts_at_0.5_radius20"]
    assert sum(r.counts.values()) == r.mismatches
    assert int(np.count_nonzero(r.classification)) == r.mismatches
    # the leftover mismatches are exactly the pixels where the warped truth differs from the proposal
    assert np.array_equal(r.classification != 0, r.warped != (proposal > np.float64(0.5)))


@pytest.mark.parametrize("name,case", _cases(), ids=[n for n, _ in _cases()])
def test_isbi2012_matches_fiji(name, case):
    truth, proposal = _load(case)
    s = isbi2012(truth, proposal)
    assert s.warping_error == pytest.approx(case["isbi_warping_error"], abs=1e-12, rel=0)
    assert s.warping_threshold == case["isbi_warping_best_threshold"]
    best = s.table[WARPING_THRESHOLDS.index(s.warping_threshold)]
    assert best["splits"] + best["mergers"] == case["isbi_warping_pixels"]
    assert s.pixel_error == pytest.approx(case["isbi_pixel_error"], abs=1e-9, rel=0)
    assert s.rand_error == pytest.approx(case["isbi_rand_error"], abs=1e-9, rel=0)
    assert s.rand_undefined_reason is None
    if "isbi_sweep" in case:
        assert len(case["isbi_sweep"]) == len(WARPING_THRESHOLDS)
        for expected, row in zip(case["isbi_sweep"], s.table):
            assert row["threshold"] == expected["threshold"]  # Fiji's accumulated loop values, bit-exact
            assert (row["splits"], row["mergers"]) == (expected["splits"], expected["mergers"])
            assert row["warping_error"] == pytest.approx(expected["error"], abs=1e-12, rel=0)


def test_thresholds_are_fijis_loop_values():
    assert len(WARPING_THRESHOLDS) == 10 and len(FSCORE_THRESHOLDS) == 11
    assert WARPING_THRESHOLDS[3] == 0.30000000000000004
    assert WARPING_THRESHOLDS[-1] == 0.8999999999999999
    assert FSCORE_THRESHOLDS[-1] == 0.9999999999999999


def test_stack_pools_slices_like_concatenation():
    cases = dict(_cases())
    names = ["cut_membrane_merge", "spurious_membrane_split", "hole_in_cell"]
    truths, proposals = zip(*(_load(cases[n]) for n in names))
    stacked = isbi2012(np.stack(truths), np.stack(proposals))
    pooled = pool_isbi2012([isbi2012(t, p) for t, p in zip(truths, proposals)])
    assert stacked == pooled
    # pixel counts add up over slices: the stack's split+merger pixels are the sum of the slices'
    per_slice = [isbi2012(t, p).table for t, p in zip(truths, proposals)]
    for i in range(len(WARPING_THRESHOLDS)):
        assert stacked.table[i]["splits"] == sum(t[i]["splits"] for t in per_slice)
        assert stacked.table[i]["mergers"] == sum(t[i]["mergers"] for t in per_slice)


def _grid_truth(h=32, w=32):
    """Cells of 9x9 separated by 1-px membranes; returns uint8 0/255."""
    t = np.full((h, w), 255, np.uint8)
    t[::10, :] = 0
    t[:, ::10] = 0
    return t


def test_all_foreground_slice_is_classified_correctly():
    # Fiji blanks an all-foreground truth before labelling, so a membrane cutting the only cell in two
    # becomes "object additions" and no split. The right answer: the cut is a split.
    truth = np.full((20, 20), 255, np.uint8)
    proposal = np.ones((20, 20), np.float32)
    proposal[:, 10] = 0.0  # a full-height membrane splits the cell
    r = warping_error(truth, proposal, threshold=0.5, radius=20)
    assert r.splits > 0 and r.object_additions == 0
    assert r.splits + r.hole_deletions + r.hole_additions == r.mismatches
    s = isbi2012(truth, proposal)
    assert s.warping_error > 0  # Fiji reports 0 here


def test_slice_without_foreground_is_left_out_of_rand():
    truth = _grid_truth()
    proposal = (truth > 0).astype(np.float32)
    empty = np.zeros_like(truth)
    s = isbi2012(np.stack([truth, empty]), np.stack([proposal, np.zeros_like(proposal)]))
    assert s.rand_slices == 1 and s.n_slices == 2
    assert s.rand_error == pytest.approx(isbi2012(truth, proposal).rand_error, abs=1e-15)  # Fiji: 1.0
    assert s.rand_undefined_reason is None


def test_no_foreground_at_all_gives_nan_rand_with_reason():
    truth = np.zeros((16, 16), np.uint8)
    proposal = np.zeros((16, 16), np.float32)
    s = isbi2012(truth, proposal)
    assert math.isnan(s.rand_error) and math.isnan(s.rand_threshold)
    assert "no slice" in s.rand_undefined_reason
    assert s.pixel_error == 0.0 and s.warping_error == 0.0  # both empty: F = 1 by Fiji's convention
    assert math.isnan(rand_error(truth.astype(np.int32), truth.astype(np.int32)))


def test_more_than_65535_components_do_not_wrap():
    # 256 x 512 isolated single-pixel cells: 65,536 + components. Fiji's 16-bit labels wrap (65536
    # becomes background); with 32-bit labels every isolated pixel keeps its own object.
    h, w = 2 * 256 + 1, 2 * 512 + 1
    truth = np.zeros((h, w), np.uint8)
    truth[1::2, 1::2] = 1
    n_cells = int(truth.sum())
    assert n_cells > 65535
    # delete every cell: each leftover mismatch is an object deletion (one label, 0, around it)
    r = warping_error(truth, np.zeros((h, w), np.float32), threshold=0.5, radius=20)
    assert r.object_deletions == n_cells == r.mismatches
    assert r.cluster_counts["object_deletions"] == n_cells
    # join pairs of horizontally adjacent cells through the membrane: every bridge pixel merges two
    # distinct objects (with wrapped labels some pairs would look like one object)
    proposal = truth.astype(np.float32)
    proposal[1::2, 2:-1:4] = 1.0
    r = warping_error(truth, proposal, threshold=0.5, radius=20)
    bridges = int(np.count_nonzero(proposal[1::2, 2:-1:4]))
    assert r.mergers == bridges == r.mismatches
    assert int(np.count_nonzero(r.classification == ErrorType.MERGER)) == bridges


def test_mask_limits_warping_and_counting_like_fiji():
    cases = dict(_cases())
    truth, proposal = _load(cases["two_merges"])
    full = warping_error(truth, proposal)
    assert warping_error(truth, proposal, mask=np.zeros(truth.shape, bool)).mismatches == 0
    # only the left half is scored and may be warped: leftovers there, none on the right
    mask = np.zeros(truth.shape, bool)
    mask[:, : truth.shape[1] // 2] = True
    half = warping_error(truth, proposal, mask=mask)
    assert not half.classification[:, truth.shape[1] // 2 :].any()
    assert np.array_equal(half.warped[:, truth.shape[1] // 2 :], truth[:, truth.shape[1] // 2 :] > 0)
    assert half.error == half.mismatches / truth.size  # still divided by all pixels, as Fiji
    left_leftovers = int(np.count_nonzero(full.classification[:, : truth.shape[1] // 2]))
    assert half.mismatches >= left_leftovers
