"""A bounded, seeded fuzz of every public metric (issue 11): random dtypes (byte orders included), shapes,
layouts, values (NaN, Inf, out of range) and thread counts. Each call must return a valid result or raise
InvalidInputError, never another exception; a valid result must equal the result on contiguous native
copies with one thread."""
from __future__ import annotations

import math

import numpy as np
import pytest

import sdk.metrics as m
from sdk.errors import InvalidInputError
from test_metrics_hardening import LAYOUTS, outcome

CASES = 300
DTYPES = ["?", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8", ">u2", ">i4", ">i8", ">f4", ">f8",
          "c8", "U1", "M8[s]"]
SHAPES = [(), (0,), (7,), (1, 1), (3, 4), (5, 9), (2, 3, 4), (1, 6, 5), (2, 1, 3, 4), (0, 4)]
THREADS = [None, 0, 1, 2, 3, 7, 40000, -1, 2**33, 1.5, True]


# Half the cases draw from what each argument accepts, so that most of them reach the core.
PLAUSIBLE = {
    "labels": ["?", "u1", "u2", "i2", "i4", "i8", "u8", ">i2", ">u4", ">i8"],
    "probabilities": ["?", "f4", "f8", ">f4", ">f8"],
}
PLAUSIBLE_SHAPES = [(3, 4), (5, 9), (2, 3, 4), (1, 6, 5), (9,)]
PLAUSIBLE_THREADS = [None, 0, 1, 2, 3, 7, 40000]
PROBABILITY_METRICS = ("warping_error", "isbi2012", "pixel_error")


def random_array(rng: np.random.Generator, shape: tuple, plausible: str = "") -> np.ndarray:
    choices = PLAUSIBLE[plausible] if plausible else DTYPES
    dtype = np.dtype(choices[rng.integers(len(choices))])
    kind = rng.integers(4) if not plausible else rng.integers(3)
    if dtype.kind in "fc":
        values = rng.random(shape) if kind < 2 else rng.integers(-3, 4, shape)
        a = np.asarray(values).astype(dtype)
        if kind == 3 and a.size:
            a.flat[rng.integers(a.size)] = [np.nan, np.inf, -np.inf, 1.5][rng.integers(4)]
    elif dtype.kind in "biu":
        a = np.asarray(rng.integers(0, 2 if dtype.kind == "b" else 5, shape)).astype(dtype)
        if kind == 3 and a.size and dtype.kind != "b":
            info = np.iinfo(dtype)
            a.flat[rng.integers(a.size)] = [info.min, info.max][rng.integers(2)]
    else:
        a = np.zeros(shape, dtype)
    if rng.integers(3) == 0 and a.ndim and a.size:
        a = LAYOUTS[sorted(LAYOUTS)[rng.integers(len(LAYOUTS))]](a)
    return a


def native_copy(x):
    if not isinstance(x, np.ndarray):
        return x
    return np.ascontiguousarray(x.astype(x.dtype.newbyteorder("=")))


def check_valid(name: str, result, truth, proposal) -> None:
    """Properties every result of `name` has, whatever the input."""
    def unit(x):
        return math.isnan(x) or 0.0 <= x <= 1.0 + 1e-12

    if name == "warping_error":
        assert unit(result.error) and sum(result.counts.values()) == result.mismatches
        assert result.warped.shape == result.classification.shape == np.shape(truth)
    elif name == "isbi2012":
        assert unit(result.warping_error) and unit(result.rand_error) and unit(result.pixel_error)
    elif name == "pixel_error":
        assert unit(result)
    elif name == "contingency_table":
        assert result.total == np.size(truth) and int(result.counts.sum()) == result.total
    elif name == "variation_of_information":
        assert result.split >= 0 and result.merge >= 0
    elif name in ("rand_error",):
        assert unit(result)
    elif name == "adapted_rand_error":
        assert unit(result.error)
    elif name == "label_components":
        assert result.shape == np.shape(truth) and result.dtype == np.uint32
        np.testing.assert_array_equal(result > 0, np.asarray(truth) > 0)


CALLS = {
    "warping_error": lambda t, p, threads: m.warping_error(t, p, threads=threads, radius=2),
    "isbi2012": lambda t, p, threads: m.isbi2012(t, p, threads=threads),
    "pixel_error": lambda t, p, threads: m.pixel_error(t, p),
    "contingency_table": lambda t, p, threads: m.contingency_table(t, p, threads=threads),
    "rand_error": lambda t, p, threads: m.rand_error(t, p, threads=threads),
    "variation_of_information": lambda t, p, threads: m.variation_of_information(t, p, threads=threads),
    "adapted_rand_error": lambda t, p, threads: m.adapted_rand_error(t, p, threads=threads),
    "label_components": lambda t, p, threads: m.label_components(t, connectivity="full" if p is None else "face"),
}


@pytest.mark.parametrize("seed", range(3))
def test_metrics_fuzz(seed):
    rng = np.random.default_rng(seed)
    names = sorted(CALLS)
    valid = 0
    for _ in range(CASES // 3):
        name = names[rng.integers(len(names))]
        if rng.integers(2):  # plausible arguments
            shape = PLAUSIBLE_SHAPES[rng.integers(len(PLAUSIBLE_SHAPES))]
            truth = random_array(rng, shape, "labels")
            proposal = random_array(rng, shape, "probabilities" if name in PROBABILITY_METRICS else "labels")
            threads = PLAUSIBLE_THREADS[rng.integers(len(PLAUSIBLE_THREADS))]
        else:
            shape = SHAPES[rng.integers(len(SHAPES))]
            truth = random_array(rng, shape)
            proposal = random_array(rng, shape if rng.integers(8) else SHAPES[rng.integers(len(SHAPES))])
            threads = THREADS[rng.integers(len(THREADS))]
        try:
            result = CALLS[name](truth, proposal, threads)
        except InvalidInputError:
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{name}({truth.dtype}{truth.shape}, {proposal.dtype}{proposal.shape}, threads={threads!r}) "
                        f"raised {type(exc).__name__}: {exc}")
        valid += 1
        check_valid(name, result, truth, proposal)
        again = outcome(CALLS[name], native_copy(truth), native_copy(proposal), 1)
        assert outcome(lambda: result) == again, (name, truth.dtype, truth.shape, threads)
    assert valid >= CASES // 10  # the fuzz reaches the metrics, not only the input checks
