"""Why test-time augmentation did not help, measured: ``python -m export.tta_views MODEL [--preset isbi2012]``.

Scores each of the 8 symmetries of the (Y, X) square alone, their means (4 flips, 8 dihedral), and each with
the watershed boundaries of :mod:`sdk.postprocessing`, on the held-out slices (ISBI 2012 metrics). Prints
one JSON object per row; the table in ``export/RESULTS.md`` comes from it.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from sdk import Segmenter
from sdk.metrics import isbi2012

from .select_postprocessing import boundary_foreground


def views(segmenter: Segmenter, images: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities (K, N, H, W) of each view, transformed back: quarter turns x a flip of X."""
    out = {}
    for turns in range(4):
        for flip in (False, True):
            view = np.rot90(images[..., ::-1] if flip else images, turns, axes=(1, 2))
            proba = np.rot90(segmenter.predict_proba(np.ascontiguousarray(view), axes="NYX"), -turns, axes=(2, 3))
            out[f"turn {90 * turns} flip {'x' if flip else '-'}"] = np.ascontiguousarray(proba[..., ::-1] if flip else proba)
    return out


def main(argv: list[str] | None = None) -> int:
    from .cli import _data_arguments, _resolve_data

    parser = argparse.ArgumentParser(prog="python -m export.tta_views", description=__doc__)
    parser.add_argument("model", help="an .onnx model or an embedded one")
    _data_arguments(parser)
    parser.add_argument("--seed-threshold", type=float, default=None,
                        help="watershed seed threshold (default: the model's, else 0.6)")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    data = _resolve_data(args)
    images, labels = data["images"][data["val"]], data["labels"][data["val"]]
    segmenter = Segmenter(args.model, postprocess=False, threads=args.threads)
    meta = segmenter.metadata
    seed = args.seed_threshold or (meta.postprocessing.seed_threshold if meta.postprocessing.active else 0.6)
    truth, fg = (labels > 0).astype(np.uint8), meta.foreground_class
    each = views(segmenter, images)
    names = list(each)
    rows = dict(each)
    rows["mean of 4 flips"] = np.mean([each[n] for n in (names[0], names[1], names[4], names[5])], axis=0)
    rows["mean of 8 (dihedral)"] = np.mean(list(each.values()), axis=0)
    for name, proba in rows.items():
        row = {"view": name}
        for kind, p in (("raw", proba[fg]), ("boundaries", boundary_foreground(proba, meta, seed))):
            r = isbi2012(truth, p)
            row[kind] = {"warping_error": r.warping_error, "rand_error": r.rand_error, "pixel_error": r.pixel_error,
                         "rand_threshold": r.rand_threshold}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
