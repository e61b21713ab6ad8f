"""sdk.metrics.label_components against scikit-image's labelling (same partition, raster-order numbering)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sdk.errors import InvalidInputError
from sdk.metrics import label_components

measure = pytest.importorskip("skimage.measure")


def skimage_labels(mask, *, mode, connectivity):
    """scikit-image labels (raster order of first pixel, as ours); 2D mode labels slices apart."""
    full = connectivity == "full"
    if mode == "3d" or mask.ndim == 2:
        return measure.label(mask, connectivity=mask.ndim if full else 1)
    out, offset = np.zeros(mask.shape, np.int64), 0
    for z, plane in enumerate(mask):
        lab = measure.label(plane, connectivity=2 if full else 1)
        out[z] = np.where(lab > 0, lab + offset, 0)
        offset += lab.max()
    return out


@settings(max_examples=60, deadline=None)
@given(
    mask=arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 12), st.integers(1, 12))),
    mode=st.sampled_from(["2d", "3d"]),
    connectivity=st.sampled_from(["face", "full"]),
)
def test_equals_scikit_image_on_random_masks(mask, mode, connectivity):
    got = label_components(mask, mode=mode, connectivity=connectivity)
    np.testing.assert_array_equal(got, skimage_labels(mask, mode=mode, connectivity=connectivity))


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(60, 200)),
    density=st.sampled_from([0.3, 0.6, 0.9]),
    seed=st.integers(0, 2**31 - 1),
    mode=st.sampled_from(["2d", "3d"]),
    connectivity=st.sampled_from(["face", "full"]),
)
def test_equals_scikit_image_on_rows_of_several_words(shape, density, seed, mode, connectivity):
    # rows wider than 64 pixels: runs and touching stretches that cross the 64-bit words of a row
    mask = np.random.default_rng(seed).random(shape) < density
    got = label_components(mask, mode=mode, connectivity=connectivity)
    np.testing.assert_array_equal(got, skimage_labels(mask, mode=mode, connectivity=connectivity))


def test_real_nuclei_mask_and_isbi_slice(shared_data):
    tifffile = pytest.importorskip("tifffile")
    nuclei = tifffile.imread(shared_data / "dsb2018_nuclei_stardist_sample" / "mask2d.tif") > 0
    np.testing.assert_array_equal(label_components(nuclei), measure.label(nuclei, connectivity=1))
    cells = tifffile.imread(shared_data / "isbi2012" / "train-labels.tif")[:3] > 0
    got = label_components(cells)
    np.testing.assert_array_equal(got, skimage_labels(cells, mode="2d", connectivity="face"))
    assert got.max() > 300  # hundreds of cells: a real test of numbering


def test_layout_and_dtype_do_not_matter():
    rng = np.random.default_rng(3)
    mask = rng.random((3, 40, 50)) > 0.55
    expected = label_components(mask)
    for variant in (np.asfortranarray(mask), mask.astype(np.float32), mask.astype(np.uint16) * 7):
        np.testing.assert_array_equal(label_components(variant), expected)
    strided = label_components(mask[:, ::2, ::3])
    np.testing.assert_array_equal(strided, label_components(np.ascontiguousarray(mask[:, ::2, ::3])))


def test_bad_input_is_named():
    with pytest.raises(InvalidInputError, match="empty"):
        label_components(np.zeros((0, 4), bool))
    with pytest.raises(InvalidInputError, match="connectivity"):
        label_components(np.zeros((4, 4), bool), connectivity="diagonal")
    with pytest.raises(InvalidInputError, match="3D volume"):
        label_components(np.zeros((4, 4), bool), mode="3d")
    with pytest.raises(InvalidInputError, match="dtype"):
        label_components(np.zeros((4, 4), complex))
