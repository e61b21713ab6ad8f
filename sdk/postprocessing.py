"""Post-processing of a model's probabilities, as its metadata declares it
(:class:`sdk.model_metadata.Postprocessing`, chosen on held-out data when the model was exported).

Boundaries by watershed: the network's foreground probability floods from seeds (face-connected
components of ``p >= seed_threshold``) in order of decreasing probability (:func:`sdk.instances.
seeded_watershed` with lines); where two regions meet, a one-pixel line is set to background. A membrane
the network draws faint or broken still separates the two cells it lies between, so components of the
foreground stop leaking into each other: on the ISBI 2012 held-out slices this is what brings the Rand error
of the shipped model down (``export/RESULTS.md``). The flood needs the whole image (a 2D image, or the volume
of a 3D model), so it runs after tiled inference has merged the probabilities.
"""
from __future__ import annotations

import numpy as np

from .instances import seeded_watershed
from .model_metadata import ModelMetadata, Postprocessing

# what boundary_lines holds per pixel of an image at most: the probability, seeds, seed labels, priorities,
# flood state and lines (15 bytes) and the flood's queue (16 bytes a pixel if every pixel were queued at once)
BOUNDARY_BYTES_PER_PIXEL = 32


def boundary_lines(foreground: np.ndarray, postprocessing: Postprocessing, *, volumetric: bool = False,
                   threads: int | None = None) -> np.ndarray | None:
    """Boolean mask of the watershed lines of one image's foreground probability, or None where there is
    nothing to separate (no seed)."""
    regions = seeded_watershed(foreground, None, seed_threshold=postprocessing.seed_threshold,
                               mode="3d" if volumetric else "2d", lines=True, threads=threads)
    lines = regions == 0  # with no mask every pixel is reached from a seed, except the lines
    return None if lines.all() else lines


def apply_lines(proba: np.ndarray, lines: np.ndarray, foreground_class: int) -> np.ndarray:
    """Set the pixels of ``lines`` to background in the probabilities ``proba`` (K, *spatial), in place, and
    return them: the foreground probability becomes 0 and, for two classes, the other class's 1 (so the
    classes still sum to one). ``lines`` may be a window of an image's lines, with ``proba`` the same window."""
    proba[foreground_class][lines] = 0.0
    if proba.shape[0] == 2:
        proba[1 - foreground_class][lines] = 1.0
    return proba


def apply_postprocessing(proba: np.ndarray, metadata: ModelMetadata, *, threads: int | None = None) -> np.ndarray:
    """Apply ``metadata.postprocessing`` to the probabilities ``proba`` (K, *spatial) of one whole image, in
    place, and return them (:func:`boundary_lines` of the foreground channel ``foreground_class``, which the
    schema holds at 0 for a single sigmoid channel, then :func:`apply_lines`)."""
    post = metadata.postprocessing
    if not post.active:
        return proba
    fg = metadata.foreground_class
    lines = boundary_lines(proba[fg], post, volumetric=metadata.spatial_dims == 3, threads=threads)
    return proba if lines is None else apply_lines(proba, lines, fg)
