"""Pictures of an evaluation (needs the ``plots`` extra, matplotlib).

* :func:`plot_threshold_curves`: ISBI warping, Rand and pixel error against the threshold (pooled over
  the set, plus each item faintly), with the best thresholds marked.
* :func:`plot_error_overlay`: where the topological errors are, from the warping classification
  (:attr:`sdk.metrics.WarpingResult.classification`): splits, mergers, hole additions/deletions and
  object additions/deletions drawn in colour over the image, one legend entry per kind with its pixel count.
* :func:`write_plots`: both for a report: the curves, and overlays of the worst items.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot state, safe in threads) and
written atomically as PNG.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import RuntimeUnavailableError
from ..atomic import atomic_output
from .inputs import SideSpec, make_tasks, prepare_proposal, prepare_truth, split_items
from .report import Report


# Classification codes of the warping error (sdk.metrics.ErrorType) -> label, RGB colour.
ERROR_STYLES = {
    1: ("split", (0.90, 0.10, 0.10)),
    2: ("merger", (0.10, 0.35, 1.00)),
    3: ("hole addition", (1.00, 0.60, 0.00)),
    4: ("hole deletion", (0.00, 0.85, 0.85)),
    5: ("object addition", (0.85, 0.10, 0.85)),
    6: ("object deletion", (0.10, 0.80, 0.10)),
}
CURVES = (("warping", "warping_error"), ("rand", "rand_error"), ("pixel", "pixel_error"))
MAX_FAINT_CURVES = 200  # per-item curves drawn behind the pooled one (an even sample of large sets)


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RuntimeUnavailableError("plots need matplotlib: pip install 'unet-sdk[plots]'") from exc
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike, overwrite: bool) -> Path:
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def curve_points(table: Sequence[dict[str, float]], score: str) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds, errors)`` of ``score`` ("warping", "rand" or "pixel") from an ISBI per-threshold
    table (error = 1 - F-score for Rand and pixel); rows outside the score's sweep are left out."""
    points = []
    for row in table:
        error = row["warping_error"] if score == "warping" else 1.0 - row[f"{score}_fscore"]
        if not math.isnan(error):
            points.append((row["threshold"], error))
    th, err = (zip(*points)) if points else ((), ())
    return np.asarray(th, dtype=float), np.asarray(err, dtype=float)


def plot_threshold_curves(report: Report, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Error against threshold for the ISBI warping, Rand and pixel errors (needs ``"isbi2012"``): the
    pooled curve with its best threshold, and per-item curves faintly behind it."""
    fig = _figure(11, 3.6)
    axes = fig.subplots(1, 3)
    best = report.best_thresholds
    for ax, (score, title) in zip(axes, CURVES):
        for item in report.items[:: max(1, len(report.items) // MAX_FAINT_CURVES)]:
            th, err = curve_points(item.table, score)
            ax.plot(th, err, color="0.75", linewidth=0.6)
        th, err = curve_points(report.pooled_table, score)
        ax.plot(th, err, color="C0", linewidth=2, marker="o", markersize=3, label="pooled (ISBI)")
        if score in best:
            ax.axvline(best[score], color="C3", linestyle="--", linewidth=1,
                       label=f"best {best[score]:.1f}: {report.pooled[f'{score}_error']:.4g}")
        ax.set_title(title.replace("_", " "))
        # Fiji's warping sweep runs 0.0..0.9, the Rand and pixel sweeps 0.0..1.0
        ax.set_xlabel("threshold (Fiji sweeps warping to 0.9 only)" if score == "warping" else "threshold")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("error")
    fig.suptitle(f"{len(report.items)} items")
    fig.tight_layout()
    return _save(fig, path, overwrite)


def error_overlay_rgb(image: np.ndarray, classification: np.ndarray) -> np.ndarray:
    """An RGB float image: ``image`` in grey with each error pixel (grown to 3x3 so single pixels show)
    painted in its kind's colour."""
    grey = image.astype(np.float64)
    span = grey.max() - grey.min()
    grey = (grey - grey.min()) / span if span > 0 else np.zeros_like(grey)
    rgb = np.repeat((0.25 + 0.5 * grey)[..., None], 3, axis=2)
    for code, (_, colour) in ERROR_STYLES.items():
        mask = _grow(classification == code)
        rgb[mask] = colour
    return rgb


def _grow(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation by shifted ORs (numpy only)."""
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:-1, :] |= mask[1:, :]
    rows = grown.copy()
    grown[:, 1:] |= rows[:, :-1]
    grown[:, :-1] |= rows[:, 1:]
    return grown


def plot_error_overlay(
    truth: np.ndarray,
    proposal: np.ndarray,
    path: str | os.PathLike,
    *,
    threshold: float = 0.5,
    radius: int = 20,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """Draw where the warping errors of a 2D pair are: truth and proposal side by side with the errors
    coloured by kind (split, merger, hole addition/deletion, object addition/deletion)."""
    from . import warping_error

    result = warping_error(truth, proposal, threshold=threshold, radius=radius)
    classification = np.asarray(result.classification)
    fig = _figure(12, 6.4)
    left, right = fig.subplots(1, 2)
    left.imshow(error_overlay_rgb(truth > 0, classification), interpolation="nearest")
    left.set_title("ground truth + errors")
    right.imshow(error_overlay_rgb(np.asarray(proposal, dtype=np.float64), classification), interpolation="nearest")
    right.set_title(f"proposal (threshold {threshold:.2f}) + errors")
    for ax in (left, right):
        ax.set_axis_off()
    from matplotlib.patches import Patch

    handles = [
        Patch(color=colour, label=f"{label}: {int(np.count_nonzero(classification == code))} px")
        for code, (label, colour) in ERROR_STYLES.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8)
    # every number in the title is taken at the one threshold drawn
    fig.suptitle(f"{title}: warping error {result.error:.4g} at threshold {threshold:.2f}: "
                 f"{int(result.mismatches)} px mismatched after warping, "
                 f"{int(result.splits) + int(result.mergers)} of them splits/mergers".lstrip(": "))
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return _save(fig, path, overwrite)


def write_plots(
    report: Report,
    truth: SideSpec,
    proposal: SideSpec,
    directory: str | os.PathLike,
    *,
    worst: int = 3,
    proposal_kind: str = "auto",
    radius: int = 20,
    threshold: float | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``curves.png`` (when the report has ISBI tables) and error overlays of the ``worst`` items
    (highest warping error) into ``directory``; returns the paths written.

    Overlays use the pooled best warping threshold when there is one, else ``threshold`` (default 0.5).
    A 3D item is shown at its slice with the most errors.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if report.pooled_table:
        written.append(plot_threshold_curves(report, directory / "curves.png", overwrite=overwrite))
    if threshold is None:
        threshold = report.best_thresholds.get("warping", 0.5)
    key = next((k for k in ("warping_error", "warp_error", "vi", "adapted_rand_error") if k in report.mean), None)
    if key is None or worst <= 0:
        return written
    ranked = sorted(report.items, key=lambda r: -_or_zero(r.scores.get(key)))[:worst]
    wanted = {r.name for r in ranked}
    tasks, _ = make_tasks(truth, proposal, mode=report.mode)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for task in tasks:
        if task.name in wanted or any(n.startswith(task.name + "[") for n in wanted):
            for name, t, p in split_items(task, mode=report.mode):
                if name in wanted:
                    arrays[name] = (t, p)
    for rank, result in enumerate(ranked, 1):
        if result.name not in arrays:
            continue
        t, p = arrays[result.name]
        t = prepare_truth(t, name=result.name)
        p, _ = prepare_proposal(p, kind=proposal_kind, name=result.name)
        if t.ndim == 3:
            t, p = _worst_slice(t, p, threshold=threshold, radius=radius)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in result.name)
        written.append(
            plot_error_overlay(
                t, p, directory / f"overlay_{rank:02d}_{safe}.png", threshold=threshold, radius=radius,
                title=result.name, overwrite=overwrite,
            )
        )
    return written


def _or_zero(value: Any) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)


def _worst_slice(truth: np.ndarray, proposal: np.ndarray, *, threshold: float, radius: int):
    from . import warping_error

    classification = np.asarray(warping_error(truth, proposal, threshold=threshold, radius=radius).classification)
    z = int(np.argmax(np.count_nonzero(classification.reshape(len(classification), -1), axis=1)))
    return truth[z], proposal[z]
