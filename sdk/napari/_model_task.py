"""What the Segment and Explain widgets share: an image layer, a model (embedded name, .onnx file or
bioimage.io package), device and tile; input checks that disable Run with the reason as its tooltip; a
worker thread with tile progress in napari's activity dock and a Cancel that stops between tiles."""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QLabel, QPushButton, QSpinBox, QWidget

from ..errors import UnetSdkError
from ..models import EMBEDDED_MODELS
from ..runtime import DEVICES
from ..segmenter import Segmenter
from ._widgets import LayerSelector, layer_data, row
from .prediction import PredictionCancelled

MODEL_FILES = "Models (*.onnx *.zip *.yaml *.yml);;All files (*)"
Progress = Callable[[int, int], None]
PROGRESS_INTERVAL = 0.05  # seconds between tile-count updates sent to the GUI thread


class _TileRelay(QObject):
    """Carries tile counts from the worker thread to the GUI thread (a queued Qt signal)."""

    tiles = Signal(int, int)


class ModelJob:
    """A task run in the worker thread: ``work(segmenter, progress)``; ``str`` names it in the activity dock.

    The progress callback raises :class:`PredictionCancelled` once Cancel was clicked, which stops the
    tiling after the tile being computed.
    """

    def __init__(self, owner: "ModelTaskWidget", title: str, settings: dict,
                 work: Callable[[Segmenter, Progress], Any]) -> None:
        self.owner, self.title, self.settings, self.work = owner, title, settings, work
        self.cancel = threading.Event()
        self._last_emit = -math.inf  # the first tile always shows

    def __str__(self) -> str:
        return f"unet-sdk: {self.title}"

    def progress(self, done: int, total: int) -> None:
        # at most one queued update per PROGRESS_INTERVAL: tens of thousands of tiny tiles would flood the
        # GUI thread's queue (and napari's progress events recursed under them)
        now = time.monotonic()
        if done == total or now - self._last_emit >= PROGRESS_INTERVAL:
            self._last_emit = now
            self.owner._relay.tiles.emit(done, total)
        if self.cancel.is_set():
            raise PredictionCancelled(f"cancelled after {done} of {total} tiles")

    def __call__(self) -> tuple[Segmenter, Any, float]:
        start = time.perf_counter()
        segmenter = self.owner.segmenter(**self.settings)
        result = self.work(segmenter, self.progress)
        return segmenter, result, time.perf_counter() - start


class ModelTaskWidget(QWidget):
    """Base of the widgets that run a model on an image layer. Subclasses add their rows with
    :meth:`add_row`, and implement :meth:`task_problem`, :meth:`start_job` and :meth:`show_result`."""

    verb = "run"

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._relay = _TileRelay()
        self._relay.tiles.connect(self._on_tiles)
        self._segmenters: dict[tuple, Segmenter | Exception] = {}
        self._job: ModelJob | None = None
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
        self.run_button = QPushButton(self.verb.capitalize())
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel()
        self.status.setWordWrap(True)

        self.form = QFormLayout(self)
        self.form.addRow("image", self.image)
        self.form.addRow("model", row(self.model, browse_model))
        self.form.addRow("device", self.device)
        self.form.addRow("tile", self.tile)
        self.image.changed.connect(self.check_inputs)
        self.model.currentTextChanged.connect(self.check_inputs)
        self.device.currentTextChanged.connect(self.check_inputs)

    def finish_layout(self) -> None:
        """Add the Run/Cancel row and the status line below the subclass's rows; check the inputs."""
        self.form.addRow(row(self.run_button, self.cancel_button))
        self.form.addRow(self.status)
        self.check_inputs()

    # -- models ------------------------------------------------------------------------------------
    def segmenter(self, model: str, device: str, tile: int | None = None, tta: bool = False,
                  postprocess: bool = True) -> Segmenter:
        """A loaded Segmenter for these settings (kept for the next run); raises what loading raised.
        A model file is loaded again once it changes (its modification time is part of the key)."""
        path = Path(model)
        key = (model, path.stat().st_mtime_ns if path.exists() else None, device, tile, tta, postprocess)
        cached = self._segmenters.get(key)
        if cached is None:
            try:
                cached = Segmenter(model, device=device, tile=tile, tta=tta, postprocess=postprocess)
            except (UnetSdkError, ValueError, OSError, RuntimeError) as exc:
                cached = exc
            self._segmenters[key] = cached
        if isinstance(cached, Exception):
            raise cached
        return cached

    def model_setting(self) -> str:
        """The model field as Segmenter takes it: an embedded name, or a path with ~ expanded."""
        text = self.model.currentText().strip()
        return text if not text or text in EMBEDDED_MODELS else str(Path(text).expanduser())

    def settings(self) -> dict:
        """Segmenter settings of a run (see :meth:`segmenter`)."""
        return dict(model=self.model_setting(), device=self.device.currentText(), tile=self.tile.value() or None)

    # -- input checks ------------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why Run cannot start now, or None."""
        if self._worker is not None:
            return f"{self.verb}: already running"
        layer = self.image.layer()
        if layer is None:
            return "add or open an image layer first"
        model = self.model_setting()
        if not model:
            return "choose a model"
        if model not in EMBEDDED_MODELS and not Path(model).exists():
            return f"model {model!r}: no such file, and not an embedded model ({', '.join(EMBEDDED_MODELS)})"
        try:
            probe = self.segmenter(model, self.device.currentText())
        except Exception as exc:  # noqa: BLE001 - any load failure is shown to the user as the reason
            return f"model {model!r} does not load: {exc}"
        data = layer_data(layer)
        if np.dtype(data.dtype).kind not in "biuf":
            return f"layer {layer.name!r} has dtype {data.dtype}; the model needs real numbers"
        try:
            probe.output_spec(tuple(data.shape))
        except UnetSdkError as exc:
            return f"layer {layer.name!r} does not fit the model: {exc}"
        return self.task_problem(layer, probe)

    def task_problem(self, layer, probe: Segmenter) -> str | None:
        """The subclass's own checks, once the model loads and takes the image."""
        raise NotImplementedError

    def check_inputs(self, *_args) -> None:
        """Enable Run, or disable it with the reason as its tooltip."""
        reason = self.problem()
        self.run_button.setEnabled(reason is None)
        self.run_button.setToolTip(reason or f"{self.verb} the image")

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> None:
        reason = self.problem()
        if reason is not None:
            self.status.setText(reason)
            return
        layer = self.image.layer()
        self._job = self.start_job(layer)
        self._pbar = progress(total=0, desc=f"{self.verb} {layer.name}")
        self.last_tiles = (0, 0)
        worker = create_worker(self._job, _ignore_errors=True)
        worker.returned.connect(lambda result, layer=layer: self.show_result(layer, *result))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self._worker = worker
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{self.verb}: {layer.name!r}…")
        self.check_inputs()
        worker.start()

    def start_job(self, layer) -> ModelJob:
        """The job for ``layer`` (called in the GUI thread: read the widget's values here)."""
        raise NotImplementedError

    def show_result(self, layer, segmenter: Segmenter, result: Any, seconds: float) -> None:
        """Add the result as layers (GUI thread)."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop the running job after the tile being computed."""
        if self._job is not None:
            self._job.cancel.set()
            self.status.setText("cancelling after this tile…")

    def placement(self, layer, ndim: int) -> dict:
        """Scale and translation of an ``ndim``-dimensional result of ``layer`` (its trailing axes)."""
        return dict(scale=tuple(layer.scale)[-ndim:], translate=tuple(layer.translate)[-ndim:])

    def steps_text(self, noun: str = "tile") -> str:
        """How many tile steps the last run reported, e.g. "1 tile", "25 tiles"."""
        total = self.last_tiles[1]
        return f"{total} {noun}{'' if total == 1 else 's'}"

    def _on_tiles(self, done: int, total: int) -> None:
        self.last_tiles = (done, total)
        if self._pbar is not None:
            if self._pbar.total != total:
                self._pbar.total = total
            self._pbar.update(done - self._pbar.n)

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, PredictionCancelled):
            self.status.setText(f"{exc}; nothing was added")
            return
        self.status.setText(f"failed: {exc}")
        show_error(f"unet-sdk: {self.verb} failed: {exc}")

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
