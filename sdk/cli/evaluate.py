"""``unet-sdk evaluate``: score a label set (or a model's predictions) and write the report.

Exit status: 0 when every item was scored; 1 when some items failed (they are listed, the rest is scored
and written); 2 for errors that stop the run (bad options, nothing to pair, unreachable scheduler,
existing outputs without ``--force``); 130 after Ctrl-C, with the partial report written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .._progress import ProgressBar
from ..errors import InvalidInputError
from ..io import load_image, peek_shape, split_image_path
from .options import add_device_argument


def add_parser(subparsers) -> None:
    from ..metrics.evaluate import DEFAULT_METRICS, METRICS

    parser = subparsers.add_parser(
        "evaluate",
        help="score segmentations against ground truth (ISBI 2012 warping/Rand/pixel error, VI, adapted Rand)",
        description=(
            "Score PROPOSAL against TRUTH item by item (slices of stacks, files of directories paired by "
            "name) and print a table; write the full report as JSON/CSV and plots. With --model and "
            "--images, predict the proposals with a model first."
        ),
    )
    parser.add_argument("truth", metavar="TRUTH",
                        help="ground truth: file, directory, FILE.npz:KEY or FILE.zarr/ARRAY")
    parser.add_argument("proposal", metavar="PROPOSAL", nargs="?",
                        help="probabilities or labels: file or directory, e.g. what `unet-sdk predict --proba` "
                             "wrote (omit with --model)")
    parser.add_argument("--channel", type=int, metavar="K",
                        help="score class K of a probability file with a class axis (default: the foreground "
                             "class its own record names)")
    parser.add_argument("-o", "--output", metavar="REPORT.json", help="write the full report as JSON")
    parser.add_argument("--csv", metavar="REPORT.csv", help="write the score table as CSV")
    parser.add_argument("--plots", metavar="DIR", help="write threshold curves and error overlays here")
    parser.add_argument("--worst", type=int, default=3, metavar="N",
                        help="overlays for the N items with the highest warping error (default 3)")
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=list(DEFAULT_METRICS),
                        help=f"what to compute (default: {' '.join(DEFAULT_METRICS)})")
    parser.add_argument("--mode", choices=("2d", "3d"), default="2d",
                        help="2d: score slices (ISBI convention); 3d: score volumes with 3D connectivity")
    parser.add_argument("--proposal-kind", choices=("auto", "probabilities", "labels"), default="auto",
                        help="auto: floats are probabilities, integers are labels (default)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="threshold for 'warping' and for labelling probabilities for VI/adapted Rand")
    parser.add_argument("--workers", type=int, metavar="N", help="threads (default: all cores; 1 = serial)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask scheduler at ADDRESS")
    parser.add_argument("--model", metavar="MODEL", help="predict the proposals with this .onnx model")
    parser.add_argument("--images", metavar="IMAGES", help="with --model: the images to segment")
    add_device_argument(parser, what="with --model: where to run")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..metrics.evaluate import evaluate
    from ..metrics.inputs import Failure
    from ..metrics.plots import write_plots

    if (args.model is None) != (args.images is None):
        raise InvalidInputError("--model and --images go together")
    if (args.proposal is None) == (args.model is None):
        raise InvalidInputError("give either PROPOSAL or --model MODEL --images IMAGES")
    outputs = [Path(p) for p in (args.output, args.csv) if p]
    for path in outputs:  # fail before scoring, not after
        if path.exists() and not args.force:
            raise InvalidInputError(f"{path} exists; pass --force to replace it")
    if args.plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InvalidInputError("--plots needs matplotlib: pip install 'unet-sdk[plots]'") from None

    truth = _keyed(args.truth)
    proposal, proposal_kind = args.proposal, args.proposal_kind
    if proposal is not None:
        proposal, chosen = proposal_source(proposal, channel=args.channel, truth_shape=peek_shape(truth))
        proposal_kind = "probabilities" if chosen else proposal_kind
    not_predicted: dict[str, str] = {}
    if args.model is not None:
        proposal, not_predicted = predict_proposals(
            args.model, _keyed(args.images), device=args.device, progress=_progress(args)
        )
        proposal_kind = "probabilities"

    report = evaluate(
        truth,
        proposal,
        metrics=args.metrics,
        mode=args.mode,
        workers=args.workers,
        client=args.scheduler,
        progress=_progress(args),
        proposal_kind=proposal_kind,
        threshold=args.threshold,
    )
    # an image that could not be predicted shows up unpaired; say why instead
    report.failures = [Failure(f.name, not_predicted.get(f.name, f.error)) for f in report.failures]
    print(report.format())
    if report.pooled_table:
        print("\npooled per-threshold table (ISBI; warping_error is empty at 1.0: Fiji sweeps it to 0.9 only):")
        print(report.format_threshold_table())
    if not report.items and not report.interrupted:
        print("unet-sdk evaluate: error: no item could be scored; no report written", file=sys.stderr)
        return 2
    if args.output:
        report.to_json(args.output, overwrite=args.force)
        print(f"report: {args.output}")
    if args.csv:
        report.to_csv(args.csv, overwrite=args.force)
        print(f"csv: {args.csv}")
    if args.plots and report.items and not report.interrupted:
        paths = write_plots(report, truth, proposal, args.plots, worst=args.worst,
                            proposal_kind=proposal_kind, overwrite=args.force)
        print(f"plots: {', '.join(str(p) for p in paths)}")
    if report.interrupted:
        print("unet-sdk evaluate: interrupted; the report holds the items scored so far", file=sys.stderr)
        return 130
    if report.failures:
        print(f"unet-sdk evaluate: {len(report.failures)} item(s) failed (listed above)", file=sys.stderr)
        return 1
    return 0


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and not getattr(args, "quiet", 0)


def _keyed(spec: str) -> str:
    """``PATH.zarr/ARRAY`` in the ``PATH:KEY`` form :mod:`sdk.metrics.inputs` reads."""
    container, key = split_image_path(spec)
    return f"{container}:{key}" if key is not None else spec


def proposal_source(
    spec: str, *, channel: int | None, truth_shape: tuple[int, ...] | None = None
) -> tuple[object, bool]:
    """The proposal to score and whether it is a probability channel chosen here.

    A probability file that records its classes (``unet-sdk predict --proba`` output), or any file with
    ``channel``, gives that class's channel. A directory gives a mapping {input name: array or path},
    names taken from each output's record of its source (``a_proba.tif`` of ``a.tif`` pairs with
    ``a.tif``); other files stay paths, read by the evaluation itself. A file without such a record
    shaped like one map per class of a truth of ``truth_shape`` is refused with a hint to --channel."""
    container, _ = split_image_path(spec)
    if container.is_dir() and container.suffix.lower() != ".zarr":
        from ..io import image_stem, is_image_path

        entries: dict[str, object] = {}
        chosen = renamed = False
        for path in sorted(container.iterdir()):
            if path.name.startswith(".") or not is_image_path(path):
                continue
            loaded = load_image(path)
            record = loaded.record or {}
            name = image_stem(record["source"]) if "source" in record else path.stem
            renamed |= name != path.stem
            if channel is not None or record.get("kind") == "probabilities":
                entries[name] = _class_channel(loaded, channel, path)
                chosen = True
            else:
                entries[name] = str(path)
        # plain files stay a folder path: the evaluation's workers then read them themselves
        return (entries, chosen) if chosen or renamed else (_keyed(spec), False)
    if not container.exists():
        return _keyed(spec), False
    loaded = load_image(spec)
    if channel is None and (loaded.record or {}).get("kind") != "probabilities":
        shape = loaded.array.shape
        if truth_shape and shape[1:] == tuple(truth_shape) and shape[0] > 1:
            raise InvalidInputError(
                f"{spec} has shape {shape}: one probability map per class for a truth of shape "
                f"{tuple(truth_shape)}, with no record of which class is foreground; pass --channel K "
                "(e.g. --channel 1 for the ISBI model's 'cell')"
            )
        return _keyed(spec), False
    return _class_channel(loaded, channel, spec), True


def _class_channel(loaded, channel: int | None, name) -> np.ndarray:
    """Channel ``channel`` (default: the recorded foreground class) along the file's class axis."""
    record = loaded.record or {}
    array = loaded.array
    if loaded.calibration is not None and "C" in loaded.calibration.axes:
        axis = loaded.calibration.axes.index("C")
    elif "C" in record.get("axes", "") and len(record["axes"]) == array.ndim:
        axis = record["axes"].index("C")
    elif array.ndim >= 3:
        axis = 0  # predict_proba's layout: (classes, ...)
    else:
        raise InvalidInputError(f"{name}: --channel given, but an image of shape {array.shape} has no class axis")
    if channel is None:
        channel = int(record["foreground_class"])
    if not 0 <= channel < array.shape[axis]:
        raise InvalidInputError(f"{name}: --channel {channel} is not one of the {array.shape[axis]} classes")
    return np.take(array, channel, axis=axis)


def predict_proposals(
    model: str, images: str, *, device: str, progress: bool
) -> tuple[dict[str, np.ndarray] | np.ndarray, dict[str, str]]:
    """Foreground probabilities of ``images`` from ``model``: an array for one file, or a mapping by file
    name for a directory, plus the errors of the images that could not be predicted (by name)."""
    from .. import Segmenter
    from ..metrics.inputs import load_source, side_entries

    segmenter = Segmenter(model, device=device)
    foreground = segmenter.metadata.foreground_class
    side = side_entries(images, "images")
    if not isinstance(side, tuple):
        return segmenter.predict_proba(load_source(side, name=Path(images).stem))[foreground], {}
    entries, failures = side
    errors = {f.name: f.error for f in failures}
    probabilities: dict[str, np.ndarray] = {}
    with ProgressBar(len(entries), "predict", enabled=None if progress else False) as bar:
        for name, source in entries.items():
            try:
                probabilities[name] = segmenter.predict_proba(load_source(source, name=name))[foreground]
            except InvalidInputError as exc:
                errors[name] = f"{name}: not predicted: {exc}"
            bar.update()
    return probabilities, errors
