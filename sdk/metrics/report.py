"""The result of :func:`sdk.metrics.evaluate`: scores per item, aggregates, per-threshold tables.

Aggregates come in two kinds, because the ISBI 2012 challenge defines its own:

* ``mean``: the plain mean over items of every score (NaN items, e.g. the Rand error of a slice with no
  foreground, are left out of that score's mean);
* ``pooled``: the ISBI 2012 definition, where the raw accumulators of all slices (split/merger pixels,
  pixel and Rand tp/fp/fn) are summed over the whole set *before* the scores and the best thresholds are
  taken (:func:`sdk.metrics.pool_isbi2012`), exactly as if the set were one stack. This is what the
  challenge reports; it differs from the mean of per-slice minima.

JSON (:meth:`Report.to_json`) holds everything and reads back to an equal report. CSV (:meth:`Report.to_csv`)
is the flat score table (one row per item, then the mean and pooled rows, failures and unscored items,
and ``meta`` rows for the mode and metrics); it reads back to an equal report without the per-threshold
tables. NaN is written as JSON ``null`` / CSV ``nan``.
"""
from __future__ import annotations

import csv
import io as _stdio
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import InvalidInputError
from ..atomic import atomic_output
from .inputs import Failure

FORMAT = "unet-sdk-evaluate-report"
FORMAT_VERSION = 1
THRESHOLD_SUFFIX = "_threshold"

# Columns shown by the terminal table, in this order, when present.
SUMMARY_KEYS = (
    "warping_error",
    "rand_error",
    "pixel_error",
    "vi_split",
    "vi_merge",
    "adapted_rand_error",
    "warp_error",
)


@dataclass
class ItemResult:
    """Scores of one item (a slice in ``mode="2d"``, a volume in ``mode="3d"``).

    ``scores`` maps score names to numbers; names ending in ``_threshold`` are the best thresholds of the
    ISBI sweeps. ``table`` is the item's ISBI per-threshold table (one dict per threshold).
    """

    name: str
    shape: tuple[int, ...]
    scores: dict[str, float]
    table: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Report:
    """Per-item scores, aggregates, failures; see the module docstring."""

    items: list[ItemResult]
    failures: list[Failure]
    mean: dict[str, float]
    pooled: dict[str, float]
    pooled_table: list[dict[str, float]]
    metrics: tuple[str, ...]
    mode: str
    not_scored: list[str] = field(default_factory=list)
    interrupted: bool = False

    @classmethod
    def from_items(
        cls,
        items: list[ItemResult],
        *,
        failures: list[Failure],
        pooled: dict[str, float],
        pooled_table: list[dict[str, float]],
        metrics: Iterable[str],
        mode: str,
        not_scored: list[str] | None = None,
        interrupted: bool = False,
    ) -> "Report":
        """Build a report, computing ``mean`` from the items (pooled scores are computed by the caller)."""
        return cls(
            items=items,
            failures=failures,
            mean=mean_scores(items),
            pooled=pooled,
            pooled_table=pooled_table,
            metrics=tuple(metrics),
            mode=mode,
            not_scored=list(not_scored or []),
            interrupted=interrupted,
        )

    @property
    def ok(self) -> bool:
        """True if every item was scored (no failure, not interrupted)."""
        return not self.failures and not self.not_scored and not self.interrupted

    @property
    def best_thresholds(self) -> dict[str, float]:
        """Best thresholds of the pooled ISBI sweeps: ``{"warping": ..., "rand": ..., "pixel": ...}``."""
        return {
            key[: -len(THRESHOLD_SUFFIX)].removesuffix("_error"): value
            for key, value in self.pooled.items()
            if key.endswith(THRESHOLD_SUFFIX)
        }

    def item(self, name: str) -> ItemResult:
        for result in self.items:
            if result.name == name:
                return result
        raise KeyError(name)

    # ----------------------------------------------------------------------------------------------
    # terminal

    def format(self, *, max_items: int = 20) -> str:
        """A readable table: items (the first ``max_items``), mean, pooled, best thresholds, failures."""
        keys = [k for k in SUMMARY_KEYS if k in self.mean or k in self.pooled] or list(self.mean)[:8]
        rows: list[list[str]] = []
        shown = self.items[:max_items]
        for result in shown:
            rows.append([result.name] + [_fmt(result.scores.get(k)) for k in keys])
        if len(self.items) > len(shown):
            rows.append([f"... {len(self.items) - len(shown)} more"] + [""] * len(keys))
        if self.items:
            rows.append([f"mean ({len(self.items)})"] + [_fmt(self.mean.get(k)) for k in keys])
        if self.pooled:
            rows.append(["pooled (ISBI)"] + [_fmt(self.pooled.get(k)) for k in keys])
        lines = [_render([["item"] + keys] + rows)]
        if self.best_thresholds:
            lines.append(
                "best thresholds (pooled): "
                + ", ".join(f"{k} {v:.2f}" for k, v in self.best_thresholds.items())
            )
        if self.failures:
            lines.append(f"{len(self.failures)} failed:")
            lines += [f"  {f.error}" for f in self.failures]
        if self.interrupted:
            lines.append(f"interrupted: {len(self.not_scored)} not scored")
        return "\n".join(lines)

    def format_threshold_table(self) -> str:
        """The pooled ISBI per-threshold table as text."""
        if not self.pooled_table:
            return ""
        keys = list(self.pooled_table[0])
        return _render([keys] + [[_fmt(row.get(k)) for k in keys] for row in self.pooled_table])

    def __str__(self) -> str:
        return self.format()

    # ----------------------------------------------------------------------------------------------
    # JSON

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as None)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "mode": self.mode,
            "metrics": list(self.metrics),
            "interrupted": self.interrupted,
            "items": [
                {
                    "name": r.name,
                    "shape": list(r.shape),
                    "scores": _nan_to_none(r.scores),
                    "table": [_nan_to_none(row) for row in r.table],
                }
                for r in self.items
            ],
            "mean": _nan_to_none(self.mean),
            "pooled": _nan_to_none(self.pooled),
            "pooled_table": [_nan_to_none(row) for row in self.pooled_table],
            "failures": [{"name": f.name, "error": f.error} for f in self.failures],
            "not_scored": list(self.not_scored),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        if data.get("format") != FORMAT:
            raise InvalidInputError(f"not a unet-sdk evaluate report (format {data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise InvalidInputError(f"unsupported evaluate report version {data.get('version')!r}")
        return cls(
            items=[
                ItemResult(
                    name=r["name"],
                    shape=tuple(r["shape"]),
                    scores=_none_to_nan(r["scores"]),
                    table=[_none_to_nan(row) for row in r["table"]],
                )
                for r in data["items"]
            ],
            failures=[Failure(f["name"], f["error"]) for f in data["failures"]],
            mean=_none_to_nan(data["mean"]),
            pooled=_none_to_nan(data["pooled"]),
            pooled_table=[_none_to_nan(row) for row in data["pooled_table"]],
            metrics=tuple(data["metrics"]),
            mode=data["mode"],
            not_scored=list(data["not_scored"]),
            interrupted=bool(data["interrupted"]),
        )

    def to_json(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the whole report as JSON, atomically."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        with atomic_output(path, overwrite=overwrite) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Report":
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: cannot read report ({exc})") from exc
        return cls.from_dict(data)

    # ----------------------------------------------------------------------------------------------
    # CSV

    def csv_text(self) -> str:
        keys = _score_columns(self)
        out = _stdio.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["kind", "name", "shape"] + keys + ["note"])
        blank = [""] * len(keys)
        writer.writerow(["meta", "mode", ""] + blank + [self.mode])
        writer.writerow(["meta", "metrics", ""] + blank + [" ".join(self.metrics)])
        writer.writerow(["meta", "interrupted", ""] + blank + [str(self.interrupted).lower()])
        for r in self.items:
            writer.writerow(
                ["item", r.name, "x".join(map(str, r.shape))] + [_csv_num(r.scores.get(k)) for k in keys] + [""]
            )
        if self.items:
            writer.writerow(["mean", "mean", ""] + [_csv_num(self.mean.get(k)) for k in keys] + [""])
        if self.pooled:
            writer.writerow(["pooled", "pooled", ""] + [_csv_num(self.pooled.get(k)) for k in keys] + [""])
        for f in self.failures:
            writer.writerow(["failed", f.name, ""] + blank + [f.error])
        for name in self.not_scored:
            writer.writerow(["not_scored", name, ""] + blank + [""])
        return out.getvalue()

    def to_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the flat score table as CSV, atomically (no per-threshold tables)."""
        text = self.csv_text()
        with atomic_output(path, overwrite=overwrite) as tmp:
            tmp.write_text(text, encoding="utf-8", newline="")

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> "Report":
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                rows = list(csv.reader(fh))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: cannot read report ({exc})") from exc
        if not rows or rows[0][:3] != ["kind", "name", "shape"] or rows[0][-1] != "note":
            raise InvalidInputError(f"{path}: not a unet-sdk evaluate CSV report")
        keys = rows[0][3:-1]
        meta: dict[str, str] = {}
        items: list[ItemResult] = []
        mean: dict[str, float] = {}
        pooled: dict[str, float] = {}
        failures: list[Failure] = []
        not_scored: list[str] = []
        for row in rows[1:]:
            kind, name, shape, values, note = row[0], row[1], row[2], row[3:-1], row[-1]
            scores = {k: float(v) for k, v in zip(keys, values) if v != ""}
            if kind == "meta":
                meta[name] = note
            elif kind == "item":
                items.append(ItemResult(name, tuple(int(n) for n in shape.split("x")), scores))
            elif kind == "mean":
                mean = scores
            elif kind == "pooled":
                pooled = scores
            elif kind == "failed":
                failures.append(Failure(name, note))
            elif kind == "not_scored":
                not_scored.append(name)
            else:
                raise InvalidInputError(f"{path}: unknown row kind {kind!r}")
        return cls(
            items=items,
            failures=failures,
            mean=mean,
            pooled=pooled,
            pooled_table=[],
            metrics=tuple(meta.get("metrics", "").split()),
            mode=meta.get("mode", ""),
            not_scored=not_scored,
            interrupted=meta.get("interrupted") == "true",
        )


def mean_scores(items: list[ItemResult]) -> dict[str, float]:
    """Mean over items of each score (thresholds excluded; NaN values left out of their score's mean)."""
    keys: list[str] = []
    for result in items:
        keys += [k for k in result.scores if k not in keys and not k.endswith(THRESHOLD_SUFFIX)]
    mean: dict[str, float] = {}
    for key in keys:
        values = [r.scores[key] for r in items if key in r.scores and not math.isnan(r.scores[key])]
        # math.fsum: exactly rounded, so the mean does not depend on how the items were scheduled
        mean[key] = math.fsum(values) / len(values) if values else math.nan
    return mean


def _score_columns(report: Report) -> list[str]:
    keys: list[str] = []
    for scores in [r.scores for r in report.items] + [report.mean, report.pooled]:
        keys += [k for k in scores if k not in keys]
    return keys


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.5f}"
    return str(value)


def _render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _csv_num(value: float | None) -> str:
    return "" if value is None else repr(float(value))  # repr: the shortest text that reads back exactly


def _nan_to_none(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in scores.items()}


def _none_to_nan(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: (math.nan if v is None else v) for k, v in scores.items()}
