"""ONNX Runtime sessions: loading a model, picking CPU or CUDA honestly, running batches.

Why CUDA is handled with care: ``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` even when the CUDA or
cuDNN libraries are missing, and a session that asks for it then runs on the CPU after printing errors.
So CUDA is requested only when listed, confirmed from ``session.get_providers()`` afterwards, and ORT's
own logging is kept to fatal messages while we probe. ``device="cuda"`` never falls back silently.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .bioimageio import ZooModel
from .errors import InvalidInputError, ModelError, RuntimeUnavailableError
from .model_file import check_external, graph_sha256, read_model_file
from .model_metadata import ModelMetadata
from .models import EMBEDDED_MODELS

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N", the N-th GPU (ORT's CUDA device_id)
MAX_THREADS_PER_CORE = 2  # more ORT threads than this per core only make them wait for each other
_MAX_THREADS = 2**31 - 1  # ORT takes an int
_MAX_DEVICE_ID = 1023
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
_ORT_QUIET = 3  # ORT log severity: 3 = errors only (ours are raised as exceptions instead)
_ORT_SILENT = 4  # fatal only, while probing CUDA (a failed probe is an answer, not an error)
_ORT_DEFAULT = 2  # ORT's own default severity (warnings), restored after the probe


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or :class:`RuntimeUnavailableError` naming the extras."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeUnavailableError(
            "ONNX Runtime is not installed. Install exactly one of: pip install 'unet-sdk[cpu]' "
            "(onnxruntime, any machine) or pip install 'unet-sdk[gpu]' (onnxruntime-gpu, NVIDIA GPU "
            "with CUDA and cuDNN); never both, they overwrite each other."
        ) from exc
    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers this ONNX Runtime build lists (a listed CUDA may still fail to load)."""
    return list(import_onnxruntime().get_available_providers())


def default_threads() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_device(device: str) -> tuple[str, int]:
    """``(kind, gpu index)`` of a device name: ``"auto"``, ``"cpu"``, ``"cuda"`` (GPU 0) or ``"cuda:N"``;
    :class:`InvalidInputError` naming the accepted forms otherwise."""
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        if kind in DEVICES and not index and device == kind:
            return kind, 0
        if kind == "cuda" and index.isascii() and index.isdigit() and int(index) <= _MAX_DEVICE_ID:
            return "cuda", int(index)
    raise InvalidInputError(
        f"device={device!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N' (N = GPU index, 0..{_MAX_DEVICE_ID})"
    )


def intra_op_threads(threads: int | None) -> int:
    """ORT intra-op threads for a ``threads`` request: all usable cores by default; a request beyond
    :data:`MAX_THREADS_PER_CORE` times the cores is capped there (and logged), since ORT starts every
    thread asked for and oversubscribed spinning threads slow a run down by orders of magnitude."""
    cores = default_threads()
    if threads is None:
        return cores
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, (bool, np.bool_)) or not 1 <= threads <= _MAX_THREADS:
        raise InvalidInputError(
            f"threads={threads!r} must be a positive integer (or None for all {cores} cores); "
            f"at most {MAX_THREADS_PER_CORE * cores} are used on this machine"
        )
    cap = MAX_THREADS_PER_CORE * cores
    if threads > cap:
        logger.warning("threads=%d capped at %d (%d x the %d usable cores)", threads, cap, MAX_THREADS_PER_CORE, cores)
        return cap
    return int(threads)


def _model_bytes(model: str | os.PathLike | bytes | ZooModel) -> tuple[bytes, str]:
    if isinstance(model, ZooModel):  # a BioImage Model Zoo package, read by sdk.bioimageio
        return model.onnx, model.source
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<bytes>"
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(
            f"model={model!r}: pass a path to an .onnx file, its bytes, or the name of an embedded model "
            f"({', '.join(EMBEDDED_MODELS)})"
        )
    path = Path(model)
    if not path.is_file():
        raise ModelError(
            f"model file {path} does not exist (or is not a file); pass a path to an .onnx file or the name of "
            f"an embedded model ({', '.join(EMBEDDED_MODELS)})"
        )
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc


def _session_options(ort: Any, threads: int, severity: int) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # a U-Net is one chain of ops: parallelism lives inside them
    options.log_severity_level = severity
    # ORT's memory arena stays on: without it every run maps its large activations afresh and the page
    # faults cost 25-40 % of a 1024-px tile's time; Runtime.run bounds what the arena keeps
    options.enable_cpu_mem_arena = True
    # no memory pattern: it allocates one block per shape on the second run, which the arena's free
    # chunks from the first run cannot serve, so every new tile shape faulted its memory in twice and
    # held both (measured: 2.3 vs 1.8 GB peak for 1120 x 2048 tiles, no speed difference when warm)
    options.enable_mem_pattern = False
    return options


def _cuda_provider_options(device_id: int) -> dict[str, str]:
    # every tile of an image has one shape, so an exhaustive cuDNN search pays off after the first tile
    return {"device_id": str(device_id), "cudnn_conv_algo_search": "EXHAUSTIVE", "do_copy_in_default_stream": "1"}


class Runtime:
    """An ORT session over a unet-sdk model, with its metadata; ``run(batch)`` is thread-safe."""

    def __init__(
        self, model: str | os.PathLike | bytes, *, device: str = "auto", threads: int | None = None
    ) -> None:
        kind, self.device_id = parse_device(device)
        self.threads = intra_op_threads(threads)
        ort = import_onnxruntime()
        data, self.source = _model_bytes(model)
        # everything the file says is checked before ONNX Runtime sees it: the metadata (hostile values
        # must not reach the session or the first run) and the digest of the weights
        record = read_model_file(data, self.source)
        try:
            # a zoo package's metadata comes from its rdf (sdk.bioimageio), a model file's from its props
            self.metadata = model.metadata if isinstance(model, ZooModel) else ModelMetadata.from_props(record.props)
        except ModelError as exc:
            raise ModelError(f"{self.source}: {exc}") from None
        folder = None if self.source == "<bytes>" else Path(self.source).parent
        check_external(record, folder, self.source)
        self.weights_verified = bool(self.metadata.weights_sha256)
        if self.weights_verified and graph_sha256(data, record, folder=folder, source=self.source) != self.metadata.weights_sha256:
            raise ModelError(f"{self.source}: the model's weights do not match their digest: the file is corrupt")
        # weights stored beside the model are found by ONNX Runtime from the model's path (it refuses
        # locations outside the model's folder itself, as read_model_file's digest check does)
        source = self.source if record.external else data
        listed = ort.get_available_providers()
        session = None
        if kind in ("auto", "cuda") and CUDA in listed:
            # a provider that fails to load reports through ORT's process-wide logger, not the session's
            ort.set_default_logger_severity(_ORT_SILENT)
            try:
                session = self._open(ort, source, [(CUDA, _cuda_provider_options(self.device_id)), CPU], _ORT_SILENT)
            finally:
                ort.set_default_logger_severity(_ORT_DEFAULT)
            if CUDA not in session.get_providers():
                logger.info("CUDA provider is listed but did not load (CUDA/cuDNN libraries missing?)")
                if kind == "cuda":
                    session = None  # the session ORT fell back to is a CPU one: keep it only for "auto"
        if session is None:
            if kind == "cuda":
                reason = (
                    "it is listed but failed to load (CUDA or cuDNN libraries missing or mismatched)"
                    if CUDA in listed
                    else "this ONNX Runtime has no CUDA provider (plain onnxruntime is CPU-only)"
                )
                raise RuntimeUnavailableError(
                    f"device={device!r} requested but CUDA is not usable: {reason}. Install 'unet-sdk[gpu]' "
                    "(onnxruntime-gpu, not together with onnxruntime) on a machine with an NVIDIA GPU, "
                    "CUDA and cuDNN 9, or use device='cpu' / 'auto'."
                )
            session = self._open(ort, source, [CPU], _ORT_QUIET)
        self.session = session
        self.device = "cuda" if CUDA in session.get_providers() else "cpu"
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(
                f"{self.source}: a unet-sdk model has one input and one output, got {len(inputs)} "
                f"inputs and {len(outputs)} outputs"
            )
        rank = self.metadata.spatial_dims + 2
        if len(inputs[0].shape) != rank:
            raise ModelError(
                f"{self.source}: input {inputs[0].name!r} has shape {inputs[0].shape}, but a "
                f"{self.metadata.spatial_dims}D model takes (batch, channels, *spatial) = rank {rank}"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        # a run with these options hands the arena's unused memory back to the system when it ends
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry(
            "memory.enable_memory_arena_shrinkage", f"gpu:{self.device_id}" if self.device == "cuda" else "cpu:0"
        )
        self._last_shape: tuple[int, ...] | None = None
        self._shape_lock = threading.Lock()
        # the arena never frees its first region: make that the small one of a minimal run
        self.release_memory()
        logger.info("loaded %s on %s (%d threads)", self.source, self.device, self.threads)

    def _open(self, ort: Any, model: bytes | str, providers: list, severity: int) -> Any:
        try:
            return ort.InferenceSession(
                model, sess_options=_session_options(ort, self.threads, severity), providers=providers
            )
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, Fail, ...) for bad files
            raise ModelError(
                f"{self.source}: not a loadable ONNX model ({type(exc).__name__}: "
                f"{str(exc).strip()[:300]}); re-export it with `unet-export onnx`"
            ) from exc

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Network output (float32) for ``batch`` (B, C, *spatial).

        Runs of one tile shape (the tiles of an image, the slices of a stack, later images of the same
        size) reuse the arena's memory. Before the first run of a new tile shape the arena hands back
        what it holds, so memory kept across images of different sizes stays one working set instead
        of accumulating fragments of each.
        """
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        with self._shape_lock:
            # None: the arena is already empty (fresh, or just released), nothing to hand back
            new_shape = self._last_shape is not None and batch.shape[1:] != self._last_shape
            self._last_shape = batch.shape[1:]
        if new_shape:
            # before, not as this run ends (ORT's shrink option acts at the end of the run that carries
            # it): that would free the very memory the next tile of this shape needs, and every new
            # shape would fault its whole working set in twice
            self._shrink_arena()
        if self.device == "cuda":
            # IOBinding: the input is copied to the GPU once and the output produced there, without
            # ORT's per-run staging copies; a binding per call keeps concurrent callers apart
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, batch)
            binding.bind_output(self.output_name, "cuda")
            self.session.run_with_iobinding(binding)
            output = binding.copy_outputs_to_cpu()[0]
        else:
            output = self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(output, dtype=np.float32)

    def release_memory(self) -> None:
        """Hand the arena's idle memory back to the system."""
        self._shrink_arena()
        with self._shape_lock:
            self._last_shape = None  # whatever runs next starts from an empty arena

    def _shrink_arena(self) -> None:
        """ORT shrinks an arena only as a run ends: run the smallest input the network accepts with the
        shrink option, which frees every region no other run is using."""
        meta = self.metadata
        side = meta.valid_input_size_at_least(1)
        tiny = np.zeros((1, meta.in_channels) + (side,) * meta.spatial_dims, dtype=self.input_dtype)
        try:
            self.session.run([self.output_name], {self.input_name: tiny}, self._shrink)
        except Exception as exc:  # ORT's own types; at load time this is the first run of the model
            raise ModelError(
                f"{self.source}: the network fails on its smallest accepted input {tiny.shape} "
                f"({type(exc).__name__}: {str(exc).strip()[:200]}); its metadata's size rules "
                "(min_input_size, input_size_multiple, input_size_offset) disagree with the graph"
            ) from exc
