"""PyTorch U-Net -> one self-contained, self-describing ONNX file (fp32, fp16 or int8 QDQ).

The graph takes ``image`` (N, C, *spatial) float32, already normalised as the metadata says, and returns
``probabilities`` (N, K, *out_spatial): the U-Net's logits followed by a softmax over classes, so the
metadata's ``output_activation`` is ``"none"`` (nothing left to apply). Batch and spatial axes are dynamic
(named ``batch``, ``height``/``width``/``depth``); the exporter is torch's dynamo exporter writing the
weights into the file (``external_data=False``). ``metadata_props`` carry a
:class:`sdk.model_metadata.ModelMetadata`.

Every export is checked: ``onnx.checker`` must pass and, unless ``check_parity=False``, ONNX Runtime must
reproduce PyTorch on random inputs of several accepted sizes (max abs difference of the probabilities
<= 1e-4 in fp32, <= 5e-3 in fp16), else :class:`ParityError` is raised and no file is left behind.
"""
from __future__ import annotations

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
from sdk.io import atomic_output
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
    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(image), dim=1)


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


def _save_model(proto: onnx.ModelProto, path: Path, overwrite: bool) -> None:
    onnx.checker.check_model(proto, full_check=True)
    with atomic_output(path, overwrite=overwrite) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)


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
) -> Path:
    """Export ``model`` to one self-contained ONNX file at ``path`` with ``metadata``; return the path.

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
    wrapped = _WithSoftmax(model).eval()
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
    _save_model(proto, path, overwrite)
    logger.info("wrote %s (%s, %.2f MB)", path, precision, path.stat().st_size / 1e6)
    return path


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
    activation ranges are their min/max. The final softmax stays in float (its output is the
    probability map, which 8 bits would quantize to steps of 1/255). The metadata is copied from the fp32
    model with ``training["precision"]`` recording the quantization.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    metadata = read_metadata(fp32_path)
    if out_path.exists() and not overwrite:
        raise OutputExistsError(f"{out_path} exists; pass overwrite=True (CLI: --force) to replace it")
    fp32 = onnx.load(str(fp32_path))
    softmax_nodes = [n.name for n in fp32.graph.node if n.op_type == "Softmax"]
    with tempfile.TemporaryDirectory(prefix=".unet-quantize.", dir=out_path.parent) as scratch:
        pre, quantized = Path(scratch) / "pre.onnx", Path(scratch) / "int8.onnx"
        # symbolic shape inference fails on the dynamo graphs' symbolic spatial axes
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(quantized),
            _TileReader(calibration_images),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=softmax_nodes,
        )
        proto = onnx.load(str(quantized))
    training = dict(metadata.training)
    training["precision"] = (
        "int8 static QDQ (u8 activations, s8 " + ("per-channel" if per_channel else "per-tensor")
        + " weights), min/max calibration"
    )
    _set_metadata(proto, dataclasses.replace(metadata, training=training))
    _save_model(proto, out_path, overwrite)
    logger.info("wrote %s (int8, %.2f MB)", out_path, out_path.stat().st_size / 1e6)
    return out_path
