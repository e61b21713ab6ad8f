"""Training losses: the U-Net paper's weighted pixel-wise cross-entropy (with its weight map) and Dice.

Weight map (Ronneberger et al. 2015, eq. 2)::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

``w_c`` balances the class frequencies (``w_c = N / (K * N_k)`` for a pixel of class ``k``, ``N`` pixels,
``K`` classes present); ``d1``/``d2`` are the distances to the nearest and second-nearest object
(instance). The border term is applied to background pixels only, i.e. the thin gaps between touching
objects that the network must learn to keep open; inside an object ``d1 = 0`` and the term would only
blur the object's own edge. Defaults ``w0 = 10``, ``sigma = 5`` px are the paper's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

BORDER_W0 = 10.0
BORDER_SIGMA = 5.0


def class_balance_weights(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """``w_c`` per pixel: ``N / (K * N_k)`` for class ``k`` (``K`` = classes present); float32."""
    counts = np.bincount(classes.ravel(), minlength=num_classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(num_classes)
    per_class[present] = classes.size / (present.sum() * counts[present])
    return per_class[classes].astype(np.float32)


def border_weight_map(
    instances: np.ndarray, *, w0: float = BORDER_W0, sigma: float = BORDER_SIGMA, cutoff: float | None = None
) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on background pixels (``instances == 0``), else 0.

    ``instances`` is an integer label image (2D or 3D, 0 = background). Distances are Euclidean, in pixels.
    Each object's distance transform is computed only in its bounding box grown by ``cutoff``
    (default ``5 * sigma``): pixels farther than that from an object contribute at most
    ``w0 * exp(-12.5)`` (< 4e-5 for the defaults) and are treated as infinitely far, which keeps the map
    linear in the number of objects instead of quadratic.
    """
    instances = np.asarray(instances)
    cutoff = 5.0 * sigma if cutoff is None else float(cutoff)
    margin = int(np.ceil(cutoff))
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    for label, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, instances.shape)
        )
        dist = ndimage.distance_transform_edt(instances[grown] != label)
        near, second = d1[grown], d2[grown]
        d2[grown] = np.minimum(second, np.maximum(near, dist))
        d1[grown] = np.minimum(near, dist)
    total = d1 + d2
    weights = np.where(np.isfinite(total), w0 * np.exp(-(total**2) / (2.0 * sigma**2)), 0.0)
    weights[instances != 0] = 0.0
    return weights.astype(np.float32)


def unet_weight_map(
    classes: np.ndarray,
    instances: np.ndarray,
    *,
    num_classes: int,
    w0: float = BORDER_W0,
    sigma: float = BORDER_SIGMA,
) -> np.ndarray:
    """The paper's ``w(x) = w_c(x) + border term``; ``classes`` holds class indices per pixel."""
    return class_balance_weights(classes, num_classes) + border_weight_map(instances, w0=w0, sigma=sigma)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean over pixels of ``w(x) * -log softmax(logits)[target(x)]`` (unweighted if ``weights`` is None).

    ``logits`` (N, K, *spatial), ``target`` (N, *spatial) int64 class indices, ``weights`` (N, *spatial).
    """
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    if weights is not None:
        per_pixel = per_pixel * weights
    return per_pixel.mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, foreground_class: int = 1, eps: float = 1.0) -> torch.Tensor:
    """``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)`` for the foreground class's softmax probability."""
    prob = torch.softmax(logits, dim=1)[:, foreground_class]
    truth = (target == foreground_class).to(prob.dtype)
    intersection = (prob * truth).sum()
    return 1.0 - (2.0 * intersection + eps) / (prob.sum() + truth.sum() + eps)


class UNetLoss(torch.nn.Module):
    """Weighted cross-entropy (the paper's loss) plus ``dice_weight`` times the soft Dice loss."""

    def __init__(self, *, dice_weight: float = 0.0, foreground_class: int = 1) -> None:
        super().__init__()
        if dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        self.dice_weight = dice_weight
        self.foreground_class = foreground_class

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        loss = weighted_cross_entropy(logits, target, weights)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target, foreground_class=self.foreground_class)
        return loss
