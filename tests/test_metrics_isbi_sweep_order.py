"""The ISBI sweep's per-threshold warping counts against the pure-numpy reference on maps built to stress
the mismatch order that the sweep derives from one sort per slice (csrc/include/unetsdk/sweep_order.hpp).

Values sit exactly on the sweep's thresholds, one float32 step either side of them, 1e-12 and 3e-12 either
side (float64 maps: same float32, different side of the threshold, and on one side different keys in
scan order or not), at 8-bit levels, and at tiny values
whose keys |p - th| differ in float64 but tie in float32 (ties Fiji breaks by column-major scan order).
The reference (tests/reference_warping.py) warps every threshold on its own with a stable sort of freshly
computed keys, as Fiji does.
"""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_warping as ref
from sdk.metrics import isbi2012

SCALE = int(os.environ.get("UNETSDK_PROPERTY_EXAMPLES", "0"))


def _pool() -> np.ndarray:
    values = [0.0, 1.0]
    for th in ref.FSCORE_THRESHOLDS:
        f = np.float32(th)
        values += [th, float(f), float(np.nextafter(f, np.float32(-1))), float(np.nextafter(f, np.float32(2))),
                   th - 1e-12, th + 1e-12, th - 3e-12, th + 3e-12]
    values += [k / 255 for k in range(0, 256, 17)] + [k * 1e-9 for k in range(1, 6)]
    return np.clip(np.array(values), 0.0, 1.0)


POOL = _pool()


@st.composite
def sweep_pairs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    depth, h, w = draw(st.integers(1, 2)), draw(st.integers(4, 16)), draw(st.integers(4, 16))
    truth = rng.random((depth, h, w)) < draw(st.sampled_from([0.3, 0.6, 0.85]))
    # mostly the truth's side, so mismatches are a minority as in real maps; the rest from the pool
    picks = rng.choice(POOL, size=truth.shape)
    near = np.where(truth, rng.choice(POOL[POOL > 0.5], size=truth.shape), rng.choice(POOL[POOL < 0.5], size=truth.shape))
    proposal = np.where(rng.random(truth.shape) < draw(st.sampled_from([0.2, 0.5, 1.0])), picks, near)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return truth.astype(np.uint8) * 255, proposal.astype(dtype)


def assert_same_warping_rows(truth, proposal):
    got = list(isbi2012(truth, proposal).table)
    expected = ref.isbi2012(truth, proposal)["warping_rows"]
    for row, want in zip(got, expected):
        assert row["threshold"] == want["threshold"]
        assert (row["splits"], row["mergers"]) == (want["splits"], want["mergers"]), (row["threshold"], proposal.dtype)


@settings(max_examples=SCALE or 40, deadline=None, derandomize=not SCALE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pair=sweep_pairs())
def test_sweep_warping_counts_equal_the_reference_at_every_threshold(pair):
    assert_same_warping_rows(*pair)


def test_float64_values_sharing_a_float32_with_the_threshold_fall_on_their_own_side():
    # 0.5 +- 1e-12 round to float32(0.5): above and below the threshold 0.5 in float64, and their keys
    # (1e-12 in both cases) tie with each other and with nothing else; a bridge of such values decides
    # whether the warped truth splits.
    rng = np.random.default_rng(5)
    truth = np.zeros((12, 12), np.uint8)
    truth[2:10, 2:10] = 255
    proposal = np.where(truth > 0, 0.9, 0.1)
    proposal[6, 1:11] = rng.choice([0.5 - 1e-12, 0.5 + 1e-12, 0.5], size=10)
    proposal[1:11, 6] = rng.choice([0.5 - 1e-12, 0.5 + 1e-12, 0.5], size=10)
    assert_same_warping_rows(truth, proposal.astype(np.float64))
    assert_same_warping_rows(truth, proposal.astype(np.float32))


def test_scratch_reused_across_calls_of_other_sizes_changes_nothing():
    # the C++ core keeps sweep workspaces between calls (scratch_cache.hpp): a call after calls on
    # images of other sizes and thread counts must score as on a fresh workspace (the reference)
    rng = np.random.default_rng(7)
    shapes = [(2, 40, 56), (1, 13, 9), (3, 24, 31), (1, 40, 56)]
    pairs = []
    for shape in shapes:
        truth = (rng.random(shape) < 0.7).astype(np.uint8)
        proposal = np.where(truth > 0, rng.choice(POOL[POOL > 0.3], size=shape), rng.choice(POOL[POOL < 0.7], size=shape))
        pairs.append((truth, proposal))
    first = [isbi2012(t, p, threads=threads).table for (t, p), threads in zip(pairs, [2, 1, 3, 1])]
    again = [isbi2012(t, p, threads=threads).table for (t, p), threads in zip(reversed(pairs), [1, 2, 1, 3])]
    assert first == list(reversed(again))
    for truth, proposal in pairs:
        assert_same_warping_rows(truth, proposal)
