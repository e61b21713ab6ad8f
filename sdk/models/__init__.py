"""Files shipped inside the package: the ISBI 2012 U-Nets (fp32 default, int8) and a sample image for
``unet-sdk demo``.

Located with :mod:`importlib.resources`, so they are found in a wheel, an editable install or a zip.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import ModelError

# name -> file of the embedded models; a Segmenter or the CLI accepts the name wherever it takes a model path
EMBEDDED_MODELS = {
    "isbi2012": "isbi2012_unet.onnx",  # fp32, the default
    "isbi2012-int8": "isbi2012_unet_int8.onnx",  # static int8 QDQ: ~2x faster on CPUs, held-out scores within 3e-4 of fp32
}
DEFAULT_MODEL_NAME = "isbi2012"
DEFAULT_MODEL = EMBEDDED_MODELS[DEFAULT_MODEL_NAME]
SAMPLE_IMAGE = "isbi2012_test_slice0.png"  # slice 0 of the ISBI 2012 test volume (Cardona et al. 2010)


def _resource(name: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(name)))


def embedded_model_path(name: str) -> Path:
    """Path of the embedded model called ``name`` (a key of :data:`EMBEDDED_MODELS`); :class:`ModelError`
    if the name is unknown or this install lacks the file."""
    if name not in EMBEDDED_MODELS:
        raise ModelError(f"no embedded model called {name!r}; the embedded models are {', '.join(EMBEDDED_MODELS)}")
    path = _resource(EMBEDDED_MODELS[name])
    if not path.is_file():
        raise ModelError(
            f"the embedded model {name!r} ({path.name}) is missing from this installation ({path}); "
            "reinstall unet-sdk or pass a model path"
        )
    return path


def default_model_path() -> Path:
    """Path of the embedded default model (``isbi2012``, fp32)."""
    return embedded_model_path(DEFAULT_MODEL_NAME)


def resolve_model(model: str | os.PathLike | bytes | None) -> str | os.PathLike | bytes:
    """What a ``model`` argument names: ``None`` is the default model, the name of an embedded model its
    file (a file of that name in the working directory wins), a BioImage Model Zoo package (rdf.yaml, its
    folder or a .zip) a :class:`sdk.bioimageio.ZooModel`, anything else is returned as given."""
    if model is None:
        return default_model_path()
    if isinstance(model, (str, os.PathLike)):
        from ..bioimageio import is_package, load_package

        if is_package(model):  # a BioImage Model Zoo package: rdf.yaml, its folder, or a .zip
            return load_package(model)
    if isinstance(model, str) and model in EMBEDDED_MODELS and not Path(model).exists():
        return embedded_model_path(model)
    return model


def sample_image_path() -> Path:
    """Path of the shipped sample image (512x512 uint8 electron microscopy slice)."""
    return _resource(SAMPLE_IMAGE)
