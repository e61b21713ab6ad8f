"""``unet-sdk demo``: the embedded ISBI 2012 model (``--model isbi2012-int8``: its int8 twin) on the shipped
sample slice.

Writes ``labels.tif`` (class index per pixel, with the slice's pixel size) and ``overlay.png`` (the slice
with the model's foreground class tinted) into a directory (default ``./unet-sdk-demo``) and prints where.
The directory is the demo's own: a rerun replaces the previous demo's files, and a ``.gitignore`` in it
keeps it out of version control. A directory the demo did not make is not written into without ``--force``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import OutputExistsError
from ..io import load_image, write_array
from ..models import DEFAULT_MODEL_NAME, EMBEDDED_MODELS, sample_image_path
from ..segmenter import Segmenter
from .options import add_device_argument
from .overlay import overlay

DEMO_MARK = "# written by unet-sdk demo: this folder holds its outputs and is replaced on each run\n"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the embedded model on a shipped ISBI 2012 slice", description=__doc__
    )
    parser.add_argument("-o", "--output", default="unet-sdk-demo", help="output directory (default: %(default)s)")
    add_device_argument(parser)
    parser.add_argument(
        "-m", "--model", default=DEFAULT_MODEL_NAME,
        help=f"an embedded model ({', '.join(EMBEDDED_MODELS)}) or an .onnx file (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="write into a directory the demo did not make")
    parser.set_defaults(func=run)


def _is_demo_folder(folder: Path) -> bool:
    marker = folder / ".gitignore"
    return marker.is_file() and marker.read_text(errors="replace").startswith(DEMO_MARK)


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    labels_path, overlay_path = out / "labels.tif", out / "overlay.png"
    replace = args.force or _is_demo_folder(out)
    existing = [str(p) for p in (labels_path, overlay_path) if p.exists()]
    if existing and not replace:
        raise OutputExistsError(
            f"{', '.join(existing)} exist(s) and {out} is not a demo folder; pass --force to overwrite, or -o DIR"
        )
    image = load_image(sample_image_path())
    segmenter = Segmenter(args.model, device=args.device)
    start = time.perf_counter()
    labels = segmenter.predict(image.array)
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    if not (out / ".gitignore").exists():
        (out / ".gitignore").write_text(DEMO_MARK + "*\n")
    meta = segmenter.metadata
    write_array(labels_path, labels, overwrite=replace, calibration=image.calibration, labels="classes",
                record={"kind": "labels", "class_names": list(meta.class_names),
                        "foreground_class": meta.foreground_class, "model": args.model})
    write_array(overlay_path, overlay(image.array, labels == meta.foreground_class), overwrite=replace)
    classes = ", ".join(f"{i}={name}" for i, name in enumerate(meta.class_names))
    print(f"segmented {sample_image_path().name} {image.array.shape} with {args.model} on {segmenter.device} "
          f"in {seconds:.2f} s")
    print(f"labels ({classes}): {labels_path.resolve()}")
    print(f"overlay ({meta.class_names[meta.foreground_class]} tinted): {overlay_path.resolve()}")
    return 0
