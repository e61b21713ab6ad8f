"""The ``unet-export`` command (also ``python -m export``): train, export to ONNX, quantize, evaluate.

    unet-export train --preset isbi2012 --out runs/isbi2012 --steps 10000 --max-minutes 105 --threads 2
    unet-export onnx runs/isbi2012/best.pt -o model.onnx [--precision fp16]
    unet-export quantize model.onnx -o model_int8.onnx --preset isbi2012
    unet-export evaluate model.onnx --preset isbi2012
    unet-export bioimageio model.onnx -o model.zip   (a BioImage Model Zoo package)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from sdk.cli.options import add_verbosity_arguments
from sdk.errors import InvalidInputError, UnetSdkError
from sdk.model_metadata import BLEND_MODES

logger = logging.getLogger(__name__)


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--preset", choices=["isbi2012"], help="a known data set with its split")
    group.add_argument("--data-dir", type=Path,
                       help="folder with the preset's files (default: $UNET_SDK_DATA, then the current folder)")
    group.add_argument("--images", type=Path, help="image stack (TIFF/NPY/...) or directory of images")
    group.add_argument("--labels", type=Path, help="label stack or directory, same layout as --images")
    group.add_argument("--train-indices", help="samples to train on, e.g. 0:25 (default: all but validation)")
    group.add_argument("--val-indices", help="held-out samples, e.g. 25:30 (default: the last 20%%)")
    group.add_argument("--label-mode", choices=["binary", "classes"], default=None,
                       help="binary: 0 is class 0, > 0 is class 1; classes: values are class indices "
                            "(default: the preset's, else binary)")
    group.add_argument("--class-names", help="comma-separated, e.g. membrane,cell (default: background,foreground)")
    group.add_argument("--spatial-dims", type=int, choices=[2, 3], default=None,
                       help="2: every slice is a sample; 3: volumes (default: the preset's, else 2)")


def _resolve_data(args) -> dict:
    """Stacks, split and naming from a preset and/or explicit options (explicit options win)."""
    from .data import PRESETS, load_stack, parse_index_range

    preset = PRESETS[args.preset](args.data_dir) if args.preset else None
    images_path = args.images or (preset.images if preset else None)
    labels_path = args.labels or (preset.labels if preset else None)
    if images_path is None or labels_path is None:
        raise InvalidInputError("give --preset or both --images and --labels")
    images, labels = load_stack(images_path), load_stack(labels_path)
    spatial_dims = args.spatial_dims or (preset.spatial_dims if preset else 2)
    n = labels.shape[0] if labels.ndim > spatial_dims else 1
    if args.val_indices:
        val = parse_index_range(args.val_indices, n)
    elif preset:
        val = list(preset.val_indices)
    else:
        val = list(range(n - max(1, n // 5), n)) if n > 1 else []
    if args.train_indices:
        train = parse_index_range(args.train_indices, n)
    elif preset and not args.val_indices:
        train = list(preset.train_indices)
    else:
        train = [i for i in range(n) if i not in val]
    if set(train) & set(val):
        raise InvalidInputError(f"training and validation samples overlap: {sorted(set(train) & set(val))}")
    class_names = tuple(args.class_names.split(",")) if args.class_names else (
        preset.class_names if preset else ("background", "foreground")
    )
    return dict(
        images=images,
        labels=labels,
        images_path=str(images_path),
        labels_path=str(labels_path),
        train=train,
        val=val,
        spatial_dims=spatial_dims,
        class_names=class_names,
        label_mode=args.label_mode or (preset.label_mode if preset else "binary"),
        preset=preset,
    )


def _samples(data: dict, indices: list[int], normalization):
    from .data import make_samples

    images, labels = data["images"], data["labels"]
    if labels.ndim == data["spatial_dims"]:
        images, labels = images[None], labels[None]
    return make_samples(
        images[indices],
        labels[indices],
        spatial_dims=data["spatial_dims"],
        num_classes=len(data["class_names"]),
        label_mode=data["label_mode"],
        normalization=normalization,
    )


def _ranges(indices: list[int]) -> str:
    return ",".join(str(i) for i in indices) if len(indices) < 3 or indices != list(
        range(indices[0], indices[-1] + 1)
    ) else f"{indices[0]}-{indices[-1]}"


# -- train ---------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from sdk._progress import ProgressBar
    from sdk.model_metadata import Normalization

    from .train import TrainConfig, train, training_device

    device = training_device(args.device)  # a GPU torch cannot use fails here, before any data is read
    data = _resolve_data(args)
    normalization = Normalization("per_image_zscore")
    tile = tuple(args.tile for _ in range(data["spatial_dims"]))
    config = TrainConfig(
        spatial_dims=data["spatial_dims"],
        class_names=data["class_names"],
        depth=args.depth,
        base_features=args.base_features,
        padding=args.padding,
        batch_norm=not args.no_batch_norm,
        dropout=args.dropout,
        tile=tile,
        batch_size=args.batch_size,
        steps=args.steps,
        epoch_steps=args.epoch_steps,
        max_minutes=args.max_minutes,
        lr=args.lr,
        dice_weight=args.dice_weight,
        augment=not args.no_augment,
        seed=args.seed,
        threads=args.threads,
        normalization=normalization.to_dict(),
        data={
            "preset": args.preset,
            "images": data["images_path"],
            "labels": data["labels_path"],
            "train_samples": _ranges(data["train"]),
            "val_samples": _ranges(data["val"]),
            "label_mode": data["label_mode"],
            "citation": data["preset"].citation if data["preset"] else "",
        },
    )
    train_samples = _samples(data, data["train"], normalization)
    val_samples = _samples(data, data["val"], normalization) if data["val"] else []
    limit = f" (at most {config.max_minutes:g} min)" if config.max_minutes else ""
    print(
        f"training on {len(train_samples)} samples, validating on {len(val_samples)}; "
        f"{config.steps} steps{limit} on {device} -> {args.out}",
        file=sys.stderr,
    )
    with ProgressBar(config.steps, "train", enabled=None if args.progress and not args.quiet else False) as bar:

        def on_step(step: int, loss: float) -> None:
            bar.desc = f"train loss {loss:.3f}"
            bar.update(step - bar.count)  # steps are absolute, so a resumed run starts where it left off

        best = train(config, train_samples, val_samples, args.out, resume=args.resume, on_step=on_step,
                     device=str(device), keep_epochs=args.keep_epochs)
    print(json.dumps({"best": best["best"], "steps": best["step"], "checkpoint": str(Path(args.out) / "best.pt")}))
    return 0


# -- average -------------------------------------------------------------------------------------
def cmd_average(args) -> int:
    from sdk.model_metadata import Normalization

    from .average import average_checkpoints
    from .train import load_checkpoint

    config = load_checkpoint(args.checkpoints[0])["config"]
    data = _resolve_data(args)
    normalization = Normalization(**config["normalization"])
    train_samples = _samples(data, data["train"], normalization)
    val_samples = _samples(data, data["val"], normalization) if data["val"] else []
    result = average_checkpoints(args.checkpoints, args.output, train_samples, val_samples,
                                 bn_batches=args.bn_batches, overwrite=args.force)
    print(json.dumps({"checkpoint": str(args.output), "record": result["best"]}))
    return 0


# -- onnx ----------------------------------------------------------------------------------------
def training_record(checkpoint: dict) -> dict:
    """The metadata ``training`` entry: data, steps, time, hardware, held-out metrics of a checkpoint."""
    config = checkpoint["config"]
    best = checkpoint.get("best") or {}
    # an epoch checkpoint (--keep-epochs) carries the best record so far: its own is its (last) history entry
    own = next((r for r in reversed(checkpoint.get("history", [])) if r.get("step") == checkpoint["step"]), best)
    if "averaged_steps" in own:
        selected = (f"the average of the weights of steps {', '.join(map(str, own['averaged_steps']))} (stochastic "
                    "weight averaging, batch norm re-measured on training tiles)")
    elif own.get("step") == best.get("step"):
        selected = "lowest held-out rand_error over epochs"
    else:
        selected = f"the checkpoint of step {checkpoint['step']} (best held-out rand_error: step {best.get('step')})"
    data = dict(config.get("data", {}))
    for key in ("images", "labels"):  # file names only: the record ships inside the model
        if data.get(key):
            data[key] = Path(data[key]).name
    return {
        "data": data,
        "steps": checkpoint["step"],
        "batch_size": config["batch_size"],
        "tile": config["tile"],
        "train_seconds": round(checkpoint["train_seconds"], 1),
        "hardware": checkpoint.get("hardware", ""),
        "architecture": {k: config[k] for k in ("depth", "base_features", "padding", "batch_norm", "dropout")},
        "loss": "weighted cross-entropy (U-Net weight map, w0=10, sigma=5)"
        + (f" + {config['dice_weight']} x Dice" if config.get("dice_weight") else ""),
        "held_out_metrics": {k: own[k] for k in ("warping_error", "rand_error", "pixel_error", "val_loss") if k in own},
        "selected_by": selected,
    }


def cmd_onnx(args) -> int:
    from sdk.model_metadata import Normalization

    from .onnx_export import build_metadata, export_onnx
    from .train import model_from_checkpoint

    model, checkpoint = model_from_checkpoint(args.checkpoint)
    config = checkpoint["config"]
    tile = tuple(args.tile_size for _ in range(model.spatial_dims)) if args.tile_size else tuple(config["tile"])
    metadata = build_metadata(
        model,
        class_names=config["class_names"],
        normalization=Normalization(**config["normalization"]),
        foreground_class=config["foreground_class"],
        tile_size=tile,
        tile_overlap=args.tile_overlap,
        blend=args.blend,
        training=training_record(checkpoint),
    )
    path = export_onnx(
        model, args.output, metadata=metadata, precision=args.precision, check_parity=not args.no_parity,
        overwrite=args.force, explain=args.explain,
    )
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, {args.precision}")
    return 0


# -- quantize ------------------------------------------------------------------------------------
def calibration_tiles(data: dict, metadata, *, count: int, seed: int) -> list[np.ndarray]:
    """``count`` random normalised training tiles of the model's recommended tile size (no augmentation)."""
    from .data import TileSampler

    samples = _samples(data, data["train"], metadata.normalization)
    tile = metadata.tile_size or tuple(metadata.valid_input_size_at_least(256) for _ in range(metadata.spatial_dims))
    # A recommended inference tile may exceed the training images: calibrate on the largest accepted
    # size that fits (activation ranges do not depend on the tile size).
    smallest = np.min([s.classes.shape for s in samples], axis=0)
    tile = tuple(min(t, _largest_accepted_size(metadata, int(n))) for t, n in zip(tile, smallest))
    sampler = TileSampler(samples, tile, None)
    rng = np.random.default_rng(seed)
    return [sampler.draw(rng)[0] for _ in range(count)]


def _largest_accepted_size(metadata, n: int) -> int:
    size = n - (n - metadata.input_size_offset) % metadata.input_size_multiple
    if size < metadata.min_input_size:
        raise InvalidInputError(f"training images of side {n} are smaller than the model's minimum input")
    return size


def cmd_quantize(args) -> int:
    from .onnx_export import quantize_int8, read_metadata

    metadata = read_metadata(args.model)
    data = _resolve_data(args)
    tiles = calibration_tiles(data, metadata, count=args.calibration_tiles, seed=args.seed)
    path = quantize_int8(args.model, args.output, tiles, overwrite=args.force)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, int8 QDQ calibrated on {len(tiles)} training tiles")
    return 0


# -- evaluate ------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_onnx

    data = _resolve_data(args)
    images, labels = data["images"][data["val"]], data["labels"][data["val"]]
    result = evaluate_onnx(args.model, images, labels, threads=args.threads, repeats=args.repeats)
    result["samples"] = _ranges(data["val"])
    if args.record:
        from .evaluate import record_held_out_metrics

        record_held_out_metrics(args.model, result, images_name=Path(data["images_path"]).name)
    print(json.dumps(result, indent=2))
    return 0


# -- postprocess ---------------------------------------------------------------------------------
def cmd_postprocess(args) -> int:
    from sdk.errors import OutputExistsError

    from .select_postprocessing import select_postprocessing, write_postprocessing

    if os.path.lexists(args.output) and not args.force:  # before the minutes of scoring
        raise OutputExistsError(f"{args.output} exists; pass --force to replace it")
    data = _resolve_data(args)
    if data["spatial_dims"] != 2:
        raise InvalidInputError("unet-export postprocess chooses on 2D held-out slices; this data is 3D")
    images, labels = data["images"][data["val"]], data["labels"][data["val"]]
    try:
        seeds = [float(v) for v in args.seed_thresholds.split(",")]
    except ValueError:
        raise InvalidInputError(f"--seed-thresholds {args.seed_thresholds!r}: give numbers separated by commas") from None
    postprocessing, record = select_postprocessing(args.model, images, labels, seeds=seeds, threads=args.threads,
                                                   samples=f"{Path(data['images_path']).name} samples {_ranges(data['val'])}")
    path = write_postprocessing(args.model, args.output, postprocessing, overwrite=args.force)
    print(json.dumps({"output": str(path), "boundaries": postprocessing.boundaries,
                      "seed_threshold": postprocessing.seed_threshold, **record}, indent=2))
    return 0


# -- bioimageio ----------------------------------------------------------------------------------
def cmd_bioimageio(args) -> int:
    from .bioimageio import REPRODUCIBILITY_TOLERANCE, export_package

    try:
        pixel_size = tuple(float(v) for v in args.pixel_size.split(",")) if args.pixel_size else None
    except ValueError:
        raise InvalidInputError(f"--pixel-size {args.pixel_size!r}: give numbers separated by commas") from None
    path = export_package(
        args.model, args.output, sample=args.sample, name=args.name, description=args.description,
        authors=tuple(args.authors or ("unet-sdk",)), license=args.license, pixel_size=pixel_size, unit=args.unit,
        overwrite=args.force,
    )
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, reproducibility tolerance {REPRODUCIBILITY_TOLERANCE}; "
          f"check it with `bioimageio test {path}`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-export", description="Train U-Nets and export them to ONNX.")
    add_verbosity_arguments(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a U-Net (checkpoints in --out)")
    _data_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="directory for best.pt / last.pt")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--keep-epochs", action="store_true",
                   help="also keep every epoch's checkpoint as OUT/epoch_<step>.pt (default: best and last only)")
    p.add_argument("--steps", type=int, default=10000, help="optimizer steps in all (default: %(default)s)")
    p.add_argument("--epoch-steps", type=int, default=500,
                   help="steps between validations and checkpoints (default: %(default)s)")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time (default: no limit)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per step (default: %(default)s)")
    p.add_argument("--tile", type=int, default=256,
                   help="training tile side; with valid padding the input side, rounded up to one the "
                        "network accepts (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="Adam learning rate, decayed by a cosine schedule (default: %(default)s)")
    p.add_argument("--depth", type=int, default=4, help="poolings between input and bottleneck (default: %(default)s)")
    p.add_argument("--base-features", type=int, default=16,
                   help="feature maps of the first level, doubled per level (default: %(default)s)")
    p.add_argument("--padding", choices=["same", "valid"], default="same",
                   help="same: zero-padded convolutions, output = input size; valid: the paper's unpadded "
                        "ones, output smaller by the margin (trained on mirrored context) (default: %(default)s)")
    p.add_argument("--no-batch-norm", action="store_true", help="no batch normalisation after convolutions")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout rate at the bottleneck (default: %(default)s)")
    p.add_argument("--dice-weight", type=float, default=0.0,
                   help="add this times the soft Dice loss to the weighted cross-entropy (default: %(default)s)")
    p.add_argument("--no-augment", action="store_true", help="no elastic, flip or intensity augmentation")
    p.add_argument("--seed", type=int, default=0, help="random seed of weights, tiles and augmentation")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when torch has one, else the CPU), cpu, cuda or cuda:N; on CUDA "
                        "training runs in mixed precision (default: %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("onnx", help="export a checkpoint to one self-describing ONNX file")
    p.add_argument("checkpoint", type=Path, help="best.pt or last.pt written by `unet-export train`")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="weights and activations (fp16: for GPUs) (default: %(default)s)")
    p.add_argument("--tile-size", type=int, help="recommended inference tile side (default: training tile)")
    p.add_argument("--tile-overlap", type=float, default=0.25,
                   help="recommended overlap fraction of neighbouring tiles (default: %(default)s)")
    p.add_argument(
        "--blend", choices=BLEND_MODES, default="gaussian",
        help="recommended merge: weighted blending, or 'none' = overlap-tile with halo cropping",
    )
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--explain", action="store_true",
                   help="add the Seg-Grad-CAM explanation graphs (unet-sdk explain; fp32 only)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT")
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser("average", help="average the weights of checkpoints of one run (SWA), re-measure batch norm")
    p.add_argument("checkpoints", type=Path, nargs="+", help="epoch checkpoints of one run (--keep-epochs)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the averaged checkpoint (.pt) to write")
    _data_arguments(p)
    p.add_argument("--bn-batches", type=int, default=50,
                   help="training batches that re-measure the batch-norm statistics (default: %(default)s)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("quantize", help="int8 static QDQ quantization calibrated on training tiles")
    p.add_argument("model", type=Path, help="fp32 ONNX file written by `unet-export onnx`")
    p.add_argument("-o", "--output", type=Path, required=True, help="the int8 .onnx file to write")
    _data_arguments(p)
    p.add_argument("--calibration-tiles", type=int, default=32,
                   help="training tiles that set the activation ranges (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the calibration tiles")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("postprocess", help="choose the post-processing on held-out data and store it in the model")
    p.add_argument("model", type=Path, help="the .onnx model")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write (the model itself with --force)")
    _data_arguments(p)
    p.add_argument("--seed-thresholds", default="0.5,0.6,0.7,0.8,0.9",
                   help="watershed seed thresholds to try, comma-separated (default: %(default)s)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT")
    p.set_defaults(func=cmd_postprocess)

    p = sub.add_parser("evaluate", help="held-out ISBI metrics and speed of an ONNX model (ONNX Runtime)")
    p.add_argument("model", type=Path, help="the .onnx model to score")
    _data_arguments(p)
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the held-out samples")
    p.add_argument("--record", action="store_true",
                   help="write the measured scores into the model's training record (held_out_metrics), "
                        "weights and digest unchanged")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bioimageio", help="a BioImage Model Zoo package (rdf.yaml 0.5, test tensors, cover, docs)")
    p.add_argument("model", nargs="?", help="an .onnx model or an embedded one (default: the embedded ISBI 2012 model)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the package, a .zip")
    p.add_argument("--sample", type=Path, help="image the test tensors and the cover are cut from")
    p.add_argument("--name", help="package name (default: from the training data)")
    p.add_argument("--description", help="one-paragraph description (default: from the model's metadata)")
    p.add_argument("--author", action="append", dest="authors", help="an author (repeatable; default: unet-sdk)")
    p.add_argument("--license", default="MIT", help="SPDX license id (default: MIT)")
    p.add_argument("--pixel-size", help="pixel size per space axis, e.g. 4,4 (y,x) or 50,4,4 (z,y,x)")
    p.add_argument("--unit", help="unit of --pixel-size, e.g. nanometer or micrometer")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT")
    p.set_defaults(func=cmd_bioimageio)
    for subparser in sub.choices.values():
        add_verbosity_arguments(subparser, top_level=False)
    return parser


# what each optional package of the `train` extra is needed for
TRAIN_EXTRA_PACKAGES = ("torch", "onnx", "onnxscript", "scipy")


def main(argv: list[str] | None = None) -> int:
    from sdk.cli.main import run_parsed

    args = build_parser().parse_args(argv)
    try:
        return run_parsed(
            args,
            prog="unet-export",
            errors=(UnetSdkError, ValueError, FileExistsError),
            log_format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in TRAIN_EXTRA_PACKAGES:
            raise
        print(f"unet-export {args.command}: error: needs the '{exc.name.split('.')[0]}' package, which the "
              "'train' extra installs: pip install 'unet-sdk[train]'", file=sys.stderr)
        return 2
