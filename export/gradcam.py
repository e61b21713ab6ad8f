"""Seg-Grad-CAM in PyTorch with autograd: the reference the ONNX explanation graph is checked against.

Vinogradova, Dibrov, Myers, "Towards Interpretable Semantic Segmentation via Gradient-weighted Class
Activation Mapping", AAAI 2020 student abstract, arXiv:2002.11434 (after Grad-CAM, Selvaraju et al. 2017):

    S = sum_{p in R} z_c(p),    w_k = mean_q dS / dA_k(q),    map = ReLU(sum_k w_k A_k)  -> upsampled

``A`` is a layer's output (a U-Net block: ``down.i``, ``bottleneck``, ``up_blocks.i``; the authors take the
bottleneck). The class score ``z_c`` is the logit ``y_c``, or for two classes the log-odds ``y_c - y_other``
(see :mod:`sdk.explain` for why); upsampling is ``torch.nn.functional.interpolate`` (bilinear/trilinear,
``align_corners=False``), to the input size (same padding).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GradCam:
    activations: torch.Tensor  # (N, K_layer, *layer spatial)
    gradients: torch.Tensor  # d score / d activations
    weights: torch.Tensor  # (N, K_layer): spatial means of the gradients
    heat: torch.Tensor  # (N, *input spatial) upsampled ReLU map
    score: torch.Tensor  # (N,)


def class_score(logits: torch.Tensor, target_class: int, region: torch.Tensor) -> torch.Tensor:
    """Per sample ``sum(region * z_c)`` of logits (N, K, *spatial) and region (N, *spatial)."""
    z = logits[:, target_class]
    if logits.shape[1] == 2:
        z = z - logits[:, 1 - target_class]
    return (z * region).flatten(1).sum(1)


def seg_grad_cam(
    model: torch.nn.Module,
    image: torch.Tensor,
    *,
    target_class: int,
    region: torch.Tensor | None = None,
    layer: str = "bottleneck",
) -> GradCam:
    """Seg-Grad-CAM of ``model`` (returning logits) on ``image`` (N, C, *spatial).

    ``region`` (N, *out spatial) weighs the pixels of the score; default: those predicted as the class.
    ``layer`` names a submodule (``model.get_submodule``) whose output is explained.
    """
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["a"] = output

    handle = model.get_submodule(layer).register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(image)
            if region is None:
                region = (logits.argmax(1) == target_class).to(logits.dtype)
            score = class_score(logits, target_class, region.to(logits.dtype))
            activations = captured["a"]
            (gradients,) = torch.autograd.grad(score.sum(), activations)
    finally:
        handle.remove()
    spatial = tuple(range(2, activations.dim()))
    weights = gradients.mean(dim=spatial)
    cam = torch.relu((weights[(...,) + (None,) * len(spatial)] * activations).sum(1, keepdim=True))
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    heat = F.interpolate(cam, size=image.shape[2:], mode=mode, align_corners=False)[:, 0]
    return GradCam(activations.detach(), gradients.detach(), weights.detach(), heat.detach(), score.detach())


def verify_explanation(model: torch.nn.Module, proto, *, tolerance: float = 1e-4, seed: int = 0) -> float:
    """Largest difference, relative to the reference's largest magnitude, between every explanation graph in
    ``proto`` and autograd (random image of a parity size, random region, the foreground class, head folded
    as exported); :class:`~export.onnx_export.ParityError` above ``tolerance``."""
    import numpy as np
    import onnxruntime as ort

    from sdk.explain import ACTIVATIONS_OUTPUT, CLASS_INPUT, GRADIENTS_OUTPUT, REGION_INPUT, Explanation
    from sdk.model_metadata import ModelMetadata

    from .onnx_export import INPUT_NAME, ParityError, parity_sizes

    props = {p.key: p.value for p in proto.metadata_props}
    metadata, explanation = ModelMetadata.from_props(props), Explanation.from_props(props)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, metadata.in_channels) + parity_sizes(model, 1)[0]).astype(np.float32)
    with torch.no_grad():
        out_shape = model(torch.from_numpy(x)).shape
    region = (rng.random((1,) + tuple(out_shape[2:])) < 0.5).astype(np.float32)
    c = metadata.foreground_class
    worst = 0.0
    for name, layer in explanation.layers.items():
        session = ort.InferenceSession(proto.SerializeToString() + layer.graph, providers=["CPUExecutionProvider"])
        got = session.run([ACTIVATIONS_OUTPUT, GRADIENTS_OUTPUT], {
            INPUT_NAME: x, REGION_INPUT: region[:, None], CLASS_INPUT: np.eye(metadata.num_classes, dtype=np.float32)[c]})
        reference = seg_grad_cam(model, torch.from_numpy(x), target_class=c, region=torch.from_numpy(region), layer=name)
        for value, expected in zip(got, (reference.activations.numpy(), reference.gradients.numpy())):
            if value.shape != expected.shape:
                raise ParityError(f"explanation graph of layer {name!r} gives shape {value.shape}, autograd "
                                  f"{expected.shape}")
            difference = float(np.max(np.abs(value - expected)) / max(float(np.max(np.abs(expected))), 1e-30))
            worst = max(worst, difference)
            if not difference <= tolerance:
                raise ParityError(f"explanation graph of layer {name!r} differs from autograd by {difference:.3g} "
                                  f"(relative, > {tolerance:g})")
    return worst


def add_checked_explanation(model: torch.nn.Module, proto, *, check: bool = True):
    """``proto`` with its explanation graphs (:func:`export.explain_graph.add_explanation`), verified against
    autograd unless ``check`` is false."""
    from .explain_graph import add_explanation

    if any(init.data_type == 10 for init in proto.graph.initializer):  # TensorProto.FLOAT16
        raise ValueError("explanation graphs are written for fp32 models; export with --precision fp32")
    proto = add_explanation(proto)
    if check:
        worst = verify_explanation(model, proto)
        logger.info("explanation graphs match autograd to %.2g (relative)", worst)
    return proto
