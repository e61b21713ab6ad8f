"""PyTorch U-Net -> one self-contained, self-describing ONNX file (fp32, fp16 or int8 QDQ).

The graph takes ``image`` (N, C, *spatial) float32, already normalised as the metadata says, and returns
``probabilities`` (N, K, *out_spatial): the U-Net's logits followed by a softmax over classes (for two
classes in its equivalent sigmoid form, see :class:`_ExportedProbabilities`), so the metadata's
``output_activation`` is ``"none"`` (nothing left to apply). Batch and spatial axes are dynamic
(named ``batch``, ``height``/``width``/``depth``); the exporter is torch's dynamo exporter writing the
weights into the file (``external_data=False``). ``metadata_props`` carry a
:class:`sdk.model_metadata.ModelMetadata`.

Every export is checked: ``onnx.checker`` must pass and, unless ``check_parity=False``, ONNX Runtime must
reproduce PyTorch on random inputs of several accepted sizes (max abs difference of the probabilities
<= 1e-4 in fp32, <= 5e-3 in fp16), else :class:`ParityError` is raised and no file is left behind.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx
import torch

from sdk import __version__ as sdk_version
from sdk.errors import OutputExistsError
from sdk.atomic import atomic_output
from sdk.model_file import graph_sha256, read_model_file
from sdk.model_metadata import ModelMetadata, Normalization

from .unet import UNet

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
PARITY_TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3}
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
_AXIS_NAMES = {2: ("height", "width"), 3: ("depth", "height", "width")}


class ParityError(AssertionError):
    """The exported ONNX model does not reproduce the PyTorch model."""


class _WithSoftmax(torch.nn.Module):
    """The U-Net's class probabilities as written: the reference the exported graph must reproduce."""

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(image), dim=1)


class _ExportedProbabilities(torch.nn.Module):
    """The same probabilities in the form ONNX Runtime runs fastest.

    Two classes: ``softmax([a, b]) = sigmoid([a - b, b - a])``, and the differences fold into the 1x1
    head, so the graph ends in an elementwise ``Sigmoid`` instead of a ``Softmax`` over the channel axis,
    which ORT's CPU kernels run through a layout transpose (about 5 % of a fp32 U-Net, more of an int8
    one). More classes keep the softmax.
    """

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.two_class = net.config["num_classes"] == 2
        if self.two_class:
            net = copy.deepcopy(net)
            with torch.no_grad():
                for param in (net.head.weight, net.head.bias):
                    param.copy_(torch.stack([param[0] - param[1], param[1] - param[0]]))
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.net(image)
        return torch.sigmoid(logits) if self.two_class else torch.softmax(logits, dim=1)


def build_metadata(
    model: UNet,
    *,
    class_names: Sequence[str],
    normalization: Normalization,
    foreground_class: int = 1,
    tile_size: Sequence[int] = (),
    tile_overlap: float = 0.25,
    blend: str = "gaussian",
    training: dict | None = None,
) -> ModelMetadata:
    """The :class:`ModelMetadata` of ``model`` (size rules derived from its layers)."""
    rules = model.size_rules()
    return ModelMetadata(
        spatial_dims=model.spatial_dims,
        in_channels=model.config["in_channels"],
        class_names=tuple(class_names),
        padding=model.padding,
        input_size_multiple=rules.input_size_multiple,
        input_size_offset=rules.input_size_offset,
        min_input_size=rules.min_input_size,
        output_margin=rules.output_margin,
        output_activation="none",
        foreground_class=foreground_class,
        normalization=normalization,
        tile_size=tuple(tile_size),
        tile_overlap=tile_overlap,
        blend=blend,
        training=dict(training or {}),
        exporter_version=f"unet-sdk {sdk_version} export, torch {torch.__version__}, onnx {onnx.__version__}",
    )


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Parse and validate the unet-sdk metadata of an ONNX file (``ModelError`` if absent or malformed)."""
    proto = onnx.load(str(path), load_external_data=False)
    return ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})


def _set_metadata(proto: onnx.ModelProto, metadata: ModelMetadata) -> None:
    props = {p.key: p.value for p in proto.metadata_props if not p.key.startswith("unet_sdk.")}
    props.update(metadata.to_props())
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)


def _name_output_axes(proto: onnx.ModelProto, spatial_dims: int) -> None:
    """Readable names for the output's symbolic axes ('valid' models otherwise show e.g. 'u20 - 4')."""
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    names = ("batch",) + ("classes",) + tuple(f"out_{n}" for n in _AXIS_NAMES[spatial_dims])
    for dim, name in zip(dims, names):
        if dim.dim_param:
            dim.dim_param = name


def weights_digest(proto: onnx.ModelProto, *, folder: Path | None = None) -> str:
    """SHA-256 of ``proto``'s graph and external weights, as the runtime computes it on load
    (:func:`sdk.model_file.graph_sha256`); ``folder`` holds the external weights, if any."""
    data = proto.SerializeToString()
    return graph_sha256(data, read_model_file(data), folder=folder)


def _stamp_digest(proto: onnx.ModelProto, folder: Path | None = None) -> str:
    """Write the digest of ``proto``'s weights into its metadata (the graph it covers stays as it is)."""
    digest = weights_digest(proto, folder=folder)
    _set_metadata(proto, dataclasses.replace(_metadata_of(proto), weights_sha256=digest))
    return digest


def _metadata_of(proto: onnx.ModelProto) -> ModelMetadata:
    return ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})


def _save_model(proto: onnx.ModelProto, path: Path, overwrite: bool) -> None:
    """Check, stamp the weights' digest, write atomically, and confirm the file verifies as written."""
    onnx.checker.check_model(proto, full_check=True)
    digest = _stamp_digest(proto)
    with atomic_output(path, overwrite=overwrite) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        _confirm_digest(tmp, digest)


def _confirm_digest(path: Path, digest: str, folder: Path | None = None) -> None:
    data = Path(path).read_bytes()
    if graph_sha256(data, read_model_file(data, str(path)), folder=folder) != digest:
        raise RuntimeError(f"{path}: the written graph does not reproduce its digest (protobuf serialisation changed)")


def stamp_model(path: str | os.PathLike, **changes) -> ModelMetadata:
    """Rewrite the unet-sdk metadata of the model at ``path`` in place, weights untouched: the digest of
    its weights (``weights_sha256``) and any metadata fields given as ``changes`` (e.g. ``training=``).

    Use it on models exported before digests existed, or to record measurements made after export.
    A model with external weights keeps them where they are (the digest covers them). Returns the
    metadata written.
    """
    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    folder = path.parent
    _set_metadata(proto, dataclasses.replace(_metadata_of(proto), **changes))
    digest = _stamp_digest(proto, folder)
    with atomic_output(path, overwrite=True) as tmp:
        onnx.save_model(proto, str(tmp))
        _confirm_digest(tmp, digest, folder)
    logger.info("stamped %s: weights sha256 %s", path, digest)
    return _metadata_of(proto)


def parity_sizes(model: UNet, count: int = 3) -> list[tuple[int, ...]]:
    """A few accepted, non-square input sizes (smallest ones, so the check stays quick)."""
    rules = model.size_rules()
    first = max(rules.min_input_size, rules.input_size_multiple)
    first += (rules.input_size_offset - first) % rules.input_size_multiple
    sides = [first + k * rules.input_size_multiple for k in range(count + model.spatial_dims)]
    return [tuple(sides[i + a] for a in range(model.spatial_dims)) for i in range(count)]


def _session(path_or_bytes, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def verify_parity(
    model: UNet,
    onnx_model: onnx.ModelProto | str | os.PathLike,
    *,
    sizes: Iterable[tuple[int, ...]] | None = None,
    batch: int = 2,
    tolerance: float = PARITY_TOLERANCE["fp32"],
    seed: int = 0,
) -> float:
    """Max abs difference of softmax probabilities, ONNX Runtime vs PyTorch; :class:`ParityError` if > tolerance."""
    source = onnx_model.SerializeToString() if isinstance(onnx_model, onnx.ModelProto) else onnx_model
    session = _session(source)
    rng = np.random.default_rng(seed)
    reference = _WithSoftmax(model).eval()
    worst = 0.0
    for size in sizes if sizes is not None else parity_sizes(model):
        x = rng.standard_normal((batch, model.config["in_channels"], *size)).astype(np.float32)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].astype(np.float32)
        if got.shape != expected.shape:
            raise ParityError(f"ONNX output shape {got.shape} != PyTorch {expected.shape} for input {x.shape}")
        diff = float(np.max(np.abs(got - expected)))
        logger.info("parity %s: max abs diff %.3g", x.shape, diff)
        worst = max(worst, diff)
        if not diff <= tolerance:
            raise ParityError(
                f"ONNX Runtime differs from PyTorch by {diff:.3g} (> {tolerance:g}) on input {x.shape}"
            )
    return worst


def export_onnx(
    model: UNet,
    path: str | os.PathLike,
    *,
    metadata: ModelMetadata,
    precision: str = "fp32",
    check_parity: bool = True,
    overwrite: bool = False,
    explain: bool = False,
) -> Path:
    """Export ``model`` to one self-contained ONNX file at ``path`` with ``metadata``; return the path.

    ``explain=True`` adds the Seg-Grad-CAM explanation graphs (:mod:`export.explain_graph`), checked against
    PyTorch autograd like the probabilities (fp32 only).

    ``precision="fp16"`` stores weights and activations in half precision (inputs/outputs stay float32;
    useful on CUDA, no faster on CPU). Raises :class:`ParityError` (leaving no file) if ONNX Runtime does
    not reproduce PyTorch, ``FileExistsError`` (``OutputExistsError``) if ``path`` exists and not
    ``overwrite``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if (metadata.spatial_dims, metadata.in_channels, metadata.num_classes) != (
        model.spatial_dims,
        model.config["in_channels"],
        model.config["num_classes"],
    ):
        raise ValueError("metadata does not describe this model (spatial dims, channels or classes differ)")
    rules = model.size_rules()
    if (metadata.padding, metadata.output_margin, metadata.input_size_multiple) != (
        model.padding,
        rules.output_margin,
        rules.input_size_multiple,
    ):
        raise ValueError("metadata size rules do not match the model's; build it with build_metadata()")
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
    model = model.eval()
    wrapped = _ExportedProbabilities(model).eval()
    # An example well above the minimum: at the smallest size the bottleneck is 1 wide and torch.export
    # would specialise the axes to constants.
    rules_side = max(rules.min_input_size + 2 * rules.input_size_multiple, 4 * rules.input_size_multiple)
    side = rules_side + (rules.input_size_offset - rules_side) % rules.input_size_multiple
    example_size = tuple(side + axis * rules.input_size_multiple for axis in range(model.spatial_dims))
    example = torch.zeros((2, model.config["in_channels"], *example_size))
    axes = {0: torch.export.Dim("batch")}
    for axis, name in enumerate(_AXIS_NAMES[model.spatial_dims], start=2):
        axes[axis] = torch.export.Dim(name)
    program = torch.onnx.export(
        wrapped,
        (example,),
        dynamo=True,
        external_data=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={INPUT_NAME: axes},
        verbose=False,
    )
    proto = program.model_proto
    _name_output_axes(proto, model.spatial_dims)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        import onnx_ir
        from onnx_ir.passes.common import TopologicalSortPass

        # The converter appends its input casts at the end of the node list; the checker wants them first.
        ir_model = onnx_ir.from_proto(convert_float_to_float16(proto, keep_io_types=True))
        proto = onnx_ir.to_proto(TopologicalSortPass()(ir_model).model)
    training = dict(metadata.training)
    training["precision"] = precision
    _set_metadata(proto, dataclasses.replace(metadata, training=training))
    if check_parity:
        verify_parity(model, proto, tolerance=PARITY_TOLERANCE[precision])
    if explain:
        from .gradcam import add_checked_explanation

        proto = add_checked_explanation(model, proto, check=check_parity)
    _save_model(proto, path, overwrite)
    logger.info("wrote %s (%s, %.2f MB)", path, precision, path.stat().st_size / 1e6)
    return path


def upsampling_as_pixel_shuffle(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` with every 2D ``ConvTranspose`` of kernel 2, stride 2 (the U-Net's up-convolution)
    replaced by the same linear map: a 1x1 ``Conv`` to ``4 * C_out`` channels and a channels-last pixel
    shuffle.

    ``y[c, 2i + u, 2j + v] = b[c] + sum_k W[k, c, u, v] x[k, i, j]`` is channel ``(2u + v) C_out + c`` of the
    1x1 convolution, moved to ``(2i + u, 2j + v)`` by ``Transpose`` to (N, H, W, 4C) -> ``Reshape`` to
    (N, H, W, 2, 2, C) -> ``Transpose`` to (N, H, 2, W, 2, C) -> ``Reshape`` to (N, 2H, 2W, C) -> ``Transpose``
    to NCHW. Why this form: ORT runs a ``ConvTranspose`` in float even in an int8 model, and a
    ``DepthToSpace`` only in NCHW, between layout transposes of its NHWC int8 convolutions (a quarter of the
    int8 run time). Written channels-last, the shuffle moves whole ``2 C`` byte rows, ORT's transpose
    optimizer cancels the outer transposes against its own, and the following ``Concat`` runs in NHWC.
    In fp32 the ``ConvTranspose`` is the faster form, so only :func:`quantize_int8` uses this.
    """
    from onnx import helper, numpy_helper

    proto = copy.deepcopy(proto)
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes, replaced = [], set()
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
        if not (
            node.op_type == "ConvTranspose" and weight is not None and list(weight.dims[2:]) == [2, 2]
            and list(attrs.get("strides", [1, 1])) == [2, 2] and attrs.get("group", 1) == 1
            and not any(any(attrs.get(name, ())) for name in ("pads", "output_padding", "output_shape"))
            and list(attrs.get("dilations", [1, 1])) == [1, 1]
        ):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)  # (C_in, C_out, 2, 2)
        c_in, c_out = w.shape[:2]
        bias = initializers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        b = numpy_helper.to_array(bias) if bias is not None else np.zeros(c_out, w.dtype)
        name, x, y = node.name, node.input[0], node.output[0]
        constants = {
            "weight": np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(4 * c_out, c_in, 1, 1)),
            "bias": np.tile(b, 4),
            "phases_shape": np.array([0, 0, 0, 2, 2, c_out], np.int64),  # 0: keep N, H, W
            "two": np.array([2, 2], np.int64),
            "channels": np.array([c_out], np.int64),
        }
        graph.initializer.extend(numpy_helper.from_array(v, f"{name}.{k}") for k, v in constants.items())
        nodes += [
            helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{y}.phases"], name=f"{name}.pointwise",
                             kernel_shape=[1, 1]),
            # the output shape (N, 2H, 2W, C) from the input's: spatial axes are symbolic
            helper.make_node("Shape", [x], [f"{y}.batch"], name=f"{name}.batch", start=0, end=1),
            helper.make_node("Shape", [x], [f"{y}.hw"], name=f"{name}.hw", start=2, end=4),
            helper.make_node("Mul", [f"{y}.hw", f"{name}.two"], [f"{y}.hw2"], name=f"{name}.hw2"),
            helper.make_node("Concat", [f"{y}.batch", f"{y}.hw2", f"{name}.channels"], [f"{y}.shape"],
                             name=f"{name}.shape", axis=0),
            helper.make_node("Transpose", [f"{y}.phases"], [f"{y}.nhwc"], name=f"{name}.to_nhwc", perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"{y}.nhwc", f"{name}.phases_shape"], [f"{y}.split"], name=f"{name}.split"),
            helper.make_node("Transpose", [f"{y}.split"], [f"{y}.shuffled"], name=f"{name}.shuffle",
                             perm=[0, 1, 3, 2, 4, 5]),
            helper.make_node("Reshape", [f"{y}.shuffled", f"{y}.shape"], [f"{y}.up"], name=f"{name}.merge"),
            helper.make_node("Transpose", [f"{y}.up"], [y], name=f"{name}.to_nchw", perm=[0, 3, 1, 2]),
        ]
        replaced.update(name for name in node.input[1:] if name)
    still_used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name not in replaced or init.name in still_used]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept)
    return proto


def _shapes_from_quantized_tensors(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Point every ``Shape`` that reads a ``DequantizeLinear`` output at the quantized tensor instead (same
    shape): otherwise ORT dequantizes, and transposes to NCHW, a whole activation only to read its shape."""
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
    used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    kept = [n for n in graph.node if n.op_type != "DequantizeLinear" or any(out in used for out in n.output)]
    del graph.node[:]
    graph.node.extend(kept)
    return proto


class _TileReader:
    """ONNX Runtime calibration reader over normalised tiles (C, *spatial), one tile per batch."""

    def __init__(self, tiles: Iterable[np.ndarray]) -> None:
        self._tiles = iter(tiles)

    def get_next(self):
        tile = next(self._tiles, None)
        return None if tile is None else {INPUT_NAME: np.ascontiguousarray(tile[None], dtype=np.float32)}


def quantize_int8(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration_images: Iterable[np.ndarray],
    *,
    per_channel: bool = True,
    overwrite: bool = False,
) -> Path:
    """Static int8 quantization (QDQ: u8 activations, s8 per-channel weights) of an exported fp32 model.

    ``calibration_images`` are normalised tiles (C, *spatial) of accepted sizes, e.g. training tiles;
    activation ranges are their min/max. The classifier and the final softmax (or sigmoid) stay in float
    (8-bit logits would put the probability map on a coarse grid). 2D upsampling is first rewritten by
    :func:`upsampling_as_pixel_shuffle`, because ORT has no int8 transposed convolution. The metadata is
    copied from the fp32 model with ``training["precision"]`` recording the quantization; a post-processing
    setting is kept, its held-out scores (the fp32 model's) move under ``selection["fp32_source"]`` until
    ``unet-export postprocess`` measures this file's own.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    metadata = read_metadata(fp32_path)
    if out_path.exists() and not overwrite:
        raise OutputExistsError(f"{out_path} exists; pass overwrite=True (CLI: --force) to replace it")
    fp32 = onnx.load(str(fp32_path))
    # the classifier (1x1 convolution) and the activation after it stay float: quantizing the logits would
    # put the probabilities on a grid of at most 256 values (steps of ~0.04 near p = 0.5)
    activation = next(n for n in fp32.graph.node if OUTPUT_NAME in n.output)
    float_nodes = [activation.name] + [n.name for n in fp32.graph.node if activation.input[0] in n.output]
    with tempfile.TemporaryDirectory(prefix=".unet-quantize.", dir=out_path.parent) as scratch:
        upsampled, pre = Path(scratch) / "upsampled.onnx", Path(scratch) / "pre.onnx"
        quantized = Path(scratch) / "int8.onnx"
        onnx.save(upsampling_as_pixel_shuffle(fp32), str(upsampled))
        # symbolic shape inference fails on the dynamo graphs' symbolic spatial axes
        quant_pre_process(str(upsampled), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(quantized),
            _TileReader(calibration_images),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=float_nodes,
        )
        proto = _shapes_from_quantized_tensors(onnx.load(str(quantized)))
    training = dict(metadata.training)
    training["precision"] = (
        "int8 static QDQ (u8 activations, s8 " + ("per-channel" if per_channel else "per-tensor")
        + " weights), min/max calibration"
    )
    post = metadata.postprocessing
    if post.selection:
        post = dataclasses.replace(post, selection={"fp32_source": dict(post.selection)})
    _set_metadata(proto, dataclasses.replace(metadata, training=training, postprocessing=post))
    _save_model(proto, out_path, overwrite)
    logger.info("wrote %s (int8, %.2f MB)", out_path, out_path.stat().st_size / 1e6)
    return out_path
