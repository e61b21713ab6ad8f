"""The Explain widget: a Seg-Grad-CAM heat map (:meth:`sdk.Segmenter.explain`) of an image layer."""
from __future__ import annotations

import numpy as np
from napari.layers import Labels
from qtpy.QtWidgets import QComboBox

from ..errors import UnetSdkError
from ..explain import explainer_of
from ..segmenter import Segmenter
from ._model_task import ModelJob, ModelTaskWidget
from ._widgets import LayerSelector, layer_data

PREDICTED = "pixels predicted as the class"


class ExplainWidget(ModelTaskWidget):
    """Which parts of the image made the model call a region a class: Seg-Grad-CAM (Vinogradova et al.
    2020) of a class over a region (the pixels predicted as that class, or a labels layer's objects) at
    one of the model's explainable layers, added as a heat-map layer. Needs a model exported with its
    explanation graph (``unet-export onnx --explain`` or ``python -m export.explain_graph``)."""

    verb = "explain"

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer)
        self.target_class = QComboBox()
        self.region = QComboBox()
        self.region_layers = LayerSelector(napari_viewer, (Labels,))
        self.region_layers.hide()  # the choices are copied into self.region, after PREDICTED
        self.explained_layer = QComboBox()
        self.form.addRow("class", self.target_class)
        self.form.addRow("region", self.region)
        self.form.addRow("network layer", self.explained_layer)
        self.region_layers.changed.connect(self._refresh_regions)
        self.model.currentTextChanged.connect(self._refresh_model_choices)
        self.device.currentTextChanged.connect(self._refresh_model_choices)
        for combo in (self.target_class, self.region):
            combo.currentTextChanged.connect(self.check_inputs)
        self._refresh_regions()
        self._refresh_model_choices()
        self.finish_layout()

    def _probe(self) -> Segmenter | None:
        try:
            return self.segmenter(self.model_setting(), self.device.currentText())
        except Exception:  # noqa: BLE001 - problem() reports why the model does not load
            return None

    def _refresh_model_choices(self, *_args) -> None:
        """Class names and explainable layers of the chosen model (empty if it does not load)."""
        probe = self._probe()
        names = list(probe.metadata.class_names) if probe is not None else []
        layers, default = [], None
        if probe is not None:
            try:
                explanation = explainer_of(probe).explanation
                layers, default = list(explanation.layers), explanation.default_layer
            except UnetSdkError:
                pass  # problem() says the model has no explanation graph
        for combo, items, chosen in ((self.target_class, names, names[probe.metadata.foreground_class] if names else None),
                                     (self.explained_layer, layers, default)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(items)
            if chosen is not None:
                combo.setCurrentText(chosen)
            combo.blockSignals(False)
        self.check_inputs()

    def _refresh_regions(self, *_args) -> None:
        current = self.region.currentText()
        names = [PREDICTED] + [layer.name for layer in self.region_layers.layers()]
        self.region.blockSignals(True)
        self.region.clear()
        self.region.addItems(names)
        self.region.setCurrentText(current if current in names else PREDICTED)
        self.region.blockSignals(False)
        self.check_inputs()

    def task_problem(self, layer, probe: Segmenter) -> str | None:
        try:
            explainer_of(probe)
        except UnetSdkError as exc:
            return str(exc)
        if not self.target_class.currentText():
            return "choose a class"
        region = self._region_layer()
        if region is not None:
            expected, _ = probe.output_spec(tuple(layer_data(layer).shape))
            if tuple(layer_data(region).shape) != tuple(expected):
                return f"region {region.name!r} has shape {layer_data(region).shape}; the image needs {tuple(expected)}"
        return None

    def _region_layer(self):
        name = self.region.currentText()
        return next((layer for layer in self.region_layers.layers() if layer.name == name), None)

    def start_job(self, layer) -> ModelJob:
        region_layer = self._region_layer()
        region = None if region_layer is None else np.asarray(layer_data(region_layer)) > 0
        target, network_layer, data = self.target_class.currentText(), self.explained_layer.currentText(), layer_data(layer)

        def work(segmenter: Segmenter, progress) -> np.ndarray:
            return segmenter.explain(data, target_class=target, region=region, layer=network_layer or None,
                                     progress=progress)

        return ModelJob(self, f"explain {layer.name!r}", self.settings(), work)

    def show_result(self, layer, segmenter: Segmenter, heat: np.ndarray, seconds: float) -> None:
        target = self.target_class.currentText()
        top = float(heat.max())
        self.viewer.add_image(
            heat, name=f"{layer.name} Grad-CAM({target})", colormap="inferno", blending="additive", opacity=0.6,
            contrast_limits=(0.0, top if top > 0 else 1.0),
            metadata={"unet_sdk": {"kind": "explanation", "model": self._job.settings["model"], "class": target,
                                   "region": self.region.currentText(), "layer": self.explained_layer.currentText()}},
            **self.placement(layer, heat.ndim),
        )
        self.status.setText(f"Seg-Grad-CAM of {target!r} at layer {self.explained_layer.currentText()!r} in "
                            f"{seconds:.1f} s ({self.steps_text('tile step')})")
