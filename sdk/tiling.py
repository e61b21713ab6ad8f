"""Tiling, pure numpy: where tiles go, how they are cut out, and how their outputs are merged.

Two ways to merge tiles (Ronneberger et al. 2015, Fig. 2; MONAI's ``sliding_window_inference``):

* **overlap-tile** (``merge="none"``): each tile keeps only its centre ("halo cropping"); the kept
  windows partition the image. For a valid-padding U-Net the halo is the network's own margin and the
  tiled result equals the whole-image result (tiles start on the pooling grid, so the network sees the
  same input values at the same pooling phase). For a same-padding U-Net, ``overlap`` adds a halo.
* **weighted blending** (``merge="gaussian"`` or ``"constant"``): every tile adds its whole output,
  weighted; the sum is divided by the summed weights (in float32).

The image is mirror-padded (``numpy.pad(mode="reflect")``) wherever a tile reaches past its border, so
any image size is accepted: sizes the network rejects (U-Net inputs must be multiples of ``2**depth``)
are padded up and the output is cropped back. The last tile of each axis is flush with the border.

Blending streams along the first spatial axis: only a band one tile high is held in float32, and rows
no later tile touches are handed to a writer, so memory grows with the output, not with a float copy
of the image per class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from .errors import InvalidInputError

MERGE_MODES = ("none", "gaussian", "constant")
GAUSSIAN_SIGMA_SCALE = 0.125  # MONAI's default: sigma = tile / 8
MIN_GAUSSIAN_WEIGHT = 1e-3  # MONAI's floor, keeps the tile corners from dividing by ~0
FLUSH_ELEMENTS = 1 << 22  # blended rows are divided and written in slabs of about this many values


def validate_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """The one check for string options: return ``value`` or raise naming the choices."""
    if value not in choices:
        raise InvalidInputError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


class SizeRule(Protocol):
    """What tiling needs to know about a network (a :class:`~sdk.model_metadata.ModelMetadata`)."""

    input_size_multiple: int
    output_margin: int

    def is_valid_input_size(self, n: int) -> bool: ...

    def valid_input_size_at_least(self, n: int) -> int: ...


# -- splitting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisPlan:
    """Tiles along one axis, in output coordinates (input windows are widened by ``margin``).

    ``starts[i]`` is where tile ``i``'s output begins; ``keep[i]`` is the half-open range of image
    coordinates tile ``i`` contributes: its centre (overlap-tile) or its whole output (blending),
    cropped to the image.
    """

    size: int  # image extent along this axis
    input_size: int  # network input side of every tile
    output_size: int  # network output side of every tile
    margin: int
    starts: tuple[int, ...]
    keep: tuple[tuple[int, int], ...]


def plan_axis(
    size: int, rule: SizeRule, *, tile: int, overlap: float, merge: str
) -> AxisPlan:
    """Place tiles along one axis of extent ``size``.

    The input side is ``tile`` rounded up to an accepted size whose output is at least one pooling
    step; it shrinks to a single padded tile when the image is smaller. The step is
    ``output_size * (1 - overlap)`` rounded down to the pooling multiple (so tiles share the whole
    image's pooling grid) and the last tile is flush with the (padded) border.
    """
    if size < 1:
        raise InvalidInputError(f"cannot tile an axis of length {size}")
    m, mult = rule.output_margin, rule.input_size_multiple
    tile_in = rule.valid_input_size_at_least(max(tile, 2 * m + mult))
    # the padded output extent whose input (extent + 2 margin) the network accepts
    padded = rule.valid_input_size_at_least(size + 2 * m) - 2 * m
    if tile_in - 2 * m >= padded:
        tile_in = padded + 2 * m
    tile_out = tile_in - 2 * m
    # tiling the padded extent puts the last start on the pooling grid too (exactness); for sizes the
    # network accepts (e.g. multiples of 16) padded == size and the tiles are MONAI's
    extent = padded
    step = max(mult, int(tile_out * (1.0 - overlap)) // mult * mult)
    count = 1 if extent <= tile_out else math.ceil((extent - tile_out) / step) + 1
    if merge == "none" and count > 1:
        # overlap-tile needs no fixed tile (blending keeps MONAI's): shrink the tiles to the smallest
        # accepted size that still covers the axis with `count` tiles and the same overlap, so no
        # tile computes pixels past the border (2048 px with 1024-px tiles: 3 x 736, not 3 x 1024)
        shared = tile_out - step
        needed = math.ceil((extent - shared) / count) + shared
        tile_in = rule.valid_input_size_at_least(needed + 2 * m)
        tile_out, step = tile_in - 2 * m, tile_in - 2 * m - shared
    starts = tuple(sorted({min(i * step, extent - tile_out) for i in range(count)}))
    if merge == "none":
        # boundaries in the middle of each overlap, so every tile keeps its centre
        bounds = [0] + [(b + a + tile_out) // 2 for a, b in zip(starts, starts[1:])] + [size]
        keep = [(min(lo, size), min(hi, size)) for lo, hi in zip(bounds, bounds[1:])]
        # a last tile that would keep only padding is not needed: its neighbour already reaches the end
        kept = [(s, k) for s, k in zip(starts, keep) if k[1] > k[0]]
        starts, keep = tuple(s for s, _ in kept), tuple(k for _, k in kept)
    else:
        keep = tuple((s, min(s + tile_out, size)) for s in starts)
    return AxisPlan(size, tile_in, tile_out, m, starts, tuple(keep))


@dataclass(frozen=True)
class Tile:
    """One tile: where its output begins (per axis) and which output window it writes."""

    out_start: tuple[int, ...]
    keep: tuple[slice, ...]  # image coordinates

    def local(self, window: Sequence[slice]) -> tuple[slice, ...]:
        """``window`` (image coordinates) relative to this tile's output."""
        return tuple(slice(w.start - s, w.stop - s) for w, s in zip(window, self.out_start))


@dataclass(frozen=True)
class TilePlan:
    """The product of per-axis plans; tiles come first-axis-slowest (the order blending streams in)."""

    axes: tuple[AxisPlan, ...]
    merge: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(a.input_size for a in self.axes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(a.output_size for a in self.axes)

    def __len__(self) -> int:
        return math.prod(len(a.starts) for a in self.axes)

    def __iter__(self) -> Iterator[Tile]:
        for combo in np.ndindex(*(len(a.starts) for a in self.axes)):
            yield Tile(
                tuple(a.starts[i] for a, i in zip(self.axes, combo)),
                tuple(slice(*a.keep[i]) for a, i in zip(self.axes, combo)),
            )


def plan_tiles(
    shape: Sequence[int],
    rule: SizeRule,
    *,
    tile: int | Sequence[int],
    overlap: float,
    merge: str,
) -> TilePlan:
    """Plan tiles over an image of spatial ``shape`` (see :func:`plan_axis`)."""
    validate_choice("merge", merge, MERGE_MODES)
    if not 0.0 <= overlap < 1.0:
        raise InvalidInputError(f"overlap={overlap} must be in [0, 1)")
    tiles = (tile,) * len(shape) if isinstance(tile, (int, np.integer)) else tuple(tile)
    if len(tiles) != len(shape):
        raise InvalidInputError(f"tile {tuple(tiles)} needs one size per spatial axis of {tuple(shape)}")
    if any(int(t) < 1 for t in tiles):
        raise InvalidInputError(f"tile sizes must be positive, got {tuple(tiles)}")
    axes = tuple(
        plan_axis(int(n), rule, tile=int(t), overlap=overlap, merge=merge) for n, t in zip(shape, tiles)
    )
    return TilePlan(axes, merge)


# -- cutting ---------------------------------------------------------------------------------------


def reflect_indices(start: int, stop: int, n: int) -> np.ndarray:
    """Indices ``start..stop-1`` mirrored into ``[0, n)`` like ``numpy.pad(mode="reflect")``."""
    idx = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - idx)


def extract_tile(image: np.ndarray, plan: TilePlan, tile: Tile) -> np.ndarray:
    """The network input window of ``tile`` from ``image`` (C, *spatial), mirrored past the border.

    Only the bounding box of the needed pixels is read from ``image`` (which may be a memmap).
    """
    inside, indices = [], []
    for a, s in zip(plan.axes, tile.out_start):
        lo, hi = s - a.margin, s - a.margin + a.input_size
        if lo >= 0 and hi <= a.size:
            inside.append(slice(lo, hi))
            indices.append(None)
        else:
            idx = reflect_indices(lo, hi, a.size)
            inside.append(slice(int(idx.min()), int(idx.max()) + 1))
            indices.append(idx - idx.min())
    block = np.asarray(image[(slice(None),) + tuple(inside)])
    if all(i is None for i in indices):
        return block
    full = [np.arange(n) if i is None else i for i, n in zip(indices, block.shape[1:])]
    return block[(slice(None),) + np.ix_(*full)]


# -- merging ---------------------------------------------------------------------------------------


def blend_weights(shape: Sequence[int], mode: str) -> np.ndarray:
    """Per-pixel weights of a tile output: MONAI's importance map (gaussian, sigma = size/8, floored
    at 1e-3 of the peak) or ones."""
    validate_choice("blend", mode, ("gaussian", "constant"))
    if mode == "constant":
        return np.ones(tuple(shape), dtype=np.float32)
    weights = np.ones((), dtype=np.float64)
    for n in shape:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        g = np.exp(-(x**2) / (2.0 * (GAUSSIAN_SIGMA_SCALE * n) ** 2))
        weights = np.multiply.outer(weights, g)
    weights = weights.astype(np.float32)
    return np.maximum(weights, max(float(weights.min()), MIN_GAUSSIAN_WEIGHT), out=weights)


# ``write(window, values)``: ``values`` (K, *window sizes) are final probabilities of ``window``.
Writer = Callable[[tuple[slice, ...], np.ndarray], None]


class CropMerger:
    """Overlap-tile: each tile writes its kept window straight through (the windows partition)."""

    def __init__(self, plan: TilePlan, channels: int, write: Writer) -> None:
        self.write = write

    def add(self, tile: Tile, output: np.ndarray) -> None:
        self.write(tile.keep, output[(slice(None),) + tile.local(tile.keep)])

    def close(self) -> None:
        pass


class BlendMerger:
    """Weighted blending over a band of rows (first axis) one tile high, flushed as tiles move on."""

    def __init__(self, plan: TilePlan, channels: int, write: Writer) -> None:
        self.plan, self.write = plan, write
        self.weights = blend_weights(plan.output_shape, plan.merge)
        first, rest = plan.axes[0], plan.shape[1:]
        self.band_rows = min(first.output_size, first.size)
        self.total = np.zeros((channels, self.band_rows) + rest, dtype=np.float32)
        self.weight_sum = np.zeros((self.band_rows,) + rest, dtype=np.float32)
        self.band_start = 0

    def _flush(self, until: int) -> None:
        """Write rows ``[band_start, until)``, which no later tile touches, and slide the band."""
        rows = min(until, self.plan.shape[0]) - self.band_start
        if rows <= 0:
            return
        rest = tuple(slice(0, n) for n in self.plan.shape[1:])
        # in slabs of rows, so the division's (and the writer's argmax) temporaries stay small next to
        # the band (a 1024-row band of a 16384-px wide image held 2x its size in temporaries)
        slab = max(1, FLUSH_ELEMENTS // max(1, self.total[:, :1].size))
        for lo in range(0, rows, slab):
            hi = min(rows, lo + slab)
            window = (slice(self.band_start + lo, self.band_start + hi),) + rest
            self.write(window, self.total[:, lo:hi] / self.weight_sum[lo:hi])
        remaining = self.band_rows - rows
        self.total[:, :remaining] = self.total[:, rows:]  # numpy copies overlapping slices safely
        self.weight_sum[:remaining] = self.weight_sum[rows:]
        self.total[:, remaining:] = 0
        self.weight_sum[remaining:] = 0
        self.band_start += rows

    def add(self, tile: Tile, output: np.ndarray) -> None:
        if tile.out_start[0] > self.band_start:
            self._flush(tile.out_start[0])
        window = tile.keep
        local = tile.local(window)
        band = (slice(window[0].start - self.band_start, window[0].stop - self.band_start),) + window[1:]
        w = self.weights[local]
        self.total[(slice(None),) + band] += output[(slice(None),) + local] * w
        self.weight_sum[band] += w

    def close(self) -> None:
        self._flush(self.plan.shape[0])


def make_merger(plan: TilePlan, channels: int, write: Writer) -> CropMerger | BlendMerger:
    """The merging strategy the plan was made for."""
    return (CropMerger if plan.merge == "none" else BlendMerger)(plan, channels, write)
