"""The plugin's numpy cores (no napari needed): per-object VI, error clusters, prediction outputs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sdk.metrics import ErrorType, variation_of_information, warping_error
from sdk.napari.error_clusters import error_clusters, object_markers
from sdk.napari.object_vi import object_vi

measure = pytest.importorskip("skimage.measure")


def dense_object_vi(truth, proposal, ignore=(0,)):
    """Per-object conditional entropies from a dense contingency matrix, straight from the definition."""
    keep = ~np.isin(truth, ignore)
    t, p = truth[keep], proposal[keep]
    t_labels, t_idx = np.unique(t, return_inverse=True)
    p_labels, p_idx = np.unique(p, return_inverse=True)
    c = np.zeros((t_labels.size, p_labels.size))
    np.add.at(c, (t_idx, p_idx), 1)
    n = c.sum()

    def entropies(m):
        sizes = m.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = m / sizes[:, None]
            h = -np.where(q > 0, q * np.log2(q), 0.0).sum(axis=1)
        return sizes, h, sizes / n * h

    return (t_labels, *entropies(c)), (p_labels, *entropies(c.T))


label_images = st.integers(1, 12).flatmap(
    lambda w: st.tuples(
        arrays(np.int32, (7, w), elements=st.integers(0, 4)),
        arrays(np.uint16, (7, w), elements=st.integers(0, 5)),
    )
)


@settings(max_examples=60, deadline=None)
@given(label_images, st.sampled_from([(0,), (), (0, 2)]))
def test_object_vi_equals_the_definition_and_sums_to_the_vi(pair, ignore):
    truth, proposal = pair
    if np.isin(truth, ignore).all():
        return  # nothing left to score
    split, merge = object_vi(truth, proposal, ignore_labels=ignore)
    (t_labels, t_sizes, t_h, t_share), (p_labels, p_sizes, p_h, p_share) = dense_object_vi(truth, proposal, ignore)
    np.testing.assert_array_equal(split.labels, t_labels)
    np.testing.assert_array_equal(split.sizes, t_sizes)
    np.testing.assert_allclose(split.entropy, t_h, atol=1e-12)
    np.testing.assert_array_equal(merge.labels, p_labels)
    np.testing.assert_allclose(merge.entropy, p_h, atol=1e-12)
    np.testing.assert_allclose(merge.share, p_share, atol=1e-12)
    vi = variation_of_information(truth, proposal, ignore_labels=ignore)
    assert split.share.sum() == pytest.approx(vi.split, abs=1e-12)
    assert merge.share.sum() == pytest.approx(vi.merge, abs=1e-12)


def test_object_vi_hand_computed():
    # truth object 1 is cut in half by the proposal: 1 bit of split entropy, share 4/8 * 1
    truth = np.array([[1, 1, 1, 1], [2, 2, 2, 2]])
    proposal = np.array([[5, 5, 6, 6], [7, 7, 7, 7]])
    split, merge = object_vi(truth, proposal)
    np.testing.assert_allclose(split.entropy, [1.0, 0.0])
    np.testing.assert_allclose(split.share, [0.5, 0.0])
    np.testing.assert_allclose(merge.entropy, [0.0, 0.0, 0.0])


def test_object_markers_sit_on_the_pixel_nearest_each_centroid():
    labels = np.zeros((9, 9), np.int32)
    labels[1:4, 1:4] = 7  # a square: the marker is its centre
    labels[6, 0:9] = 3
    labels[7:9, 0] = 3  # an L: its centroid lies off the object, the marker on it
    values, positions, sizes = object_markers(labels)
    np.testing.assert_array_equal(values, [3, 7])
    np.testing.assert_array_equal(sizes, [11, 9])
    np.testing.assert_array_equal(positions[1], [2, 2])
    assert labels[tuple(positions[0])] == 3
    ys, xs = np.nonzero(labels == 3)
    centroid = np.array([ys.mean(), xs.mean()])
    best = min(((y - centroid[0]) ** 2 + (x - centroid[1]) ** 2) for y, x in zip(ys, xs))
    assert ((positions[0] - centroid) ** 2).sum() == pytest.approx(best)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_error_clusters_match_scikit_image_components_and_the_core_counts(seed):
    rng = np.random.default_rng(seed)
    truth = np.full((2, 64, 64), 1, np.uint8)
    truth[:, ::16, :] = 0
    truth[:, :, ::16] = 0
    proposal = np.clip(truth * 0.8 + 0.1 + rng.normal(0, 0.35, truth.shape), 0, 1)
    result = warping_error(truth, proposal)
    clusters = error_clusters(result)
    assert clusters.counts() == {t: result.cluster_counts[k] for t, k in zip(
        list(ErrorType)[1:], ["splits", "mergers", "hole_additions", "hole_deletions", "object_additions",
                              "object_deletions"])}
    assert int(clusters.sizes.sum()) == result.mismatches
    for error_type in list(ErrorType)[1:]:  # cluster sizes per type: scikit-image's components, slice by slice
        expected = []
        for z in range(truth.shape[0]):
            mask = result.classification[z] == error_type
            for warped in ((False, True) if error_type in (ErrorType.HOLE_ADDITION, ErrorType.HOLE_DELETION) else (None,)):
                part = mask if warped is None else mask & (result.warped[z] == warped)
                full = error_type == ErrorType.MERGER or (error_type == ErrorType.HOLE_ADDITION and warped)
                expected += np.bincount(measure.label(part, connectivity=2 if full else 1).ravel())[1:].tolist()
        assert sorted(clusters.sizes[clusters.types == error_type].tolist()) == sorted(expected)
    for position, error_type in zip(clusters.positions, clusters.types):
        assert result.classification[tuple(position)] == error_type


def test_sdk_never_imports_napari_or_qt(tmp_path):
    """``import sdk`` and every module outside the plugin's widget modules work without napari/Qt."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import sdk

    code = (
        "import importlib, pkgutil, sys, sdk\n"
        "names = [m.name for m in pkgutil.walk_packages(sdk.__path__, 'sdk.')\n"
        "         if not m.name.startswith(('sdk.napari._', 'sdk.cli.__main__'))]\n"
        "for name in names:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        if exc.name not in ('torch', 'distributed', 'dask', 'zarr', 'yaml', 'bioimageio'):\n"
        "            raise\n"
        "gui = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy'))\n"
        "print(len(names), gui)\n"
        "assert not gui, gui\n"
    )
    # the same sdk as this test imports (the installed package, or the source tree under python -m pytest)
    env = dict(os.environ, PYTHONPATH=str(Path(sdk.__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[0]) > 20  # the walk really imported the package's modules
