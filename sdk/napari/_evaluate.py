"""The Evaluate widget: ISBI 2012 scores of a proposal layer against a truth layer, the warping error's
topological errors where they are, and the variation of information object by object."""
from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ..errors import UnetSdkError
from ._widgets import LayerSelector, layer_data, row
from .error_clusters import ERROR_STYLES, object_markers
from .evaluation import Evaluation, evaluate_segmentation, is_instance_labelling

SWEEP, ONE_THRESHOLD = "ISBI 2012 sweep", "one threshold"
MAX_OBJECT_ROWS = 500  # the table lists the objects that contribute most; the scores cover all


def legend_html(clusters: dict | None = None, pixels: dict | None = None) -> str:
    """The error colours as a legend, with cluster and pixel counts per type once known."""
    items = []
    for error_type, (name, color) in ERROR_STYLES.items():
        count = "" if clusters is None else f": {clusters[error_type]} ({pixels[error_type]} px)"
        items.append(f'<span style="color:{color}">&#9632;</span>&nbsp;{name}{count}')
    return " &nbsp; ".join(items)


def error_colormap() -> DirectLabelColormap:
    """One colour per :class:`~sdk.metrics.ErrorType`; no error (0) and unknown values transparent."""
    colors = {None: "transparent", 0: "transparent"}
    colors.update({int(t): color for t, (_, color) in ERROR_STYLES.items()})
    return DirectLabelColormap(color_dict=colors)


class _EvaluationJob:
    """Scoring in the worker thread; ``str`` names it in napari's activity dock."""

    def __init__(self, truth, proposal, threshold, proposal_labels, name: str) -> None:
        self.args = (truth, proposal)
        self.kwargs = dict(threshold=threshold, proposal_labels=proposal_labels)
        self.name = name

    def __str__(self) -> str:
        return f"unet-sdk: evaluate {self.name}"

    def __call__(self) -> Evaluation:
        return evaluate_segmentation(*self.args, **self.kwargs)


class EvaluateWidget(QWidget):
    """Score a proposal (probabilities, or labels) against a ground truth and show the errors.

    Adds a labels layer with the warping error's leftover pixels (one colour per error type), a points
    layer with one marker per error cluster (Previous / Next jump between them, largest first), and
    fills a table with each object's share of the VI split (truth objects) and merge (proposal objects);
    a click on a row jumps to the object.
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.evaluation: Evaluation | None = None
        self._worker = None
        self._marker = -1
        self._placement: dict = {}
        self._object_positions: list[np.ndarray] = []

        self.truth = LayerSelector(napari_viewer, (Labels, Image))
        self.proposal = LayerSelector(napari_viewer, (Labels, Image))
        self.mode = QComboBox()
        self.mode.addItems([SWEEP, ONE_THRESHOLD])
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(self.run)
        self.scores = _table(["score", "value"])
        self.previous_button = QPushButton("◀ previous error")
        self.next_button = QPushButton("next error ▶")
        self.previous_button.clicked.connect(lambda: self.go_to_error(self._marker - 1))
        self.next_button.clicked.connect(lambda: self.go_to_error(self._marker + 1))
        self.marker_label = QLabel()
        self.legend = QLabel(legend_html())
        self.legend.setWordWrap(True)
        self.objects = _table(["object", "VI part", "pixels", "entropy (bits)", "share (bits)"])
        self.objects.cellClicked.connect(lambda row, _column: self.go_to_object(row))
        self.status = QLabel()
        self.status.setWordWrap(True)

        form = QFormLayout(self)
        form.addRow("ground truth", self.truth)
        form.addRow("proposal", self.proposal)
        form.addRow("threshold", row(self.mode, self.threshold))
        form.addRow(self.run_button)
        form.addRow(self.status)
        form.addRow(self.scores)
        form.addRow(self.legend)
        form.addRow(row(self.previous_button, self.next_button))
        form.addRow(self.marker_label)
        form.addRow(QLabel("variation of information per object (largest shares first)"))
        form.addRow(self.objects)

        for selector in (self.truth, self.proposal):
            selector.changed.connect(self.check_inputs)
        self.mode.currentTextChanged.connect(self.check_inputs)
        self.check_inputs()
        self._show_marker_buttons()

    # -- input checks ------------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why Evaluate cannot start now, or None."""
        if self._worker is not None:
            return "an evaluation is running"
        truth, proposal = self.truth.layer(), self.proposal.layer()
        if truth is None or proposal is None:
            return "choose a ground-truth layer and a proposal layer"
        if truth is proposal:
            return "the ground truth and the proposal are the same layer"
        t, p = layer_data(truth), layer_data(proposal)
        if t.shape != p.shape:
            return f"shapes differ: ground truth {t.shape}, proposal {p.shape}"
        if t.ndim not in (2, 3):
            return f"expected 2D images or (Z, H, W) stacks, got shape {t.shape}"
        if np.dtype(t.dtype).kind not in "biuf":
            return f"ground truth dtype {t.dtype} is not numeric"
        if isinstance(proposal, Image) and np.dtype(p.dtype).kind not in "bf":
            return (f"proposal image {proposal.name!r} has dtype {p.dtype}: give probabilities in [0, 1] "
                    "(float), or a labels layer")
        return None

    def check_inputs(self, *_args) -> None:
        reason = self.problem()
        self.threshold.setEnabled(self.mode.currentText() == ONE_THRESHOLD)
        self.run_button.setEnabled(reason is None)
        self.run_button.setToolTip(reason or "score the proposal and show its errors")

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> None:
        reason = self.problem()
        if reason is not None:
            self.status.setText(reason)
            return
        truth, proposal = self.truth.layer(), self.proposal.layer()
        p = np.asarray(layer_data(proposal))
        proposal_labels = None
        if isinstance(proposal, Labels):  # labels: foreground is any label; instances keep their labels
            proposal_labels = p if is_instance_labelling(p) else None
            p = p > 0
        threshold = None if self.mode.currentText() == SWEEP else float(self.threshold.value())
        self._placement = dict(scale=tuple(truth.scale), translate=tuple(truth.translate))
        job = _EvaluationJob(np.asarray(layer_data(truth)), p, threshold, proposal_labels,
                             f"{proposal.name!r} against {truth.name!r}")
        worker = create_worker(job, _ignore_errors=True)
        worker.returned.connect(self._show)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self._worker = worker
        self.status.setText(f"evaluating {job.name.removeprefix('unet-sdk: ')}…")
        self.check_inputs()
        worker.start()

    def _failed(self, exc: Exception) -> None:
        self.status.setText(f"failed: {exc}")
        if not isinstance(exc, UnetSdkError):
            show_error(f"unet-sdk: evaluation failed: {exc}")

    def _finished(self) -> None:
        self._worker = None
        self.check_inputs()

    def _show(self, evaluation: Evaluation) -> None:
        self.evaluation = evaluation
        _fill(self.scores, [(name, _number(value)) for name, value in evaluation.scores.items()])
        self._show_errors(evaluation)
        self._show_objects(evaluation)
        clusters = evaluation.clusters
        self.status.setText(f"{len(clusters)} topological errors at threshold {evaluation.threshold:g}: "
                            + ", ".join(f"{n} {ERROR_STYLES[t][0]}" for t, n in clusters.counts().items() if n))

    def _show_errors(self, evaluation: Evaluation) -> None:
        for name in ("warping errors", "error markers"):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.viewer.add_labels(evaluation.warping.classification, name="warping errors", colormap=error_colormap(),
                               opacity=0.9, **self._placement)
        clusters = evaluation.clusters
        types = [ERROR_STYLES[t][0] for t in clusters.types]
        colors = [ERROR_STYLES[t][1] for t in clusters.types] if len(clusters) else "white"
        self.viewer.add_points(clusters.positions, name="error markers", features={"type": types, "pixels": clusters.sizes},
                               symbol="ring", face_color=colors, size=7, border_width=0, opacity=0.8,
                               **self._placement)
        self.legend.setText(legend_html(clusters.counts(), clusters.pixels()))
        self._marker = -1
        self.marker_label.setText(f"{len(clusters)} errors; 'next error' jumps to the largest")
        self._show_marker_buttons()

    def _show_objects(self, evaluation: Evaluation) -> None:
        rows, positions = [], []
        for part, entropies, image in (("split", evaluation.split_objects, evaluation.truth_objects),
                                       ("merge", evaluation.merge_objects, evaluation.proposal_objects)):
            labels, where, _ = object_markers(image)
            at = dict(zip(labels.tolist(), where))
            for label, size, entropy, share in zip(entropies.labels.tolist(), entropies.sizes, entropies.entropy,
                                                   entropies.share):
                if share > 0:
                    side = "truth" if part == "split" else "proposal"
                    name = f"{side} {label}" if label != 0 else f"{side} background (0)"
                    rows.append((share, name, part, int(size),
                                 float(entropy), at.get(label)))
        rows.sort(key=lambda r: -r[0])
        rows = rows[:MAX_OBJECT_ROWS]
        _fill(self.objects, [(name, part, str(size), f"{entropy:.3f}", f"{share:.5f}")
                             for share, name, part, size, entropy, _ in rows])
        self._object_positions = [r[5] for r in rows]

    # -- navigation --------------------------------------------------------------------------------
    def go_to_error(self, index: int) -> None:
        """Centre the view on error cluster ``index`` (wrapping around) and select its marker."""
        if self.evaluation is None or not len(self.evaluation.clusters):
            return
        clusters = self.evaluation.clusters
        self._marker = index % len(clusters)
        self._focus(clusters.positions[self._marker])
        points = self.viewer.layers["error markers"] if "error markers" in self.viewer.layers else None
        if points is not None:
            points.selected_data = {self._marker}
        name = ERROR_STYLES[clusters.types[self._marker]][0]
        where = ", ".join(str(int(c)) for c in clusters.positions[self._marker])
        self.marker_label.setText(f"error {self._marker + 1} of {len(clusters)}: {name}, "
                                  f"{int(clusters.sizes[self._marker])} px at ({where})")
        self._show_marker_buttons()

    def go_to_object(self, row: int) -> None:
        if 0 <= row < len(self._object_positions) and self._object_positions[row] is not None:
            self._focus(self._object_positions[row])

    def _focus(self, position: np.ndarray) -> None:
        scale = np.asarray(self._placement.get("scale", np.ones(position.size)), dtype=float)
        translate = np.asarray(self._placement.get("translate", np.zeros(position.size)), dtype=float)
        world = position * scale + translate
        if world.size == 3:  # a stack: go to the slice
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, world[0])
        self.viewer.camera.center = tuple(world[-2:])
        self.viewer.camera.zoom = max(self.viewer.camera.zoom, 4.0 / float(scale[-1]))

    def _show_marker_buttons(self) -> None:
        has = self.evaluation is not None and len(self.evaluation.clusters) > 0
        self.previous_button.setEnabled(has)
        self.next_button.setEnabled(has)


def _number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectRows)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _fill(table: QTableWidget, rows: list[tuple]) -> None:
    table.setRowCount(len(rows))
    for r, cells in enumerate(rows):
        for c, text in enumerate(cells):
            table.setItem(r, c, QTableWidgetItem(str(text)))
    table.resizeColumnsToContents()


