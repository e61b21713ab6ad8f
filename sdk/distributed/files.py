"""``predict_files``: many image files spread over a Dask cluster, one task per file, resumable.

The caller names each input's output (the CLI passes its own jobs and its single-machine per-file
function, so names, formats and metadata are the same). A worker reads its file, predicts it with its
cached Segmenter and writes the result atomically (temporary sibling, then rename). The output directory holds a run record (:data:`RUN_RECORD_FILE`); rerunning the same
prediction into it skips the outputs already written, and the record is marked complete at the end.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import OutputExistsError
from ..io import read_image, write_array
from .workers import ModelSpec, Settings, prepare_run, worker_segmenter
from .zarr_output import PredictionIncompleteError, connect

logger = logging.getLogger(__name__)

RUN_RECORD_FILE = ".unet-sdk-run.json"


@dataclass(frozen=True)
class FileJob:
    """One input file and the file its prediction goes to."""

    source: str
    target: Path


def write_labels_or_proba(segmenter: Any, job: Any, *, proba: bool = False, axes: str | None = None,
                          overwrite: bool = False) -> list[Path]:
    """The default job: read ``job.source``, predict it whole, write ``job.target`` atomically
    (:func:`sdk.io.write_array`); returns the paths written."""
    predict = segmenter.predict_proba if proba else segmenter.predict
    Path(job.target).parent.mkdir(parents=True, exist_ok=True)
    return [write_array(job.target, predict(read_image(job.source), axes=axes), overwrite=overwrite)]


def _run_job(spec: ModelSpec, settings: Settings, job: Any, run_job: Callable[..., list[Path]]) -> list[str]:
    return [str(p) for p in run_job(worker_segmenter(spec, settings), job)]


def predict_files(
    model: Any,
    jobs: Sequence[Any],
    *,
    run_job: Callable[..., list[Path]] = write_labels_or_proba,
    client: Any = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> list[Path]:
    """Run each of ``jobs`` (objects with ``source`` and ``target``, e.g. :class:`FileJob` or the CLI's
    jobs) as one task on the cluster of ``client``: ``run_job(segmenter, job)`` with the worker's cached
    Segmenter, returning the paths it wrote (default: :func:`write_labels_or_proba`; pass a
    ``functools.partial`` for options). ``options``: the model's settings as for
    :func:`~sdk.distributed.predict_dask` (``device``, ``tile``, ``blend``, ``threads``, ``memory_budget``, ...).
    Returns the paths written now.

    Raises :class:`OutputExistsError` before any work if a target exists and its directory holds no
    unfinished run of this prediction (``overwrite=True`` replaces them), and
    :class:`PredictionIncompleteError` after the run if some jobs failed (the others are written).
    """
    from distributed import as_completed

    jobs = list(jobs)
    client, own_client = connect(client)
    try:
        run = prepare_run(model, client, **options)
        spec, settings = run.spec, run.settings
        record = {"model_sha256": spec.digest, "tile": list(settings.tile), "overlap": settings.overlap,
                  "blend": settings.blend, "tta": settings.tta,
                  "postprocess": settings.postprocess, "job": _describe(run_job),
                  "sources": [str(j.source) for j in jobs]}
        records = _claim_directories([Path(j.target) for j in jobs], record, overwrite)
        todo = [j for j in jobs if overwrite or not os.path.lexists(j.target)]
        # a model file's bytes go to every worker once; an embedded model is only a name
        shipped = client.scatter(spec, broadcast=True, hash=False) if spec.data is not None else spec
        token = uuid.uuid4().hex
        futures = [client.submit(_run_job, shipped, settings, job, run_job, key=f"unet-sdk-file-{token}-{i}")
                   for i, job in enumerate(todo)]
        source_of = {f.key: str(j.source) for f, j in zip(futures, todo)}
        written, failures = [], []
        done = len(jobs) - len(todo)
        if progress is not None:
            progress(done, len(jobs))
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    failures.append((source_of[future.key], future.exception()))
                else:
                    written.extend(Path(p) for p in future.result())
                done += 1
                if progress is not None:
                    progress(done, len(jobs))
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        if own_client:
            client.close()
    if failures:
        lines = [f"{source}: {type(exc).__name__}: {exc}" for source, exc in failures]
        raise PredictionIncompleteError(
            f"{len(failures)} of {len(jobs)} files failed; the others are written, and rerunning the same "
            "prediction computes only the missing ones:\n  " + "\n  ".join(lines),
            [((i,), source, exc) for i, (source, exc) in enumerate(failures)],
        )
    for path in records:
        path.write_text(json.dumps({**record, "complete": True}))
    return written


def _describe(function: Callable) -> str:
    """A name for ``function`` (a partial's function and keywords) that is the same in every run."""
    import functools

    if isinstance(function, functools.partial):
        keywords = ", ".join(f"{k}={v!r}" for k, v in sorted(function.keywords.items()))
        return f"{_describe(function.func)}({keywords})"
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', type(function).__name__)}"


def _claim_directories(targets: list[Path], record: dict, overwrite: bool) -> list[Path]:
    """Write (or check) the run record of every output directory; raise if an output exists outside an
    unfinished run of this prediction."""
    records = sorted({t.parent / RUN_RECORD_FILE for t in targets})
    for path in records:
        previous = json.loads(path.read_text()) if path.is_file() else None
        resumable = previous is not None and not previous.get("complete") and {**previous, "complete": False} == {
            **record, "complete": False}
        existing = [t for t in targets if t.parent == path.parent and t.exists()]
        if existing and not (overwrite or resumable):
            why = "a finished run" if previous and previous.get("complete") else "not an unfinished run of this prediction"
            raise OutputExistsError(
                f"{', '.join(map(str, existing[:3]))}{' ...' if len(existing) > 3 else ''} exist(s) ({path.parent}: "
                f"{why}); pass overwrite=True (CLI: --force) to replace them"
            )
    for path in records:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**record, "complete": False}))
    return records
