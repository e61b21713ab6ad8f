"""Average the weights of several checkpoints of one run (``unet-export average``).

Stochastic weight averaging (Izmailov et al., UAI 2018, arXiv:1803.05407): the mean of the weights of the
last epochs of a run at a low learning rate lies nearer the centre of the flat region they wander in, and
usually generalises better than any one of them; it also removes the epoch-to-epoch noise of selecting one
checkpoint by a score measured on a few held-out slices. Batch normalisation statistics of averaged weights
are not the average of the statistics, so they are measured again: the averaged network runs in training
mode (no gradients) over training tiles, with a cumulative moving average. The result is scored on the
held-out samples like an epoch of training and saved as a checkpoint that ``unet-export onnx`` exports.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sdk.errors import InvalidInputError

from .data import Sample, TileSampler
from .losses import UNetLoss
from .train import TrainConfig, _save, load_checkpoint, validate

logger = logging.getLogger(__name__)


def average_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The elementwise mean of floating-point tensors; integer buffers (batch counts) from the last state."""
    out = {}
    for name, last in states[-1].items():
        if torch.is_floating_point(last):
            out[name] = torch.stack([s[name].to(torch.float64) for s in states]).mean(0).to(last.dtype)
        else:
            out[name] = last.clone()
    return out


def recompute_batch_norm(model: torch.nn.Module, sampler: TileSampler, *, batches: int, batch_size: int,
                         seed: int = 0) -> None:
    """Measure the batch-norm running statistics of ``model`` afresh on ``batches`` of training tiles."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    rng = np.random.default_rng(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            x, _, _ = sampler.batch(rng, batch_size)
            model(torch.from_numpy(x))
    model.eval()


def average_checkpoints(
    paths: Sequence[str | Path],
    out: str | Path,
    train_samples: list[Sample],
    val_samples: list[Sample],
    *,
    bn_batches: int = 50,
    overwrite: bool = False,
) -> dict:
    """Average the checkpoints at ``paths`` (one architecture), re-measure batch norm on ``train_samples``
    (unaugmented tiles of the run's tile size), score on ``val_samples`` and save to ``out``. Returns the
    checkpoint dict written; its ``best`` record holds the held-out scores and the steps averaged."""
    if len(paths) < 2:
        raise InvalidInputError("give at least two checkpoints to average")
    if Path(out).exists() and not overwrite:
        from sdk.errors import OutputExistsError

        raise OutputExistsError(f"{out} exists; pass --force to replace it")
    checkpoints = sorted((load_checkpoint(p) for p in paths), key=lambda c: c["step"])
    last = checkpoints[-1]
    config = TrainConfig.from_dict(last["config"])
    model = config.model()
    if any(TrainConfig.from_dict(c["config"]).model().config != model.config for c in checkpoints):
        raise InvalidInputError("the checkpoints hold different architectures; average checkpoints of one run")
    if config.padding == "valid":
        raise InvalidInputError("averaging re-measures batch norm on same-padding tiles; this run used valid padding")
    model.load_state_dict(average_state([c["model"] for c in checkpoints]))
    recompute_batch_norm(model, TileSampler(train_samples, config.tile, None), batches=bn_batches,
                         batch_size=config.batch_size, seed=config.seed)
    steps = [c["step"] for c in checkpoints]
    record = {"step": last["step"], "train_seconds": last["train_seconds"], "averaged_steps": steps}
    if val_samples:
        loss_fn = UNetLoss(dice_weight=config.dice_weight, foreground_class=config.foreground_class)
        record.update(validate(model, val_samples, loss_fn, foreground_class=config.foreground_class))
    logger.info("average of steps %s: %s", steps, record)
    payload = {
        "config": config.to_dict(),
        "model": model.state_dict(),
        "step": last["step"],
        "train_seconds": last["train_seconds"],
        "history": list(last["history"]) + [record],
        "best": record,
        "hardware": last.get("hardware", ""),
        "averaged_from": [str(p) for p in paths],
    }
    _save(Path(out), payload, overwrite=overwrite)
    return payload
