"""Score whole label sets: :func:`evaluate` runs the metrics over every item, on all cores or a Dask cluster.

An *item* is a slice (``mode="2d"``, the ISBI 2012 convention: stacks are scored slice by slice) or a
volume (``mode="3d"``). Inputs are paired as :mod:`sdk.metrics.inputs` describes (two stacks, two
directories paired by file name, NPY/NPZ/zarr, mappings of arrays).

Where the work runs:

* ``workers=1``: serially, in this thread.
* ``workers=N`` (default: all cores): a thread pool of N. The C++ core releases the GIL, so threads scale
  like processes without copying images between processes (measured in ``benchmarks/bench_evaluate.py``).
  Each item then runs single-threaded; when there are fewer items than workers (a few big volumes), the
  cores are shared out inside the items instead.
* ``client=`` a ``distributed.Client`` or a scheduler address: one Dask task per slice of an in-memory
  stack or per file of a directory (workers read files themselves).

Every item is scored by the same deterministic code, and aggregates are formed in the input order with
exactly rounded sums, so the three give identical reports. An item that fails (unreadable file,
mismatched shape, non-integer labels ...) is listed in ``Report.failures`` under its name and the rest of
the set is still scored. Ctrl-C stops the run: running items finish, the rest is listed in
``Report.not_scored`` and the partial report is returned with ``interrupted=True``.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .._progress import ProgressBar
from ..errors import InvalidInputError, RuntimeUnavailableError
from .components import label_components
from .inputs import (
    MODES,
    PROPOSAL_KINDS,
    Failure,
    SideSpec,
    Task,
    make_tasks,
    prepare_proposal,
    prepare_truth,
    split_items,
)
from .report import ItemResult, Report

logger = logging.getLogger(__name__)

METRICS = ("isbi2012", "warping", "vi", "adapted_rand")
DEFAULT_METRICS = ("isbi2012", "vi", "adapted_rand")

ProgressCallback = Callable[[int, int], None]
SCHEDULER_TIMEOUT = "10s"  # how long to try reaching a Dask scheduler given by address


@dataclass(frozen=True)
class Options:
    """Validated scoring options, sent along with each task."""

    metrics: tuple[str, ...]
    mode: str
    proposal_kind: str
    threshold: float
    radius: int
    threads: int


def validate_options(
    *, metrics: Iterable[str], mode: str, proposal_kind: str, threshold: float, radius: int, threads: int = 1
) -> Options:
    """Check every string option in one place; raise :class:`InvalidInputError` naming the bad value."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(dict.fromkeys(metrics))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise InvalidInputError(f"unknown metrics {unknown or '(none given)'}; choose from {METRICS}")
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    if proposal_kind not in PROPOSAL_KINDS:
        raise InvalidInputError(f"proposal_kind must be one of {PROPOSAL_KINDS}, got {proposal_kind!r}")
    if not 0.0 <= float(threshold) < 1.0:
        raise InvalidInputError(f"threshold must be in [0, 1), got {threshold}")
    return Options(metrics, mode, proposal_kind, float(threshold), int(radius), int(threads))


@dataclass
class TaskOutcome:
    """What scoring one task gives back: its items (with the raw ISBI results for pooling) or a failure."""

    index: int
    items: list[ItemResult]
    isbi: list[Any]
    failure: Failure | None = None


def score_task(index: int, task: Task, options: Options) -> TaskOutcome:
    """Score every item of ``task``; any error becomes a :class:`Failure` naming the task."""
    try:
        items: list[ItemResult] = []
        isbi: list[Any] = []
        for name, truth, proposal in split_items(task, mode=options.mode):
            result, raw = score_item(name, truth, proposal, options)
            items.append(result)
            if raw is not None:
                isbi.append(raw)
        return TaskOutcome(index, items, isbi)
    except Exception as exc:  # one bad item must not stop a set of thousands; it is reported by name
        logger.debug("scoring %s failed", task.name, exc_info=True)
        message = str(exc) if task.name in str(exc) else f"{task.name}: {exc}"
        if not isinstance(exc, InvalidInputError):
            message = f"{message} ({type(exc).__name__})"
        return TaskOutcome(index, [], [], Failure(task.name, message))


def score_item(
    name: str, truth: np.ndarray, proposal: np.ndarray, options: Options
) -> tuple[ItemResult, Any]:
    """The scores of one slice or volume; also returns the raw ISBI result (or None) for pooling."""
    from . import adapted_rand_error, contingency_table, isbi2012, variation_of_information, warping_error

    truth = prepare_truth(truth, name=name)
    probability, proposal_labels = prepare_proposal(proposal, kind=options.proposal_kind, name=name)
    scores: dict[str, float] = {}
    table: list[dict[str, float]] = []
    raw = None
    if "isbi2012" in options.metrics:
        raw = isbi2012(truth, probability, threads=options.threads)
        scores.update(isbi_scores(raw))
        table = table_rows(raw.table)
    if "warping" in options.metrics:
        w = warping_error(
            truth, probability, threshold=options.threshold, radius=options.radius, mode=options.mode,
            threads=options.threads,
        )
        scores["warp_error"] = float(w.error)
        for field in WARP_COUNTS:
            scores[f"warp_{field}"] = float(getattr(w, field))
    if "vi" in options.metrics or "adapted_rand" in options.metrics:
        truth_labels = segment_labels(truth, mode=options.mode)
        if proposal_labels is None:
            proposal_labels = label_components(probability > options.threshold, mode=options.mode)
        else:
            proposal_labels = segment_labels(proposal_labels, mode=options.mode)
        contingency = contingency_table(truth_labels, proposal_labels, threads=options.threads)  # once for both
        if "vi" in options.metrics:
            split, merge = variation_of_information(table=contingency)
            scores.update(vi_split=float(split), vi_merge=float(merge), vi=float(split) + float(merge))
        if "adapted_rand" in options.metrics:
            if truth_labels.any():
                scores.update(adapted_rand_scores(adapted_rand_error(table=contingency)))
            else:  # it ignores truth background: nothing left to score (NaN, left out of the mean)
                scores.update(dict.fromkeys(ADAPTED_RAND_KEYS, math.nan))
    return ItemResult(name, tuple(int(n) for n in truth.shape), scores, table), raw


WARP_COUNTS = ("mismatches", "splits", "mergers", "hole_additions", "hole_deletions",
               "object_additions", "object_deletions")
ISBI_FIELDS = ("warping_error", "warping_threshold", "rand_error", "rand_threshold",
               "pixel_error", "pixel_threshold")


def isbi_scores(result: Any) -> dict[str, float]:
    """The six headline numbers of an ISBI result as floats."""
    return {key: float(getattr(result, key)) for key in ISBI_FIELDS}


ADAPTED_RAND_KEYS = ("adapted_rand_error", "adapted_rand_precision", "adapted_rand_recall")


def adapted_rand_scores(result: Any) -> dict[str, float]:
    return dict(zip(ADAPTED_RAND_KEYS, (float(result.error), float(result.precision), float(result.recall))))


def table_rows(table: Any) -> list[dict[str, Any]]:
    """An ISBI per-threshold table as plain dicts: exact ints kept, None (a sweep's unused row) as NaN."""
    return [{k: (math.nan if v is None else v if isinstance(v, int) else float(v)) for k, v in row.items()}
            for row in table]


def segment_labels(labels: np.ndarray, *, mode: str) -> np.ndarray:
    """Label images are used as they are; a binary mask (at most one non-zero value) is cut into its
    connected components, since a mask of cells separated by membrane is one label otherwise."""
    nonzero = labels[labels != 0]
    if nonzero.size == 0 or np.all(nonzero == nonzero.flat[0]):
        return label_components(labels != 0, mode=mode)
    return labels


def evaluate(
    truth: SideSpec,
    proposal: SideSpec,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    mode: str = "2d",
    workers: int | None = None,
    client: Any = None,
    progress: bool | ProgressCallback = True,
    proposal_kind: str = "auto",
    threshold: float = 0.5,
    radius: int = 20,
) -> Report:
    """Score ``proposal`` against ``truth`` item by item and aggregate.

    Args:
        truth, proposal: arrays, paths (files or directories) or mappings ``{name: array or path}``;
            see :mod:`sdk.metrics.inputs`. Truth: labels or mask, foreground > 0. Proposal: probability
            of foreground in [0, 1], or labels (``proposal_kind``).
        metrics: any of ``"isbi2012"`` (Fiji-exact ISBI 2012 warping / Rand / pixel errors with their
            threshold sweeps), ``"warping"`` (warping error and split/merger/hole/object pixel counts at
            ``threshold``, ``radius``), ``"vi"`` (variation of information: split = H(proposal | truth),
            merge = H(truth | proposal), in bits), ``"adapted_rand"`` (SNEMI3D adapted Rand error).
        mode: ``"2d"`` scores slices (stacks slice by slice, like Fiji); ``"3d"`` scores volumes with 3D
            connectivity (the ISBI scores stay the 2D challenge definition).
        workers: threads on this machine (default: all cores); 1 runs serially; unused with ``client``.
        client: a ``distributed.Client`` or scheduler address (``"tcp://host:8786"``): run on Dask.
        progress: draw a progress bar on stderr (when it is a terminal), or a callable
            ``progress(done, total)`` called after each task.
        threshold: the threshold of ``"warping"`` and of the labelling of probability maps for VI / adapted
            Rand (the ISBI sweeps use their own thresholds).
        radius: the classification radius of ``"warping"`` (ISBI: 20).

    Returns:
        a :class:`Report`. Raises :class:`InvalidInputError` for bad options or when nothing can be paired,
        :class:`RuntimeUnavailableError` when the Dask scheduler cannot be reached.
    """
    options = validate_options(
        metrics=metrics, mode=mode, proposal_kind=proposal_kind, threshold=threshold, radius=radius
    )
    tasks, failures = make_tasks(truth, proposal, mode=mode)
    return run_tasks(tasks, options, failures=failures, workers=workers, client=client, progress=progress)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_tasks(
    tasks: list[Task],
    options: Options,
    *,
    failures: list[Failure] | None = None,
    workers: int | None = None,
    client: Any = None,
    progress: bool | ProgressCallback = True,
) -> Report:
    """Score prepared tasks serially, on threads or on Dask, and build the report (see :func:`evaluate`)."""
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise InvalidInputError(f"workers must be >= 1, got {workers}")
    failures = list(failures or [])
    outcomes: dict[int, TaskOutcome] = {}
    interrupted = False
    if client is not None:
        stream = _run_dask(tasks, options, client)
    elif workers == 1:
        stream = (score_task(i, t, options) for i, t in enumerate(tasks))
    else:
        # cores left over when items are few go inside the items (e.g. a handful of 3D volumes)
        threads = max(1, workers // max(1, len(tasks)))
        stream = _run_threads(tasks, dataclasses.replace(options, threads=threads), workers)
    with _Progress(progress, len(tasks)) as report_progress:
        try:
            for outcome in stream:
                outcomes[outcome.index] = outcome
                report_progress()
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("interrupted: %d of %d tasks scored", len(outcomes), len(tasks))
        finally:
            stream.close()  # cancels queued work (thread pool, Dask futures)
    return assemble(tasks, outcomes, options, failures=failures, interrupted=interrupted)


def _run_threads(tasks: list[Task], options: Options, workers: int) -> Iterator[TaskOutcome]:
    executor = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unet-sdk-evaluate")
    try:
        futures = [executor.submit(score_task, i, t, options) for i, t in enumerate(tasks)]
        for future in cf.as_completed(futures):
            yield future.result()
    finally:
        # on Ctrl-C (or an early close) drop queued items; running ones finish within one item
        executor.shutdown(wait=True, cancel_futures=True)


def _run_dask(tasks: list[Task], options: Options, client: Any) -> Iterator[TaskOutcome]:
    """Submit tasks to Dask through a sliding window (a few per worker thread), so that the images of a
    large in-memory set are not all held by the scheduler at once."""
    distributed = _import_distributed()
    own_client = isinstance(client, str)
    if own_client:
        try:
            client = distributed.Client(client, timeout=SCHEDULER_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(f"cannot reach the Dask scheduler at {client}: {exc}") from exc
    in_flight: set = set()
    try:
        window = max(8, 4 * sum(client.nthreads().values()))
        queue = iter(enumerate(tasks))
        completed = distributed.as_completed()

        def submit_next() -> None:
            for index, task in queue:
                future = client.submit(score_task, index, task, options, pure=False)
                in_flight.add(future)
                completed.add(future)
                return

        for _ in range(window):
            submit_next()
        for future in completed:
            in_flight.discard(future)
            outcome = future.result()
            submit_next()
            yield outcome
    finally:
        if in_flight:
            client.cancel(list(in_flight))
        if own_client:
            client.close()


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise RuntimeUnavailableError(
            "running on a Dask cluster needs dask.distributed: pip install 'unet-sdk[dask]'"
        ) from exc
    return distributed


class _Progress:
    """Adapts ``progress=`` (bool or callback) to one call per finished task."""

    def __init__(self, progress: bool | ProgressCallback, total: int) -> None:
        self.total = total
        self.done = 0
        self.callback = progress if callable(progress) else None
        self.bar = ProgressBar(total, "evaluate", enabled=None if progress is True else False)

    def __enter__(self) -> "_Progress":
        return self

    def __call__(self) -> None:
        self.done += 1
        self.bar.update()
        if self.callback is not None:
            self.callback(self.done, self.total)

    def __exit__(self, *exc) -> None:
        self.bar.close()


def assemble(
    tasks: list[Task],
    outcomes: dict[int, TaskOutcome],
    options: Options,
    *,
    failures: list[Failure],
    interrupted: bool,
) -> Report:
    """Order the outcomes as the tasks, pool the ISBI results, and build the :class:`Report`."""
    items: list[ItemResult] = []
    isbi: list[Any] = []
    failures = list(failures)
    not_scored: list[str] = []
    for index, task in enumerate(tasks):
        outcome = outcomes.get(index)
        if outcome is None:
            not_scored.append(task.name)
            continue
        items += outcome.items
        isbi += outcome.isbi
        if outcome.failure is not None:
            failures.append(outcome.failure)
    pooled: dict[str, float] = {}
    pooled_table: list[dict[str, float]] = []
    if isbi:
        from . import pool_isbi2012

        pooled_result = pool_isbi2012(isbi)
        pooled = isbi_scores(pooled_result)
        pooled_table = table_rows(pooled_result.table)
    return Report.from_items(
        items,
        failures=failures,
        pooled=pooled,
        pooled_table=pooled_table,
        metrics=options.metrics,
        mode=options.mode,
        not_scored=not_scored,
        interrupted=interrupted,
    )
