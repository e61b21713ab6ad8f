"""``unet-sdk info [MODEL]``: what a model file says about itself, and where it would run."""
from __future__ import annotations

import argparse
import json

from ..bioimageio import ZooModel
from ..models import EMBEDDED_MODELS, resolve_model
from ..runtime import available_providers
from ..explain import explainable_layers
from ..segmenter import Segmenter


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="show a model's metadata and the execution providers", description=__doc__
    )
    parser.add_argument(
        "model", nargs="?",
        help=f"an .onnx file or an embedded model ({', '.join(EMBEDDED_MODELS)}; default: the embedded ISBI 2012 model)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = resolve_model(args.model)
    path = str(model)
    segmenter = Segmenter(model)  # device="auto": shows where inference would actually run
    meta = segmenter.metadata
    report = {
        "model": path,
        "metadata": _plain(meta),
        "providers_available": available_providers(),
        "auto_device": segmenter.device,
        "auto_providers": segmenter.providers,
        "weights_verified": segmenter.weights_verified,
        "explainable_layers": explainable_layers(segmenter),
        "defaults": {
            "tile": list(segmenter.tile),
            "overlap": segmenter.overlap,
            "blend": segmenter.blend,
            "batch_size": segmenter.batch_size,
        },
    }
    if isinstance(model, ZooModel):
        report["bioimageio"] = model.summary()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model: {path}")
    for key, value in report.get("bioimageio", {}).items():
        print(f"  bioimageio {key}: {value}")
    for key, value in report["metadata"].items():
        print(f"  {key}: {value}")
    for line in held_out_record(meta):
        print(line)
    print(f"providers available: {', '.join(report['providers_available'])}")
    print(f"device='auto' runs on: {segmenter.device} ({', '.join(segmenter.providers)})")
    print("weights: " + ("verified against their SHA-256 digest" if segmenter.weights_verified
                         else "not verified (the model carries no digest; `unet-export` writes one)"))
    print("defaults: " + ", ".join(f"{k}={v}" for k, v in report["defaults"].items()))
    layers = report["explainable_layers"]
    print("explainable layers (unet-sdk explain --layer): " + (", ".join(
        f"{name} ({layer['channels']} ch, 1/{layer['stride']:g} scale)" for name, layer in layers.items())
        or "none; re-export with `unet-export onnx --explain`"))
    return 0


def _scores(scores: dict) -> str:
    return "warping {:.6f}  Rand {:.4f}  pixel {:.4f}".format(
        scores.get("warping_error", float("nan")), scores.get("rand_error", float("nan")),
        scores.get("pixel_error", float("nan")))


def held_out_record(meta) -> list[str]:
    """The model's measured held-out scores as a few readable lines (nothing if it records none)."""
    measured = meta.training.get("held_out_metrics") if isinstance(meta.training, dict) else None
    post = meta.postprocessing
    held = post.selection.get("held_out", {}) if post.selection else {}
    if not measured and not held:
        return []
    data = meta.training.get("data", {}) if isinstance(meta.training, dict) else {}
    where = post.selection.get("chosen_on") or f"samples {data.get('val_samples', '?')}"
    lines = [f"held-out record ({where}; not trained on):"]
    if measured:
        lines.append(f"  network output:             {_scores(measured)}")
    if held:
        setting = (f"watershed boundaries, seed {post.seed_threshold:g}" if post.active else "none")
        lines.append(f"  with its post-processing:   {_scores(held['chosen'])}  ({setting}; predict uses it)")
        if "two_fold" in held:
            lines.append(f"    chosen on half, scored on the other half: {_scores(held['two_fold'])}")
        if "chosen_with_tta_dihedral" in held:
            lines.append(f"  + tta='dihedral' (8x time): {_scores(held['chosen_with_tta_dihedral'])}")
    return lines


def _plain(meta) -> dict:
    """The metadata as stored (JSON values under their names, without the ``unet_sdk.`` prefix)."""
    return {key.split(".", 1)[1]: json.loads(text) for key, text in meta.to_props().items()}
