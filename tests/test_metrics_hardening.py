"""sdk.metrics on hostile inputs and settings (issue 11): any byte order, offset, stride, read-only or
broadcast array gives the result of the contiguous native array; absurd thread counts, rows too wide for
the core and unsupported dtypes are typed errors or bounded work; scratch memory kept between calls is
bounded and can be released."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sdk.metrics as m
from conftest import TESTS_DIR, subprocess_env
from sdk import _core
from sdk.errors import InvalidInputError


# ---------------------------------------------------------------------------------------------------
# Layouts: the same values in another memory representation.


def big_endian(a: np.ndarray) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder(">"))


def unaligned(a: np.ndarray) -> np.ndarray:
    """A copy starting one byte into its buffer (misaligned for every itemsize > 1)."""
    out = np.ndarray(a.shape, a.dtype, buffer=bytearray(a.nbytes + 1), offset=1)
    out[...] = a
    return out


def negative_strides(a: np.ndarray) -> np.ndarray:
    flip = (slice(None, None, -1),) * a.ndim
    return np.ascontiguousarray(a[flip])[flip]


def read_only(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flags.writeable = False
    return out


LAYOUTS = {
    "big-endian": big_endian,
    "unaligned": unaligned,
    "negative strides": negative_strides,
    "read-only": read_only,
    "fortran": np.asfortranarray,
    "big-endian unaligned reversed": lambda a: negative_strides(unaligned(big_endian(a))),
}


def canonical(x):
    """A comparable form of a metric's result (arrays as bytes + dtype, NaN as a string)."""
    if isinstance(x, np.ndarray):
        return ("array", x.shape, np.dtype(x.dtype).newbyteorder("=").str, np.ascontiguousarray(x).tobytes())
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if isinstance(x, dict):
        return {k: canonical(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x).__name__, [canonical(v) for v in x]
    if hasattr(x, "__dataclass_fields__"):
        return type(x).__name__, {k: canonical(getattr(x, k)) for k in x.__dataclass_fields__}
    return x


def outcome(fn, *args, **kwargs):
    """canonical(fn(...)), or the typed error it raised (the same input must fail the same way)."""
    try:
        return canonical(fn(*args, **kwargs))
    except InvalidInputError as exc:
        return "InvalidInputError", str(exc)


LABEL_METRICS = {
    "contingency_table": lambda t, p, **kw: m.contingency_table(t, p, **kw),
    "rand_error": lambda t, p, **kw: m.rand_error(t, p, **kw),
    "variation_of_information": lambda t, p, **kw: m.variation_of_information(t, p, **kw),
    "adapted_rand_error": lambda t, p, **kw: m.adapted_rand_error(t, p, **kw),
}
PROBABILITY_METRICS = {
    "isbi2012": lambda t, p, **kw: m.isbi2012(t, p, **kw),
    "warping_error": lambda t, p, **kw: m.warping_error(t, p, radius=3, **kw),
    "pixel_error": lambda t, p, **kw: m.pixel_error(t, p),
}

label_dtypes = st.sampled_from([np.uint8, np.int16, np.uint16, np.int32, np.int64, np.uint64])
shapes = st.tuples(st.integers(1, 9), st.integers(1, 11))


@st.composite
def label_pairs(draw):
    shape = draw(shapes)
    dt_t, dt_p = draw(label_dtypes), draw(label_dtypes)
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    info_t, info_p = np.iinfo(dt_t), np.iinfo(dt_p)
    values_t = rng.integers(info_t.min, info_t.max, size=n, dtype=dt_t, endpoint=True)
    values_p = rng.integers(info_p.min, info_p.max, size=n, dtype=dt_p, endpoint=True)
    return values_t[rng.integers(0, n, shape)], values_p[rng.integers(0, n, shape)]


@st.composite
def probability_pairs(draw):
    shape = draw(shapes)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    truth = rng.integers(-3, 4, shape).astype(draw(st.sampled_from([np.int16, np.int32, np.float32, np.float64])))
    proposal = (rng.integers(0, 11, shape) / 10).astype(draw(st.sampled_from([np.float32, np.float64])))
    return truth, proposal


FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


METRICS_AND_INPUTS = {name: (fn, label_pairs()) for name, fn in LABEL_METRICS.items()}
METRICS_AND_INPUTS.update({name: (fn, probability_pairs()) for name, fn in PROBABILITY_METRICS.items()})


@settings(FAST, max_examples=60)
@given(data=st.data(), layout=st.sampled_from(sorted(LAYOUTS)), metric=st.sampled_from(sorted(METRICS_AND_INPUTS)))
def test_metrics_equal_across_layouts(data, layout, metric):
    fn, inputs = METRICS_AND_INPUTS[metric]
    truth, proposal = data.draw(inputs)
    expected = outcome(fn, truth, proposal, threads=1)
    to = LAYOUTS[layout]
    assert outcome(fn, to(truth), to(proposal), threads=2) == expected


@FAST
@given(pair=probability_pairs(), layout=st.sampled_from(sorted(LAYOUTS)), full=st.booleans())
def test_label_components_equal_across_layouts(pair, layout, full):
    mask = pair[0]
    connectivity = "full" if full else "face"
    expected = m.label_components(mask, connectivity=connectivity)
    np.testing.assert_array_equal(m.label_components(LAYOUTS[layout](mask), connectivity=connectivity), expected)


@FAST
@given(row_t=st.lists(st.integers(-2, 3), min_size=1, max_size=12), row_p=st.lists(st.integers(0, 10), min_size=1, max_size=12),
       height=st.integers(1, 6))
def test_broadcast_inputs_equal_their_copies(row_t, row_p, height):
    width = min(len(row_t), len(row_p))
    truth = np.broadcast_to(np.array(row_t[:width], np.int32), (height, width))
    proposal = np.broadcast_to((np.array(row_p[:width]) / 10).astype(np.float32), (height, width))
    dense_t, dense_p = truth.copy(), proposal.copy()
    for fn in PROBABILITY_METRICS.values():
        assert outcome(fn, truth, proposal, threads=2) == outcome(fn, dense_t, dense_p, threads=1)
    for fn in LABEL_METRICS.values():
        assert outcome(fn, truth, truth[::-1], threads=2) == outcome(fn, dense_t, dense_t[::-1].copy(), threads=1)
    np.testing.assert_array_equal(m.label_components(truth), m.label_components(dense_t))


def test_big_endian_label_components_reproducer():
    # issue 11: '>i2' read as native gave [[0, 0, 1, 1]]; 128 and 1 are foreground, -256 and 0 are not
    labels = m.label_components(np.array([[0, 128, -256, 1]], dtype=">i2"))
    np.testing.assert_array_equal(labels, [[0, 1, 0, 2]])


def test_evaluate_reads_big_endian_npy(tmp_path):
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, (3, 24, 24)).astype(np.uint16)
    proposal = rng.random((3, 24, 24)).astype(np.float32)
    counts = rng.integers(0, 65536, (3, 24, 24)).astype(np.uint16)  # uint16 probabilities, rescaled
    for name, t, p in (("native", truth, proposal), ("big", big_endian(truth), big_endian(proposal))):
        np.save(tmp_path / f"{name}_truth.npy", t)
        np.save(tmp_path / f"{name}_proposal.npy", p)
        np.save(tmp_path / f"{name}_counts.npy", counts if name == "native" else big_endian(counts))
    assert np.load(tmp_path / "big_truth.npy").dtype.str == ">u2"
    reports = {}
    for name in ("native", "big"):
        reports[name] = [
            m.evaluate(str(tmp_path / f"{name}_truth.npy"), str(tmp_path / f"{name}_{side}.npy"), progress=False,
                       workers=1, metrics=("isbi2012", "warping", "vi", "adapted_rand"),
                       proposal_kind="probabilities")
            for side in ("proposal", "counts")
        ]
    for native, big in zip(reports["native"], reports["big"]):
        assert not native.failures and not big.failures
        assert len(big.items) == 3
        assert canonical([(i.scores, i.table) for i in big.items]) == canonical([(i.scores, i.table) for i in native.items])


# ---------------------------------------------------------------------------------------------------
# Threads


def run_python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    # a fixed mmap threshold: memory figures then show what the code holds, not glibc's heap retention
    # (its threshold otherwise grows to the size of freed buffers, up to 32 MB, which then stay in the heap)
    env = subprocess_env(MALLOC_MMAP_THRESHOLD_="1048576")
    return subprocess.run([sys.executable, "-c", code], cwd=TESTS_DIR, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_many_threads_never_terminate_the_process():
    # issue 11: threads=40000 aborted the process ("terminate called without an active exception")
    code = """
import numpy as np, sdk.metrics as m
a = np.zeros((1024, 512), np.int32)
b = (np.arange(a.size).reshape(a.shape) // 777).astype(np.int32)
for fn in (m.contingency_table, m.rand_error, m.variation_of_information, m.adapted_rand_error):
    many, one = fn(b + 1, b // 3, threads=40000), fn(b + 1, b // 3, threads=1)
    assert repr(many) == repr(one), fn.__name__
print("ok")
"""
    proc = run_python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_threads_are_validated():
    t, p = np.ones((8, 8), np.uint8), np.full((8, 8), 0.7, np.float32)
    calls = [
        lambda threads: m.isbi2012(t, p, threads=threads),
        lambda threads: m.warping_error(t, p, threads=threads),
        lambda threads: m.contingency_table(t, t, threads=threads),
        lambda threads: m.variation_of_information(t, t, threads=threads),
        lambda threads: m.variation_of_information(table=m.contingency_table(t, t), threads=threads),
    ]
    for call in calls:
        for bad in (2**33, m.MAX_THREADS + 1, -1, True, 1.5, "2"):
            with pytest.raises(InvalidInputError, match="threads"):
                call(bad)
        assert canonical(call(0)) == canonical(call(None)) == canonical(call(m.MAX_THREADS)) == canonical(call(1))


def test_huge_thread_counts_cost_no_memory_per_requested_thread():
    # issue 11: isbi2012 with threads=10**7 made a workspace per requested thread (28 s, 14 GB; 10**6:
    # 1.5 GB). Threads started are capped by the work (13 tasks here) and the cores.
    code = """
import json, numpy as np, sdk.metrics as m
from peak_memory import measure
t, p = np.ones((64, 64), np.uint8), np.full((64, 64), 0.7, np.float32)
m.isbi2012(t, p, threads=1)  # loads what a first call loads
r, many = measure(lambda: m.isbi2012(t, p, threads=m.MAX_THREADS))
print(json.dumps(many))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout)
    assert figures["peak_above_before"] < 32 * 2**20
    assert _core.max_threads() == 2 * (os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------------
# Sizes and dtypes the core cannot take


def test_rows_wider_than_the_core_takes_are_refused():
    # issue 11: rows of 2^31 + 1 pixels were labelled all zeros
    wide = np.broadcast_to(True, (1, 2**31 + 1))
    with pytest.raises(InvalidInputError, match="too wide"):
        m.label_components(wide)
    with pytest.raises(InvalidInputError, match="too wide"):
        m.isbi2012(wide, np.broadcast_to(np.float32(0.5), wide.shape))
    with pytest.raises(InvalidInputError, match="too wide"):
        m.warping_error(wide, np.broadcast_to(False, wide.shape))


def test_stacks_with_more_runs_than_ids_are_refused():
    # 2^24 rows of 1024 pixels may hold 2^33 runs: run ids are 32-bit (nothing is allocated: broadcast)
    with pytest.raises(InvalidInputError, match="label it in parts"):
        m.label_components(np.broadcast_to(True, (2**12, 2**12, 2**10)))


def test_label_images_larger_than_the_table_takes_are_refused():
    # runs and label ids are 32-bit (broadcast: nothing is allocated)
    huge = np.broadcast_to(np.int64(3), (2**16, 2**16 + 1))
    for fn in (m.contingency_table, m.variation_of_information, m.adapted_rand_error, m.rand_error):
        with pytest.raises(InvalidInputError, match="score the images in parts"):
            fn(huge, huge)


def test_unsupported_mask_dtype_and_radius_are_typed_errors():
    with pytest.raises(InvalidInputError, match="float16.*astype"):
        m.label_components(np.zeros((4, 4), np.float16))
    t, p = np.ones((8, 8), np.uint8), np.full((8, 8), 0.7, np.float32)
    with pytest.raises(InvalidInputError, match="radius: must be between"):
        m.warping_error(t, p, radius=2**40)
    # a radius of an image side or more means the whole image, as radius=0 does
    huge, whole = m.warping_error(t, p, radius=2**31 - 1), m.warping_error(t, p, radius=0)
    assert canonical((huge.counts, huge.warped, huge.classification)) == canonical(
        (whole.counts, whole.warped, whole.classification))


# ---------------------------------------------------------------------------------------------------
# Memory kept between calls

CACHE_BOUND = 96 * 2**20 * max(2, os.cpu_count() or 1)  # kMaxCachedContingencyBytes per hardware thread


def test_contingency_scratch_kept_is_bounded_and_released():
    rng = np.random.default_rng(1)
    a = rng.integers(-2**62, 2**62, (1200, 1200), dtype=np.int64)
    b = rng.integers(0, 2**40, (1200, 1200), dtype=np.int64)
    small = rng.integers(0, 50, (64, 64))
    m.variation_of_information(small, small[::-1])
    assert 0 < _core.contingency_cache_bytes() <= CACHE_BOUND
    m.variation_of_information(a, b)
    m.contingency_table(a, b, threads=3)
    assert _core.contingency_cache_bytes() <= CACHE_BOUND
    m.release_memory()
    assert _core.contingency_cache_bytes() == 0


def test_vi_memory_peak_and_what_stays_after_the_call():
    # issue 11: VI on random int64 labels peaked at 9.5x the inputs' bytes and kept 5x them afterwards
    code = """
import json, numpy as np, sdk.metrics as m
from peak_memory import measure, resident_bytes
rng = np.random.default_rng(0)
a = rng.integers(-2**62, 2**62, (1536, 1536), dtype=np.int64)
b = rng.integers(-2**62, 2**62, (1536, 1536), dtype=np.int64)
m.variation_of_information(a[:8, :8], b[:8, :8])  # loads what a first call loads
r, f = measure(lambda: m.variation_of_information(a, b, threads=2))
m.release_memory()
f["after_release"] = resident_bytes() - f["before"]
f["inputs"] = a.nbytes + b.nbytes
print(json.dumps(f))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    f = json.loads(proc.stdout)
    slack = 8 * 2**20  # allocator arenas, Python objects
    assert f["peak_above_before"] <= 3 * f["inputs"] + slack
    assert f["held_after"] <= CACHE_BOUND + slack
    assert f["after_release"] <= slack
