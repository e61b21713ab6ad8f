"""The ``unet-sdk predict`` options that put the work on Dask, and what they run.

``--workers N`` starts a local cluster of N worker processes (its dashboard address is printed);
``--scheduler tcp://HOST:PORT`` uses a running one. One ``.zarr`` output of one input is written chunk by
chunk by the workers (:func:`~sdk.distributed.predict_to_zarr`: resumable, ``--chunks`` sets its chunks);
any other output, or many inputs, become one task per file with the single-machine per-file function
(:func:`~sdk.distributed.predict_files`), so names and formats are those of the single-machine run.
``--memory-budget`` sizes the tile (and the blocks) on one machine as on a cluster.

Imports nothing heavy: the CLI registers these options on every start.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("distributed (Dask)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="start a local Dask cluster of N worker processes")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask scheduler's workers")
    group.add_argument("--chunks", type=_chunks, metavar="SIZES",
                       help="zarr output chunks per spatial axis, e.g. 1024 or 64,256,256 (default 1024 / 128)")
    group.add_argument("--memory-budget", metavar="BYTES",
                       help="memory for one tile and block, e.g. 2GB (default: a quarter of the available "
                            "memory; half a Dask worker's limit per thread)")


def _chunks(text: str) -> int | tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or a comma-separated list of them")
    return sizes[0] if len(sizes) == 1 else sizes


def requested(args: argparse.Namespace) -> bool:
    """Whether the command runs on Dask; a ``--memory-budget`` for one machine takes effect here."""
    if args.memory_budget is not None:
        from .. import sizing

        # read by every Segmenter of this process (and of local workers) that picks its own tile
        os.environ[sizing.BUDGET_VARIABLE] = str(sizing.parse_bytes(args.memory_budget))
    if args.chunks is not None and args.workers is None and args.scheduler is None:
        raise InvalidInputError("--chunks sets the chunks of a distributed zarr output: add --workers or --scheduler")
    return args.workers is not None or args.scheduler is not None


def run(args: argparse.Namespace, jobs: list, kind: str) -> int:
    """Run the planned ``jobs`` (the CLI's) on Dask; exit status 0, or 1 if some chunks or files failed."""
    from .._progress import ProgressBar
    from .files import predict_files
    from .zarr_output import PredictionIncompleteError, predict_to_zarr

    if kind == "instances" or getattr(args, "overlay", False):
        raise InvalidInputError("--instances and --overlay run on one machine: drop --workers / --scheduler")
    if args.workers is not None and args.workers < 1:
        raise InvalidInputError(f"--workers {args.workers}: give at least 1")
    options = dict(device=args.device, tile=args.tile, overlap=args.overlap, blend=args.blend,
                   batch_size=args.batch_size, tta=args.tta, postprocess=args.postprocess, threads=args.threads, memory_budget=args.memory_budget)
    show = not args.no_progress and not getattr(args, "quiet", 0)
    one_zarr = len(jobs) == 1 and Path(jobs[0].target).suffix.lower() == ".zarr"
    if args.chunks is not None and not one_zarr:
        raise InvalidInputError("--chunks applies to one input written to a .zarr output")
    client, cluster = _client(args)
    try:
        with ProgressBar(None, "chunks" if one_zarr else "files", enabled=None if show else False) as bar:

            def progress(done: int, total: int) -> None:
                if bar.total != total:
                    bar.set_total(total)
                bar.update(done - bar.count)

            try:
                if one_zarr:
                    job = jobs[0]
                    source, calibration = _zarr_source(job.source)
                    predict_to_zarr(args.model, source, job.target, output=kind, axes=args.axes, chunks=args.chunks,
                                    client=client, overwrite=args.force, progress=progress,
                                    calibration=calibration, **options)
                else:
                    from ..cli.predict import predict_file

                    run_job = functools.partial(predict_file, kind=kind, axes=args.axes, model=args.model,
                                                overwrite=args.force)
                    predict_files(args.model, jobs, run_job=run_job, client=client, overwrite=args.force,
                                  progress=progress, **options)
            except PredictionIncompleteError as exc:
                print(f"unet-sdk predict: error: {exc}", file=sys.stderr)
                return 1
        for job in jobs:
            print(f"{job.source} -> {job.target}")
        return 0
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _client(args: argparse.Namespace) -> tuple[Any, Any]:
    from .zarr_output import connect

    if args.scheduler is not None:
        return connect(args.scheduler)[0], None
    import distributed

    from ..runtime import default_threads
    from .workers import local_cluster

    if not logging.getLogger().isEnabledFor(logging.INFO):  # without -v, the cluster's own chatter stays out
        logging.getLogger("distributed").setLevel(logging.WARNING)
    threads = max(1, default_threads() // args.workers)
    cluster = local_cluster(args.workers, threads)
    print(f"unet-sdk predict: local Dask cluster of {args.workers} workers x {threads} threads, dashboard "
          f"{cluster.dashboard_link}", file=sys.stderr)
    return distributed.Client(cluster), cluster


def _zarr_source(source: str) -> tuple[Any, Any]:
    """What the workers read: a zarr / OME-Zarr path in place, an .npy as a memmap, anything else loaded
    here; and the input's calibration when the path itself does not carry it (zarr carries its own)."""
    from ..io import load_image, split_image_path

    path, key = split_image_path(source)
    if path.suffix.lower() == ".zarr" and path.is_dir():
        return (path / key if key else path), None
    if path.suffix.lower() == ".npy":
        import numpy as np

        return np.load(path, mmap_mode="r"), None
    loaded = load_image(source)
    return loaded.array, loaded.calibration
