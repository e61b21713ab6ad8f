"""``unet-sdk explain IMAGE -o MAP.tif``: a Seg-Grad-CAM heat map of what drove the model's prediction.

The score is the model's class score (``--class``, default the foreground class; the log-odds for a
two-class model) summed over a region (``--region MASK``, any image whose non-zero pixels form the region;
default the pixels predicted as the class); the map weighs a layer's activations (``--layer``, default the
bottleneck; ``unet-sdk info`` lists them) by the region-pooled gradients (Vinogradova et al. 2020). Writes
the map (float32, TIFF or NPY by the suffix of ``-o``) and ``<MAP>_overlay.png``: the image in grey, the
map in colour (viridis: dark violet to yellow, transparent where it is zero) and the region's outline in orange.
For volumes and stacks the overlay shows the slice holding most of the map.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .._progress import ProgressBar
from ..errors import InvalidInputError, OutputExistsError
from ..explain import class_index, explainer_of
from ..io import TIFF_SUFFIXES, load_image, read_image, write_array
from ..models import EMBEDDED_MODELS
from ..segmenter import Segmenter
from .options import add_device_argument
from .overlay import overlay

MAP_SUFFIXES = TIFF_SUFFIXES + (".npy",)
# viridis at five stops: perceptually ordered, readable by colour-blind viewers, and distinct from the
# orange region outline
COLOURS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
MAX_ALPHA = 0.7


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="Seg-Grad-CAM heat map of a prediction (what drove it)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", metavar="IMAGE", help="TIFF, PNG, NPY, zarr image")
    parser.add_argument("-o", "--output", required=True, metavar="MAP",
                        help=f"heat map file ({', '.join(MAP_SUFFIXES)}); the overlay goes beside it")
    parser.add_argument("-m", "--model", help=f"an .onnx model or an embedded one ({', '.join(EMBEDDED_MODELS)})")
    parser.add_argument("--class", dest="target_class", metavar="C", help="class index or name (default: foreground)")
    parser.add_argument("--region", metavar="MASK", help="image of the region (non-zero pixels); default: predicted class")
    parser.add_argument("--layer", help="explained layer, e.g. bottleneck, down.1, up_blocks.3 (default: bottleneck)")
    parser.add_argument("--axes", help="input axes when ambiguous: YX, CYX, YXC, NYX, NCYX, ZYX, CZYX")
    add_device_argument(parser)
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(func=run)


def heat_overlay(image: np.ndarray, heat: np.ndarray, region: np.ndarray) -> np.ndarray:
    """RGB uint8: the grey ``image`` with ``heat`` (>= 0, scaled to its maximum) in colour and the outline of
    ``region`` tinted."""
    inner = region.copy()
    for axis in range(region.ndim):  # a pixel of the region with a neighbour outside it is on the outline
        for shift in (1, -1):
            inner &= np.roll(region, shift, axis=axis)
    rgb = overlay(image, region & ~inner).astype(np.float32)
    scaled = heat / heat.max() if heat.max() > 0 else np.zeros_like(heat)
    position = scaled * (len(COLOURS) - 1)
    low = np.minimum(np.floor(position).astype(int), len(COLOURS) - 2)
    frac = (position - low)[..., None]
    colour = COLOURS[low] * (1 - frac) + COLOURS[low + 1] * frac
    alpha = (MAX_ALPHA * np.sqrt(scaled))[..., None]  # weak heat stays visible, the image shows through
    outline = (region & ~inner)[..., None]
    blended = np.where(outline, rgb, (1 - alpha) * rgb + alpha * colour)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def overlay_path(map_path: Path) -> Path:
    return map_path.with_name(f"{map_path.stem}_overlay.png")


def run(args: argparse.Namespace) -> int:
    target = Path(args.output)
    if target.suffix.lower() not in MAP_SUFFIXES:
        raise InvalidInputError(f"-o {target}: the map is written as {', '.join(MAP_SUFFIXES)}; give one of these suffixes")
    png = overlay_path(target)
    existing = [str(p) for p in (target, png) if p.exists()]
    if existing and not args.force:
        raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --force to overwrite")
    loaded = load_image(args.image)
    segmenter = Segmenter(args.model, device=args.device)
    c = class_index(args.target_class, segmenter.metadata)
    if args.region is None:
        region = np.asarray(segmenter.predict(loaded.array, axes=args.axes)) == c
    else:
        region = read_image(args.region) != 0
    with ProgressBar(None, f"explain {Path(args.image).name} tiles", enabled=None) as bar:
        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.set_total(total)
            bar.update(done - bar.count)

        heat = segmenter.explain(loaded.array, target_class=c, region=region, layer=args.layer, axes=args.axes,
                                 progress=progress)
    write_array(target, heat, overwrite=args.force)
    z = int(np.argmax(heat.reshape(len(heat), -1).sum(axis=1))) if heat.ndim > 2 else None
    picture = heat_overlay(_display(np.asarray(loaded.array), heat.shape, z), heat if z is None else heat[z],
                           region if z is None else region[z])
    write_array(png, picture, overwrite=args.force)
    layer = args.layer or explainer_of(segmenter).explanation.default_layer
    print(f"explained class {c} ({segmenter.metadata.class_names[c]}) over {int(np.count_nonzero(region))} "
          f"pixels at layer {layer}: {target.resolve()}")
    print(f"overlay{'' if z is None else f' (slice {z})'}: {png.resolve()}")
    return 0


def _display(image: np.ndarray, shape: tuple[int, ...], z: int | None) -> np.ndarray:
    """The picture under the overlay: the image (grey or colour) at the map's pixels, channels averaged;
    slice ``z`` of a volume or stack."""
    if z is not None:
        image = image[z] if image.shape[: len(shape)] == shape else image[:, z]
        shape = shape[1:]
    if image.shape == shape or image.shape[:2] == shape:
        return image
    return image.mean(axis=0)  # (C, Y, X)
