"""unet-sdk: deployable U-Net segmentation.

``Segmenter`` runs a self-describing ONNX U-Net over images and volumes of any size with ONNX Runtime;
``sdk.metrics`` scores segmentations (Fiji-exact ISBI 2012 warping, Rand and pixel error, VI, adapted
Rand) with a C++ core. Neither imports torch. Submodules load lazily so ``import sdk`` stays cheap.
"""
from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import (
    InvalidInputError,
    ModelError,
    OutputExistsError,
    RuntimeUnavailableError,
    UnetSdkError,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:  # pragma: no cover
    from . import metrics
    from .segmenter import Segmenter

__all__ = [
    "__version__",
    "Segmenter",
    "metrics",
    "UnetSdkError",
    "InvalidInputError",
    "ModelError",
    "RuntimeUnavailableError",
    "OutputExistsError",
]


def __dir__() -> list[str]:
    # the public names (with the lazily loaded ones) and the submodules loaded so far, not the imports
    # this module uses itself (importlib, logging, TYPE_CHECKING)
    loaded = {
        name for name, value in globals().items()
        if isinstance(value, ModuleType) and value.__name__.startswith(__name__ + ".") and not name.startswith("_")
    }
    return sorted(set(__all__) | loaded)


def __getattr__(name: str):
    if name == "Segmenter":
        return importlib.import_module(".segmenter", __name__).Segmenter
    if name == "metrics":
        return importlib.import_module(".metrics", __name__)
    raise AttributeError(f"module 'sdk' has no attribute {name!r}")
