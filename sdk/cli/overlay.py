"""PNG overlays of a segmentation on its image, as ``demo`` and ``predict --overlay`` write them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import write_array

TINT = np.array([255, 64, 0], dtype=np.float32)  # orange: visible on grey EM
ALPHA = 0.45


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB uint8: ``image`` (grey (H, W) or colour (H, W, 3|4), any range) with ``mask`` pixels tinted."""
    pixels = image.astype(np.float32)
    span = float(pixels.max() - pixels.min()) or 1.0
    pixels = (pixels - pixels.min()) * (255.0 / span)
    rgb = pixels[..., :3] if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=-1)
    rgb = np.array(rgb)  # writable copy (a slice of the colour channels is a view)
    rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * TINT
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_overlays(
    base: Path, images: np.ndarray, masks: np.ndarray, *, stacked: bool, overwrite: bool
) -> list[Path]:
    """One PNG per slice: ``base.png`` for a single image, ``base_z0000.png``... for the slices of a stack.

    ``images``: (H, W), (H, W, 3|4) or, with ``stacked``, a leading slice axis; ``masks`` without the
    colour axis."""
    if not stacked:
        images, masks = images[None], masks[None]
    width = max(4, len(str(len(masks) - 1)))
    paths = []
    for index, (image, mask) in enumerate(zip(images, masks)):
        path = base.with_name(f"{base.name}_z{index:0{width}d}.png" if stacked else f"{base.name}.png")
        paths.append(write_array(path, overlay(image, mask), overwrite=overwrite))
    return paths
