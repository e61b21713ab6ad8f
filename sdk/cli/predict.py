"""``unet-sdk predict INPUT... -o OUT``: labels or probabilities for images, stacks and volumes.

One input: ``OUT`` is a file whose suffix picks the format (.tif/.tiff, .npy, .zarr), or a directory.
Several inputs: ``OUT`` is a directory receiving ``<name>_labels.<format>`` (``_proba`` with ``--proba``).
NPY and zarr outputs are written tile by tile into a memory-mapped / chunked array, so they may exceed
RAM. Every output is written to a temporary sibling and renamed into place; nothing is overwritten
without ``--force``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .._progress import ProgressBar
from ..errors import InvalidInputError, OutputExistsError
from ..io import TIFF_SUFFIXES, atomic_output, read_image, write_array
from ..models import EMBEDDED_MODELS
from ..runtime import DEVICES
from ..segmenter import Segmenter
from ..tiling import MERGE_MODES

FORMATS = {"tif": ".tif", "npy": ".npy", "zarr": ".zarr"}
SUFFIX_FORMATS = {".tif": "tif", ".tiff": "tif", ".npy": "npy", ".zarr": "zarr"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment images (TIFF/PNG/NPY) with a U-Net",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF, PNG or NPY files")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output file or directory")
    parser.add_argument(
        "-m", "--model",
        help=f"an .onnx model or an embedded one ({', '.join(EMBEDDED_MODELS)}; default: the embedded ISBI 2012 model)",
    )
    parser.add_argument("--proba", action="store_true", help="write class probabilities (float32) instead of labels")
    parser.add_argument("--format", choices=sorted(FORMATS), help="output format (default: from OUT, else tif)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default: auto)")
    parser.add_argument("--tile", type=_tile, help="tile side(s), e.g. 512 or 256,512 (default: the model's)")
    parser.add_argument("--overlap", type=float, help="tile overlap fraction in [0, 1)")
    parser.add_argument("--blend", choices=MERGE_MODES, help="gaussian/constant blending or none (overlap-tile)")
    parser.add_argument("--batch-size", type=int, help="tiles per network call")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    parser.add_argument("--axes", help="input axes when ambiguous: YX, CYX, YXC, NYX, NCYX, ZYX, CZYX")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _tile(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or a comma-separated list of them")
    return sizes[0] if len(sizes) == 1 else sizes


def plan_outputs(inputs: list[str], output: str, fmt: str | None, proba: bool) -> list[Path]:
    """Where each input's result goes (see the module docstring)."""
    out = Path(output)
    suffix = out.suffix.lower()
    if len(inputs) == 1 and suffix in SUFFIX_FORMATS and not (out.is_dir() and suffix != ".zarr"):
        if fmt is not None and SUFFIX_FORMATS[suffix] != fmt:
            raise InvalidInputError(f"-o {out} has suffix {suffix} but --format {fmt} was given")
        return [out]
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"-o {out}: several inputs need a directory, but {out} is a file")
    kind = "proba" if proba else "labels"
    targets = [out / f"{Path(p).stem}_{kind}{FORMATS[fmt or 'tif']}" for p in inputs]
    seen: dict[Path, str] = {}
    for path, source in zip(targets, inputs):
        if path in seen:
            raise InvalidInputError(f"inputs {seen[path]} and {source} would both write {path}; rename one")
        seen[path] = source
    return targets


def run(args: argparse.Namespace) -> int:
    targets = plan_outputs(args.inputs, args.output, args.format, args.proba)
    if not args.force:
        existing = [str(p) for p in targets if p.exists()]
        if existing:
            raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --force to overwrite")
    segmenter = Segmenter(
        args.model,
        device=args.device,
        tile=args.tile,
        overlap=args.overlap,
        blend=args.blend,
        batch_size=args.batch_size,
        threads=args.threads,
        tta=args.tta,
    )
    if targets[0] != Path(args.output):  # directory mode
        Path(args.output).mkdir(parents=True, exist_ok=True)
    show = not args.no_progress
    with ProgressBar(len(targets), "files", enabled=show and sys.stderr.isatty() and len(targets) > 1) as files:
        for index, (source, target) in enumerate(zip(args.inputs, targets), start=1):
            image = read_image(source)
            with ProgressBar(None, f"[{index}/{len(targets)}] {Path(source).name} tiles", enabled=None if show else False) as bar:
                def progress(done: int, total: int, bar: ProgressBar = bar) -> None:
                    if bar.total != total:
                        bar.set_total(total)
                    bar.update(done - bar.count)

                write_prediction(segmenter, image, target, proba=args.proba, axes=args.axes,
                                 overwrite=args.force, progress=progress)
            print(f"{source} -> {target}")
            files.update()
    return 0


def write_prediction(
    segmenter: Segmenter,
    image: np.ndarray,
    target: Path,
    *,
    proba: bool,
    axes: str | None,
    overwrite: bool,
    progress=None,
) -> None:
    """Predict ``image`` into ``target`` atomically; NPY and zarr are filled in place, tile by tile."""
    predict = segmenter.predict_proba if proba else segmenter.predict
    suffix = target.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        write_array(target, predict(image, axes=axes, progress=progress), overwrite=overwrite)
        return
    shape, dtype = segmenter.output_spec(np.shape(image), axes=axes, proba=proba)
    with atomic_output(target, overwrite=overwrite) as tmp:
        if suffix == ".npy":
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            predict(image, axes=axes, out=array, progress=progress)
            array.flush()
            del array
        else:
            try:
                import zarr
            except ImportError as exc:
                raise InvalidInputError("zarr output needs the 'zarr' package: pip install 'unet-sdk[zarr]'") from exc
            store = zarr.open(str(tmp), mode="w", shape=shape, dtype=dtype, chunks=_chunks(shape))
            predict(image, axes=axes, out=store, progress=progress)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of <= 512 along the last two axes, 1 along the others (a slice or class at a time)."""
    return tuple(min(n, 512) if i >= len(shape) - 2 else 1 for i, n in enumerate(shape))
