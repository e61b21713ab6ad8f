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


def boundary_lines(foreground: np.ndarray, postprocessing: Postprocessing, *, volumetric: bool = False,
                   threads: int | None = None) -> np.ndarray | None:
    """Boolean mask of the watershed lines of one image's foreground probability, or None where there is
    nothing to separate (no seed)."""
    regions = seeded_watershed(foreground, None, seed_threshold=postprocessing.seed_threshold,
                               mode="3d" if volumetric else "2d", lines=True, threads=threads)
    lines = regions == 0  # with no mask every pixel is reached from a seed, except the lines
    return None if lines.all() else lines


def apply_postprocessing(proba: np.ndarray, metadata: ModelMetadata, *, threads: int | None = None) -> np.ndarray:
    """Apply ``metadata.postprocessing`` to the probabilities ``proba`` (K, *spatial) of one whole image, in
    place, and return them: on the lines the foreground probability (channel ``foreground_class``, which the
    schema holds at 0 for a single sigmoid channel) becomes 0 and, for two classes, the other class's 1 (so
    the classes still sum to one)."""
    post = metadata.postprocessing
    if not post.active:
        return proba
    fg = metadata.foreground_class
    lines = boundary_lines(proba[fg], post, volumetric=metadata.spatial_dims == 3, threads=threads)
    if lines is not None:
        proba[fg][lines] = 0.0
        if proba.shape[0] == 2:
            proba[1 - fg][lines] = 1.0
    return proba
