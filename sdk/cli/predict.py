"""``unet-sdk predict INPUT... -o OUT``: labels, probabilities or objects for images, stacks and volumes.

INPUT is a file (TIFF, PNG/JPEG, NPY, an array in an NPZ or zarr as PATH.npz:KEY / PATH.zarr/ARRAY,
an OME-Zarr image), a directory (its image files) or a quoted glob ('data/**/*.tif').

OUT is a file when it ends in .tif/.tiff, .png (2D labels), .npy or .zarr (one input only); any other
name is a directory that receives STEM_labels.tif (_proba with --proba, _instances with --instances;
--format picks the type), mirroring the inputs' folders below their deepest common folder, so that
same-named files from different folders stay apart. Outputs keep the input's axes, pixel size and units
(ImageJ hyperstack or OME-TIFF, OME-Zarr); label images carry a display range so that Fiji shows them.
Probability files record their class names and foreground class for `unet-sdk evaluate`; in a TIFF the
class axis follows ImageJ's order (Z, C, Y, X) and is named in the file.

A file that cannot be read or predicted is reported and the rest goes on; the exit status is then 1
(2 if nothing was written). NPY and zarr outputs are filled tile by tile, so they may exceed RAM. Every
output is written to a temporary '.NAME.unet-sdk-partial-*' beside it and renamed into place; one left
by a killed run is removed by the next run. Nothing is overwritten without --force.
"""
from __future__ import annotations

import argparse
import glob
import inspect
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._progress import ProgressBar
from .._version import __version__
from ..atomic import PARTIAL_MARK, atomic_output
from ..calibration import Calibration
from ..distributed import command as distributed_command
from ..errors import InvalidInputError, OutputExistsError, UnetSdkError
from ..inference import TTA_MODES, labels_from_proba
from ..io import (
    READ_SUFFIXES,
    create_zarr,
    image_stem,
    is_image_path,
    load_image,
    split_image_path,
    write_array,
)
from ..models import EMBEDDED_MODELS
from ..segmenter import AXES_2D, AXES_3D, Segmenter
from ..tiling import MERGE_MODES
from .options import add_device_argument
from .overlay import write_overlays

logger = logging.getLogger(__name__)

_SEED_DEFAULT = inspect.signature(Segmenter.predict_instances).parameters["seed_threshold"].default
FORMATS = {"tif": ".tif", "png": ".png", "npy": ".npy", "zarr": ".zarr"}
SUFFIX_FORMATS = {".tif": "tif", ".tiff": "tif", ".png": "png", ".npy": "npy", ".zarr": "zarr"}
# names that look like files of a type predict cannot write: an error, not a directory of that name
FILE_LIKE_SUFFIXES = tuple(sorted(set(READ_SUFFIXES) - set(SUFFIX_FORMATS))) + (
    ".gif", ".webp", ".h5", ".hdf5", ".n5", ".nii", ".gz", ".mrc", ".czi", ".lif", ".nd2", ".csv", ".json"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment images, stacks and volumes (TIFF/PNG/NPY/NPZ/zarr/OME-Zarr) with a U-Net",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, PATH.npz:KEY, PATH.zarr/ARRAY, OME-Zarr, directories or quoted globs")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output file or directory")
    parser.add_argument(
        "-m", "--model",
        help=f"an .onnx model or an embedded one ({', '.join(EMBEDDED_MODELS)}; default: the embedded ISBI 2012 model)",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--proba", action="store_true", help="write class probabilities (float32) instead of labels")
    kind.add_argument("--instances", action="store_true",
                      help="write objects: connected components of the foreground class (uint32 ids)")
    parser.add_argument("--split-touching", action="store_true",
                        help="with --instances: separate touching objects (seeded watershed on the probability)")
    parser.add_argument("--seed-threshold", type=float, metavar="P",
                        help="with --split-touching: seeds are where the probability is at least P "
                             f"(default: {_SEED_DEFAULT})")
    parser.add_argument("--overlay", action="store_true",
                        help="also write a PNG per image or slice with the foreground class tinted")
    parser.add_argument("--format", choices=sorted(FORMATS), help="output format (default: from OUT, else tif)")
    parser.add_argument("--key", help="the array inside each .npz / zarr input (same as PATH.npz:KEY)")
    add_device_argument(parser)
    parser.add_argument("--tile", type=_tile, help="tile side(s), e.g. 512 or 256,512 (default: the model's)")
    parser.add_argument("--overlap", type=float, help="tile overlap fraction in [0, 1)")
    parser.add_argument("--blend", choices=MERGE_MODES, help="gaussian/constant blending or none (overlap-tile)")
    parser.add_argument("--batch-size", type=int, help="tiles per network call")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--tta", nargs="?", const="flips", default="none", choices=TTA_MODES,
                        help="test-time augmentation: average over the 4 flips (--tta, --tta flips) or the 8 "
                             "quarter turns and flips (--tta dihedral); slower, smoother (default: none)")
    parser.add_argument("--no-postprocess", dest="postprocess", action="store_false",
                        help="skip the post-processing the model declares (e.g. the default model's watershed "
                             "boundaries): the network's raw output")
    parser.add_argument("--axes", help=f"input axes when the file does not say: {', '.join(AXES_2D + AXES_3D)}")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    distributed_command.add_arguments(parser)  # --workers / --scheduler / --chunks / --memory-budget
    parser.set_defaults(func=run)


def _tile(text: str) -> int | tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or a comma-separated list of them")
    return sizes[0] if len(sizes) == 1 else sizes


# -- inputs and output names ----------------------------------------------------------------------
def expand_inputs(specs: list[str], key: str | None = None) -> list[str]:
    """Files named by ``specs``: files and container arrays as given, the image files of directories
    (sorted), glob matches (``**`` recurses). Missing paths or empty matches are one error."""
    sources: list[str] = []
    problems: list[str] = []
    for spec in specs:
        container, _ = split_image_path(spec)
        if container.exists():
            if container.is_dir() and not _is_zarr(container):
                found = [str(p) for p in sorted(container.iterdir()) if _wanted(p)]
                (sources.extend(found) if found else problems.append(f"{spec}: directory holds no image files"))
            else:
                sources.append(spec)
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if _wanted(Path(p)))
            (sources.extend(found) if found else problems.append(f"{spec}: matches no image files"))
        else:
            problems.append(f"{spec}: no such file or directory")
    if problems:
        raise InvalidInputError("; ".join(problems))
    if key is not None:
        sources = [_with_key(s, key) for s in sources]
    return list(dict.fromkeys(sources))  # a file named twice is predicted once


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))


def _wanted(path: Path) -> bool:
    return not path.name.startswith(".") and PARTIAL_MARK not in path.name and is_image_path(path) and (
        path.is_file() or _is_zarr(path)
    )


def _with_key(source: str, key: str) -> str:
    container, existing = split_image_path(source)
    if existing is not None:
        return source
    suffix = container.suffix.lower()
    if suffix == ".npz":
        return f"{source}:{key}"
    if suffix == ".zarr":
        return f"{source}/{key}"
    raise InvalidInputError(f"--key {key}: {source} is not an .npz or .zarr container")


@dataclass(frozen=True)
class Job:
    """One input and where its results go (``overlay``: the PNG name without suffix, or None);
    ``make_folder``: create the target's folder (outputs in a directory, not a named file)."""

    source: str
    target: Path
    overlay: Path | None
    make_folder: bool = False


def output_kind(*, proba: bool, instances: bool) -> str:
    return "proba" if proba else "instances" if instances else "labels"


def plan_outputs(
    sources: list[str], output: str, fmt: str | None, *, kind: str = "labels", overlay: bool = False
) -> list[Job]:
    """Where each input's results go (see the module docstring)."""
    out = Path(output)
    suffix = out.suffix.lower()
    is_file = suffix in SUFFIX_FORMATS and not (out.is_dir() and suffix != ".zarr")
    if not is_file and suffix in FILE_LIKE_SUFFIXES:
        raise InvalidInputError(
            f"-o {out}: predict cannot write {suffix} files; name a file ending in "
            f"{', '.join(SUFFIX_FORMATS)} or a directory"
        )
    if is_file:
        if len(sources) != 1:
            raise InvalidInputError(
                f"-o {out} names one file but {len(sources)} inputs were given; give a directory for several"
            )
        if fmt is not None and SUFFIX_FORMATS[suffix] != fmt:
            raise InvalidInputError(f"-o {out} has suffix {suffix} but --format {fmt} was given")
        _check_png(SUFFIX_FORMATS[suffix], kind)
        base = out.with_name(image_stem(out) + "_overlay") if overlay else None
        return [Job(sources[0], out, base)]
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"-o {out}: a directory is needed here, but {out} is a file")
    _check_png(fmt or "tif", kind)
    folders = [split_image_path(s)[0].resolve().parent for s in sources]
    common = Path(os.path.commonpath(folders))
    jobs: list[Job] = []
    seen: dict[Path, str] = {}
    for source, folder in zip(sources, folders):
        where = out / folder.relative_to(common)
        stem = image_stem(source)
        target = where / f"{stem}_{kind}{FORMATS[fmt or 'tif']}"
        if target in seen:
            raise InvalidInputError(f"inputs {seen[target]} and {source} would both write {target}; rename one")
        seen[target] = source
        jobs.append(Job(source, target, where / f"{stem}_overlay" if overlay else None, make_folder=True))
    return jobs


def _check_png(fmt: str, kind: str) -> None:
    if fmt == "png" and kind == "proba":
        raise InvalidInputError("PNG cannot hold probabilities; write .tif, .npy or .zarr")


def existing_outputs(jobs: list[Job]) -> list[str]:
    found = [str(j.target) for j in jobs if os.path.lexists(j.target)]
    for job in jobs:
        if job.overlay is not None:
            name = glob.escape(job.overlay.name)
            found += sorted(str(p) for pattern in (f"{name}.png", f"{name}_z[0-9]*.png")
                            for p in job.overlay.parent.glob(pattern))
    return found


# -- the command ----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    quiet = getattr(args, "quiet", 0) > 0
    instance_options = {"split_touching": args.split_touching}
    if args.seed_threshold is not None:
        instance_options["seed_threshold"] = args.seed_threshold
    if (args.split_touching or args.seed_threshold is not None) and not args.instances:
        raise InvalidInputError("--split-touching and --seed-threshold go with --instances")
    sources = expand_inputs(args.inputs, args.key)
    kind = output_kind(proba=args.proba, instances=args.instances)
    jobs = plan_outputs(sources, args.output, args.format, kind=kind, overlay=args.overlay)
    if distributed_command.requested(args):  # on Dask: resumes its own unfinished outputs
        return distributed_command.run(args, jobs, kind)
    if not args.force:
        existing = existing_outputs(jobs)
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
        postprocess=args.postprocess,
    )
    show = not args.no_progress and not quiet
    failures: list[tuple[str, str]] = []
    with ProgressBar(len(jobs), "files", enabled=show and sys.stderr.isatty() and len(jobs) > 1) as files:
        for index, job in enumerate(jobs, start=1):
            label = f"[{index}/{len(jobs)}] {Path(job.source).name} tiles"
            with ProgressBar(None, label, enabled=None if show else False) as bar:

                def progress(done: int, total: int, bar: ProgressBar = bar) -> None:
                    if bar.total != total:
                        bar.set_total(total)
                    bar.update(done - bar.count)

                try:
                    written = predict_file(segmenter, job, kind=kind, axes=args.axes, model=args.model,
                                           overwrite=args.force, progress=progress,
                                           instance_options=instance_options)
                except (UnetSdkError, OSError, MemoryError) as exc:
                    failures.append((job.source, f"{type(exc).__name__}: {exc}" if not isinstance(
                        exc, UnetSdkError) else str(exc)))
                    print(f"unet-sdk predict: error: {job.source}: {failures[-1][1]}", file=sys.stderr)
                    continue
            if not quiet:
                print(f"{job.source} -> {', '.join(str(p) for p in written)}")
            files.update()
    if failures:
        print(f"unet-sdk predict: {len(failures)} of {len(jobs)} input(s) failed:", file=sys.stderr)
        for source, error in failures:
            print(f"  {source}: {error}", file=sys.stderr)
        return 2 if len(failures) == len(jobs) else 1
    return 0


@dataclass(frozen=True)
class Layout:
    """An input arranged for the model: ``array`` with ``axes`` (None: the Segmenter infers them) and the
    axes letters of the outputs' non-class axes in the file's own terms (None: unknown)."""

    array: np.ndarray
    axes: str | None
    output_axes: str | None


def model_layout(array: np.ndarray, file_axes: str | None, user_axes: str | None, spatial_dims: int) -> Layout:
    """Use the file's axes where they decide something the shape cannot: a channel axis (RGB, ImageJ
    channels). A 2D model takes a Z or T axis as a stack of images (N); a layout the Segmenter does not
    take but is a permutation of one it does is transposed."""
    if user_axes is not None:
        kept = user_axes.replace("C", "").replace("N", "Z")
        return Layout(array, user_axes, kept if file_axes is None or _same_letters(file_axes, user_axes) else None)
    if file_axes is None or "C" not in file_axes:
        return Layout(array, None, file_axes)
    stack_axes = [a for a in file_axes if a in "TZ"] if spatial_dims == 2 else []
    if len(stack_axes) > 1:
        raise InvalidInputError(f"axes {file_axes}: a 2D model takes one stack axis, this file has {stack_axes}")
    axes = file_axes.replace(stack_axes[0], "N") if stack_axes else file_axes
    allowed = AXES_2D if spatial_dims == 2 else AXES_3D
    if axes not in allowed:
        permuted = [a for a in allowed if sorted(a) == sorted(axes)]
        if permuted:
            array = np.transpose(array, [axes.index(a) for a in permuted[0]])
            file_axes = "".join(stack_axes[0] if a == "N" else a for a in permuted[0])
            axes = permuted[0]
    return Layout(array, axes, file_axes.replace("C", ""))


def _same_letters(file_axes: str, user_axes: str) -> bool:
    return file_axes.replace("Z", "N") == user_axes.replace("Z", "N")


def predict_file(
    segmenter: Segmenter,
    job: Job,
    *,
    kind: str,
    axes: str | None,
    model: str | None,
    overwrite: bool,
    progress=None,
    instance_options: dict | None = None,
) -> list[Path]:
    """Read ``job.source``, predict, write the target (and overlays); returns the paths written.
    ``instance_options``: keyword arguments of :meth:`Segmenter.predict_instances`."""
    loaded = load_image(job.source)
    if job.make_folder:
        job.target.parent.mkdir(parents=True, exist_ok=True)
    file_axes = loaded.calibration.axes if loaded.calibration is not None else None
    layout = model_layout(loaded.array, file_axes, axes, segmenter.metadata.spatial_dims)
    kept, _ = segmenter.output_spec(layout.array.shape, axes=layout.axes)
    out_axes = layout.output_axes if layout.output_axes and len(layout.output_axes) == len(kept) else (
        "YX", "ZYX", "TZYX")[len(kept) - 2]
    calibration = (loaded.calibration or Calibration.uncalibrated(out_axes)).with_axes(out_axes)
    meta = segmenter.metadata
    record = {
        "kind": {"proba": "probabilities"}.get(kind, kind),
        "axes": ("C" + out_axes) if kind == "proba" else out_axes,
        "class_names": list(meta.class_names),
        "foreground_class": meta.foreground_class,
        "model": model or "isbi2012",
        "source": job.source,
        "unet_sdk_version": __version__,
    }
    result = _predict_into(segmenter, layout, job.target, kind=kind, calibration=calibration, record=record,
                           overwrite=overwrite, progress=progress, instance_options=instance_options or {})
    written = [job.target]
    if job.overlay is not None:
        classes = labels_from_proba(np.asarray(result)) if kind == "proba" else np.asarray(result)
        mask = classes > 0 if kind == "instances" else classes == meta.foreground_class
        images = _display_image(layout.array, kept)
        written += write_overlays(job.overlay, images, mask, stacked=len(kept) == 3, overwrite=overwrite)
    return written


def _predict_into(segmenter, layout: Layout, target: Path, *, kind: str, calibration: Calibration,
                  record: dict, overwrite: bool, progress, instance_options: dict):
    """Predict ``layout.array`` into ``target``; returns the result (an array, memmap or zarr array)."""
    suffix = target.suffix.lower()
    if kind == "proba":
        calibration = calibration.with_axes("C" + calibration.axes)
    if kind == "instances" or suffix in (".tif", ".tiff", ".png"):
        result = _predict_in_memory(segmenter, layout, kind=kind, progress=progress,
                                    instance_options=instance_options)
        write_array(target, result, calibration=calibration, record=record,
                    labels=None if kind == "proba" else "instances" if kind == "instances" else "classes",
                    channel_names=record["class_names"] if kind == "proba" else None, overwrite=overwrite)
        return result
    predict = segmenter.predict_proba if kind == "proba" else segmenter.predict
    shape, dtype = segmenter.output_spec(layout.array.shape, axes=layout.axes, proba=kind == "proba")
    with atomic_output(target, overwrite=overwrite) as tmp:
        if suffix == ".npy":
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            predict(layout.array, axes=layout.axes, out=array, progress=progress)
            array.flush()
        else:
            array = create_zarr(tmp, shape, dtype, calibration=calibration, record=record,
                                labels=None if kind == "proba" else "classes")
            predict(layout.array, axes=layout.axes, out=array, progress=progress)
    return np.load(target, mmap_mode="r") if suffix == ".npy" else load_image(target).array


def _predict_in_memory(segmenter, layout: Layout, *, kind: str, progress, instance_options: dict) -> np.ndarray:
    if kind == "proba":
        return segmenter.predict_proba(layout.array, axes=layout.axes, progress=progress)
    if kind == "labels":
        return segmenter.predict(layout.array, axes=layout.axes, progress=progress)
    return segmenter.predict_instances(layout.array, axes=layout.axes, progress=progress, **instance_options)


def _display_image(array: np.ndarray, kept: tuple[int, ...]) -> np.ndarray:
    """``array`` as grey (..., H, W) or colour (..., H, W, 3|4) slices matching the labels' shape ``kept``."""
    if array.shape == kept:
        return array
    candidates = [i for i in range(array.ndim) if array.shape[:i] + array.shape[i + 1:] == kept]
    if not candidates:
        raise InvalidInputError(f"cannot draw an overlay of an image {array.shape} on labels {kept}")
    channel = candidates[-1] if array.shape[candidates[-1]] in (3, 4) else candidates[0]
    moved = np.moveaxis(array, channel, -1)
    return moved if moved.shape[-1] in (3, 4) else moved.mean(axis=-1)
