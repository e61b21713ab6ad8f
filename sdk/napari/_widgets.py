"""Qt pieces shared by the widgets: a layer chooser kept in step with the layer list, a row of widgets."""
from __future__ import annotations

from typing import Any, Sequence

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QWidget


class LayerSelector(QComboBox):
    """The viewer's layers of ``kinds`` by name; :meth:`layer` is the chosen one (None when there is none).

    ``changed`` fires when the choice changes, including when the chosen layer is renamed, removed or
    its data replaced, so owners can re-check their inputs.
    """

    changed = Signal()

    def __init__(self, viewer, kinds: Sequence[type], parent=None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._kinds = tuple(kinds)
        self._watched: list = []
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self._refresh)
        self.currentIndexChanged.connect(lambda _index: self._watch_current())
        self._refresh()

    def layers(self) -> list:
        return [layer for layer in self._viewer.layers if isinstance(layer, self._kinds)]

    def layer(self):
        name = self.currentText()
        for layer in self.layers():
            if layer.name == name:
                return layer
        return None

    def set_layer(self, layer) -> None:
        self.setCurrentIndex(self.findText(layer.name))

    def _refresh(self, _event=None) -> None:
        layers = self.layers()
        names = [layer.name for layer in layers]
        chosen = self._watched[0] if self._watched else None
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if chosen in layers:  # by identity: a renamed layer stays chosen
            self.setCurrentIndex(layers.index(chosen))
        elif names:  # a newly added layer of this kind is the likely next input
            self.setCurrentIndex(len(names) - 1)
        self.blockSignals(False)
        self._watch_current()

    def _watch_current(self) -> None:
        for layer in self._watched:
            layer.events.name.disconnect(self._refresh)
            layer.events.data.disconnect(self._emit)
        layer = self.layer()
        self._watched = [] if layer is None else [layer]
        if layer is not None:
            layer.events.name.connect(self._refresh)
            layer.events.data.connect(self._emit)
        self.changed.emit()

    def _emit(self, _event=None) -> None:
        self.changed.emit()


def layer_data(layer) -> Any:
    """The full-resolution data of a layer (level 0 of a multiscale pyramid)."""
    return layer.data[0] if layer.multiscale else layer.data


def row(*widgets: QWidget) -> QWidget:
    """``widgets`` side by side, without margins."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return box
