"""A hand-weighted network with a known cause, carrying its explanation graphs (needs onnx, not torch)."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from export.explain_graph import add_explanation
from sdk.model_metadata import ModelMetadata, Normalization

BLOCK = 8  # pooling of the hand-made network: its context layer sees 8x8 blocks


def marker_model() -> bytes:
    """A U-Net-shaped network, weights set by hand, that labels a bright square "marked" only when a dark
    marker lies within two 8x8 blocks of it (a cause elsewhere in the tile).

    features = ReLU([x, -x]) (bright, dark); context = ReLU(conv5x5(maxpool8(features))): channel 0 the
    block's brightness (unused downstream), channel 1 the number of marker blocks within 2 blocks;
    decision = ReLU(bright + upsampled marker count - 1.5); logits = [0, 20 decision - 4] -> softmax.
    """
    d = 2
    ident = np.zeros((2, 2, 5, 5), np.float32)
    ident[0, 0, 2, 2] = 1.0  # brightness of the block itself
    ident[1, 1] = 1.0  # markers in the 5x5 blocks around
    up = np.zeros((2, 2, BLOCK, BLOCK), np.float32)
    up[0, 0], up[1, 1] = 1.0, 1.0
    weights = {
        "features.w": np.array([[[[1.0]]], [[[-1.0]]]], np.float32), "features.b": np.zeros(2, np.float32),
        "context.w": ident, "context.b": np.zeros(2, np.float32), "up.w": up,
        "decision.w": np.array([1, 0, 0, 1], np.float32).reshape(1, 4, 1, 1), "decision.b": np.array([-1.5], np.float32),
        "head.w": np.array([0, 20], np.float32).reshape(2, 1, 1, 1), "head.b": np.array([0, -4], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "features.w", "features.b"], ["features.pre"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["features.pre"], ["features"]),
        helper.make_node("MaxPool", ["features"], ["pooled"], kernel_shape=[BLOCK] * d, strides=[BLOCK] * d),
        helper.make_node("Conv", ["pooled", "context.w", "context.b"], ["context.pre"], kernel_shape=[5, 5], pads=[2] * 4),
        helper.make_node("Relu", ["context.pre"], ["context"]),
        helper.make_node("ConvTranspose", ["context", "up.w"], ["up"], kernel_shape=[BLOCK] * d, strides=[BLOCK] * d),
        helper.make_node("Concat", ["features", "up"], ["joined"], axis=1),
        helper.make_node("Conv", ["joined", "decision.w", "decision.b"], ["decision.pre"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["decision.pre"], ["decision"]),
        helper.make_node("Conv", ["decision", "head.w", "head.b"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "marker", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2, "height", "width"])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    meta = ModelMetadata(spatial_dims=2, in_channels=1, class_names=("plain", "marked"), padding="same",
                         input_size_multiple=BLOCK, min_input_size=BLOCK,
                         normalization=Normalization("fixed", mean=0.0, std=1.0), blend="none")
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    layers = {"features": "features", "context": "context", "decision": "decision"}
    return add_explanation(model, layers=layers).SerializeToString()
