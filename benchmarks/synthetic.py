"""Seeded synthetic membrane images for the benchmarks (numpy only).

The ground truth looks like an EM membrane segmentation (ISBI 2012 convention: cells are foreground, 255,
membranes are background, 0): cells of a Voronoi tessellation of jittered-grid seeds, membranes of a given
width around the cell borders. The proposal is a float32 "probability of cell" derived from the truth
with the mistakes a real network makes:

* gaps: discs (balls) of high probability punched into the membranes -> mergers;
* spurious membranes: thin low-probability line segments through cells -> splits;
* blur (Gaussian, in-plane for stacks, all axes for volumes) and additive Gaussian noise;
* clipping to [0, 1] (so exact 0 and 1 occur) and optional quantization to 8-bit steps: many tied values,
  as in real probability maps, which is what makes the warp's tie order matter.

Shapes: (H, W) images; (Z, H, W) *stacks* of independent slices (``kind="stack"``, the ISBI setting, each
slice its own tessellation) or *volumes* with a 3D tessellation (``kind="volume"``, for the 3D warp).

Usage::

    from benchmarks.synthetic import membrane_pair, voronoi_labels
    truth, proposal = membrane_pair((30, 512, 512), seed=0)          # uint8 {0,255}, float32 in [0, 1]
    truth3d, proposal3d = membrane_pair((128, 128, 128), kind="volume", seed=1)
    labels_a = voronoi_labels((2048, 2048), cell_size=4, seed=0)      # int64 labels 1..n, ~262k cells
    labels_b = voronoi_labels((2048, 2048), cell_size=4, seed=1)      # same grid, other jitter

Everything is a pure function of its arguments (``numpy.random.default_rng(seed)``).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["voronoi_cells", "voronoi_labels", "membrane_truth", "perturbed_proposal", "membrane_pair"]

# Pixels x candidate seeds handled at once while assigning cells (bounds the temporary memory).
_CHUNK_ELEMENTS = 1 << 22


def voronoi_cells(shape, *, cell_size: float = 32.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi tessellation of one jittered seed per ``cell_size`` grid cell, in 2D or 3D.

    Returns ``(labels, border_distance)``: int64 cell labels 1..n (n = number of grid cells) and, per pixel,
    the distance to the bisector between its nearest and second-nearest seed (0 on a cell border).
    Each pixel looks at the seeds of the 3^ndim grid cells around its own, which is exact for all but a
    negligible fraction of pixels and keeps the cost linear in the image size.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be 2D or 3D with positive sizes, got {shape}")
    rng = np.random.default_rng(seed)
    grid = tuple(max(1, math.ceil(s / cell_size)) for s in shape)
    # Seeds padded with one ring of "absent" seeds far away, so that neighbour lookups need no bounds checks.
    seeds = np.full(tuple(g + 2 for g in grid) + (ndim,), 1e12)
    index = np.stack(np.meshgrid(*[np.arange(g) for g in grid], indexing="ij"), axis=-1)
    seeds[tuple(slice(1, -1) for _ in grid)] = (index + rng.random(index.shape)) * cell_size
    cell_id = np.zeros(tuple(g + 2 for g in grid), dtype=np.int64)
    cell_id[tuple(slice(1, -1) for _ in grid)] = np.arange(1, math.prod(grid) + 1).reshape(grid)
    offsets = np.array(list(itertools.product((-1, 0, 1), repeat=ndim)))

    labels = np.empty(shape, dtype=np.int64)
    distance = np.empty(shape, dtype=np.float32)
    plane = math.prod(shape[1:])
    rows = max(1, _CHUNK_ELEMENTS // (plane * len(offsets)))
    for start in range(0, shape[0], rows):
        stop = min(shape[0], start + rows)
        coords = np.stack(
            np.meshgrid(np.arange(start, stop), *[np.arange(s) for s in shape[1:]], indexing="ij"), axis=-1
        ).reshape(-1, ndim) + 0.5
        home = np.floor(coords / cell_size).astype(np.int64) + 1
        cand = home[:, None, :] + offsets[None, :, :]  # (pixels, 3^ndim, ndim) padded grid indices
        cand_seeds = seeds[tuple(cand[..., d] for d in range(ndim))]
        d2 = np.sum((cand_seeds - coords[:, None, :]) ** 2, axis=-1)
        nearest2 = np.argpartition(d2, 1, axis=1)[:, :2]
        rows_idx = np.arange(len(coords))
        da, db = d2[rows_idx, nearest2[:, 0]], d2[rows_idx, nearest2[:, 1]]
        swap = da > db
        first = np.where(swap, nearest2[:, 1], nearest2[:, 0])
        second = np.where(swap, nearest2[:, 0], nearest2[:, 1])
        s1 = cand_seeds[rows_idx, first]
        s2 = cand_seeds[rows_idx, second]
        separation = np.maximum(np.linalg.norm(s1 - s2, axis=-1), 1e-9)
        border = (d2[rows_idx, second] - d2[rows_idx, first]) / (2.0 * separation)
        chosen = cand[rows_idx, first]
        labels[start:stop] = cell_id[tuple(chosen[:, d] for d in range(ndim))].reshape((stop - start,) + shape[1:])
        distance[start:stop] = border.reshape((stop - start,) + shape[1:])
    return labels, distance


def voronoi_labels(shape, *, cell_size: float = 32.0, seed: int = 0) -> np.ndarray:
    """Cell label image (int64, 1..n, no membranes): the many-segment input for Rand / VI benchmarks."""
    return voronoi_cells(shape, cell_size=cell_size, seed=seed)[0]


def membrane_truth(shape, *, cell_size: float = 32.0, membrane_width: float = 3.0, kind: str = "stack",
                   seed: int = 0) -> np.ndarray:
    """uint8 ground truth: 255 inside cells, 0 on membranes ``membrane_width`` pixels wide.

    ``kind="stack"`` with a 3D shape tessellates every slice independently (seeds ``seed + z``);
    ``kind="volume"`` tessellates the volume in 3D.
    """
    shape = tuple(int(s) for s in shape)
    _check_kind(kind)
    if len(shape) == 3 and kind == "stack":
        return np.stack([membrane_truth(shape[1:], cell_size=cell_size, membrane_width=membrane_width,
                                        seed=seed + z) for z in range(shape[0])])
    _, distance = voronoi_cells(shape, cell_size=cell_size, seed=seed)
    return np.where(distance < membrane_width / 2.0, 0, 255).astype(np.uint8)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(image: np.ndarray, sigma: float, axes) -> np.ndarray:
    """Separable Gaussian blur with edge replication along ``axes``."""
    if sigma <= 0:
        return image
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    out = image
    for axis in axes:
        padded = np.pad(out, [(r, r) if a == axis else (0, 0) for a in range(out.ndim)], mode="edge")
        acc = np.zeros_like(out)
        for i, weight in enumerate(k):
            acc += weight * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis)
        out = acc
    return out


def _paint_segments(target: np.ndarray, rng, count: int, length: float, value: float, in_plane: bool) -> None:
    """Rasterize ``count`` random straight segments (1 pixel thick) of ``length`` pixels with ``value``."""
    shape = np.array(target.shape)
    for _ in range(count):
        start = rng.random(target.ndim) * shape
        direction = rng.normal(size=target.ndim)
        if in_plane and target.ndim == 3:
            direction[0] = 0.0
        direction /= max(np.linalg.norm(direction), 1e-12)
        steps = np.arange(0.0, length, 0.5)
        points = np.floor(start[None, :] + steps[:, None] * direction[None, :]).astype(np.int64)
        keep = np.all((points >= 0) & (points < shape[None, :]), axis=1)
        target[tuple(points[keep].T)] = value


def _paint_gaps(target: np.ndarray, membrane: np.ndarray, rng, count: int, radius: float, in_plane: bool) -> None:
    """Set discs (balls) of ``radius`` centred on random membrane pixels to 1: the membrane gets a gap."""
    candidates = np.flatnonzero(membrane)
    if count <= 0 or candidates.size == 0:
        return
    r = int(math.ceil(radius))
    span = [range(-r, r + 1)] * target.ndim
    if in_plane and target.ndim == 3:
        span[0] = range(0, 1)
    ball = np.array([o for o in itertools.product(*span) if sum(v * v for v in o) <= radius * radius])
    centres = np.array(np.unravel_index(rng.choice(candidates, size=count), target.shape)).T
    points = (centres[:, None, :] + ball[None, :, :]).reshape(-1, target.ndim)
    keep = np.all((points >= 0) & (points < np.array(target.shape)[None, :]), axis=1)
    target[tuple(points[keep].T)] = 1.0


def perturbed_proposal(truth: np.ndarray, *, kind: str = "stack", gaps_per_mpx: float = 200.0,
                       gap_radius: float = 3.0, spurious_per_mpx: float = 200.0, spurious_length: float = 30.0,
                       blur_sigma: float = 1.0, noise_sigma: float = 0.15, quantize: int | None = 255,
                       seed: int = 0) -> np.ndarray:
    """float32 probability of *cell* in [0, 1] derived from a membrane truth, with seeded mistakes.

    Mistake counts scale with the image size (per megapixel/megavoxel). ``quantize=255`` rounds to 8-bit
    steps (ties); ``None`` keeps continuous values. ``kind`` as in :func:`membrane_truth` decides whether
    blur and mistakes stay in-plane (stack) or are 3D (volume).
    """
    _check_kind(kind)
    rng = np.random.default_rng(seed)
    in_plane = truth.ndim == 3 and kind == "stack"
    probability = (truth > 0).astype(np.float64)
    mpx = truth.size / 1e6
    _paint_gaps(probability, truth == 0, rng, int(round(gaps_per_mpx * mpx)), gap_radius, in_plane)
    _paint_segments(probability, rng, int(round(spurious_per_mpx * mpx)), spurious_length, 0.0, in_plane)
    axes = range(1, truth.ndim) if in_plane else range(truth.ndim)
    probability = _blur(probability, blur_sigma, axes)
    probability += rng.normal(0.0, noise_sigma, size=truth.shape)
    probability = np.clip(probability, 0.0, 1.0)
    if quantize:
        probability = np.round(probability * quantize) / quantize
    return probability.astype(np.float32)


def membrane_pair(shape, *, cell_size: float = 32.0, membrane_width: float = 3.0, kind: str = "stack",
                  seed: int = 0, **proposal_options) -> tuple[np.ndarray, np.ndarray]:
    """(truth uint8 {0, 255}, proposal float32 in [0, 1]) of ``shape``; options go to perturbed_proposal."""
    truth = membrane_truth(shape, cell_size=cell_size, membrane_width=membrane_width, kind=kind, seed=seed)
    proposal = perturbed_proposal(truth, kind=kind, seed=seed + 7919, **proposal_options)
    return truth, proposal


def _check_kind(kind: str) -> None:
    if kind not in ("stack", "volume"):
        raise ValueError(f"kind must be 'stack' or 'volume', got {kind!r}")
