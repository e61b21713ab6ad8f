"""Small ONNX U-Net-like models built with ``onnx.helper`` (no torch), carrying unet-sdk metadata.

* ``pointwise``: 1x1 convolution + softmax. Every pixel depends on itself only, so any tiling and any
  blending must reproduce ``softmax(W x + b)`` exactly: a numpy reference for the merging arithmetic.
* ``valid``: conv3 (valid) - ReLU - maxpool 2 - conv3 (valid) - ReLU - transposed conv 2/2 - conv1 -
  softmax: a one-level valid-padding U-Net without skips (margin 3, sides must be even, >= 8). Pooling
  makes the result depend on the pooling phase, so exact tiling needs grid-aligned tiles.
* ``same``: the same with padded convolutions (output side = input side, sides even).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sdk.model_metadata import ModelMetadata, Normalization

KINDS = ("pointwise", "valid", "same")
SIZE_RULES = {  # (input_size_multiple, min_input_size, output_margin)
    "pointwise": (1, 1, 0),
    "valid": (2, 8, 3),
    "same": (2, 2, 0),
}


def make_model(
    kind: str,
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    num_classes: int = 2,
    features: int = 4,
    seed: int = 0,
    normalization: Normalization | None = None,
    metadata: dict | None = None,
) -> tuple[bytes, dict[str, np.ndarray]]:
    """The serialised model and its weights (for numpy references)."""
    rng = np.random.default_rng(seed)
    d = spatial_dims
    nodes: list = []
    inits: list = []
    weights: dict[str, np.ndarray] = {}

    def param(name, shape, scale=0.5):
        weights[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
        return weights[name]

    def conv(name, x, cin, cout, k, pad):
        w, b = param(name + "_w", (cout, cin) + (k,) * d), param(name + "_b", (cout,), 0.1)
        inits.extend([numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")])
        nodes.append(
            helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], pads=[pad] * (2 * d), kernel_shape=[k] * d)
        )
        return name

    def relu(x):
        nodes.append(helper.make_node("Relu", [x], [x + "_relu"]))
        return x + "_relu"

    if kind == "pointwise":
        logits = conv("head", "image", in_channels, num_classes, 1, 0)
    else:
        pad = 1 if kind == "same" else 0
        f = features
        x = relu(conv("c1", "image", in_channels, f, 3, pad))
        nodes.append(helper.make_node("MaxPool", [x], ["pool"], kernel_shape=[2] * d, strides=[2] * d))
        x = relu(conv("c2", "pool", f, 2 * f, 3, pad))
        w = param("up_w", (2 * f, f) + (2,) * d)
        b = param("up_b", (f,), 0.1)
        inits.extend([numpy_helper.from_array(w, "up_w"), numpy_helper.from_array(b, "up_b")])
        nodes.append(
            helper.make_node("ConvTranspose", [x, "up_w", "up_b"], ["up"], kernel_shape=[2] * d, strides=[2] * d)
        )
        logits = conv("head", relu("up"), f, num_classes, 1, 0)
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    spatial = ["z", "y", "x"][-d:]
    graph = helper.make_graph(
        nodes,
        f"{kind}_{d}d",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", "channels"] + spatial)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", "classes"] + [f"out_{a}" for a in spatial])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    multiple, min_size, margin = SIZE_RULES[kind]
    fields = dict(
        spatial_dims=d,
        in_channels=in_channels,
        class_names=tuple(f"class{i}" for i in range(num_classes)),
        padding="valid" if kind == "valid" else "same",
        input_size_multiple=multiple,
        min_input_size=min_size,
        output_margin=margin,
        output_activation="none",
        normalization=normalization or Normalization(),
        tile_size=(),
    )
    fields.update(metadata or {})
    for key, value in ModelMetadata(**fields).to_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString(), weights


def pointwise_reference(image: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """softmax(W x + b) per pixel for ``image`` (C, *spatial) already normalised; (K, *spatial)."""
    w = weights["head_w"].reshape(weights["head_w"].shape[:2]).astype(np.float64)
    logits = np.tensordot(w, image.astype(np.float64), axes=(1, 0))
    logits += weights["head_b"].reshape((-1,) + (1,) * (image.ndim - 1))
    logits -= logits.max(axis=0, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=0, keepdims=True)


def zscore(image: np.ndarray) -> np.ndarray:
    """Per-channel whole-image z-score (the default normalisation), float64."""
    x = image.astype(np.float64)
    axes = tuple(range(1, x.ndim))
    return (x - x.mean(axis=axes, keepdims=True)) / np.maximum(x.std(axis=axes, keepdims=True), 1e-6)
