"""The Segment widget: a U-Net on an image layer, in a worker thread, with progress and a real Cancel."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..errors import UnetSdkError
from ..io import atomic_output
from ..models import EMBEDDED_MODELS
from ..runtime import DEVICES
from ..segmenter import Segmenter
from ._widgets import LayerSelector, layer_data, row
from .prediction import OUTPUTS, PredictionCancelled, output_arrays, predict_outputs

logger = logging.getLogger(__name__)

MODEL_FILES = "Models (*.onnx *.zip *.yaml *.yml);;All files (*)"


def free_memory() -> int:
    """Bytes of memory available to new allocations (psutil, which napari installs)."""
    import psutil

    return int(psutil.virtual_memory().available)


class _Progress(QObject):
    """Carries tile counts from the worker thread to the GUI thread (a queued Qt signal)."""

    tiles = Signal(int, int)


class _Job:
    """The prediction run in the worker thread; ``str`` names it in napari's activity dock."""

    def __init__(self, widget: "SegmentWidget", layer_name: str, settings: dict, data: Any, outputs: list[str],
                 target: Path | None) -> None:
        self.widget, self.layer_name, self.settings = widget, layer_name, settings
        self.data, self.outputs, self.target = data, outputs, target
        self.cancel = threading.Event()

    def __str__(self) -> str:
        return f"unet-sdk: segment {self.layer_name!r}"

    def _progress(self, done: int, total: int) -> None:
        self.widget._relay.tiles.emit(done, total)
        if self.cancel.is_set():  # raising here stops the tiling after this tile
            raise PredictionCancelled(f"cancelled after {done} of {total} tiles")

    def __call__(self) -> tuple[Segmenter, dict[str, Any], float]:
        start = time.perf_counter()
        segmenter = self.widget.segmenter(**self.settings)
        if self.target is None:
            result = predict_outputs(segmenter, self.data, self.outputs, progress=self._progress)
        else:
            import zarr

            with atomic_output(self.target) as tmp:  # a cancelled or failed run leaves no half-written store
                group = zarr.open_group(str(tmp), mode="w")
                group.attrs["unet_sdk"] = {"model": str(self.settings["model"]), "outputs": self.outputs}
                predict_outputs(segmenter, self.data, self.outputs, store=group, progress=self._progress)
            group = zarr.open_group(str(self.target), mode="r")
            result = {name: group[name] for name in self.outputs}
        return segmenter, result, time.perf_counter() - start


class SegmentWidget(QWidget):
    """Segment the chosen image layer with a U-Net (an embedded model, an .onnx file or a bioimage.io
    package) and add labels, probabilities and/or instances as layers.

    Run stays disabled, with a tooltip saying why, until the model loads and accepts the image. Outputs
    larger than half the free memory need a zarr folder; they are then written tile by tile and shown
    lazily. Cancel stops the prediction after the tile being computed.
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._relay = _Progress()
        self._relay.tiles.connect(self._on_tiles)
        self._segmenters: dict[tuple, Segmenter | Exception] = {}
        self._job: _Job | None = None
        self._worker = None
        self._pbar: progress | None = None
        self.last_tiles: tuple[int, int] = (0, 0)

        self.image = LayerSelector(napari_viewer, (Image,))
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems(list(EMBEDDED_MODELS))
        self.model.setToolTip("an embedded model, an .onnx file, or a bioimage.io package (rdf.yaml or .zip)")
        browse_model = QPushButton("File…")
        browse_model.clicked.connect(self._browse_model)
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.tile = QSpinBox()
        self.tile.setRange(0, 16384)
        self.tile.setSingleStep(64)
        self.tile.setSpecialValueText("model default")
        self.tta = QCheckBox("average over flips (TTA)")
        self.outputs = {name: QCheckBox(name) for name in OUTPUTS}
        self.outputs["labels"].setChecked(True)
        self.zarr_path = QLineEdit()
        self.zarr_path.setPlaceholderText("in memory")
        self.zarr_path.setToolTip("a new .zarr folder: outputs are written there tile by tile and shown lazily")
        browse_zarr = QPushButton("…")
        browse_zarr.clicked.connect(self._browse_zarr)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel()
        self.status.setWordWrap(True)

        form = QFormLayout(self)
        form.addRow("image", self.image)
        form.addRow("model", row(self.model, browse_model))
        form.addRow("device", self.device)
        form.addRow("tile", self.tile)
        form.addRow("", self.tta)
        form.addRow("outputs", row(*self.outputs.values()))
        form.addRow("zarr output", row(self.zarr_path, browse_zarr))
        form.addRow(row(self.run_button, self.cancel_button))
        form.addRow(self.status)

        self.image.changed.connect(self.check_inputs)
        self.model.currentTextChanged.connect(self.check_inputs)
        self.device.currentTextChanged.connect(self.check_inputs)
        self.zarr_path.textChanged.connect(self.check_inputs)
        for box in self.outputs.values():
            box.toggled.connect(self.check_inputs)
        self.check_inputs()

    # -- models ------------------------------------------------------------------------------------
    def segmenter(self, model: str, device: str, tile: int | None = None, tta: bool = False) -> Segmenter:
        """A loaded Segmenter for these settings (kept for the next run); raises what loading raised."""
        key = (model, device, tile, tta)
        cached = self._segmenters.get(key)
        if cached is None:
            try:
                cached = Segmenter(model, device=device, tile=tile, tta=tta)
            except (UnetSdkError, ValueError, OSError, RuntimeError) as exc:
                cached = exc
            self._segmenters[key] = cached
        if isinstance(cached, Exception):
            raise cached
        return cached

    def _model_setting(self) -> str:
        """The model field as Segmenter takes it: an embedded name, or a path with ~ expanded."""
        text = self.model.currentText().strip()
        return text if not text or text in EMBEDDED_MODELS else str(Path(text).expanduser())

    # -- input checks ------------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why Run cannot start now, or None."""
        if self._worker is not None:
            return "a prediction is running"
        layer = self.image.layer()
        if layer is None:
            return "add or open an image layer first"
        model = self._model_setting()
        if not model:
            return "choose a model"
        if model not in EMBEDDED_MODELS and not Path(model).exists():
            return f"model {model!r}: no such file, and not an embedded model ({', '.join(EMBEDDED_MODELS)})"
        try:
            probe = self.segmenter(model, self.device.currentText())
        except Exception as exc:  # noqa: BLE001 - any load failure is shown to the user as the reason
            return f"model {model!r} does not load: {exc}"
        outputs = self.chosen_outputs()
        if not outputs:
            return "choose at least one output"
        data = layer_data(layer)
        if np.dtype(data.dtype).kind not in "biuf":
            return f"layer {layer.name!r} has dtype {data.dtype}; the model needs real numbers"
        try:
            specs = output_arrays(probe, tuple(data.shape), outputs)
        except UnetSdkError as exc:
            return f"layer {layer.name!r} does not fit the model: {exc}"
        target = self._zarr_target()
        if target is not None:
            if "instances" in outputs:
                return "instances need the labels in memory: leave the zarr output empty or untick instances"
            if target.exists():
                return f"{target} exists; choose a new .zarr folder"
            if not target.parent.is_dir():
                return f"{target.parent} is not a folder"
            return None
        needed = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in specs.values())
        if needed > free_memory() // 2:
            return (f"the outputs need {needed / 2**30:.1f} GiB, more than half the free memory: "
                    "choose a zarr output folder (written tile by tile, shown lazily)")
        return None

    def check_inputs(self, *_args) -> None:
        """Enable Run, or disable it with the reason as its tooltip."""
        reason = self.problem()
        self.run_button.setEnabled(reason is None)
        self.run_button.setToolTip(reason or "segment the image")

    def chosen_outputs(self) -> list[str]:
        return [name for name, box in self.outputs.items() if box.isChecked()]

    def _zarr_target(self) -> Path | None:
        text = self.zarr_path.text().strip()
        return Path(text).expanduser() if text else None

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> None:
        reason = self.problem()
        if reason is not None:
            self.status.setText(reason)
            return
        layer = self.image.layer()
        settings = dict(
            model=self._model_setting(),
            device=self.device.currentText(),
            tile=self.tile.value() or None,
            tta=self.tta.isChecked(),
        )
        self._job = _Job(self, layer.name, settings, layer_data(layer), self.chosen_outputs(), self._zarr_target())
        self._pbar = progress(total=0, desc=f"segment {layer.name}")
        self.last_tiles = (0, 0)
        worker = create_worker(self._job, _ignore_errors=True)
        worker.returned.connect(lambda result, layer=layer: self._show(layer, *result))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self._worker = worker
        self.cancel_button.setEnabled(True)
        self.status.setText(f"segmenting {layer.name!r}…")
        self.check_inputs()
        worker.start()

    def cancel(self) -> None:
        """Stop the running prediction after the tile being computed."""
        if self._job is not None:
            self._job.cancel.set()
            self.status.setText("cancelling after this tile…")

    def _on_tiles(self, done: int, total: int) -> None:
        self.last_tiles = (done, total)
        if self._pbar is not None:
            if self._pbar.total != total:
                self._pbar.total = total
            self._pbar.update(done - self._pbar.n)

    def _show(self, layer, segmenter: Segmenter, result: dict[str, Any], seconds: float) -> None:
        meta = segmenter.metadata
        ndim = result["probabilities"].ndim - 1 if "probabilities" in result else next(iter(result.values())).ndim
        placement = dict(scale=tuple(layer.scale)[-ndim:], translate=tuple(layer.translate)[-ndim:])
        info = {"unet_sdk": {"model": self._job.settings["model"], "device": segmenter.device,
                             "tile": list(segmenter.tile), "tta": segmenter.tta}}
        lazy = {name: _lazy(array) for name, array in result.items()}
        if "probabilities" in lazy:
            proba = lazy["probabilities"]
            classes = range(meta.num_classes) if meta.num_classes > 2 else [meta.foreground_class]
            for c in classes:
                self.viewer.add_image(proba[c], name=f"{layer.name} P({meta.class_names[c]})", colormap="magma",
                                      contrast_limits=(0.0, 1.0), metadata=info, **placement)
        if "labels" in lazy:
            self.viewer.add_labels(lazy["labels"], name=f"{layer.name} labels", metadata=info, **placement)
        if "instances" in lazy:
            self.viewer.add_labels(lazy["instances"], name=f"{layer.name} instances", metadata=info, **placement)
        self.status.setText(f"{', '.join(result)} of {layer.name!r} in {seconds:.1f} s on {segmenter.device} "
                            f"({self.last_tiles[1]} tiles)")

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, PredictionCancelled):
            self.status.setText(f"{exc}; nothing was added")
            return
        self.status.setText(f"failed: {exc}")
        show_error(f"unet-sdk: segmentation failed: {exc}")

    def _finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
        self._pbar = None
        self._worker = None
        self.cancel_button.setEnabled(False)
        self.check_inputs()

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "U-Net model", "", MODEL_FILES)
        if path:
            self.model.setCurrentText(path)

    def _browse_zarr(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "zarr output folder", "", "zarr (*.zarr)")
        if path:
            self.zarr_path.setText(path if path.endswith(".zarr") else path + ".zarr")


def _lazy(array: Any) -> Any:
    """numpy arrays as they are; zarr arrays as dask arrays, so napari reads only what it shows."""
    if isinstance(array, np.ndarray):
        return array
    import dask.array as da

    return da.from_zarr(array)
