"""Bad input to sdk.metrics raises InvalidInputError (a ValueError) whose message names the problem."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sdk import _core
from sdk.errors import InvalidInputError
from sdk.metrics import (
    adapted_rand_error,
    contingency_table,
    isbi2012,
    pixel_error,
    pool_isbi2012,
    rand_error,
    variation_of_information,
    warping_error,
)

T = np.ones((8, 8), np.uint8)
P = np.full((8, 8), 0.7, np.float32)
L = np.arange(64).reshape(8, 8)

IMAGE_METRICS = [
    pytest.param(lambda t, p: warping_error(t, p), id="warping_error"),
    pytest.param(lambda t, p: isbi2012(t, p), id="isbi2012"),
    pytest.param(lambda t, p: pixel_error(t, p), id="pixel_error"),
]
LABEL_METRICS = [
    pytest.param(lambda a, b: contingency_table(a, b), id="contingency_table"),
    pytest.param(lambda a, b: rand_error(a, b), id="rand_error"),
    pytest.param(lambda a, b: variation_of_information(a, b), id="variation_of_information"),
    pytest.param(lambda a, b: adapted_rand_error(a, b), id="adapted_rand_error"),
]


def raises(match):
    return pytest.raises(InvalidInputError, match=match)


def test_invalid_input_error_is_a_value_error():
    with pytest.raises(ValueError):
        warping_error(T, P[:4])


@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_shape_mismatch(metric):
    with raises(r"shape mismatch: truth has shape \(8, 8\), proposal has shape \(8, 7\)"):
        metric(T, P[:, :7])


@pytest.mark.parametrize("metric", LABEL_METRICS)
def test_label_shape_mismatch(metric):
    with raises("shape mismatch"):
        metric(L, L[:4])


@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_empty(metric):
    with raises("truth: empty array"):
        metric(np.zeros((0, 8), np.uint8), np.zeros((0, 8), np.float32))


@pytest.mark.parametrize("metric", LABEL_METRICS)
def test_empty_labels(metric):
    with raises("empty array"):
        metric(np.zeros((3, 0), np.int32), np.zeros((3, 0), np.int32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_non_finite_proposal(metric, bad):
    p = P.copy()
    p[3, 4] = bad
    with raises("proposal: contains NaN or Inf"):
        metric(T, p)


def test_nan_in_float_truth():
    t = T.astype(np.float64)
    t[0, 0] = np.nan
    with raises("truth: contains NaN or Inf"):
        warping_error(t, P)


@pytest.mark.parametrize("value", [-0.01, 1.5, 255.0])
@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_proposal_outside_unit_interval(metric, value):
    p = P.astype(np.float64)
    p[1, 1] = value
    with raises(r"proposal: values outside \[0, 1\]"):
        metric(T, p)


@pytest.mark.parametrize("bad, message", [(np.nan, "contains NaN or Inf"), (-0.5, r"values outside \[0, 1\] \(min -0.5, max 1\)")])
def test_isbi2012_finds_a_bad_value_in_any_slice_of_any_layout(bad, message):
    # isbi2012 validates the values inside the C++ sweep (per slice, with the thresholds): the bad value
    # sits in the last slice of a Fortran-ordered, strided stack
    t = np.ones((3, 9, 8), np.uint8)
    p = np.asfortranarray(np.linspace(0.0, 1.0, 3 * 9 * 8).reshape(3, 9, 8))[:, ::-1]
    p[2, 7, 5] = bad
    with raises(f"proposal: {message}"):
        isbi2012(t[:, ::-1], p)


@pytest.mark.parametrize("threads", [1, 2])
def test_isbi2012_reports_the_whole_range_of_bad_values(threads):
    # the sweep stops at the first slice with a bad value; the message still gives the stack's range
    t = np.ones((6, 8, 8), np.uint8)
    p = np.full((6, 8, 8), 0.5)
    p[0, 1, 1], p[5, 2, 2] = -0.25, 1.75
    with raises(r"proposal: values outside \[0, 1\] \(min -0.25, max 1.75\)"):
        isbi2012(t, p, threads=threads)


@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_integer_proposal_is_rejected_with_the_fix(metric):
    with raises(r"proposal: integer dtype uint8 is ambiguous.*probabilities of foreground in \[0, 1\]"):
        metric(T, (P * 255).astype(np.uint8))


@pytest.mark.parametrize("dtype", [np.float16, np.complex64])
def test_unsupported_proposal_dtype(dtype):
    with raises(f"proposal: unsupported dtype {np.dtype(dtype)}"):
        warping_error(T, P.astype(dtype))


@pytest.mark.parametrize("dtype", [np.complex128, np.float16])
def test_unsupported_truth_dtype(dtype):
    with raises(f"truth: unsupported dtype {np.dtype(dtype)}"):
        isbi2012(T.astype(dtype), P)


def test_unsupported_label_dtype():
    with raises("truth_labels: unsupported label dtype float64"):
        variation_of_information(L.astype(np.float64), L)
    with raises("truth_labels: unsupported label dtype object"):
        contingency_table(np.array([[None, 1]]), np.array([[1, 1]]))


@pytest.mark.parametrize("shape", [(64,), (2, 2, 4, 4)])
def test_wrong_ndim_2d_mode(shape):
    with raises(r"truth: expected a 2D image \(H, W\) or a stack \(Z, H, W\), got ndim="):
        warping_error(T.reshape(shape), P.reshape(shape))
    with raises("ndim="):
        isbi2012(T.reshape(shape), P.reshape(shape))


def test_wrong_ndim_3d_mode():
    with raises(r"mode='3d' needs a 3D volume \(Z, H, W\), got ndim=2"):
        warping_error(T, P, mode="3d")


def test_bad_options():
    with raises("mode: must be one of '2d', '3d', got '2.5d'"):
        warping_error(T, P, mode="2.5d")
    with raises(r"threshold: must be in \[0, 1\], got 1.2"):
        warping_error(T, P, threshold=1.2)
    with raises("threshold: must be a number"):
        pixel_error(T, P, threshold="half")
    with raises("radius: must be an integer"):
        warping_error(T, P, radius=2.5)
    with raises(r"threads: must be >= 1 \(or None / 0 for every core\), got -1"):
        isbi2012(T, P, threads=-1)
    with raises(r"shape mismatch: mask has shape \(4, 8\)"):
        warping_error(T, P, mask=np.ones((4, 8), bool))
    with raises("mask: unsupported dtype float32"):
        warping_error(T, P, mask=np.ones((8, 8), np.float32))


def test_too_large_for_scan_positions():
    # 3 x 65537 x 10000 has < 2^32 pixels, but its coordinates need 2 + 17 + 14 bits
    truth = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(3, 65537, 10000), strides=(0, 0, 0))
    proposal = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(3, 65537, 10000), strides=(0, 0, 0))
    with raises(r"truth: a volume of shape \(3, 65537, 10000\) is too large"):
        warping_error(truth, proposal, mode="3d")


def test_pool_needs_results():
    with raises("no results to pool"):
        pool_isbi2012([])
    with raises("expected ISBIResult items, got dict"):
        pool_isbi2012([{"warping_error": 0.0}])


def test_table_argument_is_checked():
    with raises("give truth_labels and proposal_labels, or table="):
        rand_error(L)
    with raises("table: expected a ContingencyTable"):
        adapted_rand_error(table={"counts": [1]})


def test_everything_ignored():
    with raises("no truth pixels left"):
        adapted_rand_error(np.zeros((4, 4), np.int32), L[:4, :4])


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(
        st.sampled_from([np.float32, np.float64]),
        st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 70)),
        elements=st.sampled_from([0.0, 0.25, 1.0, -0.0, -1e-7, 1.0000001, 2.0, np.nan, np.inf, -np.inf]),
    ),
    order=st.sampled_from(["C", "F"]),
    threads=st.integers(1, 3),
)
def test_probability_check_agrees_with_numpy(values, order, threads):
    # the fast C++ check (None: all values in [0, 1]) and the summary it returns otherwise, against numpy,
    # on C- and Fortran-ordered stacks
    a = np.asarray(values, order=order)
    violation = _core.probability_violation(a, threads)
    inside = bool(np.all((a >= 0) & (a <= 1)))
    assert (violation is None) == inside
    if violation is not None:
        finite = bool(np.all(np.isfinite(a)))
        real = a[~np.isnan(a)]
        assert violation[0] == finite
        if real.size:
            assert (violation[1], violation[2]) == (float(real.min()), float(real.max()))
