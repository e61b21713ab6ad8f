"""Our ``.onnx`` models as BioImage Model Zoo packages (model format 0.5.x, ``bioimageio.spec``).

:func:`export_package` writes one zip that deepImageJ, ilastik, QuPath, napari, BiaPy and ``bioimageio.core``
open: ``rdf.yaml``; ``weights.onnx`` (the model file itself, metadata included, with its sha256 and opset);
test input/output tensors (``.npy``, and as TIFF sample tensors) computed by our runtime on a crop of a
sample image; a cover (the
image and its segmentation overlaid, 2:1); a generated ``README.md`` (training data, held-out scores,
intended use, limits). Everything the rdf says comes from the model's own metadata:

* axes ``batch, channel (names), [z,] y, x``; space sizes ``{min, step}`` from the size rule, with units and
  pixel size when known; the output follows the input minus the network's own crop (``offset``);
* ``halo``: for overlap-tile models (``blend="none"``, same padding) half the recommended overlap in
  pixels, which the zoo's tiled runners crop from every tile;
* preprocessing from our normalisation (:func:`sdk.bioimageio_processing.preprocessing_for`), postprocessing from the
  output activation; a normalisation without zoo equivalent is a :class:`~sdk.errors.ModelError`;
* ``config.bioimageio.reproducibility_tolerance``: :data:`REPRODUCIBILITY_TOLERANCE` (probabilities agree
  to 1e-4 absolute; ONNX Runtime's thread-count-dependent summation order and the zoo's ``std + eps``
  against our ``max(std, eps)`` measure 3e-8 on the default model's test tensors, 2.5e-6 over a 2048²
  image), and ``config.unet_sdk`` with our metadata.

The zip is validated by ``bioimageio.spec`` while it is written (no network: local files only) and moved
into place atomically. ``bioimageio test PACKAGE.zip`` (``bioimageio.core``) then reproduces the test
outputs and runs the model at several sizes and batch sizes.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sdk import __version__ as sdk_version
from sdk.bioimageio_processing import postprocessing_for, preprocessing_for
from sdk.errors import InvalidInputError, ModelError, OutputExistsError
from sdk.inference import activate
from sdk.atomic import atomic_output
from sdk.io import read_image
from sdk.model_file import read_model_file
from sdk.model_metadata import ModelMetadata
from sdk.models import resolve_model, sample_image_path

logger = logging.getLogger(__name__)

INPUT_ID, OUTPUT_ID = "image", "probabilities"
REPRODUCIBILITY_TOLERANCE = {"absolute_tolerance": 1e-4, "relative_tolerance": 0.0, "mismatched_elements_per_million": 0}
TEST_SIDE = {2: 256, 3: 48}  # test tensors: small, so `bioimageio test` stays quick
UNET_CITATION = (
    "Ronneberger, Fischer, Brox (2015). U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI.",
    "10.1007/978-3-319-24574-4_28",
)
# the pixel size of known training sets (Cardona et al. 2010: ssTEM at 4 x 4 nm, sections 50 nm)
KNOWN_PIXEL_SIZES = {"isbi2012": ((4.0, 4.0), "nanometer")}
DOI = re.compile(r"doi:\s*(10\.\d{4,9}/[^\s;,)]+)", re.IGNORECASE)


def export_package(
    model: str | os.PathLike | None,
    output: str | os.PathLike,
    *,
    sample: str | os.PathLike | np.ndarray | None = None,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] = ("unet-sdk",),
    license: str = "MIT",
    pixel_size: Sequence[float] | None = None,
    unit: str | None = None,
    test_side: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the zoo package of ``model`` (an ``.onnx`` with unet-sdk metadata, an embedded model's name or
    None for the default) to ``output`` (a ``.zip``); return its path.

    ``sample`` is the image (path or array, (C,) *spatial) the test tensors and the cover are cut from;
    default: the shipped ISBI 2012 slice for a 2D one-channel model, else a reproducible synthetic image.
    ``pixel_size`` (one per space axis, y/x or z/y/x) and ``unit`` (a zoo space unit, e.g. "nanometer")
    describe the space axes; default: known for the training sets in :data:`KNOWN_PIXEL_SIZES`.
    ``test_side`` is the test tensors' side (default 256 in 2D, 48 in 3D, rounded to an accepted size).
    """
    from bioimageio.spec import save_bioimageio_package

    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise InvalidInputError(f"{output}: a BioImage Model Zoo package is a .zip file")
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists; pass overwrite=True (CLI: --force) to replace it")
    source = resolve_model(model)
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
        raise ModelError(f"{model}: not an .onnx model file (or the name of an embedded model)")
    onnx_bytes = Path(source).read_bytes()
    metadata = ModelMetadata.from_props(read_model_file(onnx_bytes, str(source)).props)
    space = ("z", "y", "x")[-metadata.spatial_dims:]
    preprocessing = preprocessing_for(metadata.normalization, space)  # refuses what the zoo cannot express
    image = _test_image(metadata, sample, test_side)
    proba = _predict(onnx_bytes, metadata, image)
    with tempfile.TemporaryDirectory(prefix=".unet-bioimageio.", dir=output.parent) as scratch:
        folder = Path(scratch)
        (folder / "weights.onnx").write_bytes(onnx_bytes)
        np.save(folder / "test_input.npy", image[None].astype(np.float32))
        np.save(folder / "test_output.npy", proba[None])
        _write_samples(folder, image, proba)
        _write_cover(folder / "cover.png", image, proba, metadata)
        (folder / "README.md").write_text(_documentation(metadata, name, description, image.shape), encoding="utf-8")
        pixels = _pixel_size(metadata, pixel_size, unit)
        try:
            descr = _describe(
                folder, metadata, onnx_bytes, preprocessing, space,
                name=name or _default_name(metadata), description=description or _default_description(metadata),
                authors=authors, license=license, pixels=pixels,
            )
        except ValueError as exc:  # pydantic's ValidationError: e.g. an unknown SPDX license or space unit
            raise InvalidInputError(f"the package description is invalid for bioimageio.spec: {exc}") from exc
        with atomic_output(output, overwrite=overwrite) as tmp:
            save_bioimageio_package(descr, output_path=Path(tmp), local_files_only=True)
    logger.info("wrote %s (%.2f MB)", output, output.stat().st_size / 1e6)
    return output


# -- test tensors ---------------------------------------------------------------------------------
def _test_image(metadata: ModelMetadata, sample: Any, test_side: int | None) -> np.ndarray:
    """A (C, *spatial) crop of the sample, its side accepted by the network and no larger than the image."""
    d, c = metadata.spatial_dims, metadata.in_channels
    if sample is None and (d, c) == (2, 1):
        sample = sample_image_path()
    if sample is None:
        image = _synthetic_image(metadata, 2 * (test_side or TEST_SIDE[d]))
    else:
        image = np.asarray(read_image(sample) if isinstance(sample, (str, os.PathLike)) else sample)
        if image.ndim == d:
            image = image[None]
        if image.ndim != d + 1 or image.shape[0] != c:
            raise InvalidInputError(f"sample of shape {image.shape} is not (C={c}, *spatial) for a {d}D model")
    side = metadata.valid_input_size_at_least(test_side or TEST_SIDE[d])
    fits = min(image.shape[1:])
    while side > fits and side - metadata.input_size_multiple >= metadata.min_input_size:
        side -= metadata.input_size_multiple
    if side > fits:
        raise InvalidInputError(f"sample of shape {image.shape} is smaller than the model's smallest input {side}")
    start = [(n - side) // 2 for n in image.shape[1:]]
    return np.ascontiguousarray(image[(slice(None),) + tuple(slice(s, s + side) for s in start)]).astype(np.float32)


def _synthetic_image(metadata: ModelMetadata, side: int) -> np.ndarray:
    """Smooth blobs with noise, reproducible: a stand-in when no sample image is given."""
    rng = np.random.default_rng(0)
    d = metadata.spatial_dims
    grid = np.stack(np.meshgrid(*(np.arange(side, dtype=np.float32),) * d, indexing="ij"))
    image = np.zeros((metadata.in_channels,) + (side,) * d, np.float32)
    for channel in image:
        for _ in range(12):
            centre = rng.uniform(0, side, d).reshape((d,) + (1,) * d)
            channel += np.exp(-((grid - centre) ** 2).sum(0) / (2 * (side / 10) ** 2))
        channel += 0.05 * rng.standard_normal(channel.shape).astype(np.float32)
    return image


def _predict(onnx_bytes: bytes, metadata: ModelMetadata, image: np.ndarray) -> np.ndarray:
    """Our runtime's output for the whole test image in one network call, as the zoo's test runs it."""
    from sdk.runtime import Runtime

    runtime = Runtime(onnx_bytes, device="cpu")
    logits = runtime.run(metadata.normalization.apply(image)[None])
    return np.asarray(activate(logits, metadata.output_activation)[0], dtype=np.float32)


def _write_samples(folder: Path, image: np.ndarray, proba: np.ndarray) -> None:
    """The test tensors as TIFF sample tensors (viewable with any image reader; the zoo's FAIR checks
    ask for them). Singleton channel axes are dropped, as the zoo allows."""
    import tifffile

    tifffile.imwrite(folder / "sample_input.tif", image[0] if image.shape[0] == 1 else image)
    tifffile.imwrite(folder / "sample_output.tif", proba)


def _write_cover(path: Path, image: np.ndarray, proba: np.ndarray, metadata: ModelMetadata) -> None:
    """The image (first channel) beside it with the foreground probability in magenta: 2:1, PNG."""
    from PIL import Image

    def middle(a: np.ndarray) -> np.ndarray:  # a 2D view: the middle slice of a volume
        return a[a.shape[0] // 2] if a.ndim == 3 else a

    margin = metadata.output_margin
    crop = (slice(margin, image.shape[-1] - margin),) * metadata.spatial_dims
    gray = middle(image[0][crop]).astype(np.float64)
    lo, hi = np.percentile(gray, [0.5, 99.5])
    gray = np.clip((gray - lo) / max(hi - lo, 1e-12), 0, 1)
    channel = metadata.foreground_class if proba.shape[0] > 1 else 0
    fg = middle(proba[channel])[..., None]
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    overlay = rgb * (1 - 0.5 * fg) + 0.5 * fg * np.array([1.0, 0.0, 1.0])
    cover = np.concatenate([rgb, overlay], axis=1)
    Image.fromarray(np.round(cover * 255).astype(np.uint8)).save(path, optimize=True)


# -- the description --------------------------------------------------------------------------------
def _data(metadata: ModelMetadata) -> dict[str, Any]:
    return dict(metadata.training.get("data") or {})


def _default_name(metadata: ModelMetadata) -> str:
    preset = _data(metadata).get("preset")
    return f"unet-sdk U-Net {preset}" if preset else f"unet-sdk {metadata.spatial_dims}D U-Net"


def _default_description(metadata: ModelMetadata) -> str:
    classes = ", ".join(metadata.class_names)
    preset = _data(metadata).get("preset")
    trained = f" trained on {preset}" if preset else ""
    return f"{metadata.spatial_dims}D U-Net ({metadata.padding} padding){trained}: per-pixel probabilities of {classes}."


def _pixel_size(metadata: ModelMetadata, pixel_size: Sequence[float] | None, unit: str | None) -> tuple | None:
    if pixel_size is None:
        known = KNOWN_PIXEL_SIZES.get(_data(metadata).get("preset"))
        if known is None or len(known[0]) != metadata.spatial_dims:
            if unit is not None:
                raise InvalidInputError("a unit needs a pixel_size")
            return None
        return known
    sizes = tuple(float(s) for s in pixel_size)
    if len(sizes) != metadata.spatial_dims or not all(s > 0 for s in sizes):
        raise InvalidInputError(f"pixel_size={pixel_size!r}: give {metadata.spatial_dims} positive sizes")
    if unit is None:
        raise InvalidInputError("pixel_size needs a unit, e.g. unit='micrometer'")
    return sizes, unit


def halo_of(metadata: ModelMetadata) -> int:
    """Pixels to crop from each side of a tile's output: half the recommended overlap of an overlap-tile,
    same-padding model (a valid-padding model crops its margin itself), else 0 (tiles are blended)."""
    if metadata.blend != "none" or metadata.padding != "same" or not metadata.tile_size:
        return 0
    return int(round(metadata.tile_overlap * min(metadata.tile_size) / 2))


def _citations(metadata: ModelMetadata) -> list:
    from bioimageio.spec.model.v0_5 import CiteEntry, Doi

    entries = [CiteEntry(text=UNET_CITATION[0], doi=Doi(UNET_CITATION[1]))]
    text = _data(metadata).get("citation", "")
    for doi in DOI.findall(text):
        entries.append(CiteEntry(text=f"Training data: {text}", doi=Doi(doi.rstrip("."))))
    return entries


def _describe(
    folder: Path, metadata: ModelMetadata, onnx_bytes: bytes, preprocessing: list, space: Sequence[str], *,
    name: str, description: str, authors: Sequence[str], license: str, pixels: tuple | None,
):
    from bioimageio.spec.model import v0_5 as zoo

    sizes, unit = pixels if pixels is not None else ((1.0,) * len(space), None)
    halo = halo_of(metadata)
    # the zoo wants something left of the smallest output once the halo is cropped
    minimum = metadata.valid_input_size_at_least(max(metadata.min_input_size, 2 * (halo + metadata.output_margin) + 1))
    input_axes = [zoo.BatchAxis(), zoo.ChannelAxis(channel_names=[f"channel{i}" for i in range(metadata.in_channels)])]
    output_axes = [zoo.BatchAxis(), zoo.ChannelAxis(channel_names=list(metadata.class_names))]
    for axis, scale in zip(space, sizes):
        input_axes.append(zoo.SpaceInputAxis(
            id=zoo.AxisId(axis), size=zoo.ParameterizedSize(min=minimum, step=metadata.input_size_multiple),
            unit=unit, scale=scale,
        ))
        reference = zoo.SizeReference(
            tensor_id=zoo.TensorId(INPUT_ID), axis_id=zoo.AxisId(axis), offset=-2 * metadata.output_margin
        )
        output_axes.append(
            zoo.SpaceOutputAxisWithHalo(id=zoo.AxisId(axis), size=reference, halo=halo, unit=unit, scale=scale)
            if halo else zoo.SpaceOutputAxis(id=zoo.AxisId(axis), size=reference, unit=unit, scale=scale)
        )
    inputs = [zoo.InputTensorDescr(
        id=zoo.TensorId(INPUT_ID),
        description="raw image; normalised per image and channel by the preprocessing",
        axes=input_axes,
        test_tensor=zoo.FileDescr(source=folder / "test_input.npy"),
        sample_tensor=zoo.FileDescr(source=folder / "sample_input.tif"),
        data=zoo.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=preprocessing,
    )]
    outputs = [zoo.OutputTensorDescr(
        id=zoo.TensorId(OUTPUT_ID),
        description=f"per-pixel class probabilities ({', '.join(metadata.class_names)})",
        axes=output_axes,
        test_tensor=zoo.FileDescr(source=folder / "test_output.npy"),
        sample_tensor=zoo.FileDescr(source=folder / "sample_output.tif"),
        data=zoo.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        postprocessing=postprocessing_for(metadata.output_activation),
    )]
    opset = _onnx_opset(onnx_bytes)
    weights = zoo.WeightsDescr(onnx=zoo.OnnxWeightsDescr(
        source=folder / "weights.onnx", sha256=hashlib.sha256(onnx_bytes).hexdigest(), opset_version=opset,
        comment=f"exported by {metadata.exporter_version or 'unet-sdk'}; carries unet-sdk metadata (metadata_props)",
    ))
    config = zoo.Config(
        bioimageio=zoo.BioimageioConfig(
            reproducibility_tolerance=[zoo.ReproducibilityTolerance(**REPRODUCIBILITY_TOLERANCE)],
            architecture_type="U-Net",
            architecture_description=json.dumps(metadata.training.get("architecture", {})),
        ),
        unet_sdk={k.split(".", 1)[1]: json.loads(v) for k, v in metadata.to_props().items()},
    )
    return zoo.ModelDescr(
        name=name,
        description=description,
        authors=[zoo.Author(name=a) for a in authors],
        cite=_citations(metadata),
        license=zoo.LicenseId(license),
        documentation=zoo.FileDescr(source=folder / "README.md"),
        covers=[zoo.FileDescr(source=folder / "cover.png")],
        tags=["unet", "segmentation", f"{metadata.spatial_dims}d", "onnx", "unet-sdk"],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        config=config,
        version="1.0.0",
        timestamp=datetime.datetime.now(datetime.timezone.utc),
    )


def _onnx_opset(onnx_bytes: bytes) -> int:
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    opsets = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not opsets:
        raise ModelError("the ONNX model imports no default-domain opset")
    return int(opsets[0])


def _documentation(metadata: ModelMetadata, name: str | None, description: str | None, test_shape: tuple) -> str:
    data = _data(metadata)
    scores = metadata.training.get("held_out_metrics") or {}
    norm = metadata.normalization
    lines = [
        f"# {name or _default_name(metadata)}",
        "",
        description or _default_description(metadata),
        "",
        "## Model",
        f"- {metadata.spatial_dims}D U-Net, {metadata.padding} padding, {metadata.in_channels} input channel(s), "
        f"classes: {', '.join(f'{i} = {n}' for i, n in enumerate(metadata.class_names))} "
        f"(foreground: {metadata.class_names[metadata.foreground_class]}).",
        f"- Input sides: at least {metadata.min_input_size}, in steps of {metadata.input_size_multiple}"
        + (f"; the output is {2 * metadata.output_margin} px smaller per axis." if metadata.output_margin else "; "
           "the output has the input's size."),
        f"- Normalisation per image and channel: `{norm.mode}` (eps {norm.eps:g}).",
        f"- Tiling: halo {halo_of(metadata)} px per side"
        + (f", recommended tile {list(metadata.tile_size)}" if metadata.tile_size else "") + f", merge `{metadata.blend}`.",
        f"- Exported by {metadata.exporter_version or 'unet-sdk'}; packaged by unet-sdk {sdk_version}.",
        "",
        "## Training data",
    ]
    if data:
        lines += [f"- {key}: {value}" for key, value in data.items()]
    else:
        lines.append("- not recorded in the model's metadata.")
    for key in ("steps", "batch_size", "tile", "loss", "hardware", "train_seconds", "precision"):
        if key in metadata.training:
            lines.append(f"- {key}: {metadata.training[key]}")
    lines += ["", "## Validation", "Held-out scores (images not used for training):"]
    lines += [f"- {k}: {v:.5g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in scores.items()] or ["- none recorded."]
    lines += [
        "",
        "## Intended use",
        "Semantic segmentation of images like the training data (same modality, resolution and staining). "
        "The output is a probability per class and pixel; threshold or argmax it, and post-process "
        "(e.g. connected components or watershed) for instances.",
        "",
        "## Limits",
        "- Not validated outside the training data's domain: other microscopes, resolutions or contrasts need "
        "re-validation on annotated images.",
        "- Held-out scores come from the few held-out images listed above; they are not a guarantee.",
        "- Statistics for the normalisation are taken over the whole image: tiles of one image must be "
        "normalised with the whole image's statistics (bioimageio.core and unet-sdk do).",
        "",
        "## Reproducibility",
        f"Test tensors: a {list(test_shape[1:])} crop, computed by unet-sdk {sdk_version} with ONNX Runtime. "
        f"Tolerance: absolute {REPRODUCIBILITY_TOLERANCE['absolute_tolerance']:g} on the probabilities "
        "(ONNX Runtime's summation order, and the zoo's `std + eps` against unet-sdk's `max(std, eps)`).",
        "",
        "Run it with unet-sdk (exact overlap-tile, CPU or CUDA): `unet-sdk predict image.tif -m this.zip -o out.tif`.",
        "",
    ]
    return "\n".join(lines)
