"""Files shipped inside the package: the default ISBI 2012 U-Net and a sample image for ``unet-sdk demo``.

Located with :mod:`importlib.resources`, so they are found in a wheel, an editable install or a zip.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import ModelError

DEFAULT_MODEL = "isbi2012_unet.onnx"
SAMPLE_IMAGE = "isbi2012_test_slice0.png"  # slice 0 of the ISBI 2012 test volume (Cardona et al. 2010)


def _resource(name: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(name)))


def default_model_path() -> Path:
    """Path of the embedded default model; :class:`ModelError` if this install lacks it."""
    path = _resource(DEFAULT_MODEL)
    if not path.is_file():
        raise ModelError(
            f"the default model {DEFAULT_MODEL} is missing from this installation ({path}); "
            "reinstall unet-sdk or pass a model path"
        )
    return path


def sample_image_path() -> Path:
    """Path of the shipped sample image (512x512 uint8 electron microscopy slice)."""
    return _resource(SAMPLE_IMAGE)
