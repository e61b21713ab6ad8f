"""The Segment widget: a U-Net on an image layer -> labels, probabilities and/or instances layers."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFileDialog, QLineEdit, QPushButton

from .._version import __version__
from ..calibration import Calibration
from ..atomic import atomic_output
from ..io import create_zarr
from ..ngff import read_ngff
from ..segmenter import Segmenter
from ._model_task import ModelJob, ModelTaskWidget
from ._widgets import layer_data, row
from .prediction import OUTPUTS, output_arrays, predict_outputs

ZARR_NAMES = {"labels": "labels", "probabilities": "proba"}  # as unet-sdk predict names its outputs
SPATIAL_AXES = {1: "X", 2: "YX", 3: "ZYX"}


def free_memory() -> int:
    """Bytes of memory available to new allocations (psutil, which napari installs)."""
    import psutil

    return int(psutil.virtual_memory().available)


def zarr_targets(folder: Path, layer_name: str, outputs: list[str]) -> dict[str, Path]:
    """Where each output goes in a zarr folder: ``LAYER_labels.zarr``, ``LAYER_proba.zarr``."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in layer_name)
    return {name: folder / f"{stem}_{ZARR_NAMES[name]}.zarr" for name in outputs}


def predict_to_zarr(segmenter: Segmenter, data: Any, outputs: list[str], targets: dict[str, Path], *,
                    scale: tuple[float, ...], model: str, source: str, progress) -> dict[str, Any]:
    """``outputs`` written tile by tile as OME-Zarr images with the layer's pixel size and unet-sdk's record
    (as ``unet-sdk predict`` writes them), each atomically: a cancelled or failed run leaves no half-written
    store. Returns the stored arrays, opened lazily."""
    meta = segmenter.metadata
    with contextlib.ExitStack() as stack:
        temporaries = {name: stack.enter_context(atomic_output(path)) for name, path in targets.items()}

        def allocate(name: str, shape: tuple, dtype: np.dtype) -> Any:
            spatial_axes = SPATIAL_AXES[len(shape) - (name == "probabilities")]
            axes = ("C" if name == "probabilities" else "") + spatial_axes
            steps = (1.0,) * (name == "probabilities") + scale[len(scale) - len(spatial_axes):]
            record = {"kind": name, "axes": axes, "class_names": list(meta.class_names),
                      "foreground_class": meta.foreground_class, "model": model, "source": source,
                      "unet_sdk_version": __version__}
            return create_zarr(temporaries[name], shape, dtype, calibration=Calibration(axes, steps, (None,) * len(axes)),
                               record=record, labels=None if name == "probabilities" else "classes")

        predict_outputs(segmenter, data, outputs, allocate=allocate, progress=progress)
    return {name: read_ngff(path).array for name, path in targets.items()}


class SegmentWidget(ModelTaskWidget):
    """Segment the chosen image layer with a U-Net (an embedded model, an .onnx file or a bioimage.io
    package) and add labels, probabilities and/or instances as layers.

    Run stays disabled, with a tooltip saying why, until the model loads and accepts the image. Outputs
    larger than half the free memory need a zarr folder; they are then written tile by tile and shown
    lazily. Cancel stops the prediction after the tile being computed.
    """

    verb = "segment"

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer)
        self.tta = QCheckBox("average over flips (TTA)")
        self.postprocess = QCheckBox("the model's post-processing (e.g. watershed boundaries)")
        self.postprocess.setChecked(True)
        self.postprocess.setToolTip("what the model's metadata declares, applied to each whole image; "
                                    "untick for the network's raw output")
        self.outputs = {name: QCheckBox(name) for name in OUTPUTS}
        self.outputs["labels"].setChecked(True)
        self.split_touching = QCheckBox("split touching instances (seeded watershed)")
        self.zarr_path = QLineEdit()
        self.zarr_path.setPlaceholderText("in memory")
        self.zarr_path.setToolTip("a folder for outputs larger than memory: written there tile by tile as "
                                  "OME-Zarr (LAYER_labels.zarr, LAYER_proba.zarr) and shown lazily")
        browse_zarr = QPushButton("…")
        browse_zarr.clicked.connect(self._browse_zarr)
        self.form.addRow("", self.tta)
        self.form.addRow("", self.postprocess)
        self.form.addRow("outputs", row(*self.outputs.values()))
        self.form.addRow("", self.split_touching)
        self.form.addRow("zarr folder", row(self.zarr_path, browse_zarr))
        self.zarr_path.textChanged.connect(self.check_inputs)
        for box in self.outputs.values():
            box.toggled.connect(self.check_inputs)
        self.finish_layout()

    def chosen_outputs(self) -> list[str]:
        return [name for name, box in self.outputs.items() if box.isChecked()]

    def _zarr_folder(self) -> Path | None:
        text = self.zarr_path.text().strip()
        return Path(text).expanduser() if text else None

    def task_problem(self, layer, probe: Segmenter) -> str | None:
        outputs = self.chosen_outputs()
        if not outputs:
            return "choose at least one output"
        specs = output_arrays(probe, tuple(layer_data(layer).shape), outputs)
        folder = self._zarr_folder()
        if folder is not None:
            if "instances" in outputs:
                return "instances need the labels in memory: leave the zarr folder empty or untick instances"
            if not folder.is_dir():
                return f"zarr folder {folder} does not exist"
            existing = [p.name for p in zarr_targets(folder, layer.name, outputs).values() if p.exists()]
            if existing:
                return f"{', '.join(existing)} exist(s) in {folder}; choose another folder or remove them"
            return None
        needed = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in specs.values())
        if needed > free_memory() // 2:
            return (f"the outputs need {needed / 2**30:.1f} GiB, more than half the free memory: "
                    "choose a zarr folder (outputs written tile by tile, shown lazily)")
        return None

    def start_job(self, layer) -> ModelJob:
        settings = dict(self.settings(), tta=self.tta.isChecked(), postprocess=self.postprocess.isChecked())
        data, outputs, folder = layer_data(layer), self.chosen_outputs(), self._zarr_folder()
        split_touching = self.split_touching.isChecked()
        scale = tuple(float(s) for s in layer.scale)

        def work(segmenter: Segmenter, progress) -> dict[str, Any]:
            if folder is None:
                return predict_outputs(segmenter, data, outputs, progress=progress, split_touching=split_touching)
            return predict_to_zarr(segmenter, data, outputs, zarr_targets(folder, layer.name, outputs),
                                   scale=scale, model=settings["model"], source=layer.name, progress=progress)

        return ModelJob(self, f"segment {layer.name!r}", settings, work)

    def show_result(self, layer, segmenter: Segmenter, result: dict[str, Any], seconds: float) -> None:
        meta = segmenter.metadata
        lazy = {name: _lazy(array) for name, array in result.items()}
        ndim = lazy["probabilities"].ndim - 1 if "probabilities" in lazy else next(iter(lazy.values())).ndim
        placement = self.placement(layer, ndim)
        record = {"model": self._job.settings["model"], "device": segmenter.device, "tile": list(segmenter.tile),
                  "tta": segmenter.tta, "postprocess": segmenter.postprocess, "class_names": list(meta.class_names),
                  "foreground_class": meta.foreground_class, "source": layer.name}
        if "probabilities" in lazy:
            classes = range(meta.num_classes) if meta.num_classes > 2 else [meta.foreground_class]
            for c in classes:
                self.viewer.add_image(lazy["probabilities"][c], name=f"{layer.name} P({meta.class_names[c]})",
                                      colormap="magma", contrast_limits=(0.0, 1.0),
                                      metadata={"unet_sdk": dict(record, kind="probabilities", channel=c)}, **placement)
        for name in ("labels", "instances"):
            if name in lazy:
                self.viewer.add_labels(lazy[name], name=f"{layer.name} {name}",
                                       metadata={"unet_sdk": dict(record, kind=name)}, **placement)
        self.status.setText(f"{', '.join(result)} of {layer.name!r} in {seconds:.1f} s on {segmenter.device} "
                            f"({self.steps_text()})")

    def _browse_zarr(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "folder for zarr outputs")
        if path:
            self.zarr_path.setText(path)


def _lazy(array: Any) -> Any:
    """numpy arrays as they are; zarr arrays as dask arrays, so napari reads only what it shows."""
    if isinstance(array, np.ndarray):
        return array
    import dask.array as da

    return da.from_zarr(array)
