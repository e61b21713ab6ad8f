"""The model on the workers: shipped once, loaded once per worker process, sized to the worker.

A :class:`ModelSpec` names the model by a digest: an embedded model travels as its name, any other as
its bytes (a path on the client need not exist on the workers). Each worker process keeps one
:class:`~sdk.segmenter.Segmenter` per (digest, settings) and shares it between its task threads
(a Segmenter is thread-safe). ONNX Runtime threads per task thread: the worker host's cores divided by
the task threads of all workers on that host (so two one-thread workers on two cores get one each).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import sizing
from ..models import EMBEDDED_MODELS, resolve_model
from ..runtime import Runtime, default_threads, parse_device
from ..segmenter import DEFAULT_BATCH, Segmenter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A model as workers receive it: an embedded ``name``, or the file's ``data``; ``digest`` names it."""

    digest: str
    name: str | None = None
    data: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, model: str | os.PathLike | bytes | None) -> "ModelSpec":
        if model is None or (isinstance(model, str) and model in EMBEDDED_MODELS and not Path(model).exists()):
            name = model or "isbi2012"
            data = Path(resolve_model(name)).read_bytes()
            return cls(hashlib.sha256(data).hexdigest(), name=name)
        resolved = resolve_model(model)
        data = bytes(resolved) if isinstance(resolved, (bytes, bytearray, memoryview)) else Path(resolved).read_bytes()
        return cls(hashlib.sha256(data).hexdigest(), data=data)

    @property
    def model(self) -> str | bytes:
        """What :class:`Segmenter` takes."""
        return self.name if self.name is not None else self.data


@dataclass(frozen=True)
class Settings:
    """Everything a worker's Segmenter is built with; decided once on the client."""

    device: str
    tile: tuple[int, ...]
    overlap: float
    blend: str
    batch_size: int
    tta: str
    postprocess: bool = True
    threads: dict[str, int] = field(default_factory=dict)  # worker address -> ORT threads; others: own cores
    devices: dict[str, str] = field(default_factory=dict)  # worker address -> device (one GPU each)

    def segmenter_key(self) -> tuple:
        return (self.device, self.tile, self.overlap, self.blend, self.batch_size, self.tta, self.postprocess)


_cache: dict[tuple, Segmenter] = {}
_cache_lock = threading.Lock()


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):  # not inside a distributed worker (local Dask schedulers)
        return None


def worker_segmenter(spec: ModelSpec, settings: Settings) -> Segmenter:
    """This process's Segmenter for ``spec`` and ``settings``, created on first use."""
    worker = _worker()
    address = worker.address if worker is not None else ""
    device = settings.devices.get(address, settings.device)
    if address in settings.threads:
        threads = settings.threads[address]
    elif settings.threads:  # a worker that joined later (e.g. restarted): as many as its peers
        threads = min(settings.threads.values())
    elif worker is not None:
        threads = max(1, default_threads() // max(1, worker.state.nthreads))
    else:
        threads = 1  # Dask's local thread pool runs one task per core
    key = (spec.digest, device, threads) + settings.segmenter_key()
    with _cache_lock:
        segmenter = _cache.get(key)
        if segmenter is None:
            segmenter = Segmenter(
                spec.model, device=device, tile=settings.tile, overlap=settings.overlap, blend=settings.blend,
                batch_size=settings.batch_size, threads=threads, tta=settings.tta, postprocess=settings.postprocess,
            )
            _cache[key] = segmenter
            logger.info("worker %s loaded %s on %s with %d threads", address or "(local)", spec.digest[:12],
                        device, threads)
    return segmenter


def plan_workers(client: Any, device: str, threads: int | None) -> tuple[dict[str, int], dict[str, str]]:
    """ORT threads and device per worker of ``client``'s cluster: the cores of each host shared by all
    task threads on it (or ``threads`` each), and with ``device="cuda"`` the host's GPUs dealt out in
    turn (``cuda:0``, ``cuda:1``, ...)."""
    info = _workers(client)
    cores = client.run(default_threads)
    by_host: dict[str, list[str]] = {}
    for address, worker in sorted(info.items()):
        by_host.setdefault(worker["host"], []).append(address)
    thread_plan: dict[str, int] = {}
    device_plan: dict[str, str] = {}
    gpus = client.run(_visible_gpus) if device == "cuda" else {}
    for host, addresses in by_host.items():
        busy = sum(info[a]["nthreads"] for a in addresses)
        for ordinal, address in enumerate(addresses):
            thread_plan[address] = threads or max(1, cores.get(address, 1) // max(1, busy))
            if device == "cuda" and gpus.get(address, 0) > 0:
                device_plan[address] = f"cuda:{ordinal % gpus[address]}"
    return thread_plan, device_plan


def _visible_gpus() -> int:
    """GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else the devices under /proc/driver/nvidia."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


WORKER_BUDGET_FRACTION = 0.5  # of a Dask worker's memory limit, for one block per task thread
# Dask's statistical profiler samples each worker's task threads every 10 ms: 3-4 % of a block's time on
# this project's 2-core benchmark machine (benchmarks/README.md); the clusters unet-sdk starts run without it
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


def local_cluster(workers: int, threads_per_worker: int) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` processes on this machine with ``threads_per_worker``
    task threads each, dashboard on a free port, without Dask's profiler (:data:`LOCAL_WORKER_CONFIG`)."""
    import dask
    import distributed

    with dask.config.set(LOCAL_WORKER_CONFIG):  # the nannies hand this configuration to their workers
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                                        dashboard_address=":0", silence_logs=logging.ERROR)


@dataclass(frozen=True)
class Run:
    """What the client decides once for a distributed run: the model as shipped, the workers' settings,
    the model's metadata and the memory budget of one task thread (None: this machine's default)."""

    client: Any
    spec: ModelSpec
    settings: Settings
    metadata: Any
    budget: int | None


def prepare_run(
    model: Any, client: Any, *, device: str = "auto", tile: Any = None, overlap: float | None = None,
    blend: str | None = None, batch_size: int | None = None, tta: bool = False, postprocess: bool = True,
    threads: int | None = None,
    memory_budget: int | str | None = None,
) -> Run:
    """Resolve every setting on the client, exactly as :class:`Segmenter` would with these arguments, except
    the default tile: the largest that fits one task thread's share of the smallest worker
    (:data:`WORKER_BUDGET_FRACTION` of its memory limit), or ``memory_budget``. ``client=None``: the current
    Dask client, if any."""
    client = client if client is not None else _default_client()
    budget = sizing.parse_bytes(memory_budget) if memory_budget is not None else _worker_budget(client)
    spec = ModelSpec.of(model)
    kind, _ = parse_device(device)
    if tile is None:
        # the client plans on its CPU (the workers may be the ones with GPUs): the tile that fits a CPU
        # worker's budget, a GPU worker the model's own
        probe = Runtime(resolve_model(spec.model), device="cpu", threads=1)
        tile = tuple(probe.metadata.tile_size) if kind == "cuda" else ()
        tile = tile or sizing.default_tile(probe, budget=budget, batch_size=batch_size or 1, key=spec.digest)
    segmenter = Segmenter(spec.model, device="cpu", tile=tile, overlap=overlap, blend=blend,
                          batch_size=batch_size or DEFAULT_BATCH["cuda" if kind == "cuda" else "cpu"], threads=1,
                          tta=tta, postprocess=postprocess)
    thread_plan, device_plan = plan_workers(client, device, threads) if client is not None else ({}, {})
    settings = Settings(device, segmenter.tile, segmenter.overlap, segmenter.blend, segmenter.batch_size,
                        segmenter.tta, segmenter.postprocess, thread_plan, device_plan)
    return Run(client, spec, settings, segmenter.metadata, budget)


def _worker_budget(client: Any) -> int | None:
    if client is None:
        return None
    shares = [w["memory_limit"] / max(1, w["nthreads"]) for w in _workers(client).values() if w.get("memory_limit")]
    return int(WORKER_BUDGET_FRACTION * min(shares)) if shares else None


def _workers(client: Any) -> dict:
    try:
        return client.scheduler_info(n_workers=-1)["workers"]  # by default only the first few are listed
    except TypeError:  # distributed before 2025.4 lists them all
        return client.scheduler_info()["workers"]


def _default_client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None
