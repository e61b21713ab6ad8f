"""Blocks of a tile plan, pure numpy: which tiles a block computes and how their outputs are merged.

A distributed prediction is the single-machine prediction cut along tile boundaries. The whole image
gets one :class:`~sdk.tiling.TilePlan`, exactly the plan :class:`~sdk.segmenter.Segmenter` makes; a
block is a window of the output together with the plan's tiles that contribute to it:

* overlap-tile (``merge="none"``): block borders are kept-window borders of the plan, so a block runs
  exactly its own tiles and every tile runs once in the whole image;
* blending: a block runs every tile whose output overlaps it (tiles across a border run in both blocks)
  and accumulates them in the plan's order, in float32, as :class:`~sdk.tiling.BlendMerger` does.

Tiles read their input through :func:`~sdk.tiling.extract_tile` (mirror padding at the image border,
real neighbouring pixels everywhere else) and are normalised with the whole image's statistics, so a
block's pixels are the whole-image prediction's pixels, bit for bit: the same tiles, the same inputs, the
same arithmetic in the same order.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidInputError, ModelError
from ..inference import labels_from_proba, tta_mode, tta_predictions
from ..model_metadata import Normalization
from ..tiling import Tile, TilePlan, blend_weights, extract_tile, reflect_indices


@dataclass(frozen=True)
class AxisBlocks:
    """Blocks along one axis: output windows ``bounds[i]:bounds[i + 1]`` and the tiles each runs."""

    bounds: tuple[int, ...]
    tiles: tuple[tuple[int, ...], ...]  # indices into the axis plan's starts, in the plan's order

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.bounds, self.bounds[1:]))


@dataclass(frozen=True)
class Block:
    """One block: its output ``window`` (image coordinates) and the plan's ``tiles`` it runs, in order."""

    index: tuple[int, ...]
    window: tuple[slice, ...]
    tiles: tuple[Tile, ...]


@dataclass(frozen=True)
class BlockPlan:
    """A tile plan cut into blocks (the product of per-axis blocks)."""

    tiles: TilePlan
    axes: tuple[AxisBlocks, ...]

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Block sizes per axis (a Dask ``chunks`` tuple)."""
        return tuple(a.sizes for a in self.axes)

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(len(a.sizes) for a in self.axes)

    def __len__(self) -> int:
        return math.prod(self.grid)

    def block(self, index: Sequence[int]) -> Block:
        window, per_axis = [], []
        for a, plan, i in zip(self.axes, self.tiles.axes, index):
            window.append(slice(a.bounds[i], a.bounds[i + 1]))
            per_axis.append([(plan.starts[t], plan.keep[t]) for t in a.tiles[i]])
        tiles = tuple(
            Tile(tuple(s for s, _ in combo), tuple(slice(*k) for _, k in combo))
            for combo in itertools.product(*per_axis)  # first axis slowest: the plan's order
        )
        return Block(tuple(index), tuple(window), tiles)

    def __iter__(self):
        for index in np.ndindex(*self.grid):
            yield self.block(index)

    def input_window(self, block: Block) -> tuple[slice, ...]:
        """The bounding box (image coordinates, inside the image) of every pixel ``block``'s tiles read,
        mirrored pixels included."""
        box = []
        for d, a in enumerate(self.tiles.axes):
            starts = {t.out_start[d] for t in block.tiles}
            lo, hi = min(starts) - a.margin, max(starts) - a.margin + a.input_size
            idx = reflect_indices(lo, hi, a.size) if lo < 0 or hi > a.size else np.array([lo, hi - 1])
            box.append(slice(int(idx.min()), int(idx.max()) + 1))
        return tuple(box)


def _axis_blocks(plan_axis: Any, merge: str, group: int) -> AxisBlocks:
    starts, keep = plan_axis.starts, plan_axis.keep
    count = len(starts)
    # as few blocks as `group` allows, their tile counts differing by at most one: 10 tiles in groups of 3
    # are 3, 3, 2, 2, not 3, 3, 3, 1 (even blocks balance the workers' load)
    blocks = math.ceil(count / group)
    firsts = [b * (count // blocks) + min(b, count % blocks) for b in range(blocks)]
    if merge == "none":
        # kept windows partition the axis: a block keeps the windows of its own tiles
        bounds = tuple(keep[i][0] for i in firsts) + (plan_axis.size,)
        tiles = tuple(tuple(range(a, b)) for a, b in zip(firsts, firsts[1:] + [count]))
        return AxisBlocks(bounds, tiles)
    # blending: blocks start where their first tile starts; every tile whose output reaches in runs
    bounds = (0,) + tuple(starts[i] for i in firsts[1:]) + (plan_axis.size,)
    bounds = tuple(sorted(set(min(b, plan_axis.size) for b in bounds)))
    tiles = tuple(
        tuple(t for t in range(count) if starts[t] < hi and starts[t] + plan_axis.output_size > lo)
        for lo, hi in zip(bounds, bounds[1:])
    )
    return AxisBlocks(bounds, tiles)


def plan_blocks(plan: TilePlan, tiles_per_block: int | Sequence[int]) -> BlockPlan:
    """Group at most ``tiles_per_block`` consecutive tiles per axis into a block, in as few blocks as that
    allows, as even as possible (their tile counts differ by at most one)."""
    groups = (
        (tiles_per_block,) * len(plan.axes)
        if isinstance(tiles_per_block, (int, np.integer))
        else tuple(tiles_per_block)
    )
    if len(groups) != len(plan.axes) or any(int(g) < 1 for g in groups):
        raise InvalidInputError(f"tiles_per_block={tiles_per_block!r}: one positive count per spatial axis")
    return BlockPlan(plan, tuple(_axis_blocks(a, plan.merge, int(g)) for a, g in zip(plan.axes, groups)))


def tiles_per_block(plan: TilePlan, max_pixels: int) -> tuple[int, ...]:
    """The same number of tiles along every axis, as many as keep a block within ``max_pixels`` output
    pixels (at least one tile)."""
    steps = [
        max(1, (a.keep[0][1] - a.keep[0][0]) if plan.merge == "none" else min(a.output_size, a.size))
        for a in plan.axes
    ]
    group = max(1, int((max_pixels / math.prod(steps)) ** (1.0 / len(steps))))
    return tuple(min(group, len(a.starts)) for a in plan.axes)


# -- running one block -------------------------------------------------------------------------------


class WindowView:
    """``image[key]`` of an image (C, *spatial) of which only ``data`` (the pixels from ``origin`` on) is
    held: the reads :func:`~sdk.tiling.extract_tile` makes, in image coordinates."""

    def __init__(self, data: np.ndarray, origin: Sequence[int], spatial_shape: Sequence[int]) -> None:
        self.data, self.origin = data, tuple(origin)
        self.shape = (data.shape[0],) + tuple(spatial_shape)
        self.dtype = data.dtype

    def __getitem__(self, key: tuple) -> np.ndarray:
        local = tuple(slice(k.start - o, k.stop - o) for k, o in zip(key[1:], self.origin))
        return self.data[(key[0],) + local]


def check_finite(data: np.ndarray, where: str) -> None:
    """:class:`InvalidInputError` naming ``where`` if ``data`` holds NaN or infinity."""
    if data.dtype.kind == "f" and data.size and not np.isfinite(data).all():
        bad = np.argwhere(~np.isfinite(data))
        raise InvalidInputError(
            f"{where}: {len(bad)} NaN or infinite input value(s), the first at offset "
            f"{tuple(int(i) for i in bad[0][1:])} of this window; replace them (e.g. np.nan_to_num) and rerun"
        )


def predict_block(
    image: Any,
    plan: TilePlan,
    block: Block,
    predictor: Callable[[np.ndarray], np.ndarray],
    *,
    channels: int,
    normalization: Normalization | None,
    statistics: tuple[np.ndarray, np.ndarray] | None,
    activation: str,
    output: str,
    batch_size: int = 1,
    tta: bool = False,
) -> np.ndarray:
    """Probabilities (``channels``, *window) or labels (*window) of ``block`` of ``image`` (C, *spatial)
    under ``plan``, equal to those pixels of the whole-image prediction with the same plan.

    ``statistics`` are the whole image's (:meth:`Normalization.statistics`); ``image`` may hold only the
    block's input window (:class:`WindowView`).
    """
    window = block.window
    shape = tuple(w.stop - w.start for w in window)
    expected = plan.output_shape

    def run(batch: np.ndarray) -> np.ndarray:
        result = predictor(batch)
        # from the batch's own sides: a quarter turn (dihedral TTA) swaps those of a non-square tile
        promised = (len(batch), channels) + tuple(b - i + o for b, i, o in zip(batch.shape[2:], plan.input_shape, expected))
        if result.shape != promised:
            raise ModelError(
                f"the network returned shape {result.shape} for input {batch.shape}; its metadata promises {promised}"
            )
        return result

    def prepared(tile: Tile) -> np.ndarray:
        raw = extract_tile(image, plan, tile)
        return raw.astype(np.float32, copy=False) if normalization is None else normalization.apply(raw, statistics)

    if plan.merge == "none":
        proba = np.empty((channels,) + shape, np.float32)
    else:
        proba = np.zeros((channels,) + shape, np.float32)
        weight_sum = np.zeros(shape, np.float32)
        weights = blend_weights(expected, plan.merge)
    for first in range(0, len(block.tiles), batch_size):
        group = block.tiles[first : first + batch_size]
        batch = np.stack([prepared(t) for t in group])
        result = tta_predictions(run, batch, activation, tta_mode(tta))
        for tile, out in zip(group, result):
            # the part of what this tile contributes that lies in the block, in tile and block coordinates
            reach = tile.keep if plan.merge == "none" else tuple(
                slice(s, min(s + n, a.size)) for s, n, a in zip(tile.out_start, expected, plan.axes)
            )
            part = tuple(slice(max(r.start, w.start), min(r.stop, w.stop)) for r, w in zip(reach, window))
            if any(p.stop <= p.start for p in part):
                continue
            in_tile = tile.local(part)
            in_block = tuple(slice(p.start - w.start, p.stop - w.start) for p, w in zip(part, window))
            if plan.merge == "none":
                proba[(slice(None),) + in_block] = out[(slice(None),) + in_tile]
            else:
                w = weights[in_tile]
                proba[(slice(None),) + in_block] += out[(slice(None),) + in_tile] * w
                weight_sum[in_block] += w
    if plan.merge != "none":
        proba /= weight_sum
    if output == "proba":
        return proba
    return labels_from_proba(proba)
