"""``predict_dask``: a lazy Dask array of labels or probabilities, equal to ``Segmenter.predict`` of the
whole array.

The graph has three kinds of tasks: the shared context (one key holding the model, as an embedded name or
the file's bytes, the settings and the block plan; sent to a worker once), the normalisation statistics of
each image (one task per image of a stack; the whole image's, computed by
:meth:`~sdk.model_metadata.Normalization.statistics` itself in bounded memory, so they are the
single-machine statistics bit for bit), and one task per block of the tile plan
(:mod:`sdk.distributed.blocks`) that reads its input window, halo included, and predicts it.

A model that declares post-processing (watershed boundaries, :mod:`sdk.postprocessing`) adds a stage: the
blocks' networks still run in parallel, then one task per image floods the image's foreground probability,
gathered from its blocks (the flood needs the whole image), and each block applies its window of the lines.
"""
from __future__ import annotations

import math
import operator
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import image_statistics, sizing
from ..errors import InvalidInputError, RuntimeUnavailableError
from ..inference import OUTPUTS, label_dtype, labels_from_proba
from ..model_metadata import Normalization, Postprocessing
from ..postprocessing import BOUNDARY_BYTES_PER_PIXEL, apply_lines, boundary_lines
from ..segmenter import _resolve_axes
from ..tiling import TilePlan, plan_tiles, validate_choice
from .blocks import BlockPlan, WindowView, check_finite, plan_blocks, predict_block, tiles_per_block
from .sources import StackView, readable_source
from .workers import ModelSpec, Settings, prepare_run, worker_segmenter

BLOCKS_PER_THREAD = 8  # at least this many blocks per task thread where the image allows (load balance)


def import_dask() -> Any:
    try:
        import dask.array
    except ImportError as exc:
        raise RuntimeUnavailableError("distributed prediction needs Dask: pip install 'unet-sdk[dask]'") from exc
    return dask


@dataclass(frozen=True)
class Layout:
    """How the user's array maps to images (C, *spatial) and where each image's output goes."""

    shape: tuple[int, ...]
    axes: str
    images: int  # images in the stack (1 without an N axis)
    spatial: tuple[int, ...]
    output: str
    classes: int

    def out_index(self, n: int) -> tuple[int, ...]:
        """Leading block indices of image ``n``'s output blocks."""
        return ((0,) if self.output == "proba" else ()) + ((n,) if "N" in self.axes else ())

    def out_lead_chunks(self) -> tuple[tuple[int, ...], ...]:
        lead = ((self.classes,),) if self.output == "proba" else ()
        return lead + (((1,) * self.images,) if "N" in self.axes else ())


@dataclass(frozen=True)
class Context:
    """What every block task needs, sent once per worker as one graph key."""

    spec: ModelSpec
    settings: Settings
    layout: Layout
    blocks: BlockPlan
    normalization: Normalization
    activation: str
    postprocessing: Postprocessing
    foreground_class: int
    source: Any  # the array read in place, or None when the input travels as Dask chunks


def normalise_chunks(chunks: Any, shape: tuple[int, ...], lead: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Dask chunks for an output of ``shape`` from ``chunks``: a size per axis, or per spatial axis (the
    leading axes then take ``lead``), or explicit sizes per axis that add up to its length."""
    chunks = (int(chunks),) * (len(shape) - len(lead)) if isinstance(chunks, (int, np.integer)) else tuple(chunks)
    if len(chunks) == len(shape) - len(lead):
        chunks = tuple(lead) + chunks
    if len(chunks) != len(shape):
        raise InvalidInputError(f"chunks {chunks} do not match the output's {len(shape)} axes (shape {shape})")
    result = []
    for axis, (c, n) in enumerate(zip(chunks, shape)):
        if isinstance(c, (int, np.integer)):
            if c < 1:
                raise InvalidInputError(f"chunks {chunks}: sizes must be positive")
            c = min(int(c), n)
            result.append((c,) * (n // c) + ((n % c,) if n % c else ()))
        else:
            sizes = tuple(int(s) for s in c)
            if sum(sizes) != n or any(s < 1 for s in sizes):
                raise InvalidInputError(f"chunks {sizes} along axis {axis} do not tile its {n} pixels")
            result.append(sizes)
    return tuple(result)


def predict_dask(model: Any, array: Any, **options: Any) -> Any:
    """Labels (``output="labels"``) or probabilities (``"proba"``) of ``array`` as a lazy Dask array,
    equal to ``Segmenter(model, ...).predict(array)`` (or ``predict_proba``) with the same settings.
    See :func:`build_prediction` for the options."""
    return build_prediction(model, array, **options)[0]


def build_prediction(
    model: Any,
    array: Any,
    *,
    output: str = "labels",
    axes: str | None = None,
    chunks: Any = None,
    device: str = "auto",
    tile: int | Sequence[int] | None = None,
    overlap: float | None = None,
    blend: str | None = None,
    batch_size: int | None = None,
    tta: bool = False,
    postprocess: bool = True,
    threads: int | None = None,
    memory_budget: int | str | None = None,
    client: Any = None,
) -> tuple[Any, Context]:
    """The lazy Dask array of :func:`predict_dask` and the :class:`Context` its tasks share.

    Parameters
    ----------
    model : path, bytes, embedded name or None
        As for :class:`~sdk.segmenter.Segmenter`; embedded models travel by name, others as bytes, once
        per worker.
    array : dask array, zarr array, memmap, numpy array or any array with numpy slicing
        Laid out as ``axes`` (inferred as by ``Segmenter.predict``). Zarr arrays and memmaps are read
        by the workers in place, window by window (statistics too, in bounded memory); a Dask or numpy
        array travels as chunks, and its statistics task gathers one whole image on one worker.
    chunks : None, int or tuple
        Chunks of the returned array (e.g. the zarr chunks it will be stored in). ``None``: the blocks
        it is computed in (tile-aligned, irregular).
    tile, overlap, blend, batch_size, tta, postprocess
        As for Segmenter. A model's post-processing (``metadata.postprocessing``) floods whole images: the
        blocks run in parallel as without it, then one task per image computes its lines, so an image whose
        flood exceeds the memory budget is refused before any work (pass ``postprocess=False`` for the
        network's raw output). ``tile=None``: the largest tile fitting ``memory_budget`` on a CPU worker.
    threads : int, optional
        ONNX Runtime threads per task thread; default: each host's cores shared by its task threads.
    memory_budget : bytes or str, optional
        Memory for one block on one task thread (default: half a worker's memory limit per thread, or
        :func:`sdk.sizing.memory_budget`); sizes the tile and the blocks.
    client : distributed.Client, optional
        Used to read the workers' cores, memory and GPUs (default: the current client, if any); the array
        is computed wherever the caller computes it.

    Bit-identical to the single-machine prediction on the CPU with ``batch_size=1`` (the default there):
    the blocks run the single-machine tile plan's own tiles on the whole image's statistics.
    """
    dask = import_dask()
    from dask.highlevelgraph import HighLevelGraph

    validate_choice("output", output, OUTPUTS)
    run = prepare_run(model, client, device=device, tile=tile, overlap=overlap, blend=blend, batch_size=batch_size,
                      tta=tta, postprocess=postprocess, threads=threads, memory_budget=memory_budget)
    client, spec, settings, meta, budget = run.client, run.spec, run.settings, run.metadata, run.budget
    shape = tuple(int(n) for n in array.shape)
    axes = _resolve_axes(shape, meta, axes)
    if np.dtype(array.dtype).kind not in "biuf":
        raise InvalidInputError(f"unsupported image dtype {array.dtype}: give real numbers (bool, integer or float)")
    spatial = tuple(shape[axes.index(a)] for a in ("ZYX" if "Z" in axes else "YX"))
    images = shape[axes.index("N")] if "N" in axes else 1
    layout = Layout(shape, axes, images, spatial, output, meta.num_classes)
    plan = plan_tiles(spatial, meta, tile=settings.tile, overlap=settings.overlap, merge=settings.blend)
    task_threads = sum(client.nthreads().values()) if client is not None else 1
    if settings.postprocess:
        _check_boundary_memory(layout, budget)
    blocks = plan_blocks(plan, _block_grouping(plan, layout, budget, task_threads, np.dtype(array.dtype)))

    is_dask = hasattr(array, "__dask_graph__")
    if not is_dask and isinstance(array, np.ndarray) and not isinstance(array, np.memmap):
        # in memory on the client: it travels as chunks, each to the workers that need it
        array = dask.array.from_array(array, chunks="auto")
        is_dask = True
    token = uuid.uuid4().hex
    name = f"unet-sdk-{output}-{token}"
    context_key = (f"unet-sdk-context-{token}",)
    context = Context(spec, settings, layout, blocks, meta.normalization, meta.output_activation, meta.postprocessing,
                      meta.foreground_class, None if is_dask else readable_source(array))
    layer: dict = {context_key: context}
    for n in range(images):
        stats_key = (f"unet-sdk-statistics-{token}", n)
        nested, origin = _chunk_parts(array, axes, n, None) if is_dask else (None, None)
        layer[stats_key] = (_statistics_task, context_key, n, nested, origin)
        for block in blocks:
            window = blocks.input_window(block)
            nested, origin = _chunk_parts(array, axes, n, window) if is_dask else (None, None)
            task = (_block_task, context_key, n, block.index, stats_key, nested, origin)
            if settings.postprocess:  # the probabilities, finished below once the image's lines are known
                task = (_network_task,) + task[1:]
                layer[(f"unet-sdk-network-{token}", n) + block.index] = task
            else:
                layer[(name,) + layout.out_index(n) + block.index] = task
        if settings.postprocess:
            _add_boundary_tasks(layer, token, name, context_key, context, n)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[array] if is_dask else [])
    dtype = np.dtype(np.float32) if output == "proba" else label_dtype(meta.num_classes)
    result = dask.array.Array(graph, name, chunks=layout.out_lead_chunks() + blocks.chunks, dtype=dtype,
                              meta=np.empty((0,) * (len(layout.out_lead_chunks()) + len(spatial)), dtype))
    if chunks is not None:
        lead = tuple(c[0] for c in layout.out_lead_chunks())  # the class axis whole, one image at a time
        result = result.rechunk(normalise_chunks(chunks, result.shape, lead))
    return result, context


def _block_grouping(plan: TilePlan, layout: Layout, budget: int | None, task_threads: int, dtype: np.dtype) -> tuple[int, ...]:
    """Tiles per block: as many as the budget holds, but at least :data:`BLOCKS_PER_THREAD` blocks per
    task thread where the image has that many tiles."""
    channels = layout.shape[layout.axes.index("C")] if "C" in layout.axes else 1
    # a block holds its input window, float32 probabilities (+ blend weights) and its output
    per_pixel = channels * dtype.itemsize + 4 * (layout.classes + 1) + (4 * layout.classes if layout.output == "proba" else 2)
    tile_pixels = math.prod(plan.input_shape)
    room = (budget or sizing.memory_budget()) - sizing.FALLBACK_BYTES_PER_PIXEL * tile_pixels
    by_memory = tiles_per_block(plan, max(1, int(room // per_pixel)))
    tiles_each_axis = [len(a.starts) for a in plan.axes]
    wanted = max(1, math.ceil(BLOCKS_PER_THREAD * task_threads / layout.images))
    group = list(by_memory)
    while group != [1] * len(group) and math.prod(math.ceil(t / g) for t, g in zip(tiles_each_axis, group)) < wanted:
        group = [max(1, g - 1) for g in group]
    return tuple(group)


def _check_boundary_memory(layout: Layout, budget: int | None) -> None:
    """Refuse images whose flood (one task per whole image) would exceed the memory budget."""
    needed = BOUNDARY_BYTES_PER_PIXEL * math.prod(layout.spatial)
    room = budget or sizing.memory_budget()
    if needed > room:
        raise InvalidInputError(
            f"the model's post-processing floods the whole image ({layout.output} of images {layout.spatial}) in "
            f"one task, {needed / 1e9:.2f} GB, more than its memory budget of {room / 1e9:.2f} GB: give a larger "
            "memory_budget (--memory-budget), or postprocess=False (--no-postprocess) for the network's raw output"
        )


def _add_boundary_tasks(layer: dict, token: str, name: str, context_key: tuple, context: Context, n: int) -> None:
    """Image ``n``'s post-processing stage: each block's foreground channel (taken where the block was
    computed, so only it travels), one flood of the whole image, and each block's output with its window of
    the lines."""
    layout, blocks = context.layout, context.blocks
    network = f"unet-sdk-network-{token}"
    foreground = f"unet-sdk-foreground-{token}"
    lines_key = (f"unet-sdk-lines-{token}", n)
    for block in blocks:
        layer[(foreground, n) + block.index] = (operator.getitem, (network, n) + block.index, context.foreground_class)

    def nest(prefix: tuple[int, ...]) -> Any:  # the foreground keys as a nested list over the block grid
        if len(prefix) == len(blocks.grid):
            return (foreground, n) + prefix
        return [nest(prefix + (i,)) for i in range(blocks.grid[len(prefix)])]

    layer[lines_key] = (_lines_task, context_key, nest(()))
    for flat, block in enumerate(blocks):
        piece = (f"unet-sdk-lines-piece-{token}", n) + block.index
        layer[piece] = (_lines_piece, lines_key, flat)
        layer[(name,) + layout.out_index(n) + block.index] = (
            _finish_task, context_key, (network, n) + block.index, piece
        )


def _chunk_parts(array: Any, axes: str, n: int, window: tuple[slice, ...] | None) -> tuple[list, tuple[int, ...]]:
    """The keys of ``array``'s chunks covering image ``n`` (within ``window``, spatial, if given), as a
    nested list for :func:`dask.array.core.concatenate3`, and where in the array they start."""
    spatial = "ZYX" if "Z" in axes else "YX"
    wanted = dict(zip(spatial, window)) if window is not None else {}
    index_lists, origin = [], []
    for a, sizes in zip(axes, array.chunks):
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        lo, hi = (n, n + 1) if a == "N" else ((wanted[a].start, wanted[a].stop) if a in wanted else (0, int(bounds[-1])))
        first = int(np.searchsorted(bounds, lo, side="right")) - 1
        last = int(np.searchsorted(bounds, hi, side="left"))
        index_lists.append(range(first, last))
        origin.append(int(bounds[first]))

    def nest(prefix: tuple[int, ...], depth: int) -> Any:
        if depth == len(index_lists):
            return (array.name,) + prefix
        return [nest(prefix + (i,), depth + 1) for i in index_lists[depth]]

    return nest((), 0), tuple(origin)


def _assembled(nested: list, origin: tuple[int, ...], axes: str, n: int, window: tuple[slice, ...] | None) -> StackView:
    """Image ``n`` (or its ``window``) from the chunks a task received (``nested``, starting at
    ``origin`` of the array), as a (C, *spatial) view."""
    from dask.array.core import concatenate3

    data = concatenate3(nested)
    spatial = "ZYX" if "Z" in axes else "YX"
    wanted = dict(zip(spatial, window)) if window is not None else {}
    key = tuple(
        slice(n - o, n - o + 1) if a == "N" else (slice(wanted[a].start - o, wanted[a].stop - o) if a in wanted else slice(None))
        for a, o in zip(axes, origin)
    )
    return StackView(data[key], axes, 0)


def _where(layout: Layout, n: int, window: Sequence[slice]) -> str:
    image = f"image {n} " if "N" in layout.axes else ""
    return image + "pixels " + ", ".join(f"{w.start}:{w.stop}" for w in window) + f" ({'ZYX'[-len(window):]})"


def _statistics_task(context: Context, n: int, nested: Any, origin: Any) -> tuple[np.ndarray, np.ndarray]:
    layout = context.layout
    view = _assembled(nested, origin, layout.axes, n, None) if nested is not None else StackView(
        context.source, layout.axes, n
    )
    try:
        return context.normalization.statistics(view)
    except InvalidInputError as exc:
        _report_non_finite(view, layout, n)  # the usual cause, named with its place
        raise InvalidInputError(f"{_where(layout, n, [slice(0, s) for s in layout.spatial])}: {exc}") from exc


def _report_non_finite(view: StackView, layout: Layout, n: int) -> None:
    """Raise naming the first window of image ``n`` that holds NaN or infinity, if any does."""
    if view.dtype.kind != "f":
        return
    side = max(1, int(image_statistics.BLOCK_ELEMENTS ** (1.0 / len(layout.spatial))))
    for corner in np.ndindex(*(math.ceil(s / side) for s in layout.spatial)):
        window = tuple(slice(c * side, min((c + 1) * side, s)) for c, s in zip(corner, layout.spatial))
        check_finite(view[(slice(None),) + window], _where(layout, n, window))


def _block_task(
    context: Context, n: int, index: tuple[int, ...], statistics: Any, nested: Any, origin: Any
) -> np.ndarray:
    """The block's output (labels or probabilities), shaped as its chunk of the result."""
    return _shaped(context.layout, _network(context, n, index, statistics, nested, origin, context.layout.output))


def _network_task(
    context: Context, n: int, index: tuple[int, ...], statistics: Any, nested: Any, origin: Any
) -> np.ndarray:
    """The block's probabilities (K, *window), before post-processing."""
    return _network(context, n, index, statistics, nested, origin, "proba")


def _lines_task(context: Context, foreground: list) -> list[np.ndarray] | None:
    """The watershed lines of one whole image, cut into its blocks' windows (block order), or None."""
    from dask.array.core import concatenate3

    lines = boundary_lines(concatenate3(foreground), context.postprocessing, volumetric=len(context.layout.spatial) == 3)
    return None if lines is None else [lines[block.window] for block in context.blocks]


def _lines_piece(lines: list[np.ndarray] | None, flat: int) -> np.ndarray | None:
    return None if lines is None else lines[flat]


def _finish_task(context: Context, proba: np.ndarray, lines: np.ndarray | None) -> np.ndarray:
    """A block's output after post-processing: its probabilities with its window of the lines applied."""
    layout = context.layout
    if lines is not None:  # on a copy: the network's result may be needed again if a worker is lost
        proba = apply_lines(proba.copy(), lines, context.foreground_class)
    result = proba if layout.output == "proba" else labels_from_proba(proba)
    return _shaped(layout, result)


def _shaped(layout: Layout, result: np.ndarray) -> np.ndarray:
    """A block's result (K, *window) or (*window) with the stack's image axis added, if any."""
    lead = (1,) if "N" in layout.axes else ()
    if layout.output == "proba":
        return result.reshape((result.shape[0],) + lead + result.shape[1:])
    return result.reshape(lead + result.shape)


def _network(
    context: Context, n: int, index: tuple[int, ...], statistics: Any, nested: Any, origin: Any, output: str
) -> np.ndarray:
    layout, blocks = context.layout, context.blocks
    block = blocks.block(index)
    window = blocks.input_window(block)
    if nested is not None:
        data = _assembled(nested, origin, layout.axes, n, window)[:]
    else:
        data = StackView(context.source, layout.axes, n)[(slice(None),) + window]
    check_finite(data, _where(layout, n, window))
    segmenter = worker_segmenter(context.spec, context.settings)
    return predict_block(
        WindowView(data, [w.start for w in window], layout.spatial),
        blocks.tiles,
        block,
        segmenter._runtime.run,
        channels=layout.classes,
        normalization=context.normalization,
        statistics=statistics,
        activation=context.activation,
        output=output,
        batch_size=segmenter.batch_size,
        tta=segmenter.tta,
    )
