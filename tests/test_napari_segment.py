"""The napari Segment widget, driven as a user would (headless: pytest-xvfb's virtual display).

Results are checked against ``Segmenter`` and scikit-image called directly.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("napari")
pytest.importorskip("pytestqt")
measure = pytest.importorskip("skimage.measure")

from napari.utils import progress  # noqa: E402
from napari_helpers import click_and_wait, docked  # noqa: E402
from onnx_fixtures import make_model  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.io import load_image  # noqa: E402
from sdk.napari import _segment  # noqa: E402
from sdk.napari._segment import SegmentWidget  # noqa: E402
from sdk.tiling import plan_tiles  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "valid.onnx"
    path.write_bytes(make_model("valid", seed=7)[0])
    return path


@pytest.fixture
def widget(make_napari_viewer):
    return docked(make_napari_viewer, SegmentWidget)


def choose(widget, *, model, tile=0, outputs=("labels",), zarr=""):
    widget.model.setCurrentText(str(model))
    widget.tile.setValue(tile)
    for name, box in widget.outputs.items():
        box.setChecked(name in outputs)
    widget.zarr_path.setText(str(zarr))


def test_run_is_disabled_with_the_reason_until_the_input_fits(widget, model_path, tmp_path):
    viewer = widget.viewer
    choose(widget, model=model_path)
    assert not widget.run_button.isEnabled()
    assert "image layer" in widget.run_button.toolTip()

    viewer.add_image(np.zeros((3, 20, 24), np.float32), name="stack")
    assert widget.image.layer() is viewer.layers["stack"] and widget.run_button.isEnabled()
    widget.image.set_layer(viewer.add_image(np.zeros((2, 3, 5, 20, 24), np.float32), name="5d"))
    assert not widget.run_button.isEnabled()
    assert "does not fit the model" in widget.run_button.toolTip()

    widget.image.set_layer(viewer.layers["stack"])
    choose(widget, model=tmp_path / "missing.onnx")
    assert not widget.run_button.isEnabled() and "no such file" in widget.run_button.toolTip()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    choose(widget, model=broken)
    assert not widget.run_button.isEnabled() and "does not load" in widget.run_button.toolTip()

    choose(widget, model=model_path, outputs=())
    assert not widget.run_button.isEnabled() and "at least one output" in widget.run_button.toolTip()
    choose(widget, model=model_path, outputs=("instances",), zarr=tmp_path / "out.zarr")
    assert not widget.run_button.isEnabled() and "instances need the labels in memory" in widget.run_button.toolTip()
    choose(widget, model=model_path, outputs=("labels",))
    assert widget.run_button.isEnabled()


def test_outputs_equal_the_segmenter_called_directly(qtbot, widget, model_path):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(46, 60)).astype(np.float32)
    widget.viewer.add_image(image, name="cells", scale=(2.0, 0.5))
    choose(widget, model=model_path, tile=16, outputs=("labels", "probabilities", "instances"))
    click_and_wait(qtbot, widget)

    reference = Segmenter(model_path, tile=16)
    tiles = []
    expected_proba = reference.predict_proba(image, progress=lambda done, total: tiles.append((done, total)))
    expected_labels = reference.predict(image)
    layers = widget.viewer.layers
    np.testing.assert_array_equal(layers["cells labels"].data, expected_labels)
    np.testing.assert_array_equal(layers["cells P(class1)"].data, expected_proba[1])
    assert tuple(layers["cells labels"].scale) == (2.0, 0.5)
    # instances: 4-connected components of the foreground class, as scikit-image labels them
    np.testing.assert_array_equal(
        layers["cells instances"].data, measure.label(expected_labels == 1, connectivity=1)
    )
    assert widget.last_tiles == tiles[-1] and tiles[-1][0] == tiles[-1][1] > 1
    assert "tiles" in widget.status.text()


def test_cancel_stops_between_tiles(qtbot, widget, tmp_path):
    path = tmp_path / "pointwise.onnx"
    path.write_bytes(make_model("pointwise", seed=3)[0])
    widget.viewer.add_image(np.random.default_rng(2).normal(size=(1024, 1024)).astype(np.float32), name="big")
    choose(widget, model=path, tile=8, outputs=("labels",))  # tens of thousands of 8x8 tiles
    before = len(widget.viewer.layers)
    qtbot.mouseClick(widget.run_button, Qt.LeftButton)
    assert not widget.run_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: widget.last_tiles[0] > 0, timeout=60_000)
    bar = widget._pbar  # the tile count shows in napari's activity dock
    assert bar in progress._all_instances and bar.total == widget.last_tiles[1] and bar.n > 0
    qtbot.mouseClick(widget.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    done, total = widget.last_tiles
    seg = Segmenter(path, tile=8)
    assert total == len(plan_tiles((1024, 1024), seg.metadata, tile=seg.tile, overlap=seg.overlap, merge=seg.blend))
    assert 0 < done < total
    assert "cancelled" in widget.status.text()
    assert len(widget.viewer.layers) == before  # nothing added
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_outputs_larger_than_memory_go_to_zarr_and_are_shown_lazily(qtbot, widget, model_path, tmp_path, monkeypatch):
    pytest.importorskip("zarr", minversion="3")
    stack = np.random.default_rng(3).normal(size=(3, 32, 40)).astype(np.float32)
    widget.viewer.add_image(stack, name="stack", scale=(3.0, 0.5, 0.5))
    monkeypatch.setattr(_segment, "free_memory", lambda: 1000)  # the outputs now exceed half the free memory
    choose(widget, model=model_path, outputs=("labels", "probabilities"))
    assert not widget.run_button.isEnabled() and "choose a zarr folder" in widget.run_button.toolTip()
    choose(widget, model=model_path, outputs=("labels", "probabilities"), zarr=tmp_path / "missing")
    assert not widget.run_button.isEnabled() and "does not exist" in widget.run_button.toolTip()
    choose(widget, model=model_path, outputs=("labels", "probabilities"), zarr=tmp_path)
    click_and_wait(qtbot, widget)

    reference = Segmenter(model_path)
    labels_layer = widget.viewer.layers["stack labels"]
    proba_layer = widget.viewer.layers["stack P(class1)"]
    assert type(labels_layer.data).__module__.startswith("dask")  # lazy: read as napari shows it
    np.testing.assert_array_equal(np.asarray(labels_layer.data), reference.predict(stack))
    np.testing.assert_array_equal(np.asarray(proba_layer.data), reference.predict_proba(stack)[1])
    # the files are OME-Zarr images with the layer's pixel size and unet-sdk's record, as the CLI writes them
    stored = load_image(tmp_path / "stack_labels.zarr")
    np.testing.assert_array_equal(stored.array, reference.predict(stack))
    assert stored.calibration.axes == "ZYX" and stored.calibration.scale == (3.0, 0.5, 0.5)
    assert stored.record["kind"] == "labels" and stored.record["class_names"] == ["class0", "class1"]
    proba = load_image(tmp_path / "stack_proba.zarr")
    assert proba.calibration.axes == "CZYX" and proba.record["kind"] == "probabilities"
    assert not widget.run_button.isEnabled() and "exist" in widget.run_button.toolTip()  # no overwriting


def test_split_touching_instances_equal_predict_instances(qtbot, widget, model_path):
    image = np.random.default_rng(6).normal(size=(40, 48)).astype(np.float32)
    widget.viewer.add_image(image, name="img")
    choose(widget, model=model_path, outputs=("instances",))
    widget.split_touching.setChecked(True)
    click_and_wait(qtbot, widget)
    expected = Segmenter(model_path).predict_instances(image, split_touching=True)
    np.testing.assert_array_equal(widget.viewer.layers["img instances"].data, expected)
    assert [layer.name for layer in widget.viewer.layers] == ["img", "img instances"]  # no unasked layers


def test_a_bioimageio_package_is_a_model_too(qtbot, widget, tmp_path):
    pytest.importorskip("bioimageio.spec")
    from export.bioimageio import export_package

    onnx_path = tmp_path / "valid.onnx"
    onnx_path.write_bytes(make_model("valid", seed=8)[0])
    package = export_package(onnx_path, tmp_path / "model.zip", test_side=24)
    image = np.random.default_rng(9).normal(size=(36, 44)).astype(np.float32)
    widget.viewer.add_image(image, name="img")
    choose(widget, model=package, tile=16, outputs=("labels",))
    click_and_wait(qtbot, widget)
    np.testing.assert_array_equal(widget.viewer.layers["img labels"].data,
                                  Segmenter(str(package), tile=16).predict(image))


def test_the_models_post_processing_is_applied_unless_unticked(qtbot, widget, tmp_path):
    from sdk.model_metadata import Postprocessing

    path = tmp_path / "boundaries.onnx"
    path.write_bytes(make_model("same", seed=4, metadata={"postprocessing": Postprocessing("watershed", 0.6)})[0])
    image = np.random.default_rng(3).normal(size=(64, 64)).astype(np.float32)
    widget.viewer.add_image(image, name="em")
    assert widget.postprocess.isChecked()
    results = {}
    for post in (True, False):
        widget.postprocess.setChecked(post)
        choose(widget, model=path, tile=16, outputs=("labels",))
        click_and_wait(qtbot, widget)
        layer = widget.viewer.layers["em labels"]
        results[post] = np.array(layer.data)
        assert layer.metadata["unet_sdk"]["postprocess"] is post
        np.testing.assert_array_equal(results[post], Segmenter(str(path), tile=16, postprocess=post).predict(image))
        widget.viewer.layers.remove("em labels")
    assert (results[True] != results[False]).any()
