"""The napari Explain widget: its heat map equals ``Segmenter.explain`` called directly."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_helpers import click_and_wait, docked  # noqa: E402
from onnx_fixtures import make_model  # noqa: E402

from export.explain_graph import add_explanation  # noqa: E402
from sdk import Segmenter  # noqa: E402
from sdk.napari._explain import PREDICTED, ExplainWidget  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    plain = make_model("valid", seed=11)[0]
    (folder / "plain.onnx").write_bytes(plain)
    explainable = add_explanation(onnx.load_from_string(plain), layers={"c1": "c1_relu", "c2": "c2_relu"})
    (folder / "explainable.onnx").write_bytes(explainable.SerializeToString())
    return folder


@pytest.fixture
def widget(make_napari_viewer):
    return docked(make_napari_viewer, ExplainWidget)


def test_heat_map_equals_segmenter_explain(qtbot, widget, models):
    image = np.random.default_rng(4).normal(size=(40, 48)).astype(np.float32)
    viewer = widget.viewer
    viewer.add_image(image, name="img", translate=(3, 4))
    widget.model.setCurrentText(str(models / "plain.onnx"))
    assert not widget.run_button.isEnabled() and "no explanation graph" in widget.run_button.toolTip()

    widget.model.setCurrentText(str(models / "explainable.onnx"))
    widget.tile.setValue(16)
    assert [widget.explained_layer.itemText(i) for i in range(widget.explained_layer.count())] == ["c1", "c2"]
    assert widget.target_class.currentText() == "class1"  # the foreground class by default
    widget.explained_layer.setCurrentText("c1")
    widget.target_class.setCurrentText("class0")
    assert widget.region.currentText() == PREDICTED
    click_and_wait(qtbot, widget)

    expected = Segmenter(models / "explainable.onnx", tile=16).explain(image, target_class=0, layer="c1")
    heat = viewer.layers["img Grad-CAM(class0)"]
    np.testing.assert_allclose(heat.data, expected, rtol=1e-6, atol=1e-7)
    assert expected.max() > 0 and tuple(heat.translate) == (3, 4)

    # a labels layer as the region: only its objects are explained
    region = np.zeros(image.shape, np.int32)
    region[5:15, 10:30] = 2
    viewer.add_labels(region, name="roi")
    widget.region.setCurrentText("roi")
    click_and_wait(qtbot, widget)
    expected = Segmenter(models / "explainable.onnx", tile=16).explain(image, target_class=0, layer="c1",
                                                                       region=region > 0)
    np.testing.assert_allclose(viewer.layers[-1].data, expected, rtol=1e-6, atol=1e-7)

    viewer.add_labels(np.zeros((5, 5), np.int32), name="small roi")
    widget.region.setCurrentText("small roi")
    assert not widget.run_button.isEnabled() and "has shape" in widget.run_button.toolTip()
