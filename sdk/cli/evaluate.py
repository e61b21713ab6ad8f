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
    parser.add_argument("truth", metavar="TRUTH", help="ground truth: file, directory, or FILE.npz:KEY")
    parser.add_argument("proposal", metavar="PROPOSAL", nargs="?",
                        help="probabilities or labels: file or directory (omit with --model)")
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
    parser.add_argument("--device", default="auto", help="with --model: auto, cpu or cuda")
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

    proposal = args.proposal
    proposal_kind = args.proposal_kind
    not_predicted: dict[str, str] = {}
    if args.model is not None:
        proposal, not_predicted = predict_proposals(
            args.model, args.images, device=args.device, progress=not args.no_progress
        )
        proposal_kind = "probabilities"

    report = evaluate(
        args.truth,
        proposal,
        metrics=args.metrics,
        mode=args.mode,
        workers=args.workers,
        client=args.scheduler,
        progress=not args.no_progress,
        proposal_kind=proposal_kind,
        threshold=args.threshold,
    )
    # an image that could not be predicted shows up unpaired; say why instead
    report.failures = [Failure(f.name, not_predicted.get(f.name, f.error)) for f in report.failures]
    print(report.format())
    if report.pooled_table:
        print("\npooled per-threshold table (ISBI):")
        print(report.format_threshold_table())
    if args.output:
        report.to_json(args.output, overwrite=args.force)
        print(f"report: {args.output}")
    if args.csv:
        report.to_csv(args.csv, overwrite=args.force)
        print(f"csv: {args.csv}")
    if args.plots and report.items and not report.interrupted:
        paths = write_plots(report, args.truth, proposal, args.plots, worst=args.worst,
                            proposal_kind=proposal_kind, overwrite=args.force)
        print(f"plots: {', '.join(str(p) for p in paths)}")
    if report.interrupted:
        print("unet-sdk evaluate: interrupted; the report holds the items scored so far", file=sys.stderr)
        return 130
    if not report.items:
        print("unet-sdk evaluate: error: no item could be scored", file=sys.stderr)
        return 2
    if report.failures:
        print(f"unet-sdk evaluate: {len(report.failures)} item(s) failed (listed above)", file=sys.stderr)
        return 1
    return 0


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
