"""Training data: image/label stacks from TIFF files or directories, splits, tile sampling, presets.

A *sample* is one 2D slice (``spatial_dims=2``: every page of a stack is a sample) or one 3D volume
(``spatial_dims=3``). Images are normalised once per sample with :class:`sdk.model_metadata.Normalization`
(the same code ``sdk`` runs at inference, so training and deployment see identical input values), labels
become class indices, and the paper's weight map is computed once per sample.

Label conventions (``label_mode``):
  * ``"binary"``: 0 is class 0 (background, e.g. the ISBI membranes), anything > 0 is class 1 (objects).
  * ``"classes"``: the label values are the class indices themselves.
Objects (instances) for the weight map are the 4-/6-connected components of the non-zero classes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from sdk.errors import InvalidInputError
from sdk.io import is_image_path, read_image, split_image_path
from sdk.model_metadata import Normalization

from .augment import Augmenter
from .losses import unet_weight_map

logger = logging.getLogger(__name__)

LABEL_MODES = ("binary", "classes")
DATA_ENV = "UNET_SDK_DATA"  # a folder holding the presets' files (or one subfolder per preset)
# the data folder beside a source checkout (this workspace's ../shared/data); absent in an installed package
CHECKOUT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ISBI2012_FILES = ("train-volume.tif", "train-labels.tif")
ISBI2012_SOURCE = (
    "the training stacks of the ISBI 2012 EM segmentation challenge (30 slices of 512x512, labels 0 = membrane, "
    "255 = cell): https://imagej.net/events/isbi-2012-segmentation-challenge , also in the repository "
    "github.com/zhixuhao/unet (data/membrane/train, as PNG slices: a folder of images works with --images/--labels)"
)


def load_stack(path: str | Path) -> np.ndarray:
    """Read a TIFF/NPY/... stack, or a directory of equally-sized images (sorted by name) as a stack."""
    _, key = split_image_path(path)
    path = Path(path)
    if path.is_dir() and key is None and path.suffix.lower() != ".zarr":
        files = sorted(p for p in path.iterdir() if p.is_file() and is_image_path(p))
        if not files:
            raise InvalidInputError(f"{path}: directory holds no readable images")
        slices = [read_image(p) for p in files]
        shapes = {s.shape for s in slices}
        if len(shapes) != 1:
            raise InvalidInputError(f"{path}: images differ in shape {sorted(shapes)}")
        return np.stack(slices)
    return read_image(path)


def parse_index_range(text: str, n: int) -> list[int]:
    """``"25:30"`` or ``"25-29"`` (inclusive) or ``"1,3,5"`` -> sorted sample indices, checked against n."""
    text = text.strip()
    if ":" in text:
        start, stop = (int(t) if t else None for t in text.split(":", 1))
        indices = list(range(n))[slice(start, stop)]
    elif "-" in text[1:]:
        lo, hi = text.split("-", 1)
        indices = list(range(int(lo), int(hi) + 1))
    else:
        indices = [int(t) for t in text.split(",") if t]
    bad = [i for i in indices if not 0 <= i < n]
    if bad or not indices:
        raise InvalidInputError(f"index selection {text!r} is empty or out of range for {n} samples: {bad}")
    return sorted(set(indices))


@dataclass
class Sample:
    """One normalised sample: image (C, *spatial) float32, classes (*spatial) int64, weights (*spatial)."""

    image: np.ndarray
    classes: np.ndarray
    weights: np.ndarray
    raw_label: np.ndarray


def label_to_classes(label: np.ndarray, mode: str, num_classes: int) -> np.ndarray:
    if mode not in LABEL_MODES:
        raise InvalidInputError(f"label_mode must be one of {LABEL_MODES}, got {mode!r}")
    if mode == "binary":
        return (label > 0).astype(np.int64)
    classes = label.astype(np.int64)
    if classes.min() < 0 or classes.max() >= num_classes:
        raise InvalidInputError(
            f"label values {classes.min()}..{classes.max()} are not class indices 0..{num_classes - 1}"
        )
    return classes


def make_samples(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    spatial_dims: int,
    num_classes: int = 2,
    label_mode: str = "binary",
    normalization: Normalization | None = None,
) -> list[Sample]:
    """Split stacks into samples (see module docstring) and precompute normalisation and weight maps.

    ``images``: 2D: (Z, H, W) or (Z, C, H, W); 3D: (D, H, W) one volume, or (N, D, H, W) / (N, C, D, H, W).
    ``labels``: the same without the channel axis.
    """
    normalization = normalization or Normalization("per_image_zscore")
    images, labels = np.asarray(images), np.asarray(labels)
    if labels.ndim == spatial_dims:
        images, labels = images[None], labels[None]
    if labels.ndim != spatial_dims + 1:
        raise InvalidInputError(f"labels of shape {labels.shape} are not a stack of {spatial_dims}-d samples")
    if images.ndim == labels.ndim:
        images = images[:, None]
    if images.shape[0] != labels.shape[0] or images.shape[2:] != labels.shape[1:]:
        raise InvalidInputError(f"images {images.shape} and labels {labels.shape} do not match")
    if not np.issubdtype(images.dtype, np.number) or not np.all(np.isfinite(images)):
        raise InvalidInputError("images must be finite numbers")
    samples = []
    for image, label in zip(images, labels):
        classes = label_to_classes(label, label_mode, num_classes)
        instances, _ = ndimage.label(classes > 0)
        weights = unet_weight_map(classes, instances, num_classes=num_classes)
        samples.append(Sample(normalization.apply(image), classes, weights, label))
    return samples


def mirrored_window(array: np.ndarray, starts: tuple[int, ...], sizes: tuple[int, ...]) -> np.ndarray:
    """The window ``[start, start + size)`` of the trailing axes of ``array``, with positions outside the
    array mirrored at its border (numpy's ``reflect``: the edge pixel is not repeated), as the U-Net
    paper extrapolates the context of border tiles."""
    lead = array.ndim - len(starts)
    for axis, (start, size) in enumerate(zip(starts, sizes), start=lead):
        n = array.shape[axis]
        index = np.abs(np.arange(start, start + size))
        period = 2 * (n - 1) if n > 1 else 1
        index = index % period
        index = np.where(index >= n, period - index, index)
        array = np.take(array, index, axis=axis)
    return array


class TileSampler:
    """Draws random, augmented training tiles from samples: ``batch(rng, n) -> (x, y, w)`` numpy arrays.

    ``margin`` > 0 (valid-padding networks, whose output is smaller than the input by ``margin`` per side):
    an input tile of side ``tile`` carries labels and weights for its central ``tile - 2 * margin`` only;
    every label position can be drawn, with the context beyond the sample's border mirrored.
    """

    def __init__(
        self, samples: list[Sample], tile: tuple[int, ...], augmenter: Augmenter | None, *, margin: int = 0
    ) -> None:
        self.samples = samples
        self.tile = tuple(tile)
        self.augmenter = augmenter
        self.margin = int(margin)
        self.output = tuple(t - 2 * self.margin for t in self.tile)
        if min(self.output) < 1:
            raise InvalidInputError(f"tile {self.tile} leaves no output inside the network's margin {self.margin}")
        for s in samples:
            if any(t > n for t, n in zip(self.output, s.classes.shape)):
                raise InvalidInputError(f"tile {self.output} is larger than a sample {s.classes.shape}")

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sample = self.samples[int(rng.integers(len(self.samples)))]
        starts = tuple(int(rng.integers(n - t + 1)) - self.margin for t, n in zip(self.output, sample.classes.shape))
        image, classes, weights = (mirrored_window(a, starts, self.tile)
                                   for a in (sample.image, sample.classes, sample.weights))
        if self.augmenter is not None:
            image, classes, weights = self.augmenter(image, classes, weights, rng)
        if self.margin:
            inner = tuple(slice(self.margin, self.margin + o) for o in self.output)
            classes, weights = classes[inner], weights[inner]
        return image, classes, weights

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        drawn = [self.draw(rng) for _ in range(size)]
        return tuple(np.stack(parts) for parts in zip(*drawn))  # type: ignore[return-value]


@dataclass(frozen=True)
class Preset:
    """A named data set with its split and the model settings that suit it."""

    name: str
    images: Path
    labels: Path
    train_indices: tuple[int, ...]
    val_indices: tuple[int, ...]
    class_names: tuple[str, ...]
    spatial_dims: int = 2
    label_mode: str = "binary"
    citation: str = ""


def find_preset_dir(name: str, files: tuple[str, ...], data_dir: str | Path | None, source: str) -> Path:
    """The folder holding a preset's ``files``: ``data_dir`` (or its ``name`` subfolder) when given;
    else ``$UNET_SDK_DATA`` (or its ``name`` subfolder), the current directory, ``./name``, ``./data/name``,
    and last the data folder beside a source checkout. The error lists where it looked and what to get."""
    def with_subfolder(root: Path) -> list[Path]:
        return [root, root / name]

    if data_dir is not None:
        candidates = with_subfolder(Path(data_dir))
    else:
        env = os.environ.get(DATA_ENV)
        cwd = Path.cwd()
        candidates = (with_subfolder(Path(env)) if env else []) + [cwd, cwd / name, cwd / "data" / name]
        candidates.append(CHECKOUT_DATA_DIR / name)
    for folder in candidates:
        if all((folder / f).is_file() for f in files):
            logger.info("%s preset: data from %s", name, folder)
            return folder
    where = ", ".join(str(c) for c in dict.fromkeys(candidates))
    env_note = "" if data_dir is not None or os.environ.get(DATA_ENV) else f" (${DATA_ENV} is not set)"
    raise InvalidInputError(
        f"the {name} preset needs {' and '.join(files)} in one folder; looked in {where}{env_note}. "
        f"Get {source}. Then pass --data-dir FOLDER, set {DATA_ENV}=FOLDER, or run from that folder."
    )


def isbi2012_preset(data_dir: str | Path | None = None) -> Preset:
    """ISBI 2012 EM membranes: train on slices 0-24, validate on 25-29; label 0 = membrane, 255 = cell.

    The files are found by :func:`find_preset_dir`."""
    root = find_preset_dir("isbi2012", ISBI2012_FILES, data_dir, ISBI2012_SOURCE)
    return Preset(
        name="isbi2012",
        images=root / "train-volume.tif",
        labels=root / "train-labels.tif",
        train_indices=tuple(range(25)),
        val_indices=tuple(range(25, 30)),
        class_names=("membrane", "cell"),
        citation=(
            "ISBI 2012 EM segmentation challenge (Arganda-Carreras et al. 2015, doi:10.3389/fnana.2015.00142; "
            "Cardona et al. 2010, doi:10.1371/journal.pbio.1000502)"
        ),
    )


PRESETS = {"isbi2012": isbi2012_preset}
