"""sdk.tiling: tile plans, mirror padding, blend weights and both merging strategies, against numpy."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.errors import InvalidInputError
from sdk.tiling import (
    BlendMerger,
    CropMerger,
    blend_weights,
    extract_tile,
    make_merger,
    plan_axis,
    plan_tiles,
    reflect_indices,
    validate_choice,
)


@dataclass(frozen=True)
class Rule:
    """A U-Net size rule: sides ``n >= min_input_size`` with ``(n - offset) % multiple == 0``."""

    input_size_multiple: int
    output_margin: int
    input_size_offset: int = 0
    min_input_size: int = 1

    def is_valid_input_size(self, n: int) -> bool:
        return n >= self.min_input_size and (n - self.input_size_offset) % self.input_size_multiple == 0

    def valid_input_size_at_least(self, n: int) -> int:
        n = max(n, self.min_input_size)
        return n + (self.input_size_offset - n) % self.input_size_multiple


rules = st.builds(
    lambda mult_exp, margin, offset_frac, min_size: Rule(
        2**mult_exp, margin, int(offset_frac * 2**mult_exp) % 2**mult_exp, min_size
    ),
    st.integers(0, 4),
    st.integers(0, 20),
    st.floats(0, 0.99),
    st.integers(1, 40),
)


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 60), start=st.integers(-200, 100), length=st.integers(1, 150)
)
def test_reflect_indices_match_numpy_pad(n, start, length):
    data = np.arange(n) * 10 + 3
    pad = max(0, -start, start + length - n)
    padded = np.pad(data, pad, mode="reflect") if n > 1 else np.full(n + 2 * pad, data[0])
    expected = padded[start + pad : start + pad + length]
    assert np.array_equal(data[reflect_indices(start, start + length, n)], expected)


@settings(max_examples=150, deadline=None)
@given(
    rule=rules,
    size=st.integers(1, 700),
    tile=st.integers(1, 300),
    overlap=st.floats(0, 0.95),
    merge=st.sampled_from(["none", "gaussian", "constant"]),
)
def test_axis_plan_covers_every_pixel_on_the_pooling_grid(rule, size, tile, overlap, merge):
    plan = plan_axis(size, rule, tile=tile, overlap=overlap, merge=merge)
    m = rule.output_margin
    assert rule.is_valid_input_size(plan.input_size)
    assert plan.output_size == plan.input_size - 2 * m >= 1
    starts = np.array(plan.starts)
    # starts on the pooling grid (the whole image's), increasing, no gap between tile outputs
    assert np.all(starts % rule.input_size_multiple == 0)
    assert starts[0] == 0 and np.all(np.diff(starts) > 0)
    assert np.all(np.diff(starts) <= plan.output_size)
    assert starts[-1] + plan.output_size >= size
    covered = np.zeros(size, dtype=int)
    for lo, hi in plan.keep:
        covered[lo:hi] += 1
    if merge == "none":
        # kept windows partition the axis and lie inside their tile's output
        assert np.all(covered == 1)
        for s, (lo, hi) in zip(plan.starts, plan.keep):
            assert s <= lo < hi <= s + plan.output_size
    else:
        assert np.all(covered >= 1)
        assert all(hi == min(s + plan.output_size, size) for s, (_, hi) in zip(plan.starts, plan.keep))
    # the last tile is flush with the padded border, and the padded input is an accepted size
    padded_in = starts[-1] + plan.input_size
    assert rule.is_valid_input_size(padded_in)
    assert padded_in - 2 * m - size < rule.input_size_multiple or len(starts) == 1


def test_axis_plan_matches_monai_scan_for_accepted_sizes():
    # MONAI dense_patch_slices: 2048 px, roi 256, overlap 0.25 -> interval 192, last start flush at 1792
    plan = plan_axis(2048, Rule(16, 0), tile=256, overlap=0.25, merge="gaussian")
    assert plan.starts == tuple(range(0, 1792, 192)) + (1792,)
    assert plan.input_size == plan.output_size == 256


def test_overlap_tile_shrinks_tiles_to_cover_without_waste():
    # 2048 px, tiles of 1024 sharing 64 px: three tiles are needed, and 736 px each suffice
    plan = plan_axis(2048, Rule(16, 0), tile=1024, overlap=0.0625, merge="none")
    assert plan.input_size == 736 and plan.starts == (0, 672, 1312)
    assert plan.keep == ((0, 704), (704, 1360), (1360, 2048))  # the middles of the overlaps


def test_small_image_becomes_one_padded_tile():
    plan = plan_axis(37, Rule(16, 0), tile=512, overlap=0.25, merge="gaussian")
    assert plan.starts == (0,) and plan.input_size == 48 and plan.keep == ((0, 37),)
    valid = plan_axis(5, Rule(2, 3, min_input_size=8), tile=512, overlap=0, merge="none")
    assert valid.starts == (0,) and valid.input_size == 12 and valid.output_size == 6


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    channels=st.integers(1, 3),
    margin=st.integers(0, 6),
    tile=st.integers(1, 24),
)
def test_extract_tile_equals_slicing_a_reflect_padded_image(shape, channels, margin, tile):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (channels,) + shape)
    plan = plan_tiles(shape, Rule(2, margin), tile=tile, overlap=0.25, merge="constant")
    pad = max(plan.input_shape) + max(shape)
    padded = np.stack([np.pad(c, pad, mode="reflect") if min(shape) > 1 else _pad_flat(c, pad) for c in image])
    for t in plan:
        lo = [s - margin + pad for s in t.out_start]
        expected = padded[(slice(None),) + tuple(slice(a, a + n) for a, n in zip(lo, plan.input_shape))]
        assert np.array_equal(extract_tile(image, plan, t), expected)


def _pad_flat(channel: np.ndarray, pad: int) -> np.ndarray:
    """numpy cannot reflect a length-1 axis; mirroring one pixel repeats it."""
    widths = [(pad, pad)] * channel.ndim
    modes = [("edge" if n == 1 else "reflect") for n in channel.shape]
    out = channel
    for axis, mode in enumerate(modes):
        w = [(0, 0)] * channel.ndim
        w[axis] = widths[axis]
        out = np.pad(out, w, mode=mode)
    return out


def test_gaussian_weights_follow_monai_formula():
    w = blend_weights((9, 16), "gaussian")
    y = np.arange(9) - 4.0
    x = np.arange(16) - 7.5
    ref = np.outer(np.exp(-(y**2) / (2 * (9 / 8) ** 2)), np.exp(-(x**2) / (2 * (16 / 8) ** 2)))
    ref = np.maximum(ref, max(ref.min(), 1e-3))
    np.testing.assert_allclose(w, ref, rtol=1e-6)
    assert w.dtype == np.float32 and w.max() == pytest.approx(ref.max(), rel=1e-6)
    assert np.array_equal(blend_weights((3, 4, 5), "constant"), np.ones((3, 4, 5), np.float32))


def test_gaussian_weights_equal_monai_importance_map():
    torch = pytest.importorskip("torch")
    monai_utils = pytest.importorskip("monai.data.utils")
    for shape in [(64, 64), (40, 96), (16, 24, 32)]:
        ref = monai_utils.compute_importance_map(shape, mode="gaussian", sigma_scale=0.125, device="cpu")
        np.testing.assert_allclose(blend_weights(shape, "gaussian"), ref.to(torch.float32).numpy(), rtol=1e-5)


def _merge(plan, channels, outputs):
    out = np.full((channels,) + plan.shape, np.nan, dtype=np.float32)

    def write(window, values):
        assert np.all(np.isnan(out[(slice(None),) + window])), "a window was written twice"
        out[(slice(None),) + window] = values

    merger = make_merger(plan, channels, write)
    for t, o in zip(plan, outputs):
        merger.add(t, o)
    merger.close()
    return out


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 50), min_size=2, max_size=3).map(tuple),
    tile=st.integers(2, 20),
    overlap=st.floats(0, 0.8),
    mode=st.sampled_from(["gaussian", "constant"]),
    margin=st.integers(0, 3),
)
def test_streaming_blend_equals_whole_image_weighted_average(shape, tile, overlap, mode, margin):
    """The band-streaming merger against the textbook sum(w p) / sum(w) over a full-size buffer."""
    rng = np.random.default_rng(1)
    plan = plan_tiles(shape, Rule(2, margin), tile=tile, overlap=overlap, merge=mode)
    outputs = [rng.random((2,) + plan.output_shape, dtype=np.float32) for _ in range(len(plan))]
    w = blend_weights(plan.output_shape, mode).astype(np.float64)
    extent = tuple(a.starts[-1] + a.output_size for a in plan.axes)
    total = np.zeros((2,) + extent)
    norm = np.zeros(extent)
    for t, o in zip(plan, outputs):
        region = tuple(slice(s, s + n) for s, n in zip(t.out_start, plan.output_shape))
        total[(slice(None),) + region] += w * o
        norm[region] += w
    crop = tuple(slice(0, n) for n in shape)
    expected = total[(slice(None),) + crop] / norm[crop]
    np.testing.assert_allclose(_merge(plan, 2, outputs), expected, rtol=2e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 60), min_size=2, max_size=3).map(tuple),
    tile=st.integers(2, 24),
    overlap=st.floats(0, 0.8),
    margin=st.integers(0, 3),
)
def test_crop_merge_takes_each_pixel_from_the_tile_that_keeps_it(shape, tile, overlap, margin):
    plan = plan_tiles(shape, Rule(2, margin), tile=tile, overlap=overlap, merge="none")
    # tile i outputs the constant i: the merged image then says which tile each pixel came from
    outputs = [np.full((1,) + plan.output_shape, i, dtype=np.float32) for i in range(len(plan))]
    merged = _merge(plan, 1, outputs)[0]
    owner = np.full(shape, -1)
    for i, t in enumerate(plan):
        # the owner of a pixel is the tile whose kept window contains it (windows partition, per axis)
        assert np.all(owner[t.keep] == -1)
        owner[t.keep] = i
    assert np.array_equal(merged, owner)


def test_blend_band_holds_one_tile_of_rows():
    plan = plan_tiles((4096, 300), Rule(16, 0), tile=128, overlap=0.25, merge="gaussian")
    merger = BlendMerger(plan, 3, lambda window, values: None)
    assert merger.total.shape == (3, 128, 300)
    assert isinstance(make_merger(plan_tiles((64, 64), Rule(1, 0), tile=16, overlap=0, merge="none"), 1, print), CropMerger)


def test_options_are_validated_in_one_place():
    assert validate_choice("blend", "gaussian", ("gaussian", "constant")) == "gaussian"
    with pytest.raises(InvalidInputError, match="blend='gauss' is not one of 'gaussian', 'constant'"):
        validate_choice("blend", "gauss", ("gaussian", "constant"))
    with pytest.raises(InvalidInputError, match="merge"):
        plan_tiles((10, 10), Rule(1, 0), tile=4, overlap=0, merge="average")
    with pytest.raises(InvalidInputError, match="overlap"):
        plan_tiles((10, 10), Rule(1, 0), tile=4, overlap=1.0, merge="none")
    with pytest.raises(InvalidInputError, match="one size per spatial axis"):
        plan_tiles((10, 10), Rule(1, 0), tile=(4, 4, 4), overlap=0, merge="none")
    with pytest.raises(InvalidInputError, match="positive"):
        plan_tiles((10, 10), Rule(1, 0), tile=0, overlap=0, merge="none")


def test_tile_count_is_the_product_of_axis_counts():
    plan = plan_tiles((100, 37, 9), Rule(4, 1), tile=(16, 12, 8), overlap=0.5, merge="constant")
    assert len(plan) == math.prod(len(a.starts) for a in plan.axes) == len(list(plan))
