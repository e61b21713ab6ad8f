"""``predict_to_zarr``: a prediction written into an OME-Zarr by the workers, chunk by chunk, resumable.

Every output chunk is one Dask task that writes it into the store (zarr writes a chunk to a temporary
file and renames it, so a chunk file exists only complete); nothing passes through the client. The run
is recorded in the group's attributes (``unet_sdk_run``: model digest, settings, input), marked complete
at the end. Running the same prediction into an unfinished output of the same run resumes it: only the
chunks without a file are computed (with the blocks they need). A chunk that fails (e.g. NaN input in
its region) is reported with its location while the others finish; :class:`PredictionIncompleteError`
lists them, and a rerun after the fix completes the output.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..calibration import Calibration
from ..errors import InvalidInputError, OutputExistsError, RuntimeUnavailableError, UnetSdkError
from ..ngff import DEFAULT_NGFF_VERSION, create_ngff, read_ngff
from .graph import build_prediction, normalise_chunks

logger = logging.getLogger(__name__)

RUN_RECORD = "unet_sdk_run"
DEFAULT_CHUNK = {2: 1024, 3: 128}  # spatial chunk side of the output by model dimension
SCHEDULER_TIMEOUT = "10s"


class PredictionIncompleteError(UnetSdkError, RuntimeError):
    """Some output chunks failed; ``failures`` lists (chunk index, output region, error). The others are
    written, and rerunning the prediction into the same output computes only the missing ones."""

    def __init__(self, message: str, failures: list[tuple[tuple[int, ...], str, BaseException]]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass
class WriteReport:
    """What one run wrote: chunks computed now, chunks already there (resumed), and the output path."""

    path: Path
    written: list[tuple[int, ...]] = field(default_factory=list)
    skipped: int = 0
    total: int = 0


def connect(client: Any) -> tuple[Any, bool]:
    """``client`` as a ``distributed.Client`` (an address is connected to; ``None`` means the current
    client) and whether we own it (and must close it)."""
    try:
        import distributed
    except ImportError as exc:
        raise RuntimeUnavailableError("writing on a Dask cluster needs dask.distributed: pip install 'unet-sdk[dask]'") from exc
    if client is None:
        try:
            return distributed.default_client(), False
        except ValueError as exc:
            raise RuntimeUnavailableError("no Dask client: pass client= (a Client or 'tcp://host:port')") from exc
    if isinstance(client, str):
        try:
            return distributed.Client(client, timeout=SCHEDULER_TIMEOUT), True
        except (OSError, TimeoutError) as exc:
            raise RuntimeUnavailableError(f"cannot reach the Dask scheduler at {client}: {exc}") from exc
    return client, False


def _store_root(array: Any) -> Path | None:
    """The local directory a zarr array's store lives in, if it has one."""
    root = getattr(getattr(array, "store", None), "root", None)
    return Path(root).resolve() if root is not None else None


def _overlapping(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _open_input(source: Any) -> tuple[Any, Calibration | None, Path | None]:
    """The array to read, its calibration (OME-Zarr) and the store directory it lives in."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InvalidInputError(f"{path}: no such file or directory")
        try:
            image = read_ngff(path)
            return image.array, image.calibration, path.resolve()
        except InvalidInputError:
            import zarr

            try:
                return zarr.open_array(str(path), mode="r"), None, path.resolve()
            except Exception as exc:  # zarr raises its own types for groups and non-zarr paths
                raise InvalidInputError(f"{path}: neither an OME-Zarr image nor a zarr array ({exc})") from exc
    return source, None, _store_root(source)


def output_axes(model_axes: str, calibration: Calibration | None, output: str) -> str:
    """NGFF axis letters of the output: the input's (a stack's N read as the input's own letter, else Z),
    without the channel axis; probabilities put the classes first as C."""
    letters = calibration.axes if calibration is not None and len(calibration.axes) == len(model_axes) else None
    kept = "".join(
        (letters[i] if letters else ("Z" if a == "N" else a)) for i, a in enumerate(model_axes) if a != "C"
    )
    return ("C" + kept) if output == "proba" else kept


def _run_record(spec_digest: str, settings: Any, output: str, shape: tuple[int, ...], dtype: Any, source: Any) -> dict:
    return {
        "model_sha256": spec_digest,
        "tile": list(settings.tile), "overlap": settings.overlap, "blend": settings.blend, "tta": settings.tta,
        "postprocess": settings.postprocess, "batch_size": settings.batch_size, "output": output,
        "input": {"shape": list(shape), "dtype": str(np.dtype(dtype)), "source": str(source)},
    }


def predict_to_zarr(
    model: Any,
    source: Any,
    target: str | os.PathLike,
    *,
    output: str = "labels",
    axes: str | None = None,
    chunks: Any = None,
    client: Any = None,
    overwrite: bool = False,
    ngff_version: str = DEFAULT_NGFF_VERSION,
    progress: Callable[[int, int], None] | None = None,
    calibration: Calibration | None = None,
    **options: Any,
) -> WriteReport:
    """Predict ``source`` (an OME-Zarr or zarr path, or an array) into the OME-Zarr ``target`` on the Dask
    cluster of ``client`` (a Client, an address, or the current client), resuming an unfinished run.

    ``chunks``: the output's chunks (default: one image at a time, :data:`DEFAULT_CHUNK` per spatial axis).
    ``options`` go to :func:`predict_dask` (``tile``, ``blend``, ``device``, ``memory_budget``, ...).
    ``progress(done, total)`` is called as chunks finish. ``calibration``: the input's axes, pixel size and
    units where ``source`` does not carry them (an OME-Zarr does); the output keeps them. Raises, before any work: :class:`InvalidInputError`
    when input and output share a store or ``chunks`` do not tile the output; :class:`OutputExistsError`
    when ``target`` exists and is not an unfinished run of this prediction (``overwrite=True`` replaces it).
    After the run: :class:`PredictionIncompleteError` if some chunks failed.
    """
    import zarr
    from dask.highlevelgraph import HighLevelGraph

    target = Path(target)
    array, own_calibration, source_root = _open_input(source)
    calibration = own_calibration or calibration
    if source_root is not None and _overlapping(source_root, target.resolve()):
        raise InvalidInputError(f"input {source_root} and output {target} are the same store (or one holds the other)")
    client, own_client = connect(client)
    try:
        result, context = build_prediction(model, array, output=output, axes=axes, client=client, **options)
        layout, spec, settings = context.layout, context.spec, context.settings
        spatial_dims = len(layout.spatial)
        lead = tuple(c[0] for c in layout.out_lead_chunks())
        chunk_spec = chunks if chunks is not None else tuple(min(DEFAULT_CHUNK[spatial_dims], n) for n in layout.spatial)
        chunking = normalise_chunks(chunk_spec, result.shape, lead)
        if any(len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]) for c in chunking):
            raise InvalidInputError(f"chunks {chunk_spec}: zarr needs one chunk size per axis (the last may be smaller)")
        chunk_shape = tuple(c[0] for c in chunking)
        record = _run_record(spec.digest, settings, output, layout.shape, array.dtype, str(Path(source).resolve()) if isinstance(source, (str, os.PathLike)) else type(source).__name__)
        store = _prepare_output(target, record, overwrite, result.shape, result.dtype, chunk_shape,
                                output_axes(layout.axes, calibration, output), calibration, ngff_version, output)
        grid = tuple(len(c) for c in chunking)
        encode = store.metadata.encode_chunk_key
        level = target / "0"
        indices = list(np.ndindex(*grid))
        missing = [i for i in indices if not (level / encode(i)).exists()]
        report = WriteReport(target, skipped=len(indices) - len(missing), total=len(indices))
        if report.skipped:
            logger.info("%s: resuming, %d of %d chunks already written", target, report.skipped, len(indices))
        result = result.rechunk(chunking)
        name = f"unet-sdk-write-{uuid.uuid4().hex}"
        layer = {(name,) + i: (_write_chunk, str(level), i, chunk_shape, (result.name,) + i) for i in missing}
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[result])
        keys = list(layer)
        futures = client.get(graph.cull(set(keys)), keys, sync=False) if keys else []
        failures = _gather(client, futures, missing, chunk_shape, report, progress)
    finally:
        if own_client:
            client.close()
    if failures:
        lines = [f"chunk {i} (output {region}): {type(e).__name__}: {e}" for i, region, e in failures]
        raise PredictionIncompleteError(
            f"{len(failures)} of {report.total} chunks of {target} failed; the others are written, and "
            "rerunning the same prediction computes only the missing ones:\n  " + "\n  ".join(lines), failures
        )
    group = zarr.open_group(str(target), mode="r+")
    group.attrs[RUN_RECORD] = {**record, "complete": True}
    return report


def _prepare_output(target: Path, record: dict, overwrite: bool, shape, dtype, chunk_shape, axes: str,
                    calibration: Calibration | None, version: str, output: str) -> Any:
    """The output's level-0 array: the unfinished run to resume, or a new OME-Zarr."""
    import zarr

    if target.exists() and not overwrite:
        try:
            previous = dict(zarr.open_group(str(target), mode="r").attrs).get(RUN_RECORD)
        except Exception:  # not a zarr group at all
            previous = None
        if previous is None or previous.get("complete") or {**previous, "complete": False} != {**record, "complete": False}:
            why = ("is complete" if previous and previous.get("complete") else
                   "is an unfinished run of another prediction" if previous else "exists")
            raise OutputExistsError(f"{target} {why}; pass overwrite=True (CLI: --force) to replace it")
        array = zarr.open_array(str(target / "0"), mode="r+")
        if tuple(array.shape) != tuple(shape) or tuple(array.chunks) != tuple(chunk_shape):
            raise OutputExistsError(f"{target}: an unfinished run with shape {array.shape} and chunks "
                                    f"{array.chunks}; this one needs {shape} and {chunk_shape} (--force replaces it)")
        return array
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    base = calibration if calibration is not None else Calibration.uncalibrated(axes)
    array = create_ngff(target, tuple(shape), dtype, calibration=base.with_axes(axes) if base.axes != axes else base,
                        chunks=chunk_shape, labels=output == "labels", version=version)
    zarr.open_group(str(target), mode="r+").attrs[RUN_RECORD] = {**record, "complete": False}
    return array


def _write_chunk(level: str, index: tuple[int, ...], chunk_shape: tuple[int, ...], data: np.ndarray) -> None:
    """Write one output chunk (zarr writes it to a temporary file and renames it into place)."""
    import zarr

    array = zarr.open_array(level, mode="r+", config={"write_empty_chunks": True})
    region = tuple(slice(i * c, i * c + n) for i, c, n in zip(index, chunk_shape, data.shape))
    array[region] = data


def _region(index: Sequence[int], chunk_shape: Sequence[int]) -> str:
    return "[" + ", ".join(f"{i * c}:{(i + 1) * c}" for i, c in zip(index, chunk_shape)) + "]"


def _gather(client: Any, futures: list, indices: list, chunk_shape: tuple[int, ...], report: WriteReport,
            progress: Callable[[int, int], None] | None) -> list:
    """Wait for every chunk; collect the failed ones. Ctrl-C cancels what has not run (written chunks stay)."""
    from distributed import as_completed

    where = {f.key: i for f, i in zip(futures, indices)}
    failures = []
    done = report.skipped
    if progress is not None:
        progress(done, report.total)
    try:
        for future in as_completed(futures):
            index = where[future.key]
            if future.status == "error":
                failures.append((index, _region(index, chunk_shape), future.exception()))
            else:
                report.written.append(index)
            done += 1
            if progress is not None:
                progress(done, report.total)
    except BaseException:
        client.cancel(futures)
        raise
    return failures
