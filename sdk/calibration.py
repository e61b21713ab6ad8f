"""Physical calibration of an image: its axes, the pixel size along each, and the units.

One small record shared by the readers (OME-TIFF, ImageJ TIFF, OME-Zarr) and the writers, so that a
prediction keeps the pixel size of its input. Axes are upper-case letters as tifffile and the
``Segmenter`` spell them (``T`` time, ``C`` channel, ``Z``, ``Y``, ``X``); units are stored as the
UDUNITS-2 names OME-Zarr (NGFF) requires (``micrometer``) and translated for ImageJ (``micron``) and
OME-XML (``µm``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidInputError

SPACE_AXES = "ZYX"

# OME-XML / ImageJ spellings -> UDUNITS-2 names (the NGFF axes "unit" vocabulary)
_UNIT_ALIASES = {
    "pm": "picometer", "nm": "nanometer", "µm": "micrometer", "μm": "micrometer", "um": "micrometer",
    "micron": "micrometer", "microns": "micrometer", "mm": "millimeter", "cm": "centimeter", "m": "meter",
    "å": "angstrom", "angstrom": "angstrom", "ms": "millisecond", "s": "second", "sec": "second",
    "min": "minute", "h": "hour",
}
_OME_SPELLING = {
    "picometer": "pm", "nanometer": "nm", "micrometer": "µm", "millimeter": "mm", "centimeter": "cm",
    "meter": "m", "angstrom": "Å", "millisecond": "ms", "second": "s", "minute": "min", "hour": "h",
}


def udunits(unit: str | None) -> str | None:
    """The UDUNITS-2 name of ``unit`` (``"µm"``, ``"micron"`` -> ``"micrometer"``); None for none/pixel."""
    if unit is None:
        return None
    text = str(unit).strip()
    if not text or text.lower() in ("pixel", "pixels", "px"):
        return None
    lowered = text.lower()
    if lowered in _OME_SPELLING:
        return lowered
    return _UNIT_ALIASES.get(text, _UNIT_ALIASES.get(lowered, text))


def ome_unit(unit: str | None) -> str | None:
    """OME-XML spelling of a UDUNITS-2 unit (``"micrometer"`` -> ``"µm"``)."""
    return None if unit is None else _OME_SPELLING.get(unit, unit)


def imagej_unit(unit: str | None) -> str | None:
    """ImageJ's spelling (``"micron"``: Fiji shows it as µm)."""
    return None if unit is None else ("micron" if unit == "micrometer" else ome_unit(unit))


@dataclass(frozen=True)
class Calibration:
    """``axes`` letters with one ``scale`` (physical size of a pixel step) and ``unit`` per axis.

    ``scale`` is 1.0 and ``unit`` None where the source said nothing.
    """

    axes: str
    scale: tuple[float, ...]
    units: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.axes) or len(self.units) != len(self.axes):
            raise InvalidInputError(
                f"calibration: {len(self.axes)} axes {self.axes!r} but {len(self.scale)} scales, "
                f"{len(self.units)} units"
            )
        if len(set(self.axes)) != len(self.axes):
            raise InvalidInputError(f"calibration: repeated axis in {self.axes!r}")
        for axis, step in zip(self.axes, self.scale):
            if not step > 0:  # also refuses NaN
                raise InvalidInputError(f"calibration: scale of axis {axis} must be > 0, got {step}")

    @classmethod
    def uncalibrated(cls, axes: str) -> "Calibration":
        return cls(axes, (1.0,) * len(axes), (None,) * len(axes))

    @property
    def is_calibrated(self) -> bool:
        return any(s != 1.0 for s in self.scale) or any(u is not None for u in self.units)

    def of(self, axis: str) -> tuple[float, str | None]:
        """(scale, unit) of ``axis``; (1.0, None) for an axis this calibration does not have."""
        if axis in self.axes:
            i = self.axes.index(axis)
            return self.scale[i], self.units[i]
        return 1.0, None

    def with_axes(self, axes: str) -> "Calibration":
        """The calibration of an array with ``axes`` (e.g. a prediction ``CZYX`` of a ``ZYX`` input):
        shared axes keep their values, new ones are uncalibrated."""
        pairs = [self.of(a) for a in axes]
        return Calibration(axes, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def spatial_unit(self) -> str | None:
        """The unit shared by the spatial axes present (None if none or if they differ)."""
        units = {u for a, u in zip(self.axes, self.units) if a in SPACE_AXES}
        return units.pop() if len(units) == 1 else None
