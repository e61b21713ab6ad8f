"""The napari Evaluate widget, driven as a user would; its layers and tables are checked against
``sdk.metrics`` called directly and against hand-made errors."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_helpers import click_and_wait, docked  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from sdk.metrics import ErrorType, isbi2012, variation_of_information, warping_error  # noqa: E402
from sdk.metrics.isbi import FSCORE_THRESHOLDS  # noqa: E402
from sdk.napari._evaluate import ONE_THRESHOLD, SWEEP, EvaluateWidget  # noqa: E402
from sdk.napari.evaluation import objects_of  # noqa: E402


def cell_grid(n: int = 6, side: int = 16) -> np.ndarray:
    """ISBI-like truth: 255 = cell, 0 = one-pixel membranes on a grid."""
    truth = np.full((n * side, n * side), 255, np.uint8)
    truth[::side, :] = 0
    truth[:, ::side] = 0
    return truth


def flawed_proposal(truth: np.ndarray) -> np.ndarray:
    """Probabilities of cell with known topological errors: a merger (a missing membrane piece), a
    split (a false membrane across a cell) and a deleted cell; smooth noise elsewhere."""
    rng = np.random.default_rng(5)
    p = np.where(truth > 0, 0.8, 0.15) + rng.uniform(-0.1, 0.1, truth.shape)
    p[16, 20:31] = 0.9  # membrane gap: two cells merge
    p[40, 32:49] = 0.05  # a new membrane across a cell, wall to wall: a split
    p[65:80, 65:80] = 0.05  # a whole cell missing
    return np.clip(p, 0.0, 1.0)


@pytest.fixture
def widget(make_napari_viewer):
    return docked(make_napari_viewer, EvaluateWidget)


def evaluate(qtbot, widget, truth, proposal, *, mode=SWEEP, threshold=0.5):
    widget.truth.set_layer(truth)
    widget.proposal.set_layer(proposal)
    widget.mode.setCurrentText(mode)
    widget.threshold.setValue(threshold)
    click_and_wait(qtbot, widget)
    return {widget.scores.item(r, 0).text(): widget.scores.item(r, 1).text() for r in range(widget.scores.rowCount())}


def test_sweep_scores_error_layers_and_markers_equal_the_metrics(qtbot, widget):
    truth, p = cell_grid(), flawed_proposal(cell_grid())
    viewer = widget.viewer
    truth_layer = viewer.add_labels(truth, name="truth", translate=(10, 20))
    proposal_layer = viewer.add_image(p, name="P(cell)", translate=(10, 20))
    scores = evaluate(qtbot, widget, truth_layer, proposal_layer)

    isbi = isbi2012(truth, p)
    assert float(scores["warping error (ISBI)"]) == pytest.approx(isbi.warping_error, rel=1e-5)
    assert float(scores["Rand error (ISBI)"]) == pytest.approx(isbi.rand_error, rel=1e-5)
    assert float(scores["pixel error (ISBI)"]) == pytest.approx(isbi.pixel_error, rel=1e-5)
    direct = warping_error(truth, p, threshold=isbi.warping_threshold, radius=20)
    np.testing.assert_array_equal(viewer.layers["warping errors"].data, direct.classification)
    assert direct.splits > 0 and direct.mergers > 0  # the hand-made errors are found
    assert tuple(viewer.layers["warping errors"].translate) == (10, 20)

    markers = viewer.layers["error markers"]
    names = {"split": "splits", "merger": "mergers", "hole addition": "hole_additions",
             "hole deletion": "hole_deletions", "object addition": "object_additions",
             "object deletion": "object_deletions"}
    types = list(markers.features["type"])
    assert {names[t]: types.count(t) for t in names} == direct.cluster_counts  # one marker per cluster
    code = {name: int(t) for t, name in zip(ErrorType, ["none", *names])}
    for (y, x), t in zip(markers.data.astype(int), types):  # every marker sits on an error pixel of its type
        assert direct.classification[y, x] == code[t]
    sizes = list(markers.features["pixels"])
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == direct.mismatches

    # the VI table: shares per object add up to the VI parts of the thresholded components
    truth_objects = objects_of(truth)
    proposal_objects = objects_of(p, threshold=isbi.rand_threshold)
    vi = variation_of_information(truth_objects, proposal_objects, ignore_labels=(0,))
    rows = [[widget.objects.item(r, c).text() for c in range(5)] for r in range(widget.objects.rowCount())]
    assert sum(float(r[4]) for r in rows if r[1] == "split") == pytest.approx(vi.split, abs=1e-4)
    assert sum(float(r[4]) for r in rows if r[1] == "merge") == pytest.approx(vi.merge, abs=1e-4)
    assert float(scores["VI split (bits)"]) == pytest.approx(vi.split, rel=1e-5)

    # a click on a table row centres the view on a pixel of that object
    side, label = rows[0][0].split(" ")[0], int(rows[0][0].rstrip(")").split(" ")[-1].strip("("))
    rect = widget.objects.visualItemRect(widget.objects.item(0, 0))
    qtbot.mouseClick(widget.objects.viewport(), Qt.LeftButton, pos=rect.center())
    y, x = (np.asarray(viewer.camera.center[-2:]) - (10, 20)).astype(int)
    assert (truth_objects if side == "truth" else proposal_objects)[y, x] == label


def test_a_stack_is_scored_slice_by_slice_and_next_error_goes_to_its_slice(qtbot, widget):
    truth = np.stack([cell_grid(), cell_grid()])
    p = np.stack([np.clip(np.where(truth[0] > 0, 0.8, 0.15), 0, 1), flawed_proposal(truth[1])])
    viewer = widget.viewer
    scores = evaluate(qtbot, widget, viewer.add_labels(truth, name="truth"), viewer.add_image(p, name="P"))
    assert float(scores["warping error (ISBI)"]) == pytest.approx(isbi2012(truth, p).warping_error, rel=1e-5)
    markers = viewer.layers["error markers"]
    assert set(markers.data[:, 0].astype(int)) == {1}  # the errors are all on the flawed slice
    qtbot.mouseClick(widget.next_button, Qt.LeftButton)
    assert viewer.dims.current_step[0] == 1


def test_next_error_centres_the_view_on_the_largest_cluster_first(qtbot, widget):
    truth, p = cell_grid(), flawed_proposal(cell_grid())
    viewer = widget.viewer
    evaluate(qtbot, widget, viewer.add_labels(truth, name="truth", scale=(2.0, 2.0), translate=(5, 7)),
             viewer.add_image(p, name="P", scale=(2.0, 2.0), translate=(5, 7)))
    markers = viewer.layers["error markers"]
    assert widget.next_button.isEnabled()
    qtbot.mouseClick(widget.next_button, Qt.LeftButton)
    first = markers.data[0]
    np.testing.assert_allclose(viewer.camera.center[-2:], first * 2.0 + np.array([5, 7]))
    assert markers.selected_data == {0} and "error 1 of" in widget.marker_label.text()
    qtbot.mouseClick(widget.previous_button, Qt.LeftButton)  # wraps around to the smallest
    assert markers.selected_data == {len(markers.data) - 1}


def test_one_threshold_equals_the_isbi_row_at_that_threshold(qtbot, widget):
    truth, p = cell_grid(), flawed_proposal(cell_grid())
    viewer = widget.viewer
    scores = evaluate(qtbot, widget, viewer.add_labels(truth, name="truth"), viewer.add_image(p, name="P"),
                      mode=ONE_THRESHOLD, threshold=0.5)
    row = next(r for r in isbi2012(truth, p).table if r["threshold"] == 0.5)
    assert float(scores["warping error"]) == pytest.approx(row["warping_error"], rel=1e-5)
    assert float(scores["pixel error"]) == pytest.approx(1 - row["pixel_fscore"], rel=1e-5)
    assert float(scores["Rand error"]) == pytest.approx(1 - row["rand_fscore"], rel=1e-5)
    assert 0.5 in FSCORE_THRESHOLDS


def test_an_instance_labels_proposal_is_scored_with_its_own_labels(qtbot, widget):
    truth = cell_grid()
    instances = objects_of(truth).astype(np.int32)
    instances[instances == 3] = 2  # relabel: objects 2 and 3 become one instance (a merge the VI must see)
    viewer = widget.viewer
    scores = evaluate(qtbot, widget, viewer.add_labels(truth, name="truth"), viewer.add_labels(instances, name="inst"),
                      mode=ONE_THRESHOLD)
    vi = variation_of_information(objects_of(truth), instances, ignore_labels=(0,))
    assert vi.merge > 0 and float(scores["VI merge (bits)"]) == pytest.approx(vi.merge, rel=1e-5)
    assert float(scores["warping error"]) == 0.0  # same foreground: no topological error


def test_evaluate_is_disabled_with_the_reason(widget):
    viewer = widget.viewer
    assert not widget.run_button.isEnabled() and "choose" in widget.run_button.toolTip()
    truth = viewer.add_labels(cell_grid(), name="truth")
    widget.truth.set_layer(truth)
    widget.proposal.set_layer(viewer.add_image(np.zeros((10, 10), np.float32), name="small"))
    assert not widget.run_button.isEnabled() and "shapes differ" in widget.run_button.toolTip()
    widget.proposal.set_layer(viewer.add_image(cell_grid(), name="uint8 image"))
    assert not widget.run_button.isEnabled() and "probabilities" in widget.run_button.toolTip()
    widget.proposal.set_layer(viewer.add_image(np.zeros(truth.data.shape, np.float32), name="P"))
    assert widget.run_button.isEnabled()
