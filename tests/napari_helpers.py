"""Driving the plugin's widgets in tests: dock one in a fresh viewer, click Run and wait for its worker.
Import after ``pytest.importorskip("napari")``."""
from __future__ import annotations

from qtpy.QtCore import Qt


def docked(make_napari_viewer, widget_class):
    """A ``widget_class`` docked in a new viewer (its ``.viewer``)."""
    viewer = make_napari_viewer()
    widget = widget_class(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def click_and_wait(qtbot, widget, timeout_ms: int = 60_000) -> None:
    """Click Run as a user would (it must be enabled) and wait until the worker thread has finished."""
    assert widget.run_button.isEnabled(), widget.run_button.toolTip()
    qtbot.mouseClick(widget.run_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=timeout_ms)
