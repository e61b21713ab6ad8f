"""Seg-Grad-CAM of one 512² ISBI 2012 slice on the CPU: unet-sdk's ONNX explanation graph against one
``predict`` of the slice and against the PyTorch autograd reference (``export.gradcam.seg_grad_cam``).

Model: the embedded ISBI 2012 U-Net (depth 4, 16 features). If the installed file has no explanation graph
yet, the graphs are added in memory (``export.explain_graph.add_explanation``). The reference runs the same
weights in PyTorch: the ONNX initializers (batch norm already folded into the convolutions) loaded into
``UNet(batch_norm=False)``, the two-class head given as ``[w0 - w1, 0]`` so that its class-1 minus class-0
logit is the exported log-odds. Both sides use 2 threads; each timing is the median of ``--repeats`` calls
after one warm-up call. Timed:

  predict          Segmenter.predict (the baseline: one forward pass)
  explain          Segmenter.explain with the default region (the pixels predicted as "cell"): a predict
                   plus one forward+backward run of the explanation graph
  explain_region   Segmenter.explain with the region given (no predict)
  torch_reference  seg_grad_cam with the region given (forward, autograd backward, map)

Also reported: the largest difference between the two maps relative to the reference's maximum.
``--figure PATH`` draws the README picture (maps of two layers for one cell and one membrane patch).

Usage: ``nice python benchmarks/bench_explain.py [--repeats 5] [--figure docs/explain_isbi2012.png]``;
writes benchmarks/results/explain.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_inference import _cpu_name, _median_seconds  # noqa: E402

THREADS = 2
LAYER = "bottleneck"


def _explainable_model() -> bytes:
    import onnx

    from export.explain_graph import add_explanation
    from sdk.explain import METADATA_KEY
    from sdk.models import default_model_path

    proto = onnx.load(str(default_model_path()))
    if not any(p.key == METADATA_KEY for p in proto.metadata_props):
        proto = add_explanation(proto)
    return proto.SerializeToString()


def _torch_twin(model_bytes: bytes):
    """``UNet(batch_norm=False)`` carrying the ONNX weights (see the module docstring)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from export.unet import UNet

    proto = onnx.ModelProto.FromString(model_bytes)
    weights = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    model = UNet(depth=4, base_features=16, batch_norm=False).eval()
    state = {}
    for key in model.state_dict():
        parts = key.split(".")
        if parts[0] in ("down", "up_blocks", "bottleneck") and parts[-2] in ("0", "2"):
            onnx_index = {"0": "0", "2": "3"}[parts[-2]]  # conv positions with batch norm: 0 and 3
            stem = ".".join(["net"] + parts[:-2] + [onnx_index, "weight"])
            state[key] = weights[stem if parts[-1] == "weight" else stem + "_bias"]
        else:
            state[key] = weights["net." + key]
    head_w, head_b = state["head.weight"].copy(), state["head.bias"].copy()
    head_w[1], head_b[1] = 0.0, 0.0  # logits [d, 0] with d = y0 - y1: class 1's log-odds is 0 - d
    state["head.weight"], state["head.bias"] = head_w, head_b
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})  # writable copies
    return model


def _figure(segmenter, image: np.ndarray, labels: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from sdk.cli.explain import heat_overlay

    cells, _ = ndimage.label(labels == 1)
    cell = cells == cells[320, 250]  # the large cell in the lower middle of the slice
    rows, cols = np.indices(image.shape)
    patch = (labels == 0) & (np.abs(rows - 120) < 40) & (np.abs(cols - 150) < 40)  # membranes, upper left
    panels = [
        (cell, "cell", "bottleneck", "cell (outlined), bottleneck (1/16)"),
        (cell, "cell", "up_blocks.1", "cell (outlined), decoder up_blocks.1 (1/4)"),
        (patch, "membrane", "bottleneck", "membrane patch (outlined), bottleneck"),
        (patch, "membrane", "up_blocks.1", "membrane patch (outlined), up_blocks.1"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 10.4))
    for ax, (region, cls, layer, title) in zip(axes.ravel(), panels):
        heat = segmenter.explain(image, target_class=cls, region=region, layer=layer)
        ax.imshow(heat_overlay(image, heat, region))
        ax.contour(region, levels=[0.5], colors="orangered", linewidths=1.2)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle("Seg-Grad-CAM of the embedded ISBI 2012 U-Net on test slice 0 (unet-sdk explain)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    from PIL import Image

    # a 256-colour octree palette keeps the heat colours at a third of the size (EM noise defeats compression)
    Image.open(buffer).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--figure", type=Path, help="also draw the README picture here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "explain.json")
    args = parser.parse_args(argv)

    import torch

    from export.gradcam import seg_grad_cam
    from sdk import Segmenter
    from sdk.io import read_image
    from sdk.models import sample_image_path

    torch.set_num_threads(THREADS)
    load_start = os.getloadavg()
    model_bytes = _explainable_model()
    segmenter = Segmenter(model_bytes, device="cpu", threads=THREADS)
    image = read_image(sample_image_path())
    labels = segmenter.predict(image)
    region = labels == 1
    twin = _torch_twin(model_bytes)
    meta = segmenter.metadata
    stats = meta.normalization.statistics(image[None].astype(np.float32))
    x = torch.from_numpy(meta.normalization.apply(image[None], stats)[None].astype(np.float32))
    reference_region = torch.from_numpy(region[None].astype(np.float32))

    def reference():
        return seg_grad_cam(twin, x, target_class=1, region=reference_region, layer=LAYER)

    seconds = {
        "predict": _median_seconds(lambda: segmenter.predict(image), args.repeats),
        "explain": _median_seconds(lambda: segmenter.explain(image, layer=LAYER), args.repeats),
        "explain_region": _median_seconds(lambda: segmenter.explain(image, region=region, layer=LAYER), args.repeats),
        "torch_reference": _median_seconds(reference, args.repeats),
    }
    ours = segmenter.explain(image, region=region, layer=LAYER)
    theirs = reference().heat[0].numpy()
    report = {
        "cpu": _cpu_name(),
        "threads": THREADS,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "image": f"{sample_image_path().name} {image.shape}",
        "layer": LAYER,
        "region_pixels": int(region.sum()),
        "seconds": seconds,
        "ratios": {
            "explain / predict": seconds["explain"] / seconds["predict"],
            "explain_region / predict": seconds["explain_region"] / seconds["predict"],
            "explain_region / torch_reference": seconds["explain_region"] / seconds["torch_reference"],
            "explain / torch_reference": seconds["explain"] / seconds["torch_reference"],
        },
        "map_max_relative_difference_vs_torch": float(np.max(np.abs(ours - theirs)) / np.max(theirs)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if args.figure:
        _figure(segmenter, image, labels, args.figure)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
