"""Held-out ISBI 2012 metrics and speed of an exported ONNX model, run whole-image with ONNX Runtime.

This measures the *model* (fp32 vs fp16 vs int8, one forward pass per image, exactly as training
validated it); tiled inference of arbitrary sizes is :class:`sdk.Segmenter`'s job.
"""
from __future__ import annotations

import time

import numpy as np

from sdk.errors import InvalidInputError

from .onnx_export import INPUT_NAME, OUTPUT_NAME, _session, read_metadata


def record_held_out_metrics(model_path, result: dict, *, images_name: str) -> None:
    """Replace ``training["held_out_metrics"]`` of the model file with ``result`` (of :func:`evaluate_onnx`),
    in place, weights untouched (:func:`~export.onnx_export.stamp_model`)."""
    from .onnx_export import stamp_model

    training = dict(read_metadata(model_path).training)
    previous = training.get("held_out_metrics", {})
    training["held_out_metrics"] = {
        **{k: result[k] for k in ("warping_error", "rand_error", "pixel_error")},
        **({"val_loss": previous["val_loss"]} if "val_loss" in previous else {}),
        "measured_with": f"this file, ONNX Runtime CPU, whole slices {result['samples']} of {images_name} "
                         "(export.evaluate.evaluate_onnx, sdk.metrics.isbi2012)",
    }
    stamp_model(model_path, training=training)


def evaluate_onnx(model_path, images: np.ndarray, labels: np.ndarray, *, threads: int | None = None, repeats: int = 3) -> dict:
    """ISBI metrics (:func:`sdk.metrics.isbi2012`, label > 0 = foreground) and seconds per image.

    ``images``/``labels``: stacks (Z, H, W) of 2D images whose sides the model accepts whole.
    Timing: the median over ``repeats`` passes of one ``session.run`` per image (batch 1).
    """
    from sdk.metrics import isbi2012

    metadata = read_metadata(model_path)
    if metadata.spatial_dims != 2 or metadata.output_margin != 0:
        raise InvalidInputError("evaluate_onnx runs 2D 'same'-padding models on whole images")
    if images.shape != labels.shape or images.ndim != 3:
        raise InvalidInputError(f"images {images.shape} and labels {labels.shape} must be equal (Z, H, W) stacks")
    if not all(metadata.is_valid_input_size(n) for n in images.shape[1:]):
        raise InvalidInputError(f"image size {images.shape[1:]} is not accepted whole by this model")
    session = _session(model_path, threads)
    inputs = [metadata.normalization.apply(image[None])[None] for image in images]
    passes, probabilities = [], None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        outputs = [session.run([OUTPUT_NAME], {INPUT_NAME: x})[0] for x in inputs]
        passes.append(time.perf_counter() - started)
        probabilities = np.stack([out[0, metadata.foreground_class] for out in outputs]).astype(np.float32)
    scores = isbi2012((labels > 0).astype(np.uint8), np.clip(probabilities, 0.0, 1.0))
    seconds = float(np.median(passes)) / len(images)
    return {
        "model": str(model_path),
        "precision": metadata.training.get("precision", "unrecorded"),
        "warping_error": float(scores.warping_error),
        "rand_error": float(scores.rand_error),
        "pixel_error": float(scores.pixel_error),
        "seconds_per_image": round(seconds, 4),
        "megapixels_per_second": round(images[0].size / seconds / 1e6, 3),
        "threads": threads,
    }
