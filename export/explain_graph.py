"""The backward pass of an exported U-Net written out as forward ONNX ops, for Seg-Grad-CAM without torch.

ONNX Runtime cannot differentiate (it does not implement ONNX's ``Gradient`` op, and ``torch.onnx.export``
cannot export ``autograd.grad``). A U-Net needs no general autodiff though: the backward pass of each of its
ops is itself a forward op, so it can be written into the model as ordinary nodes:

==========================  ==========================================================================
forward                     backward (``dY`` -> ``dX``)
==========================  ==========================================================================
Conv (stride 1)             the transposed convolution with the same weights, run as a Conv with the
                            kernel swapped over channels and flipped (ORT's Conv is much faster than its
                            ConvTranspose); the 1x1 head included
ConvTranspose (stride s)    Conv with the same weights, stride s
Relu                        ``Where(Y > 0, dY, 0)``
MaxPool                     MaxPool's ``Indices`` output + ``ScatterElements`` (PyTorch's tie rule: the
                            first maximum of a window gets the gradient)
Concat                      Split at the inputs' widths
Slice (the valid U-Net's    Pad with the cut-off widths
skip crop, steps 1)
BatchNormalization          per-channel scale ``gamma / sqrt(var + eps)``
Add, Mul by a constant,     the obvious; Transpose by the inverse permutation, Reshape to the input's
Identity, Transpose,        shape
Reshape
==========================  ==========================================================================

The writer walks the ONNX graph rather than the PyTorch module, so it also works for models whose training
checkpoint is gone (the embedded models, see export/RESULTS.md), with batch norm folded into the
convolutions and the two-class head folded into logit differences (export/onnx_export.py).

Where the graph lives, and why: ONNX Runtime runs every node of a graph whatever outputs are asked for
(measured), so backward nodes in the prediction graph would slow every ``predict``. Instead each layer's
backward nodes are a *graph delta*: a serialised ``ModelProto`` holding only ``graph.node``,
``graph.initializer`` (a few small constants; the weights are the forward graph's, by name),
``graph.input`` and ``graph.output``. Protobuf merges concatenated messages (repeated fields append), so
``model_bytes + delta_bytes`` *is* the explanation model: the forward graph plus the backward nodes, inputs
``image``, ``explain_region``, ``explain_class`` and outputs ``explain_activations`` /
``explain_gradients``. The deltas (a few kB each) travel base64-encoded in the model's metadata under
:data:`sdk.explain.METADATA_KEY`; the runtime (:mod:`sdk.explain`) needs neither torch nor onnx to use them.
One file, no duplicated weights, no cost to prediction.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sdk.explain import (
    ACTIVATIONS_OUTPUT,
    CLASS_INPUT,
    GRADIENTS_OUTPUT,
    METADATA_KEY,
    REGION_INPUT,
    SCHEMA_VERSION,
)
from sdk.atomic import atomic_output
from sdk.model_file import read_model_file
from sdk.model_metadata import ModelMetadata

DEFAULT_LAYER = "bottleneck"  # Vinogradova et al. and their reference code explain the bottleneck
# a U-Net block's weights are named <block>.<index>.weight (export/unet.py), under the "net." wrapper
_BLOCK_WEIGHT = re.compile(r"(?:^|\.)(down\.\d+|bottleneck|up_blocks\.\d+)\.\d+\.weight")
_PASS_THROUGH = ("Relu", "BatchNormalization", "Identity", "Dropout", "QuantizeLinear", "DequantizeLinear")
_SOFTMAX_HEADS = ("Softmax", "Sigmoid", "LogSoftmax")


class ExplanationGraphError(ValueError):
    """The graph has an op on the path from the layer to the logits whose backward pass we do not write."""


# -- reading the forward graph ----------------------------------------------------------------------


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def logits_tensor(proto: onnx.ModelProto) -> tuple[str, str]:
    """The graph's pre-activation output and what follows it: (tensor, "Sigmoid" | "Softmax" | "none")."""
    output = proto.graph.output[0].name
    producer = next((n for n in proto.graph.node if output in n.output), None)
    if producer is not None and producer.op_type in _SOFTMAX_HEADS:
        return producer.input[0], producer.op_type
    return output, "none"


def unet_layers(proto: onnx.ModelProto) -> dict[str, str]:
    """Block name (``down.0`` ... ``bottleneck`` ... ``up_blocks.3``, as in export/unet.py) -> the tensor
    the block outputs (the ReLU after its last convolution), in graph order."""
    graph = proto.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    last_conv: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        match = _BLOCK_WEIGHT.search(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if match:
            last_conv[match.group(1)] = node
    layers = {}
    for block, conv in last_conv.items():
        tensor = conv.output[0]
        while True:
            # Shape nodes only read the size (the int8 graph reads it from the quantized tensor)
            users = [n for n in consumers.get(tensor, []) if n.op_type != "Shape"]
            if len(users) != 1 or users[0].op_type not in _PASS_THROUGH:
                break
            tensor = users[0].output[0]
        layers[block] = tensor
    order = {name: i for i, node in enumerate(graph.node) for name in node.output}
    return dict(sorted(layers.items(), key=lambda item: order[item[1]]))


# -- writing the backward pass ------------------------------------------------------------------------


class _Writer:
    """Collects the backward nodes and constants of one layer's explanation graph."""

    def __init__(self, proto: onnx.ModelProto, prefix: str) -> None:
        self.graph = proto.graph
        self.inits = {init.name: init for init in self.graph.initializer}
        self.opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}/{hint}_{self._count}"

    def constant(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, outputs: int = 1, **attrs) -> list[str]:
        names = [self.name(hint) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **attrs))
        return names

    def one(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        return self.op(op_type, inputs, hint, **attrs)[0]

    def array(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None


def _require(condition: bool, node: onnx.NodeProto, what: str) -> None:
    if not condition:
        raise ExplanationGraphError(f"{node.op_type} node {node.name!r}: {what}; no backward pass written for it")


def _input_grads(w: _Writer, node: onnx.NodeProto, dy: str, live: set[str]) -> dict[str, str]:
    """Gradient tensors of ``node``'s inputs that depend on the explained layer, given ``dy`` (output 0)."""
    op, a = node.op_type, _attrs(node)
    x = node.input[0]
    if op in ("Identity", "Dropout", "DequantizeLinear"):
        return {x: dy}
    if op == "QuantizeLinear":
        # clipped straight-through estimator: the gradient passes where x lies in the representable range;
        # int8 models fuse each ReLU into the quantizer (zero point 0), so this is their ReLU mask too
        scale = w.array(node.input[1])
        zero_point = w.array(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        _require(scale is not None and zero_point is not None and scale.size == 1, node, "per-channel activations")
        info = np.iinfo(zero_point.dtype)
        bounds = [(float(q) - float(zero_point.reshape(()))) * float(scale.reshape(())) for q in (info.min, info.max)]
        low, high = (w.constant(np.array(b, np.float32), "q_bound") for b in bounds)
        inside = w.one("And", [w.one("GreaterOrEqual", [x, low], "q_low"), w.one("LessOrEqual", [x, high], "q_high")],
                       "q_inside")
        return {x: w.one("Where", [inside, dy, w.constant(np.zeros((), np.float32), "zero")], "q_grad")}
    if op == "Relu":
        zero = w.constant(np.zeros((), np.float32), "zero")
        positive = w.one("Greater", [node.output[0], zero], "relu_mask")
        return {x: w.one("Where", [positive, dy, zero], "relu_grad")}
    if op == "Conv":
        dims = len(a["kernel_shape"])
        _require(all(s == 1 for s in a.get("strides", [1] * dims)), node, "strided convolution")
        _require(all(d == 1 for d in a.get("dilations", [1] * dims)), node, "dilated convolution")
        _require(a.get("group", 1) == 1 and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"), node,
                 "grouped convolution or auto_pad")
        # a correlation with the kernel transposed over channels and flipped in space: ORT's Conv kernels are
        # several times faster than its ConvTranspose; ORT folds the weight ops into constants at load
        kernel, pads = a["kernel_shape"], a.get("pads", [0] * 2 * dims)
        swapped = w.one("Transpose", [node.input[1]], "conv_weight_t", perm=[1, 0] + list(range(2, dims + 2)))
        flipped = w.one("Slice", [swapped, w.constant(np.full(dims, -1, np.int64), "flip_start"),
                                  w.constant(np.full(dims, np.iinfo(np.int64).min, np.int64), "flip_end"),
                                  w.constant(np.arange(2, dims + 2, dtype=np.int64), "flip_axes"),
                                  w.constant(np.full(dims, -1, np.int64), "flip_steps")], "conv_weight_flip")
        return {x: w.one("Conv", [dy, flipped], "conv_grad", kernel_shape=kernel,
                         pads=[k - 1 - p for k, p in zip(kernel * 2, pads)])}
    if op == "ConvTranspose":
        dims = len(a["kernel_shape"])
        _require(not any(a.get("output_padding", [])) and not a.get("output_shape"), node, "output_padding")
        _require(all(d == 1 for d in a.get("dilations", [1] * dims)) and a.get("group", 1) == 1, node,
                 "dilated or grouped up-convolution")
        return {x: w.one("Conv", [dy, node.input[1]], "upconv_grad", kernel_shape=a["kernel_shape"],
                         strides=a.get("strides", [1] * dims), pads=a.get("pads", [0] * 2 * dims))}
    if op == "MaxPool":
        dims = len(a["kernel_shape"])
        _require(not any(a.get("pads", [])) and not a.get("ceil_mode", 0) and a.get("storage_order", 0) == 0
                 and all(d == 1 for d in a.get("dilations", [1] * dims)), node, "padded/dilated pooling")
        _, indices = w.op("MaxPool", [x], "pool_argmax", outputs=2, kernel_shape=a["kernel_shape"],
                          strides=a.get("strides", [1] * dims))
        flat = w.constant(np.array([-1], np.int64), "flat")
        x_flat = w.one("Reshape", [x, flat], "pool_input_flat")
        zeros = w.one("ConstantOfShape", [w.one("Shape", [x_flat], "pool_size")], "pool_zeros",
                      value=numpy_helper.from_array(np.zeros(1, np.float32)))
        scattered = w.one("ScatterElements", [zeros, w.one("Reshape", [indices, flat], "pool_index_flat"),
                                              w.one("Reshape", [dy, flat], "pool_grad_flat")],
                          "pool_scatter", axis=0, reduction="add")
        return {x: w.one("Reshape", [scattered, w.one("Shape", [x], "pool_shape")], "pool_grad")}
    if op == "Concat":
        axis = w.constant(np.array([a["axis"]], np.int64), "axis")
        widths = [w.one("Gather", [w.one("Shape", [name], "cat_shape"), axis], "cat_width") for name in node.input]
        parts = w.op("Split", [dy, w.one("Concat", widths, "cat_widths", axis=0)], "cat_grad",
                     outputs=len(node.input), axis=a["axis"])
        return {name: part for name, part in zip(node.input, parts) if name in live}
    if op == "Slice":
        _require(w.opset >= 18, node, "needs opset >= 18 for Pad with axes")
        starts = node.input[1]
        axes = node.input[3] if len(node.input) > 3 and node.input[3] else None
        steps = w.array(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        _require(len(node.input) <= 4 or not node.input[4] or (steps is not None and np.all(steps == 1)),
                 node, "steps other than 1")
        if axes is None:
            count = w.one("Shape", [starts], "slice_count")
            axes = w.one("Range", [w.constant(np.array(0, np.int64), "zero"),
                                   w.one("Squeeze", [count], "slice_n"),
                                   w.constant(np.array(1, np.int64), "one")], "slice_axes")
        full = w.one("Gather", [w.one("Shape", [x], "slice_in_shape"), axes], "slice_in_sizes")
        kept = w.one("Gather", [w.one("Shape", [node.output[0]], "slice_out_shape"), axes], "slice_out_sizes")
        after = w.one("Sub", [w.one("Sub", [full, kept], "slice_cut"), starts], "slice_after")
        pads = w.one("Concat", [starts, after], "slice_pads", axis=0)
        return {x: w.one("Pad", [dy, pads, "", axes], "slice_grad")}
    if op == "BatchNormalization":
        gamma, var = w.array(node.input[1]), w.array(node.input[4])
        _require(gamma is not None and var is not None, node, "statistics are not constants")
        scale = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
        shape = (1, -1) + (1,) * (len(w.graph.input[0].type.tensor_type.shape.dim) - 2)
        return {x: w.one("Mul", [dy, w.constant(scale.reshape(shape).astype(np.float32), "bn_scale")], "bn_grad")}
    if op == "Add":
        return {name: dy for name in node.input if name in live}
    if op == "Mul":
        inside = [name for name in node.input if name in live]
        _require(len(inside) == 1, node, "product of two activations")
        other = node.input[1] if inside[0] == node.input[0] else node.input[0]
        return {inside[0]: w.one("Mul", [dy, other], "mul_grad")}
    if op == "Transpose":
        inverse = np.argsort(a["perm"]).tolist()
        return {x: w.one("Transpose", [dy], "transpose_grad", perm=inverse)}
    if op == "Reshape":
        return {x: w.one("Reshape", [dy, w.one("Shape", [x], "reshape_shape")], "reshape_grad")}
    raise ExplanationGraphError(
        f"{op} node {node.name!r} lies between the explained layer and the logits; its backward pass is not "
        "written (supported: Conv, ConvTranspose, Relu, MaxPool, Concat, Slice, BatchNormalization, Add, Mul, "
        "Identity, Transpose, Reshape, QuantizeLinear/DequantizeLinear)"
    )


def _class_map(num_classes: int, head: str) -> np.ndarray:
    """Matrix turning the class weights the caller gives into the gradient seed of the pre-activation tensor.

    The score is the log-odds ``y_c - y_other`` for two classes and the logit ``y_c`` otherwise. A two-class
    graph ending in Sigmoid already holds ``z_c = y_c - y_other`` per channel (export folds the head), so the
    seed is the class weights themselves; a two-class graph with raw logits needs ``e_c - e_other``.
    """
    if num_classes == 2 and head != "Sigmoid":
        return np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32)
    return np.eye(num_classes, dtype=np.float32)


def layer_delta(proto: onnx.ModelProto, layer: str, tensor: str, num_classes: int) -> onnx.ModelProto:
    """The graph delta (see the module docstring) computing ``tensor``'s activations and the gradient of
    ``sum(region * class-score)`` with respect to them."""
    graph = proto.graph
    logits, head = logits_tensor(proto)
    live = {tensor}
    for node in graph.node:
        if any(name in live for name in node.input):
            live.update(node.output)
    if logits not in live:
        raise ExplanationGraphError(f"layer {layer!r} ({tensor}) does not reach the logits {logits!r}")
    w = _Writer(proto, f"explain/{layer}")
    spatial = len(graph.input[0].type.tensor_type.shape.dim) - 2
    class_seed = w.one("MatMul", [w.constant(_class_map(num_classes, head), "class_map"), CLASS_INPUT], "class_seed")
    class_seed = w.one("Reshape", [class_seed, w.constant(np.array([1, -1] + [1] * spatial, np.int64), "shape")],
                       "class_seed_nd")
    contributions: dict[str, list[str]] = {logits: [w.one("Mul", [REGION_INPUT, class_seed], "seed")]}
    start = next(i for i, node in enumerate(graph.node) if tensor in node.output)

    def total(name: str) -> str:
        parts = contributions.pop(name)
        return parts[0] if len(parts) == 1 else w.one("Sum", parts, "grad_sum")

    for node in reversed(graph.node[start + 1:]):
        out = node.output[0]
        if out not in contributions:
            continue
        for name, grad in _input_grads(w, node, total(out), live).items():
            if name in live:
                contributions.setdefault(name, []).append(grad)
    if tensor not in contributions:
        raise ExplanationGraphError(f"no gradient reaches layer {layer!r} ({tensor})")
    gradient = total(tensor)
    w.nodes.append(helper.make_node("Identity", [tensor], [ACTIVATIONS_OUTPUT], name=f"explain/{layer}/activations"))
    w.nodes.append(helper.make_node("Identity", [gradient], [GRADIENTS_OUTPUT], name=f"explain/{layer}/gradients"))
    spatial_names = ["depth", "height", "width"][-spatial:]
    out_names = [f"out_{n}" for n in spatial_names]
    layer_names = [f"{layer}_{n}" for n in spatial_names]
    delta_graph = helper.make_graph(
        w.nodes,
        "",
        [
            helper.make_tensor_value_info(REGION_INPUT, TensorProto.FLOAT, ["batch", 1] + out_names),
            helper.make_tensor_value_info(CLASS_INPUT, TensorProto.FLOAT, [num_classes]),
        ],
        [
            helper.make_tensor_value_info(ACTIVATIONS_OUTPUT, TensorProto.FLOAT, ["batch", "channels"] + layer_names),
            helper.make_tensor_value_info(GRADIENTS_OUTPUT, TensorProto.FLOAT, ["batch", "channels"] + layer_names),
        ],
        w.constants,
    )
    delta = onnx.ModelProto()
    delta.graph.CopyFrom(delta_graph)
    delta.graph.ClearField("name")  # keep the forward graph's name when merged
    return delta


def merged(proto: onnx.ModelProto, delta: onnx.ModelProto) -> onnx.ModelProto:
    """The explanation model: exactly what :mod:`sdk.explain` hands ONNX Runtime (bytes concatenated)."""
    return onnx.ModelProto.FromString(proto.SerializeToString() + delta.SerializeToString())


def _probe(model: bytes, metadata: ModelMetadata, side: int) -> tuple[int, int]:
    """Run an explanation model on a zero image of ``side``: (channels, side of the layer); checks it runs."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    d = metadata.spatial_dims
    out_side = side - 2 * metadata.output_margin
    class_weights = np.eye(metadata.num_classes, dtype=np.float32)[metadata.foreground_class]
    activations, gradients = session.run([ACTIVATIONS_OUTPUT, GRADIENTS_OUTPUT], {
        session.get_inputs()[0].name: np.zeros((1, metadata.in_channels) + (side,) * d, np.float32),
        REGION_INPUT: np.ones((1, 1) + (out_side,) * d, np.float32),
        CLASS_INPUT: class_weights,
    })
    if activations.shape != gradients.shape or not np.all(np.isfinite(gradients)):
        raise ExplanationGraphError(f"explanation graph gives activations {activations.shape}, gradients "
                                    f"{gradients.shape} (non-finite: {not np.all(np.isfinite(gradients))})")
    return activations.shape[1], activations.shape[2]


def explanation_metadata(
    proto: onnx.ModelProto, metadata: ModelMetadata, layers: Mapping[str, str] | None = None
) -> dict:
    """The :data:`sdk.explain.METADATA_KEY` entry: per layer its tensor, channels, stride and graph delta.

    Channels and stride are measured by running each explanation graph (ONNX Runtime) on two input sizes,
    which also proves that every delta loads and runs.
    """
    layers = dict(unet_layers(proto) if layers is None else layers)
    if not layers:
        raise ExplanationGraphError("found no U-Net blocks (weights named down.N / bottleneck / up_blocks.N)")
    _, head = logits_tensor(proto)
    small = metadata.valid_input_size_at_least(2 * metadata.input_size_multiple + 2 * metadata.output_margin)
    large = small + metadata.input_size_multiple
    entries = {}
    for name, tensor in layers.items():
        delta = layer_delta(proto, name, tensor, metadata.num_classes)
        graph = delta.SerializeToString()
        model = merged(proto, delta)
        onnx.checker.check_model(model)
        channels, small_side = _probe(model.SerializeToString(), metadata, small)
        _, large_side = _probe(model.SerializeToString(), metadata, large)
        entries[name] = {
            "tensor": tensor,
            "channels": channels,
            "stride": (large - small) / (large_side - small_side),
            "graph": base64.b64encode(graph).decode("ascii"),
            "sha256": hashlib.sha256(graph).hexdigest(),  # checked by sdk.explain when the graph is read
        }
    default = DEFAULT_LAYER if DEFAULT_LAYER in entries else next(iter(entries))
    return {
        "schema_version": SCHEMA_VERSION,
        "method": "Seg-Grad-CAM (Vinogradova et al. 2020, arXiv:2002.11434)",
        "score": "log_odds" if metadata.num_classes == 2 else "logit",
        "head": head,
        "default_layer": default,
        "layers": entries,
    }


def add_explanation(
    proto: onnx.ModelProto, metadata: ModelMetadata | None = None, layers: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """``proto`` with the explanation graphs of ``layers`` (default: every U-Net block) in its metadata.

    The forward graph, its weights and every other metadata entry are left as they are; an earlier
    explanation entry is replaced.
    """
    if metadata is None:
        metadata = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
    entry = explanation_metadata(proto, metadata, layers)
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    kept = [(p.key, p.value) for p in out.metadata_props if p.key != METADATA_KEY]
    del out.metadata_props[:]
    for key, value in kept + [(METADATA_KEY, json.dumps(entry, separators=(",", ":")))]:
        out.metadata_props.add(key=key, value=value)
    return out


def add_explanation_file(source: str | Path, output: str | Path, *, overwrite: bool = False,
                         layers: Mapping[str, str] | None = None) -> Path:
    """Write ``source`` (a unet-sdk .onnx) with its explanation graphs to ``output``, atomically.

    Only metadata changes: the graph is written back byte for byte, so a stamped weights digest stays
    valid (checked on the written file)."""
    original = Path(source).read_bytes()
    augmented = add_explanation(onnx.ModelProto.FromString(original), layers=layers)
    onnx.checker.check_model(augmented, full_check=True)
    before = read_model_file(original, str(source))
    with atomic_output(output, overwrite=overwrite) as tmp:
        onnx.save_model(augmented, str(tmp), save_as_external_data=False)
        written = Path(tmp).read_bytes()
        after = read_model_file(written, str(tmp))
        if written[slice(*after.graph)] != original[slice(*before.graph)]:
            raise ExplanationGraphError(f"{source}: re-serialising changed the graph's bytes; its weights digest "
                                        "would no longer verify")
    return Path(output)


def main(argv: list[str] | None = None) -> int:
    """``python -m export.explain_graph MODEL.onnx -o OUT.onnx``: add the explanation graphs to an exported
    model (no checkpoint or torch needed)."""
    parser = argparse.ArgumentParser(prog="python -m export.explain_graph", description=main.__doc__)
    parser.add_argument("model", type=Path, help="a .onnx written by `unet-export onnx`")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT (may be MODEL itself)")
    args = parser.parse_args(argv)
    path = add_explanation_file(args.model, args.output, overwrite=args.force)
    layers = json.loads(next(p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
                             if p.key == METADATA_KEY))["layers"]
    print(f"{path}: explainable layers {', '.join(layers)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
