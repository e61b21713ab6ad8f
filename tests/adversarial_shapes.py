"""Inputs on which a greedy warp that re-walks its whole mismatch list on every pass costs O(n^2).

The warp (Fiji's ``WarpingError``; tests/reference_warping.py) processes mismatches by descending
confidence and repeats passes until one flips nothing. If the truth is a single seed pixel and the
proposal a 1-pixel path growing out of it whose probability *rises* away from the seed, each pixel can only
be added once its predecessor (processed *later* in the list, being less confident) has been: every pass
adds exactly one pixel, so n pixels take n passes. Paths here: a serpentine (rows joined at alternate
ends), a square spiral, and a 3D serpentine (plane serpentines joined through the planes between them).
Rows, turns and planes are one pixel apart, so that a pixel added next to its predecessor is always a
simple point. Two fronts growing toward each other along a path make the outcome depend on the exact pass
order: where they stop, one pixel apart.

The classification has its own: a 1-pixel closed loop that the proposal erases. Every loop pixel is left
(removing one would open the loop), and each is classified by asking whether removing it disconnects its
neighbours; within the whole image (radius < 1) a search per pixel walked half the loop.

Everything is a deterministic numpy function of its arguments (tests and benchmarks/bench_worst_cases.py).
"""
from __future__ import annotations

import numpy as np

__all__ = ["serpentine_path", "spiral_path", "serpentine_path_3d", "growth_pair", "closed_loop"]


def serpentine_path(height: int, width: int) -> np.ndarray:
    """(n, 2) coordinates (y, x) of a serpentine filling a height x width image: rows y = 0, 2, 4, ...
    run left-right and right-left, joined by one pixel on the odd row between them at the turning end."""
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    points = []
    for i, y in enumerate(range(0, height, 2)):
        xs = range(width) if i % 2 == 0 else range(width - 1, -1, -1)
        if i > 0:
            points.append((y - 1, xs[0]))  # the connector below the previous row's end
        points.extend((y, x) for x in xs)
    return np.array(points, dtype=np.int64)


def spiral_path(size: int) -> np.ndarray:
    """(n, 2) coordinates (y, x) of a square spiral winding inward in a size x size image, turns two
    pixels apart (one-pixel gaps between them)."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    points = [(0, 0)]
    y = x = 0
    directions = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    # side lengths: size-1, size-1, size-1, size-3, size-3, size-5, size-5, ... (the gap closes the ring)
    lengths = [size - 1, size - 1, size - 1]
    length = size - 3
    while length > 0:
        lengths += [length, length]
        length -= 2
    for turn, n in enumerate(lengths):
        dy, dx = directions[turn % 4]
        for _ in range(n):
            y, x = y + dy, x + dx
            points.append((y, x))
    return np.array(points, dtype=np.int64)


def serpentine_path_3d(depth: int, height: int, width: int) -> np.ndarray:
    """(n, 3) coordinates (z, y, x): a serpentine in each plane z = 0, 2, 4, ..., walked alternately
    forward and backward, joined by one voxel in the odd plane between them at the turning point."""
    plane = serpentine_path(height, width)
    points = []
    for i, z in enumerate(range(0, depth, 2)):
        walk = plane if i % 2 == 0 else plane[::-1]
        if i > 0:
            points.append((z - 1, *walk[0]))
        points.extend((z, y, x) for y, x in walk)
    return np.array(points, dtype=np.int64)


def growth_pair(shape, path: np.ndarray, *, low: float = 0.5, meet: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(truth uint8, proposal float32) on which the warp grows the truth along ``path`` one pixel per pass.

    The truth is the path's first pixel (probability 1); the rest of the path has probabilities rising
    strictly from just above ``low`` to 1 (distinct float32 values for paths up to ~ (1 - low) * 2^23
    pixels), everything else 0. At any threshold below ``low`` the whole path is added, one pixel per pass.

    ``meet`` (an index into the path): two fronts instead, the last pixel being a second seed, the
    probabilities rising from both ends toward ``path[meet]``. Each front adds a pixel per pass until they
    are about to join, where the pass order (which pixel is tested first) decides the one-pixel gap left.
    """
    truth = np.zeros(shape, dtype=np.uint8)
    proposal = np.zeros(shape, dtype=np.float32)
    n = len(path)
    if meet is None:
        rank = np.arange(1, n + 1) / n
    else:
        if not 0 < meet < n - 1:
            raise ValueError(f"meet must be inside the path (0 < meet < {n - 1}), got {meet}")
        k = np.arange(n)
        rank = np.where(k <= meet, (k + 1) / (meet + 1), (n - k) / (n - meet))
    proposal[tuple(path.T)] = low + (1.0 - low) * rank
    seeds = [path[0]] if meet is None else [path[0], path[-1]]
    for seed in seeds:
        truth[tuple(seed)] = 1
        proposal[tuple(seed)] = 1.0
    return truth, proposal


def closed_loop(size: int) -> np.ndarray:
    """uint8 image of a 1-pixel 4-connected closed loop filling size x size: a serpentine over columns
    2.. (an even number of rows, so that it ends on the left), its ends joined through column 1 to a return
    path up column 0. size: a multiple of 4."""
    if size < 4 or size % 4:
        raise ValueError(f"size must be a positive multiple of 4, got {size}")
    loop = np.zeros((size, size), dtype=np.uint8)
    path = serpentine_path(size, size - 2)
    loop[path[:, 0], path[:, 1] + 2] = 1
    loop[: size - 1, 0] = 1
    loop[0, 1] = loop[size - 2, 1] = 1
    return loop
