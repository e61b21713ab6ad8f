"""What :func:`sdk.metrics.evaluate` scores: pairing truth and proposal sets, and preparing each pair.

A *side* (truth or proposal) is one of

* a numpy array: a 2D image, a stack of slices ``(Z, H, W)`` or a volume;
* a path to a file read by :func:`sdk.io.read_image` (multi-page TIFF, PNG, NPY, NPZ, zarr); an array
  inside an NPZ file or a zarr group is named ``PATH:KEY`` (``labels.npz:truth``);
* a path to a directory: its image files, paired with the other side's by file name without suffix
  (``a.tif`` pairs with ``a.npy``);
* a mapping ``{name: array or path}``, paired by key.

Pairing never stops at the first problem: a name present on one side only, two files with the same name
in one directory, or two arrays of different shapes become :class:`Failure` entries naming the item, and the
rest is scored.

Work is cut into :class:`Task` units that are cheap to send to a thread or a Dask worker: one per slice of an
in-memory stack (``mode="2d"``), one per volume (``mode="3d"``), one per file of a directory (the worker reads
the file itself, so file data never passes through the client).

Truth: label image or mask, foreground = value > 0; floats are accepted only if they hold integers.
Proposal, ``proposal_kind``:

* ``"auto"`` (default): floating point = probability of foreground in [0, 1]; bool and integers = labels
  (foreground = value > 0). An 8-bit probability map is therefore read as labels, never silently as
  0..255 "probabilities" (Fiji's pitfall): say ``"probabilities"`` to have it rescaled.
* ``"probabilities"``: floats as they are; uint8 / uint16 rescaled by 1/255 / 1/65535 (logged).
* ``"labels"``: any integer or bool array, or floats holding integers.

Metrics that compare segmentations (VI, adapted Rand, Rand) need label images: integer labels are used as
they are when there are more than two values; a binary mask, or a probability map thresholded at
``threshold``, is cut into connected components (4-connected in 2D, 6-connected in 3D).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from ..errors import InvalidInputError
from ..io import PIL_SUFFIXES, is_image_path, read_image
from ._validation import native_byte_order

logger = logging.getLogger(__name__)

MODES = ("2d", "3d")
PROPOSAL_KINDS = ("auto", "probabilities", "labels")

Source = Union[np.ndarray, str]  # an array, or a path string (optionally PATH:KEY)
SideSpec = Union[np.ndarray, str, os.PathLike, Mapping[str, Any]]


@dataclass(frozen=True)
class Failure:
    """An item that could not be scored, and why (the message names the item)."""

    name: str
    error: str


@dataclass(frozen=True)
class Task:
    """One unit of work: a truth/proposal pair of sources (arrays, or paths a worker reads itself);
    scoring it yields one item, or one per slice of a stack file in ``mode="2d"``."""

    name: str
    truth: Source
    proposal: Source


def _split_key(spec: str) -> tuple[str, str | None]:
    """``"a.npz:truth"`` -> ``("a.npz", "truth")``; paths without a key (or Windows drives) stay whole."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and Path(head).suffix.lower() in (".npz", ".zarr") and not Path(spec).exists():
        return head, tail
    return spec, None


def load_source(source: Source, *, name: str) -> np.ndarray:
    """Return the array of ``source`` (read from disk if it is a path), in native byte order (a
    big-endian ``.npy`` or TIFF is converted once, here)."""
    if isinstance(source, np.ndarray):
        return native_byte_order(source)
    path, key = _split_key(source)
    array = read_image(path, key=key)
    if Path(path).suffix.lower() in PIL_SUFFIXES and array.ndim == 3:
        raise InvalidInputError(
            f"{name}: {path} is a colour image of shape {array.shape}; expected one channel"
        )
    return native_byte_order(array)


def side_entries(spec: SideSpec, what: str) -> tuple[dict[str, Source], list[Failure]] | Source:
    """A mapping name -> source for a directory or mapping; the single source otherwise."""
    if isinstance(spec, Mapping):
        entries: dict[str, Source] = {}
        for key, value in spec.items():
            if not isinstance(value, (np.ndarray, str, os.PathLike)):
                raise InvalidInputError(
                    f"{what}[{key!r}]: expected an array or a path, got {type(value).__name__}"
                )
            entries[str(key)] = value if isinstance(value, np.ndarray) else os.fspath(value)
        return entries, []
    if isinstance(spec, np.ndarray):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if path.is_dir() and path.suffix.lower() != ".zarr":
            return _directory_entries(path)
        file_path, _ = _split_key(os.fspath(spec))
        if not Path(file_path).exists():
            raise InvalidInputError(f"{what}: {file_path}: no such file or directory")
        return os.fspath(spec)
    raise InvalidInputError(
        f"{what}: expected an array, a path or a mapping of names to arrays/paths, got {type(spec).__name__}"
    )


def _directory_entries(directory: Path) -> tuple[dict[str, Source], list[Failure]]:
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not is_image_path(path):
            continue
        by_stem.setdefault(path.stem, []).append(path)
    entries: dict[str, Source] = {}
    failures: list[Failure] = []
    for stem, paths in by_stem.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            failures.append(Failure(stem, f"{directory}: several files named {stem!r} ({names}); keep one"))
        else:
            entries[stem] = os.fspath(paths[0])
    if not entries and not failures:
        raise InvalidInputError(f"{directory}: directory holds no image files")
    return entries, failures


def _base_name(source: Source) -> str:
    if isinstance(source, np.ndarray):
        return "array"
    return Path(_split_key(source)[0]).stem


def make_tasks(truth: SideSpec, proposal: SideSpec, *, mode: str = "2d") -> tuple[list[Task], list[Failure]]:
    """Pair ``truth`` with ``proposal`` and cut the work into tasks; see the module docstring.

    Returns the tasks in a fixed order (sorted names, then slices) and the pairing failures.
    Raises :class:`InvalidInputError` only when nothing can be paired at all (a directory against a
    single file, a missing path).
    """
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    truth_side = side_entries(truth, "truth")
    proposal_side = side_entries(proposal, "proposal")
    truth_is_set = isinstance(truth_side, tuple)
    if truth_is_set != isinstance(proposal_side, tuple):
        raise InvalidInputError(
            "cannot pair a set (directory or mapping) with a single image: give two directories, two "
            "mappings, or two single files/arrays"
        )
    if not truth_is_set:
        return _single_pair_tasks(truth_side, proposal_side, mode)

    truth_entries, failures = truth_side
    proposal_entries, proposal_failures = proposal_side
    failures = failures + proposal_failures
    tasks: list[Task] = []
    for name in sorted(set(truth_entries) | set(proposal_entries)):
        if name not in proposal_entries:
            if not any(f.name == name for f in failures):
                failures.append(Failure(name, f"{name}: no proposal with this name"))
            continue
        if name not in truth_entries:
            if not any(f.name == name for f in failures):
                failures.append(Failure(name, f"{name}: no ground truth with this name"))
            continue
        tasks.append(Task(name, truth_entries[name], proposal_entries[name]))
    return tasks, failures


def _single_pair_tasks(truth: Source, proposal: Source, mode: str) -> tuple[list[Task], list[Failure]]:
    """Two single images/stacks: read them here and cut stacks into slice tasks (mode ``"2d"``)."""
    name = _base_name(truth)
    try:
        truth_array = load_source(truth, name=name)
        proposal_array = load_source(proposal, name=name)
        check_pair(truth_array, proposal_array, name=name, mode=mode)
    except InvalidInputError as exc:
        return [], [Failure(name, str(exc))]
    if mode == "2d" and truth_array.ndim == 3:
        return [
            Task(f"{name}[{z}]", truth_array[z], proposal_array[z]) for z in range(truth_array.shape[0])
        ], []
    return [Task(name, truth_array, proposal_array)], []


def check_pair(truth: np.ndarray, proposal: np.ndarray, *, name: str, mode: str) -> None:
    """Raise :class:`InvalidInputError` naming ``name`` if the two arrays cannot be scored together."""
    if truth.shape != proposal.shape:
        raise InvalidInputError(
            f"{name}: truth shape {truth.shape} differs from proposal shape {proposal.shape}"
        )
    if truth.size == 0:
        raise InvalidInputError(f"{name}: empty image of shape {truth.shape}")
    allowed = (2, 3) if mode == "2d" else (3,)
    if truth.ndim not in allowed:
        expected = "a 2D image or a stack (Z, H, W)" if mode == "2d" else "a volume (D, H, W)"
        raise InvalidInputError(f"{name}: mode={mode!r} needs {expected}, got shape {truth.shape}")


def split_items(task: Task, *, mode: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Load a task's arrays and return its items ``(name, truth, proposal)``: slices in 2D, volumes in 3D."""
    truth = load_source(task.truth, name=task.name)
    proposal = load_source(task.proposal, name=task.name)
    check_pair(truth, proposal, name=task.name, mode=mode)
    if mode == "2d" and truth.ndim == 3:
        return [(f"{task.name}[{z}]", truth[z], proposal[z]) for z in range(truth.shape[0])]
    return [(task.name, truth, proposal)]


def _integer_valued(array: np.ndarray, *, name: str, what: str) -> np.ndarray:
    """``array`` as an integer or bool array; floats must hold integers (labels stored as float)."""
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise InvalidInputError(f"{name}: {what} holds NaN or Inf; labels must be integers")
        if not np.array_equal(array, np.floor(array)):
            sample = float(array[array != np.floor(array)].flat[0])
            raise InvalidInputError(
                f"{name}: {what} must hold integer labels, found {sample!r} (dtype {array.dtype}); "
                "is this a probability map on the wrong side?"
            )
        return array.astype(np.int64)
    raise InvalidInputError(f"{name}: unsupported {what} dtype {array.dtype}")


def prepare_truth(truth: np.ndarray, *, name: str) -> np.ndarray:
    """The ground truth as integers or bool (foreground = value > 0)."""
    return _integer_valued(np.asarray(truth), name=name, what="ground truth")


def prepare_proposal(proposal: np.ndarray, *, kind: str, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(probability, labels)``: a float probability map for the thresholded metrics, and the
    proposal's own labels when it is a label image (``None`` for probabilities)."""
    proposal = np.asarray(proposal)
    if kind not in PROPOSAL_KINDS:
        raise InvalidInputError(f"proposal_kind must be one of {PROPOSAL_KINDS}, got {kind!r}")
    floating = np.issubdtype(proposal.dtype, np.floating)
    if kind == "probabilities" or (kind == "auto" and floating):
        if floating:
            return proposal, None
        if proposal.dtype == bool:
            return proposal.astype(np.float32), None
        if proposal.dtype in (np.uint8, np.uint16):
            scale = float(np.iinfo(proposal.dtype).max)
            logger.info("%s: rescaling %s probabilities by 1/%d", name, proposal.dtype, int(scale))
            return (proposal.astype(np.float32) / np.float32(scale)), None
        raise InvalidInputError(
            f"{name}: probabilities must be float, bool, uint8 or uint16, got dtype {proposal.dtype}"
        )
    labels = _integer_valued(proposal, name=name, what="proposal labels")
    return (labels > 0).astype(np.float32), labels
