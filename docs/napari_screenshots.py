"""Regenerate the README's napari screenshots (docs/napari_*.png) under a virtual display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/napari_screenshots.py [--isbi ../shared/data/isbi2012]

Segment runs the embedded int8 model on the shipped sample; Evaluate scores that model on ISBI 2012 training
slice 0 against its labels (the data set is not shipped: --isbi points at it); Explain needs a model with its
explanation graph, made from the embedded fp32 model with export.explain_graph (the 'train' extra).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
from napari._qt import qt_main_window
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

from sdk.io import read_image
from sdk.models import embedded_model_path
from sdk.napari._evaluate import EvaluateWidget
from sdk.napari._explain import ExplainWidget
from sdk.napari._segment import SegmentWidget
from sdk.napari.layer_io import isbi2012_sample

DOCS = Path(__file__).resolve().parent


def wait_for(widget) -> None:
    while widget._worker is not None:
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):  # let the canvas draw the new layers
        QApplication.processEvents()
        time.sleep(0.02)


def save(viewer, name: str) -> None:
    """A screenshot of the whole window as a 256-colour PNG (octree quantisation keeps the few saturated
    error colours apart; median cut merged split and merger)."""
    shot = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(shot[..., :3]).quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                                    dither=Image.Dither.NONE)
    image.save(DOCS / name, optimize=True)
    print(f"{DOCS / name}: {shot.shape[1]}x{shot.shape[0]}, {(DOCS / name).stat().st_size // 1024} kB")


def new_viewer(widget_class):
    qt_main_window.SHOW_QT_WARNING = False  # napari's PyQt5 deprecation toast would cover the canvas
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    widget = widget_class(viewer)
    viewer.window.add_dock_widget(widget, name=widget_class.__name__.replace("Widget", ""), area="right")
    return viewer, widget


def segment() -> None:
    viewer, widget = new_viewer(SegmentWidget)
    data, kwargs, _ = isbi2012_sample()[0]
    viewer.add_image(data, **kwargs)
    widget.model.setCurrentText("isbi2012-int8")
    widget.outputs["probabilities"].setChecked(True)
    widget.outputs["instances"].setChecked(True)
    widget.run()
    wait_for(widget)
    viewer.layers["ISBI 2012 test slice 0 P(cell)"].visible = False
    viewer.layers["ISBI 2012 test slice 0 labels"].visible = False
    save(viewer, "napari_segment.png")
    viewer.close()


def evaluate(isbi: Path) -> None:
    from sdk import Segmenter

    image = read_image(isbi / "train-volume.tif")[0]
    truth = read_image(isbi / "train-labels.tif")[0]
    proba = Segmenter("isbi2012-int8").predict_proba(image)[1]
    viewer, widget = new_viewer(EvaluateWidget)
    viewer.add_image(image, name="ISBI train slice 0")
    viewer.add_labels((truth > 0).astype(np.uint8), name="truth", visible=False)
    viewer.add_image(proba, name="P(cell)", colormap="magma", opacity=0.35, visible=False)
    widget.truth.set_layer(viewer.layers["truth"])
    widget.proposal.set_layer(viewer.layers["P(cell)"])
    widget.run()
    wait_for(widget)
    widget.go_to_error(0)
    viewer.camera.zoom = 3.0
    save(viewer, "napari_evaluate.png")
    viewer.close()


def explain() -> None:
    from export.explain_graph import add_explanation_file

    with tempfile.TemporaryDirectory() as folder:
        model = add_explanation_file(embedded_model_path("isbi2012"), Path(folder) / "isbi2012_explain.onnx")
        viewer, widget = new_viewer(ExplainWidget)
        data, kwargs, _ = isbi2012_sample()[0]
        viewer.add_image(data, **kwargs)
        widget.model.setCurrentText(str(model))
        widget.run()
        wait_for(widget)
        save(viewer, "napari_explain.png")
        viewer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isbi", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/isbi2012")
    args = parser.parse_args()
    segment()
    evaluate(args.isbi)
    explain()
