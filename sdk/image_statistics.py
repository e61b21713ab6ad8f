"""Whole-image statistics per channel in bounded memory: mean/std, min/max and exact percentiles.

Normalising a tile as the whole image would be needs statistics of the whole image, which may be a
memmap or a zarr array far larger than memory. Every function here reads the image (C, *spatial) in
blocks of at most :data:`BLOCK_ELEMENTS` elements per channel, so memory follows the block, not the image.

* Mean and standard deviation: for 8/16-bit integers exactly from the histogram; otherwise per-block
  float64 moments merged with the pairwise update of Chan,
  Golub & LeVeque (1979), ``M2 = M2_a + M2_b + delta^2 n_a n_b / n``, which avoids the catastrophic
  cancellation of ``E[x^2] - E[x]^2``. Float64 images are scaled by a power of two (exact) first, so
  values up to float64's limit cannot overflow the squares.
* Percentiles: exact order statistics by radix selection on order-preserving unsigned keys of the
  values (one 8- or 16-bit histogram pass for 8/16-bit images, 2 passes for 32-bit, 4 for 64-bit), then
  numpy's default linear interpolation between the two neighbouring order statistics.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

BLOCK_ELEMENTS = 1 << 22  # 4 Mi elements: 32 MB of float64 work per block
_DIGIT_BITS = 16


def blocks(shape: Sequence[int], limit: int = BLOCK_ELEMENTS) -> Iterator[tuple[slice | int, ...]]:
    """Index tuples that cut an array of ``shape`` into C-order blocks of at most ``limit`` elements
    (axes before the cut axis are taken one index at a time)."""
    shape = tuple(int(n) for n in shape)
    cut = 0
    while cut < len(shape) and math.prod(shape[cut + 1 :]) > limit:
        cut += 1
    if cut == len(shape):  # a single element is always one block
        yield from (tuple(i) for i in np.ndindex(*shape))
        return
    step = max(1, limit // max(1, math.prod(shape[cut + 1 :])))
    for lead in np.ndindex(*shape[:cut]):
        for start in range(0, shape[cut], step):
            yield tuple(lead) + (slice(start, min(start + step, shape[cut])),)


def _channel_blocks(image, channel: int) -> Iterator[np.ndarray]:
    for index in blocks(image.shape[1:], BLOCK_ELEMENTS):  # read at call time: tests shrink it
        yield np.asarray(image[(channel,) + index])


def min_max(image) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel minimum and maximum (float64) of ``image`` (C, *spatial)."""
    lows, highs = [], []
    for c in range(image.shape[0]):
        lo, hi = math.inf, -math.inf
        for block in _channel_blocks(image, c):
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        lows.append(lo)
        highs.append(hi)
    return np.array(lows), np.array(highs)


def _histogram_mean_std(image) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean/std of an image of at most 16-bit integers from its histogram (one counting pass)."""
    dtype = np.dtype(image.dtype)
    bits = 8 * dtype.itemsize
    values = np.arange(1 << bits, dtype=np.float64) - (1 << (bits - 1) if dtype.kind == "i" else 0)
    means, stds = [], []
    for c in range(image.shape[0]):
        counts = np.zeros(1 << bits, np.int64)
        for block in _channel_blocks(image, c):
            counts += np.bincount(sortable_keys(block.ravel()), minlength=1 << bits)
        present = np.flatnonzero(counts)
        weights, levels = counts[present].astype(np.float64), values[present]
        mean = float(np.dot(weights, levels) / weights.sum())
        means.append(mean)
        stds.append(math.sqrt(float(np.dot(weights, (levels - mean) ** 2) / weights.sum())))
    return np.array(means), np.array(stds)


def mean_std(image) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population standard deviation (float64) of ``image`` (C, *spatial)."""
    if np.dtype(image.dtype).kind in "biu" and np.dtype(image.dtype).itemsize <= 2:
        return _histogram_mean_std(image)
    scale = np.ones(image.shape[0])
    if np.dtype(image.dtype).kind == "f" and np.dtype(image.dtype).itemsize > 4:
        # squares of float64 values beyond ~1e154 overflow: work on x * 2^-e (exact), undo at the end
        lows, highs = min_max(image)
        largest = np.maximum(np.abs(lows), np.abs(highs))
        scale = np.where(largest > 0, np.ldexp(1.0, -np.frexp(largest)[1]), 1.0)
    means, stds = [], []
    for c in range(image.shape[0]):
        count, mean, m2 = 0, 0.0, 0.0
        for block in _channel_blocks(image, c):
            x = block.astype(np.float64).ravel()
            if scale[c] != 1.0:
                x *= scale[c]
            n_b = x.size
            mean_b = float(x.mean())
            x -= mean_b
            m2_b = float(np.dot(x, x))
            total = count + n_b
            delta = mean_b - mean
            mean += delta * n_b / total
            m2 += m2_b + delta * delta * (count * n_b / total)
            count = total
        means.append(mean / scale[c])
        stds.append(math.sqrt(m2 / count) / scale[c])
    return np.array(means), np.array(stds)


# -- exact percentiles -----------------------------------------------------------------------------


def _key_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{max(1, dtype.itemsize)}")


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integers ordered as ``values`` (bool, integers or floats without NaN)."""
    dtype = values.dtype
    if dtype.kind == "b":
        return values.view(np.uint8)
    keys_dtype = _key_dtype(dtype)
    if dtype.kind == "u":
        return values.astype(keys_dtype.newbyteorder("="), copy=False)
    native = values.astype(dtype.newbyteorder("="), copy=False)
    keys = native.view(keys_dtype)
    sign = keys_dtype.type(1 << (8 * keys_dtype.itemsize - 1))
    if dtype.kind == "i":
        return keys ^ sign
    # floats: negative values (sign bit set) count down, so invert all their bits; flip the sign bit of the rest
    return np.where(keys & sign, ~keys, keys | sign)


def value_of_key(key: int, dtype: np.dtype) -> float:
    """The value whose :func:`sortable_keys` key is ``key`` (the inverse mapping), as a float."""
    if dtype.kind in "bu":
        return float(key)
    bits = 8 * _key_dtype(dtype).itemsize
    sign = 1 << (bits - 1)
    if dtype.kind == "i":
        return float(key - sign)
    raw = (key ^ sign) if key & sign else (~key & ((1 << bits) - 1))
    return float(np.array([raw], dtype=_key_dtype(dtype)).view(dtype.newbyteorder("="))[0])


def _order_statistics(image, channel: int, ranks: Sequence[int]) -> dict[int, float]:
    """The values of rank ``ranks`` (0-based, ascending) of one channel, by radix selection."""
    dtype = np.dtype(image.dtype)
    bits = 8 * (1 if dtype.kind == "b" else dtype.itemsize)
    digit = min(_DIGIT_BITS, bits)
    # per wanted rank: the key prefix found so far and the rank left inside that prefix
    state = {r: (0, r) for r in ranks}
    for done in range(0, bits, digit):
        shift = bits - done - digit
        prefixes = sorted({prefix for prefix, _ in state.values()})
        histograms = {p: np.zeros(1 << digit, np.int64) for p in prefixes}
        for block in _channel_blocks(image, channel):
            keys = sortable_keys(block.ravel())
            for p in prefixes:
                chosen = keys if done == 0 else keys[(keys >> (bits - done)) == p]
                digits = ((chosen >> shift) & ((1 << digit) - 1)).astype(np.intp)
                histograms[p] += np.bincount(digits, minlength=1 << digit)
        for r, (prefix, left) in state.items():
            cumulative = np.cumsum(histograms[prefix])
            d = int(np.searchsorted(cumulative, left, side="right"))
            below = int(cumulative[d - 1]) if d else 0
            state[r] = ((prefix << digit) | d, left - below)
    return {r: value_of_key(prefix, dtype) for r, (prefix, _) in state.items()}


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation (``numpy.lib._function_base_impl._lerp``), exact at both ends."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def percentiles(image, q: Sequence[float]) -> np.ndarray:
    """Per-channel percentiles ``q`` (in [0, 100]) of ``image`` (C, *spatial), shape (len(q), C),
    equal to ``numpy.percentile(channel, q)`` (linear interpolation) without sorting or copying the image."""
    count = math.prod(image.shape[1:])
    result = np.empty((len(q), image.shape[0]))
    for c in range(image.shape[0]):
        positions = [p / 100.0 * (count - 1) for p in q]
        ranks = sorted({int(math.floor(v)) for v in positions} | {min(int(math.floor(v)) + 1, count - 1) for v in positions})
        values = _order_statistics(image, c, ranks)
        for i, v in enumerate(positions):
            lo = int(math.floor(v))
            result[i, c] = _lerp(values[lo], values[min(lo + 1, count - 1)], v - lo)
    return result
