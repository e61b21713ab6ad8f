"""The training loop: Adam on random augmented tiles, per-epoch validation with the real ISBI 2012 metrics.

An *epoch* here is ``epoch_steps`` optimisation steps (tiles are drawn at random, so there is no natural
pass over the data). After every epoch the held-out samples are segmented whole, and scored with
:func:`sdk.metrics.isbi2012` (warping, Rand and pixel error, the challenge's metrics) and the validation
loss. ``last.pt`` is written after every epoch (resume from it), ``best.pt`` whenever the validation Rand
error improves. Checkpoints hold only tensors and plain Python values, so they load with
``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sdk.errors import InvalidInputError
from sdk.atomic import atomic_output
from sdk.model_metadata import Normalization

from .augment import Augmenter
from .data import Sample, TileSampler, mirrored_window
from .losses import UNetLoss
from .unet import UNet

logger = logging.getLogger(__name__)

SELECTION_METRIC = "rand_error"


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored in every checkpoint)."""

    spatial_dims: int = 2
    in_channels: int = 1
    class_names: tuple[str, ...] = ("background", "foreground")
    foreground_class: int = 1
    depth: int = 4
    base_features: int = 16
    padding: str = "same"
    batch_norm: bool = True
    dropout: float = 0.0
    tile: tuple[int, ...] = (256, 256)
    batch_size: int = 4
    steps: int = 1000
    epoch_steps: int = 250
    max_minutes: float | None = None
    lr: float = 1e-3
    min_lr_fraction: float = 0.05
    weight_decay: float = 0.0
    dice_weight: float = 0.0
    augment: bool = True
    seed: int = 0
    threads: int | None = None
    normalization: dict = field(default_factory=lambda: Normalization("per_image_zscore").to_dict())
    data: dict = field(default_factory=dict)

    def model(self) -> UNet:
        return UNet(
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            num_classes=len(self.class_names),
            depth=self.depth,
            base_features=self.base_features,
            padding=self.padding,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
        )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["class_names"] = list(self.class_names)
        values["tile"] = list(self.tile)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        values = dict(values)
        values["class_names"] = tuple(values["class_names"])
        values["tile"] = tuple(values["tile"])
        return cls(**values)


def training_device(device: str = "auto") -> torch.device:
    """Where to train: ``"auto"`` is the first CUDA GPU when torch can use one, else the CPU; ``"cpu"``;
    ``"cuda"`` / ``"cuda:N"`` (:class:`~sdk.errors.InvalidInputError` if torch cannot use that GPU)."""
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    index = name[len("cuda:"):] if name.startswith("cuda:") else ("0" if name == "cuda" else None)
    if index is None or not index.isdigit():
        raise InvalidInputError(f"device {device!r}: give auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = "this torch build has no CUDA" if torch.version.cuda is None else "torch sees no CUDA GPU"
        raise InvalidInputError(f"device {device!r}: {build}; train with --device cpu (or auto)")
    if int(index) >= torch.cuda.device_count():
        raise InvalidInputError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
    return torch.device(f"cuda:{int(index)}")


def _autocast(device: torch.device):
    """Mixed precision on CUDA (bfloat16 where the GPU has it, else float16 with loss scaling); none on
    the CPU, where it would only cost conversions. The loss itself is taken in float32."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return torch.autocast("cuda", dtype=dtype), scaler


def hardware_description(device: torch.device | None = None) -> str:
    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__} (CUDA {torch.version.cuda}, mixed precision)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def _memory_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def _batch_tensor(image: np.ndarray, spatial_dims: int, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)).to(device)
    return x.contiguous(memory_format=_memory_format(spatial_dims))


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def validate(model: UNet, samples: list[Sample], loss_fn: UNetLoss, *, foreground_class: int = 1) -> dict[str, float]:
    """Validation loss and the ISBI 2012 metrics (:func:`sdk.metrics.isbi2012`) over ``samples``.

    Each sample is segmented whole: a 'same'-padding model keeps its size; a 'valid'-padding one gets
    the sample with mirrored context (its margin, plus what makes the side one it accepts) and its output
    is cropped back to the sample. 2D samples are scored as one stack (Fiji's slice-by-slice semantics,
    counts summed over slices); 3D volumes as stacks of slices.
    """
    from sdk.metrics import isbi2012

    model.eval()
    probabilities, losses = [], []
    with torch.no_grad():
        for s in samples:
            logits = _whole_sample_logits(model, s.image)
            probabilities.append(torch.softmax(logits, dim=1)[0, foreground_class].cpu().numpy())
            target = torch.from_numpy(s.classes[None]).to(logits.device)
            weights = torch.from_numpy(s.weights[None]).to(logits.device)
            losses.append(float(loss_fn(logits, target, weights)))
    truth = np.stack([(s.classes == foreground_class).astype(np.uint8) for s in samples])
    proposal = np.stack(probabilities).astype(np.float32)
    truth, proposal = truth.reshape(-1, *truth.shape[-2:]), proposal.reshape(-1, *proposal.shape[-2:])
    scores = isbi2012(truth, proposal)
    return {
        "val_loss": float(np.mean(losses)),
        "warping_error": float(scores.warping_error),
        "rand_error": float(scores.rand_error),
        "pixel_error": float(scores.pixel_error),
    }


def _whole_sample_logits(model: UNet, image: np.ndarray) -> torch.Tensor:
    """Logits (1, K, *spatial) of a whole (C, *spatial) sample."""
    if model.padding == "same":
        return model(_batch_tensor(image, model.spatial_dims, _device_of(model)))
    rules = model.size_rules()
    margin = rules.output_margin
    spatial = image.shape[1:]
    sides = [accepted_side(rules, n + 2 * margin) for n in spatial]
    window = mirrored_window(image, tuple(-margin for _ in spatial), tuple(sides))
    logits = model(_batch_tensor(window, model.spatial_dims, _device_of(model)))
    return logits[(slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)]


def accepted_side(rules, n: int) -> int:
    """The smallest input side >= ``n`` the network accepts."""
    n = max(n, rules.min_input_size)
    return n + (-(n - rules.input_size_offset)) % rules.input_size_multiple


def _lr_at(config: TrainConfig, step: int, train_seconds: float) -> float:
    """Cosine decay from ``lr`` to ``lr * min_lr_fraction`` over ``steps`` or ``max_minutes``, whichever
    runs out first (so a time-limited run on a slow or busy machine still ends at the low rate)."""
    progress = step / max(config.steps, 1)
    if config.max_minutes:
        progress = max(progress, train_seconds / (60.0 * config.max_minutes))
    progress = min(progress, 1.0)
    floor = config.lr * config.min_lr_fraction
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * progress))


def _save(path: Path, payload: dict[str, Any], *, overwrite: bool = True) -> None:
    with atomic_output(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train` (tensors and plain values only: ``weights_only=True``).

    Raises :class:`~sdk.errors.InvalidInputError` naming the file if it is missing or not a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise InvalidInputError(f"{path}: not a readable unet-export checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(checkpoint, dict) or not {"config", "model"} <= checkpoint.keys():
        raise InvalidInputError(f"{path}: not a unet-export checkpoint (no 'config' and 'model' entries)")
    return checkpoint


def model_from_checkpoint(path: str | Path) -> tuple[UNet, dict[str, Any]]:
    """Rebuild the trained :class:`UNet` (eval mode) and return it with the checkpoint dict."""
    checkpoint = load_checkpoint(path)
    config = TrainConfig.from_dict(checkpoint["config"])
    model = config.model()
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return model, checkpoint


def train(
    config: TrainConfig,
    train_samples: list[Sample],
    val_samples: list[Sample],
    out_dir: str | Path,
    *,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    device: str = "auto",
    keep_epochs: bool = False,
) -> dict[str, Any]:
    """Train, validating every ``epoch_steps``; return the final checkpoint dict (also in ``out_dir``).

    ``resume=True`` continues from ``out_dir/last.pt``. ``on_step(step, loss)`` is called after every
    step (progress display). Stops at ``config.steps`` or after ``config.max_minutes`` of training.
    ``device`` (see :func:`training_device`) is where it runs: on CUDA with mixed precision. Checkpoints
    load on any device. ``keep_epochs=True`` also keeps every epoch's checkpoint as
    ``epoch_<step>.pt`` (for choosing or averaging checkpoints after the run with other criteria).
    """
    where = training_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = config.model().to(where, memory_format=_memory_format(config.spatial_dims))
    autocast, scaler = _autocast(where)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = UNetLoss(dice_weight=config.dice_weight, foreground_class=config.foreground_class)
    augmenter = Augmenter(spatial_dims=config.spatial_dims) if config.augment else None
    margin = model.size_rules().output_margin if config.padding == "valid" else 0
    tile = tuple(accepted_side(model.size_rules(), t) for t in config.tile) if margin else config.tile
    if tile != tuple(config.tile):
        logger.info("training tile %s -> %s: the nearest input side the valid-padding network accepts",
                    config.tile, tile)
    sampler = TileSampler(train_samples, tile, augmenter, margin=margin)
    step, elapsed, history, best = 0, 0.0, [], None
    if resume:
        state = load_checkpoint(out_dir / "last.pt")
        if TrainConfig.from_dict(state["config"]).model().config != model.config:
            raise ValueError(f"{out_dir / 'last.pt'} holds a different architecture; cannot resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, history, best = state["step"], state["train_seconds"], state["history"], state["best"]
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        logger.info("resumed from %s at step %d", out_dir / "last.pt", step)

    def checkpoint() -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "train_seconds": elapsed,
            "history": history,
            "best": best,
            "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "hardware": hardware_description(where),
        }

    budget = None if config.max_minutes is None else 60.0 * config.max_minutes
    while step < config.steps and (budget is None or elapsed < budget):
        model.train()
        started = time.perf_counter()
        epoch_losses = []
        while step < config.steps and (budget is None or elapsed + time.perf_counter() - started < budget):
            x, y, w = sampler.batch(rng, config.batch_size)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(config, step, elapsed + time.perf_counter() - started)
            xt = torch.from_numpy(x).to(where).contiguous(memory_format=_memory_format(config.spatial_dims))
            with autocast:
                logits = model(xt)
            loss = loss_fn(logits.float(), torch.from_numpy(y).to(where), torch.from_numpy(w).to(where))
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            step += 1
            epoch_losses.append(loss.item())
            if on_step is not None:
                on_step(step, epoch_losses[-1])
            if step % config.epoch_steps == 0:
                break
        elapsed += time.perf_counter() - started
        record = {"step": step, "train_seconds": round(elapsed, 1), "train_loss": float(np.mean(epoch_losses))}
        if val_samples:
            record.update(validate(model, val_samples, loss_fn, foreground_class=config.foreground_class))
        history.append(record)
        logger.info("epoch %d: %s", len(history), json.dumps(record))
        improved = val_samples and (best is None or record[SELECTION_METRIC] < best[SELECTION_METRIC])
        if improved or not val_samples:
            best = record
            _save(out_dir / "best.pt", checkpoint())
        _save(out_dir / "last.pt", checkpoint())
        if keep_epochs:
            _save(out_dir / f"epoch_{step:06d}.pt", checkpoint())
    return load_checkpoint(out_dir / "best.pt")
