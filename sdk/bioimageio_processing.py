"""BioImage Model Zoo pre- and postprocessing: our normalisation written as zoo steps (for export), and zoo
steps read from an rdf and applied with the zoo's own formulas (for import).

The zoo's operations are those of bioimageio.spec 0.5 (``zero_mean_unit_variance``, ``scale_range``,
``fixed_zero_mean_unit_variance``, ``scale_linear``, ``clip``, ``sigmoid``, ``ensure_dtype``; postprocessing
``sigmoid``/``softmax``); anything else is a :class:`~sdk.errors.ModelError` naming it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ModelError
from .model_metadata import Normalization

FIXED_ZMUV_EPS = 1e-6  # bioimageio.core divides fixed_zero_mean_unit_variance by std + 1e-6


# -- our metadata -> zoo processing (for export/bioimageio.py) ----------------------------
def preprocessing_for(normalization: Normalization, space_axes: Sequence[str]) -> list[dict[str, Any]]:
    """The zoo preprocessing steps that compute ``normalization`` (per image and channel).

    ``per_image_zscore`` -> ``zero_mean_unit_variance``, ``per_image_minmax`` -> ``scale_range`` 0-100 %,
    ``percentile`` -> ``scale_range`` (+ ``clip``), ``fixed`` -> ``fixed_zero_mean_unit_variance``.
    The zoo adds ``eps`` to the spread where we take ``max(spread, eps)``: the two agree to a relative
    ``eps / spread`` (1e-6 / std), far inside the package's reproducibility tolerance. An ``eps`` the
    zoo does not accept (> 0.1) is a :class:`ModelError`.
    """
    axes = list(space_axes)
    eps = float(normalization.eps)
    if normalization.mode != "fixed" and not 0 < eps <= 0.1:
        raise ModelError(
            f"normalization eps={eps:g} has no BioImage Model Zoo equivalent (the zoo accepts 0 < eps <= 0.1)"
        )
    mode = normalization.mode
    if mode == "per_image_zscore":
        steps = [{"id": "zero_mean_unit_variance", "kwargs": {"axes": axes, "eps": eps}}]
    elif mode in ("per_image_minmax", "percentile"):
        low, high = (0.0, 100.0) if mode == "per_image_minmax" else (float(normalization.low), float(normalization.high))
        if high <= 1:
            raise ModelError(
                f"normalization 'percentile' with high={high:g} has no BioImage Model Zoo equivalent "
                "(scale_range needs max_percentile > 1)"
            )
        steps = [{
            "id": "scale_range",
            "kwargs": {"axes": axes, "min_percentile": low, "max_percentile": high, "eps": eps},
        }]
    elif mode == "fixed":
        steps = [{"id": "fixed_zero_mean_unit_variance", "kwargs": {"mean": float(normalization.mean), "std": float(normalization.std)}}]
    else:
        raise ModelError(f"normalization mode {mode!r} has no BioImage Model Zoo equivalent")
    if normalization.clip_low is not None or normalization.clip_high is not None:
        clip = {k: float(v) for k, v in (("min", normalization.clip_low), ("max", normalization.clip_high)) if v is not None}
        steps.append({"id": "clip", "kwargs": clip})
    return steps


def postprocessing_for(activation: str) -> list[dict[str, Any]]:
    """The zoo postprocessing of our ``output_activation`` (the network's output is taken as is for "none")."""
    return {
        "none": [],
        "sigmoid": [{"id": "sigmoid"}],
        "softmax": [{"id": "softmax", "kwargs": {"axis": "channel"}}],
    }[activation]


# -- zoo preprocessing, applied with the zoo's formulas ------------------------------------------
@dataclass(frozen=True)
class ZooStep:
    """One preprocessing step of an rdf: its ``id`` and ``kwargs``, resolved to our (C, *spatial) layout.

    ``reduce`` holds the image axes a statistic is taken over (channel 0, space 1..).
    """

    id: str
    kwargs: Mapping[str, Any]
    reduce: tuple[int, ...] = ()

    def needs_statistics(self) -> bool:
        return self.id in ("zero_mean_unit_variance", "scale_range") or (
            self.id == "clip" and ("min_percentile" in self.kwargs or "max_percentile" in self.kwargs)
        )

    def statistics(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.id == "zero_mean_unit_variance":
            return (
                x.mean(axis=self.reduce, keepdims=True, dtype=np.float64).astype(np.float32),
                x.std(axis=self.reduce, keepdims=True, dtype=np.float64).astype(np.float32),
            )
        # scale_range, or clip at percentiles
        q = [self.kwargs.get("min_percentile", 0.0), self.kwargs.get("max_percentile", 100.0)]
        lo, hi = np.percentile(x, q, axis=self.reduce, keepdims=True)  # "linear", as bioimageio.core
        return lo.astype(np.float32), hi.astype(np.float32)

    def apply(self, x: np.ndarray, stats: tuple[np.ndarray, ...] | None) -> np.ndarray:
        k = self.kwargs
        if self.id == "ensure_dtype":
            return x.astype(k["dtype"], copy=False)
        if self.id == "zero_mean_unit_variance":
            mean, std = stats
            return (x - mean) / (std + np.float32(k.get("eps", 1e-6)))
        if self.id == "scale_range":
            lo, hi = stats
            return (x - lo) / (hi - lo + np.float32(k.get("eps", 1e-6)))
        if self.id == "fixed_zero_mean_unit_variance":
            mean, std = _per_channel(k["mean"], x.ndim), _per_channel(k["std"], x.ndim)
            return (x - mean) / (std + np.float32(FIXED_ZMUV_EPS))
        if self.id == "scale_linear":
            return x * _per_channel(k.get("gain", 1.0), x.ndim) + _per_channel(k.get("offset", 0.0), x.ndim)
        if self.id == "clip":
            lo = stats[0] if stats is not None and "min_percentile" in k else k.get("min")
            hi = stats[1] if stats is not None and "max_percentile" in k else k.get("max")
            return np.clip(x, lo, hi)
        if self.id == "sigmoid":
            return 1.0 / (1.0 + np.exp(-x))
        raise AssertionError(self.id)  # preprocessing_steps admits only the ids above


def _per_channel(value: Any, ndim: int) -> np.ndarray:
    """A scalar, or per-channel values shaped to broadcast over (C, *spatial)."""
    array = np.asarray(value, dtype=np.float32)
    return array.reshape((-1,) + (1,) * (ndim - 1)) if array.ndim else array


@dataclass(frozen=True)
class ZooPreprocessing(Normalization):
    """A zoo input's preprocessing as a :class:`Normalization`: the steps in order, with statistics of
    the whole image (computed once, as :func:`sdk.inference.sliding_window_predict` does for ours), so
    every tile sees the values the whole image would."""

    mode: str = "bioimageio"
    steps: tuple[ZooStep, ...] = ()

    def __post_init__(self) -> None:  # the steps were checked by preprocessing_steps
        pass

    def statistics(self, image: np.ndarray) -> tuple:
        last = max((i for i, s in enumerate(self.steps) if s.needs_statistics()), default=-1)
        x, stats = image, []
        for i, step in enumerate(self.steps[: last + 1]):
            stats.append(step.statistics(x) if step.needs_statistics() else None)
            if i < last:  # a later step's statistics are taken on this step's output
                x = step.apply(x, stats[-1])
        return tuple(stats) + (None,) * (len(self.steps) - len(stats))

    def apply(self, image: np.ndarray, statistics: tuple | None = None) -> np.ndarray:
        stats = self.statistics(image) if statistics is None else statistics
        x = image
        for step, stat in zip(self.steps, stats):
            x = step.apply(x, stat)
        return np.asarray(x, dtype=np.float32)


# -- reading an rdf's processing -----------------------------------------------------------------
def activation_of(postprocessing: list, where: str) -> str:
    activation = "none"
    for step in postprocessing:
        op = step.get("id") if isinstance(step, dict) else None
        kwargs = step.get("kwargs") or {} if isinstance(step, dict) else {}
        if not isinstance(kwargs, dict):
            raise ModelError(f"{where}: postprocessing {op!r} kwargs are not a mapping")
        if op == "ensure_dtype" and kwargs.get("dtype") in ("float32", "float64"):
            continue
        if op in ("sigmoid", "softmax") and activation == "none":
            if op == "softmax" and kwargs.get("axis", "channel") != "channel":
                raise ModelError(f"{where}: softmax over axis {kwargs.get('axis')!r} is unsupported (channel only)")
            activation = op
            continue
        raise ModelError(
            f"{where}: postprocessing {op!r}{' ' + str(kwargs) if kwargs else ''} is unsupported (unet-sdk applies "
            "sigmoid or softmax over channels and returns probabilities or class labels itself)"
        )
    return activation


PREPROCESSING_IDS = (
    "ensure_dtype", "zero_mean_unit_variance", "scale_range", "fixed_zero_mean_unit_variance", "scale_linear",
    "clip", "sigmoid",
)


def preprocessing_steps(inp: dict, channel: dict, space: list[dict], where: str) -> tuple[ZooStep, ...]:
    ids = {channel.get("id", "channel"): 0} | {a.get("id"): i + 1 for i, a in enumerate(space)}
    all_axes = tuple(range(len(space) + 1))
    steps = []
    raw = inp.get("preprocessing") or []
    if not isinstance(raw, list):
        raise ModelError(f"{where}: input preprocessing is not a list")
    for entry in raw:
        op = entry.get("id") if isinstance(entry, dict) else None
        raw_kwargs = entry.get("kwargs") or {} if isinstance(entry, dict) else {}
        if not isinstance(raw_kwargs, dict):
            raise ModelError(f"{where}: preprocessing {op!r} kwargs are not a mapping")
        kwargs = {k: v for k, v in raw_kwargs.items() if v is not None}  # null: the default applies
        if op not in PREPROCESSING_IDS:
            raise ModelError(
                f"{where}: preprocessing {op!r} is unsupported by unet-sdk (supported: {', '.join(PREPROCESSING_IDS)})"
            )
        if kwargs.get("reference_tensor") not in (None, inp.get("id", "input")):
            raise ModelError(f"{where}: {op} with statistics of another tensor ({kwargs['reference_tensor']!r}) is unsupported")
        if "axis" in kwargs and kwargs["axis"] != channel.get("id", "channel"):
            raise ModelError(f"{where}: {op} along axis {kwargs['axis']!r} is unsupported (per channel only)")
        if op == "ensure_dtype" and kwargs.get("dtype") not in (
            "float32", "float64", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
        ):
            raise ModelError(f"{where}: ensure_dtype to {kwargs.get('dtype')!r} is unsupported")
        check_numbers(op, kwargs, len(channel["channel_names"]), where)
        reduce: tuple[int, ...] = ()
        step = ZooStep(op, kwargs)
        if step.needs_statistics():
            named = kwargs.get("axes")
            if named is None:
                reduce = all_axes  # "all axes jointly" of the one sample
            else:
                unknown = [a for a in named if a not in ids and a != "batch"]
                if unknown:
                    raise ModelError(f"{where}: {op} axes {unknown} are not axes of the input")
                reduce = tuple(sorted(ids[a] for a in named if a != "batch"))
                if not set(range(1, len(space) + 1)) <= set(reduce):
                    raise ModelError(
                        f"{where}: {op} over axes {list(named)} (not all space axes) is unsupported: unet-sdk "
                        "takes statistics of whole images"
                    )
        steps.append(ZooStep(op, kwargs, reduce))
    return tuple(steps)


NUMERIC_KWARGS = ("eps", "mean", "std", "gain", "offset", "min", "max", "min_percentile", "max_percentile")


def check_numbers(op: str, kwargs: Mapping[str, Any], channels: int, where: str) -> None:
    """Every numeric kwarg is a finite number, or (along the channel axis) one per channel."""
    for name in NUMERIC_KWARGS:
        if name not in kwargs:
            continue
        value = kwargs[name]
        values = value if isinstance(value, list) and "axis" in kwargs else [value]
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values)
        if not ok or (isinstance(value, list) and len(values) != channels):
            raise ModelError(f"{where}: {op} {name}={value!r} is not a finite number (or one per channel)")
    if op in ("zero_mean_unit_variance", "scale_range") and not 0 < kwargs.get("eps", 1e-6) <= 0.1:
        raise ModelError(f"{where}: {op} eps={kwargs['eps']!r} is outside the zoo's (0, 0.1]")
