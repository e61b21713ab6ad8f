"""sdk.instances.seeded_watershed (the C++ flood) against scikit-image, a pure-Python reference of the
watershed-line rule, and the properties that make the lines separate regions."""
from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.errors import InvalidInputError
from sdk.instances import connected_components, seeded_watershed


def neighbours(index: tuple[int, ...], shape: tuple[int, ...], full: bool):
    """In-bounds neighbours in raster order of their offsets (the order the flood visits them)."""
    for step in itertools.product((-1, 0, 1), repeat=len(shape)):
        moved = sum(abs(s) for s in step)
        if moved == 0 or (moved > 1 and not full):
            continue
        j = tuple(i + s for i, s in zip(index, step))
        if all(0 <= a < n for a, n in zip(j, shape)):
            yield j


def reference_with_lines(probability: np.ndarray, seeds: np.ndarray, mask: np.ndarray | None, full: bool) -> np.ndarray:
    """The rule as documented, pixel by pixel: a heap of (-p, age, raster index); a pixel popped takes the
    label of its labelled neighbours, or becomes line (0) if they carry two labels, and only labelled pixels
    push their untouched neighbours (inside the mask)."""
    shape = probability.shape
    labels = seeds.astype(np.int64).copy()
    state = np.zeros(shape, np.uint8)  # 0 untouched, 1 queued, 2 done
    raster = np.arange(probability.size).reshape(shape)
    heap = [(-float(probability[i]), 0, int(raster[i]), i) for i in zip(*np.nonzero(seeds))]
    heapq.heapify(heap)
    for i in zip(*np.nonzero(seeds)):
        state[i] = 1
    age = 0
    while heap:
        _, _, _, i = heapq.heappop(heap)
        if state[i] == 2:
            continue
        state[i] = 2
        if labels[i] == 0:
            found = {int(labels[j]) for j in neighbours(i, shape, full) if labels[j]}
            if len(found) != 1:
                continue
            labels[i] = found.pop()
        for j in neighbours(i, shape, full):
            if state[j] == 0 and (mask is None or mask[j]):
                state[j] = 1
                age += 1
                heapq.heappush(heap, (-float(probability[j]), age, int(raster[j]), j))
    return labels


def _case(seed: int, shape: tuple[int, ...], ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.random(shape).astype(np.float32)
    if ties:
        p = np.round(p * 4) / 4
    return p, rng.random(shape) < 0.85


@pytest.mark.parametrize("connectivity", ["face", "full"])
@pytest.mark.parametrize("use_mask", [True, False])
@pytest.mark.parametrize("ties", [False, True])
def test_lines_follow_the_reference_rule(connectivity, use_mask, ties):
    for seed in range(25):
        shape = tuple(np.random.default_rng(seed).integers(1, 24, 2))
        p, mask = _case(seed, shape, ties)
        mask = mask if use_mask else None
        seeds = connected_components(p >= 0.7 if mask is None else mask & (p >= 0.7), connectivity=connectivity)
        expected = reference_with_lines(p, seeds, mask, connectivity == "full")
        got = seeded_watershed(p, mask, seed_threshold=0.7, connectivity=connectivity, lines=True)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("connectivity", ["face", "full"])
def test_lines_in_3d_follow_the_reference_rule(connectivity):
    p, mask = _case(3, (5, 9, 11), ties=True)
    seeds = connected_components(mask & (p >= 0.75), connectivity=connectivity, mode="3d")
    expected = reference_with_lines(p, seeds, mask, connectivity == "full")
    got = seeded_watershed(p, mask, seed_threshold=0.75, connectivity=connectivity, mode="3d", lines=True)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("connectivity", ["face", "full"])
def test_without_lines_it_is_scikit_images_watershed(connectivity):
    segmentation = pytest.importorskip("skimage.segmentation")
    label = pytest.importorskip("skimage.measure").label
    c = 1 if connectivity == "face" else 2
    for seed in range(20):
        p, mask = _case(seed, (30, 37), ties=False)  # ties: scikit-image orders equal values otherwise
        markers = label(mask & (p >= 0.7), connectivity=c)
        expected = segmentation.watershed(-p.astype(np.float64), markers, mask=mask, connectivity=c)
        got = seeded_watershed(p, mask, seed_threshold=0.7, connectivity=connectivity)
        np.testing.assert_array_equal(got, expected)
    p, mask = _case(1, (6, 12, 13), ties=False)
    c = 1 if connectivity == "face" else 3  # full in 3D: 26 neighbours
    markers = label(mask & (p >= 0.8), connectivity=c)
    expected = segmentation.watershed(-p.astype(np.float64), markers, mask=mask, connectivity=c)
    np.testing.assert_array_equal(seeded_watershed(p, mask, seed_threshold=0.8, connectivity=connectivity, mode="3d"),
                                  expected)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.integers(2, 30), st.integers(2, 30), st.sampled_from(["face", "full"]),
       st.floats(0.3, 0.95))
def test_lines_separate_the_regions(seed, h, w, connectivity, threshold):
    p = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    regions = seeded_watershed(p, None, seed_threshold=threshold, connectivity=connectivity, lines=True)
    seeds = connected_components(p >= threshold, connectivity=connectivity)
    full = connectivity == "full"
    for index in zip(*np.nonzero(regions >= 0)):
        around = {int(regions[j]) for j in neighbours(index, p.shape, full)} - {0}
        if regions[index]:  # no neighbour of another region: regions touch only across lines
            assert around <= {int(regions[index])}
        elif seeds.max():  # a line pixel lies between two regions, or is enclosed by lines (never reached)
            assert len(around) >= 2 or not around
    # each region is one component holding its seed, and the whole image is regions or lines
    assert set(np.unique(regions[seeds > 0])) == set(np.unique(seeds[seeds > 0]))
    np.testing.assert_array_equal(regions[seeds > 0], seeds[seeds > 0])
    for label in np.unique(regions[regions > 0]):
        assert connected_components(regions == label, connectivity=connectivity).max() == 1


def test_stacks_flood_each_slice_alike_on_any_thread_count():
    p = np.random.default_rng(5).random((6, 40, 33)).astype(np.float32)
    one = seeded_watershed(p, None, seed_threshold=0.8, lines=True, threads=1)
    two = seeded_watershed(p, None, seed_threshold=0.8, lines=True, threads=2)
    np.testing.assert_array_equal(one, two)
    for z in range(len(p)):
        alone = seeded_watershed(p[z], None, seed_threshold=0.8, lines=True)
        renumbered = connected_components(one[z] > 0)  # numbering runs over the stack; the partition is per slice
        np.testing.assert_array_equal(connected_components(alone > 0), renumbered)


def test_integer_and_float64_probabilities_keep_their_order():
    p = np.random.default_rng(2).integers(0, 60000, (20, 20)).astype(np.uint16)
    as_float = seeded_watershed(p.astype(np.float64), None, seed_threshold=50000, lines=True)
    np.testing.assert_array_equal(seeded_watershed(p, None, seed_threshold=50000, lines=True), as_float)


@pytest.mark.parametrize("lines", [True, False])
def test_signed_zeros_tie_and_float32_floods_as_float64(lines):
    # float32 floods on packed integer keys, float64 on (value, age) pairs: -0.0 and 0.0 must tie in both,
    # as they do in the reference's float comparison
    rng = np.random.default_rng(11)
    p = (rng.integers(0, 4, (23, 29)) / 3).astype(np.float32)
    p[rng.random(p.shape) < 0.5] *= -1.0  # half the zeros negative
    seeds = connected_components(p >= 0.6)
    got = seeded_watershed(p, None, seed_threshold=0.6, lines=lines)
    np.testing.assert_array_equal(got, seeded_watershed(p.astype(np.float64), None, seed_threshold=0.6, lines=lines))
    if lines:
        np.testing.assert_array_equal(got, reference_with_lines(p, seeds, None, full=False))


def test_bad_arguments_are_named():
    p = np.zeros((4, 4), np.float32)
    with pytest.raises(InvalidInputError, match="differ in shape"):
        seeded_watershed(p, np.ones((4, 5), bool))
    with pytest.raises(InvalidInputError, match="connectivity"):
        seeded_watershed(p, None, connectivity="diagonal")
    with pytest.raises(InvalidInputError, match="real numbers"):
        seeded_watershed(p.astype(complex), None)
    with pytest.raises(InvalidInputError, match="mode='3d'"):
        seeded_watershed(p, None, mode="3d")
    p[2, 3] = np.nan
    with pytest.raises(InvalidInputError, match=r"NaN at \[2, 3\]"):
        seeded_watershed(p, None)
