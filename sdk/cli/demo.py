"""``unet-sdk demo``: the embedded ISBI 2012 model (``--model isbi2012-int8``: its int8 twin) on the shipped
sample slice.

Writes ``labels.tif`` (class index per pixel) and ``overlay.png`` (the slice with the model's
foreground class tinted) into a directory (default ``./unet-sdk-demo``) and prints where.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import OutputExistsError
from ..io import read_image, write_array
from ..models import DEFAULT_MODEL_NAME, EMBEDDED_MODELS, sample_image_path
from ..runtime import DEVICES
from ..segmenter import Segmenter

TINT = np.array([255, 64, 0], dtype=np.float32)  # orange: visible on grey EM
ALPHA = 0.45


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the embedded model on a shipped ISBI 2012 slice", description=__doc__
    )
    parser.add_argument("-o", "--output", default="unet-sdk-demo", help="output directory (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default: auto)")
    parser.add_argument(
        "-m", "--model", default=DEFAULT_MODEL_NAME,
        help=f"an embedded model ({', '.join(EMBEDDED_MODELS)}) or an .onnx file (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an earlier demo's files")
    parser.set_defaults(func=run)


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB uint8: ``image`` (grey, any range) with ``mask`` pixels tinted."""
    grey = image.astype(np.float32)
    span = float(grey.max() - grey.min()) or 1.0
    grey = (grey - grey.min()) * (255.0 / span)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * TINT
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    labels_path, overlay_path = out / "labels.tif", out / "overlay.png"
    existing = [str(p) for p in (labels_path, overlay_path) if p.exists()]
    if existing and not args.force:
        raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --force to overwrite, or -o DIR")
    image = read_image(sample_image_path())
    segmenter = Segmenter(args.model, device=args.device)
    start = time.perf_counter()
    labels = segmenter.predict(image)
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    write_array(labels_path, labels, overwrite=args.force)
    meta = segmenter.metadata
    write_array(overlay_path, overlay(image, labels == meta.foreground_class), overwrite=args.force)
    classes = ", ".join(f"{i}={name}" for i, name in enumerate(meta.class_names))
    print(f"segmented {sample_image_path().name} {image.shape} with {args.model} on {segmenter.device} in {seconds:.2f} s")
    print(f"labels ({classes}): {labels_path.resolve()}")
    print(f"overlay ({meta.class_names[meta.foreground_class]} tinted): {overlay_path.resolve()}")
    return 0
