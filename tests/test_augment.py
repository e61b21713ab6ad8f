"""Augmentation keeps image, label and weight map aligned, labels exact, shapes intact (2D and 3D)."""
import numpy as np
import pytest
from scipy import ndimage

from export.augment import Augmenter, elastic_displacement, warp


def _blobs(shape, seed=0):
    """A smooth random image in [0, 1] and its thresholded label."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=6)
    image = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return image, (image > 0.5).astype(np.uint8)


def test_elastic_keeps_labels_binary_and_aligned():
    image, label = _blobs((96, 96))
    rng = np.random.default_rng(3)
    for _ in range(5):
        field = elastic_displacement(label.shape, rng, grid=3, sigma=10.0)
        assert np.abs(field).max() > 1.0  # it really deforms
        moved_image = warp(image, field, order=1)
        moved_label = warp(label, field, order=0)
        assert set(np.unique(moved_label)) <= {0, 1}
        # the label still marks the same structures as the (linearly interpolated) image
        agreement = np.mean((moved_image > 0.5) == moved_label)
        assert agreement > 0.98
        assert not np.array_equal(moved_label, label)


def test_displacement_is_sigma_at_control_points():
    # the cubic spline passes through the control points, whose displacements are N(0, sigma^2)
    rng = np.random.default_rng(0)
    corners = np.array([elastic_displacement((41, 41), rng, grid=3, sigma=10.0)[:, ::20, ::20] for _ in range(200)])
    assert corners.std() == pytest.approx(10.0, rel=0.1)
    assert abs(corners.mean()) < 1.0


def test_flips_and_rotations_move_everything_together():
    rng = np.random.default_rng(5)
    label = rng.integers(0, 3, (16, 16))
    image = np.stack([label * 10.0, -label * 1.0]).astype(np.float32)
    weights = label * 0.5 + 1
    aug = Augmenter(elastic=False, intensity=False)
    seen = set()
    for _ in range(40):
        img, lab, w = aug(image, label, weights, rng)
        np.testing.assert_array_equal(img[0], lab * 10.0)
        np.testing.assert_array_equal(img[1], -lab * 1.0)
        np.testing.assert_array_equal(w, lab * 0.5 + 1)
        seen.add(lab.tobytes())
    assert len(seen) == 8  # the dihedral group of the square


def test_full_augmentation_2d_and_3d_shapes_and_values():
    rng = np.random.default_rng(7)
    for shape in [(48, 40), (12, 24, 20)]:
        image, label = _blobs(shape, seed=1)
        weights = np.ones(shape, dtype=np.float32)
        aug = Augmenter(spatial_dims=len(shape))
        img, lab, w = aug(image[None].astype(np.float32), label, weights, rng)
        assert img.shape == (1, *shape) and img.dtype == np.float32
        assert lab.shape == shape and set(np.unique(lab)) <= {0, 1}
        assert w.shape == shape and np.allclose(w, 1.0, atol=1e-5)  # a constant map stays constant


def test_identity_when_disabled_and_shape_checks():
    image, label = _blobs((20, 20))
    aug = Augmenter(elastic=False, flips=False, rotations=False, intensity=False)
    img, lab, w = aug(image[None], label, None, np.random.default_rng(0))
    np.testing.assert_array_equal(img[0], image.astype(np.float32))
    np.testing.assert_array_equal(lab, label)
    assert w is None
    with pytest.raises(ValueError):
        aug(image[None], label[:10], None, np.random.default_rng(0))
    with pytest.raises(ValueError):
        Augmenter(spatial_dims=4)
