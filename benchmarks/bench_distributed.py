"""Distributed prediction (sdk.distributed) against one Segmenter, and the memory-budgeted default tile.

Part ``overhead`` (the embedded ISBI 2012 model with its watershed boundaries unless ``--no-postprocess``,
tile 1024 on both sides, so both run the same tiles):
  single   one Segmenter with 2 ONNX Runtime threads: read the input zarr, predict, write an output zarr
  dask     predict_to_zarr on a LocalCluster of 2 worker processes with 1 thread each, zarr to OME-Zarr
on an ISBI mosaic image (8192², ``--full``; 4096² by default) and a stack (32 x 2048², ``--full``; 8 x 2048²
by default): the overhead ratio dask / single (goal <= 1.10), the outputs compared bit for bit, what two
plain single-threaded processes on the image's halves cost against one 2-thread process (the machine's
share of the ratio, before any Dask), the
scheduler's cost per task (2,000 no-op tasks), bytes moved between workers per output pixel (the workers'
own transfer counters) and read from the input store per output pixel (the block plan's input windows),
and from these a stated model of throughput at 8, 64 and 512 workers.

Part ``defaults`` (the base-32 U-Net of bench_inference.py with seeded weights, exported with the product's
tiling metadata: tile_size 1024, a 96-px halo, overlap-tile): MONAI's sliding_window_inference, today's
default (``Segmenter()`` before the memory budget: the model's 1024-px tile, bench_inference's
``sdk_rec``), the memory-budgeted default (``Segmenter()`` now) and, where memory allows, one ONNX Runtime
call on the whole image (no halo recomputed: the bound on any exact tiling) at 2048² and 4096², each in its
own subprocess through bench_inference's worker (peak RSS its own).

Part ``memory``: 8192² labels with the embedded model's default under a small budget
(``UNET_SDK_MEMORY_BUDGET=256MB``): peak RSS (goal <= 1.2 GB).

Usage: ``nice python benchmarks/bench_distributed.py [--part overhead|defaults|memory|all] [--full]``; writes
benchmarks/results/distributed.json (CPU model and load average recorded at start and end).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks import bench_inference  # noqa: E402  (reused: image mosaics, models, subprocess workers)

THREADS = 2
OVERHEAD_TILE = 1024
NOOP_TASKS = 2000
IDLE_SECONDS = 10.0
# assumptions of the throughput model (stated in the output)
ASSUMED_NIC_BYTES_PER_S = 1.25e9  # 10 GbE per worker
ASSUMED_STORAGE_BYTES_PER_S = 5e9  # aggregate parallel file system
MODEL_WORKERS = (8, 64, 512)
WHOLE_IMAGE_BYTES_PER_PIXEL = 1030  # peak of one ORT call on a whole image, base-32 U-Net (17.3 GB at 4096²)


def _machine() -> dict:
    return {"cpu": bench_inference._cpu_name(), "cores": os.cpu_count(), "loadavg": os.getloadavg()}


def _zarr_input(path: Path, image: np.ndarray, chunks: tuple[int, ...]) -> None:
    import zarr

    array = zarr.create_array(str(path), shape=image.shape, dtype=image.dtype, chunks=chunks, overwrite=True)
    array[...] = image


def _single(source: Path, target: Path, postprocess: bool) -> tuple[float, float]:
    """Read, predict with one 2-thread Segmenter, write: wall and CPU seconds."""
    import zarr

    from sdk import Segmenter

    segmenter = Segmenter("isbi2012", device="cpu", tile=OVERHEAD_TILE, threads=THREADS, postprocess=postprocess)
    segmenter.predict(np.zeros((256, 256), np.uint8))  # warm-up (thread pool, first-run setup), not timed
    cpu, start = time.process_time(), time.perf_counter()
    image = zarr.open_array(str(source), mode="r")[...]
    labels = segmenter.predict(image)
    out = zarr.create_array(str(target), shape=labels.shape, dtype=labels.dtype,
                            chunks=(1,) * (labels.ndim - 2) + (1024, 1024), overwrite=True)
    out[...] = labels
    return time.perf_counter() - start, time.process_time() - cpu


_HALF = """
import sys, time, numpy as np, zarr
from sdk import Segmenter
source, half, start, post = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
segmenter = Segmenter("isbi2012", device="cpu", tile={tile}, threads=1, postprocess=post)
segmenter.predict(np.zeros((256, 256), np.uint8))
array = zarr.open_array(source, mode="r")
rows = array.shape[-2] // 2
time.sleep(max(0.0, start - time.time()))  # both halves start together
began = time.perf_counter()
segmenter.predict(array[..., half * rows:(half + 1) * rows, :])
print(time.perf_counter() - began)
"""


def _two_processes(source: Path, postprocess: bool) -> float:
    """Wall seconds of two plain processes, one thread each, each predicting half of the image at once: what
    two single-threaded workers cost on this machine before any Dask."""
    code = _HALF.format(tile=OVERHEAD_TILE)
    start = time.time() + 15.0  # after both have imported and warmed up
    procs = [subprocess.Popen([sys.executable, "-c", code, str(source), str(h), str(start), str(int(postprocess))],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT) for h in (0, 1)]
    return max(float(p.communicate()[0].strip().splitlines()[-1]) for p in procs)


def _cpu(client) -> float:
    return sum(client.run(time.process_time).values()) + time.process_time()


def _transferred(client) -> int:
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())


def _input_bytes_per_pixel(image_shape: tuple[int, ...], itemsize: int) -> float:
    """Bytes the blocks read from the input per output pixel (halo windows included), from the plan the run used."""
    from sdk import Segmenter
    from sdk.distributed.blocks import plan_blocks
    from sdk.tiling import plan_tiles

    seg = Segmenter("isbi2012", device="cpu", tile=OVERHEAD_TILE, threads=1)
    plan = plan_tiles(image_shape[-2:], seg.metadata, tile=seg.tile, overlap=seg.overlap, merge=seg.blend)
    blocks = plan_blocks(plan, 1)
    read = sum(math.prod(w.stop - w.start for w in blocks.input_window(b)) for b in blocks)
    return read * itemsize / math.prod(image_shape[-2:])


def _task_count(client, source: Path, writes: int, postprocess: bool) -> int:
    """Tasks of the run: the prediction graph as predict_to_zarr builds it (model, statistics, blocks,
    rechunk) plus one write per chunk."""
    import zarr

    from sdk.distributed.graph import build_prediction

    result, _ = build_prediction("isbi2012", zarr.open_array(str(source), mode="r"), tile=OVERHEAD_TILE,
                                 chunks=(1024, 1024), client=client, postprocess=postprocess)
    return len(dict(result.__dask_graph__())) + writes


def _noop(x):
    return x


def _overhead(args, work: Path) -> dict:
    import distributed

    from sdk.distributed import predict_to_zarr
    from sdk.distributed.workers import local_cluster

    volume = bench_inference._isbi("train-volume.tif")
    side, depth = (8192, 32) if args.full else (4096, 8)
    cases = {
        f"image_{side}": bench_inference._mosaic(side, volume),
        f"stack_{depth}x2048": np.stack([bench_inference._mosaic(2048, np.roll(volume, k, axis=0)) for k in range(depth)]),
    }
    result: dict = {"tile": OVERHEAD_TILE, "postprocess": args.postprocess, "cases": {}}
    for name, image in cases.items():
        source = work / f"{name}.zarr"
        _zarr_input(source, image, (1,) * (image.ndim - 2) + (1024, 1024))
        single_seconds, single_cpu = _single(source, work / f"{name}_single.zarr", args.postprocess)
        print(f"{name}: single Segmenter {THREADS} threads {single_seconds:.1f} s ({single_cpu:.1f} CPU s)", flush=True)
        result["cases"][name] = {"shape": list(image.shape), "single_seconds": single_seconds, "single_cpu_seconds": single_cpu}
        if name.startswith("image"):
            halves = _two_processes(source, args.postprocess)
            result["cases"][name]["two_processes_seconds"] = halves
            result["cases"][name]["two_processes_ratio"] = halves / single_seconds
            print(f"{name}: two plain 1-thread processes on its halves {halves:.1f} s "
                  f"({halves / single_seconds:.3f} x one 2-thread Segmenter)", flush=True)
    # the cluster `unet-sdk predict --workers 2` starts on this machine
    with local_cluster(2, 1) as cluster, distributed.Client(cluster) as client:
        warm = work / "warm.zarr"
        _zarr_input(warm, cases[next(iter(cases))][:256, :256], (256, 256))
        predict_to_zarr("isbi2012", warm, work / "warm_out.zarr", client=client, tile=OVERHEAD_TILE, overwrite=True,
                        postprocess=args.postprocess)
        for name, image in cases.items():
            row = result["cases"][name]
            before, cpu_before = _transferred(client), _cpu(client)
            start = time.perf_counter()
            report = predict_to_zarr("isbi2012", work / f"{name}.zarr", work / f"{name}_dask.zarr", client=client,
                                     tile=OVERHEAD_TILE, chunks=(1024, 1024), overwrite=True,
                                     postprocess=args.postprocess)
            row["dask_seconds"] = time.perf_counter() - start
            # CPU seconds of the workers and the client: less sensitive than wall time to the machine's load
            row["dask_cpu_seconds"] = _cpu(client) - cpu_before
            row["cpu_overhead_ratio"] = row["dask_cpu_seconds"] / row["single_cpu_seconds"]
            pixels = int(np.prod(image.shape))
            row["chunks"] = report.total
            row["overhead_ratio"] = row["dask_seconds"] / row["single_seconds"]
            row["worker_transfer_bytes_per_pixel"] = (_transferred(client) - before) / pixels
            row["input_read_bytes_per_pixel"] = _input_bytes_per_pixel(image.shape, image.dtype.itemsize)
            row["output_write_bytes_per_pixel"] = 1.0  # uint8 labels, written once by the worker that owns the chunk
            import zarr

            same = np.array_equal(zarr.open_array(str(work / f"{name}_single.zarr"), mode="r")[...],
                                  zarr.open_array(str(work / f"{name}_dask.zarr" / "0"), mode="r")[...])
            row["bit_identical"] = bool(same)
            row["tasks"] = _task_count(client, work / f"{name}.zarr", report.total, args.postprocess)
            print(f"{name}: dask 2x1 {row['dask_seconds']:.1f} s ({row['dask_cpu_seconds']:.1f} CPU s), ratio "
                  f"{row['overhead_ratio']:.3f} wall, {row['cpu_overhead_ratio']:.3f} CPU, "
                  f"{row['worker_transfer_bytes_per_pixel']:.2f} B/px between workers, identical {same}", flush=True)
        cpu_before, start = _cpu(client), time.perf_counter()
        time.sleep(IDLE_SECONDS)  # what the idle cluster itself costs (profiler, monitors, heartbeats)
        result["idle_cluster_cpu_per_second"] = (_cpu(client) - cpu_before) / (time.perf_counter() - start)
        start = time.perf_counter()
        client.gather(client.map(_noop, range(NOOP_TASKS), pure=False))
        per_task = (time.perf_counter() - start) / NOOP_TASKS
    result["scheduler_seconds_per_task"] = per_task
    print(f"scheduler: {per_task * 1e3:.2f} ms per no-op task ({NOOP_TASKS} tasks, 2 workers)", flush=True)
    for row in result["cases"].values():  # the CPU ratio without the idle cluster's own cost
        busy = row["dask_cpu_seconds"] - result["idle_cluster_cpu_per_second"] * row["dask_seconds"]
        row["cpu_overhead_ratio_without_idle_cost"] = busy / row["single_cpu_seconds"]
    result["model"] = _throughput_model(result)
    return result


def _throughput_model(result: dict) -> dict:
    """Throughput at more workers, from the measured per-worker rate and costs (assumptions stated)."""
    name, row = next((k, v) for k, v in result["cases"].items() if k.startswith("image"))
    pixels = math.prod(row["shape"])
    # output px per CPU second of the workers (all overheads in): a worker owning one core; wall time on
    # this shared machine says more about the other users than about us
    per_worker = pixels / row["dask_cpu_seconds"]
    tasks_per_pixel = row["tasks"] / pixels
    io_bytes = row["input_read_bytes_per_pixel"] + row["output_write_bytes_per_pixel"]
    limits = {
        "scheduler_px_per_s": 1.0 / (tasks_per_pixel * result["scheduler_seconds_per_task"]),
        "storage_px_per_s": ASSUMED_STORAGE_BYTES_PER_S / io_bytes,
    }
    modelled = {}
    for workers in MODEL_WORKERS:
        network = ASSUMED_NIC_BYTES_PER_S / max(row["worker_transfer_bytes_per_pixel"], 1e-9)  # per worker
        compute = workers * min(per_worker, network)
        modelled[str(workers)] = {
            "px_per_s": min(compute, limits["scheduler_px_per_s"], limits["storage_px_per_s"]),
            "bound": min((compute, "compute"), (limits["scheduler_px_per_s"], "scheduler"),
                         (limits["storage_px_per_s"], "storage"))[1],
        }
    return {
        "from_case": name,
        "one_worker_px_per_s": per_worker,
        "assumptions": {
            "per_worker_rate": "output pixels per CPU second of this run's workers (one core each), perfectly parallel",
            "tasks_per_pixel": "this run's tasks (model, statistics, blocks, rechunk, writes) per output pixel",
            "scheduler": "one scheduler handling tasks one after another at the measured no-op cost",
            "network": f"{ASSUMED_NIC_BYTES_PER_S:.3g} B/s per worker (10 GbE) for the measured worker-to-worker bytes",
            "storage": f"{ASSUMED_STORAGE_BYTES_PER_S:.3g} B/s aggregate for input windows (halo included) + uint8 output",
            **({"postprocessing": "each image's watershed flood is one task on one core: the model holds for "
                                  "many images; one image takes at least its own flood (benchmarks/README.md)"}
               if result["postprocess"] else {}),
        },
        **limits,
        "workers": modelled,
    }


def _defaults(args, work: Path) -> dict:
    import onnx

    models = bench_inference._build_models(work)
    product = work / "unet32_product.onnx"
    if not product.exists():  # the same weights with the product's tiling record (the embedded model's)
        graph = onnx.load(models["fp32"])
        tiling = {"unet_sdk.tile_size": "[1024, 1024]", "unet_sdk.tile_overlap": "0.1875", "unet_sdk.blend": '"none"'}
        for prop in graph.metadata_props:
            if prop.key in tiling:
                prop.value = tiling.pop(prop.key)
        for key, value in tiling.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, product)
    volume = bench_inference._isbi("train-volume.tif")
    configs = {
        "monai": bench_inference.CONFIGS["monai"],
        "today_default": dict(engine="sdk", tile=1024, overlap=0.1875, blend="none", batch=1),
        "budget_default": dict(engine="sdk", tile=None, overlap=None, blend=None, batch=None),
        # the bound on any exact tiling: one ORT call on the whole image, no halo recomputed (where it fits)
        "whole_image": bench_inference.CONFIGS["whole"],
    }
    from sdk.sizing import available_memory

    rows = []
    for side in (args.sides or [2048, 4096]):
        image = work / f"isbi_mosaic_{side}.npy"
        np.save(image, bench_inference._mosaic(side, volume))
        row: dict = {"side": side}
        for name, cfg in configs.items():
            if name == "whole_image" and WHOLE_IMAGE_BYTES_PER_PIXEL * side**2 > 0.9 * available_memory():
                continue
            spec = {**cfg, "image": str(image), "save": str(work / f"defaults_{name}_{side}.npy"),
                    "unet": models["unet"], "weights": models["weights"], "model": str(product), "once": args.once}
            row[name] = bench_inference._run_worker(spec)
            print(f"{side}px {name}: {row[name]['seconds']:.2f} s, {row[name]['peak_rss_mb']:.0f} MB", flush=True)
        for name in ("today_default", "budget_default", "whole_image"):
            if name not in row:
                continue
            row[name]["speedup_vs_monai"] = row["monai"]["seconds"] / row[name]["seconds"]
            row[name]["max_diff_monai"] = bench_inference._diff(work / f"defaults_{name}_{side}.npy",
                                                                work / f"defaults_monai_{side}.npy")
        row["budget_default"]["max_diff_today_default"] = bench_inference._diff(
            work / f"defaults_budget_default_{side}.npy", work / f"defaults_today_default_{side}.npy")
        if "whole_image" in row:  # same-padding model: tiles with the model's halo match it to ~1e-6, not bitwise
            row["budget_default"]["max_diff_whole_image"] = bench_inference._diff(
                work / f"defaults_budget_default_{side}.npy", work / f"defaults_whole_image_{side}.npy")
        row["budget_default"]["tile"] = _default_tile_in_subprocess(product)
        rows.append(row)
    return {"model": "2D U-Net depth 4, base 32, same padding, seeded weights, product tiling metadata",
            "timed_call": "first" if args.once else "second", "configs": configs, "speed": rows}


def _small_budget(args, work: Path) -> dict:
    """The embedded model's default under a 256 MB budget on a large image: peak RSS, labels out."""
    volume = bench_inference._isbi("train-volume.tif")
    image = work / f"isbi_mosaic_{args.big}.npy"
    np.save(image, bench_inference._mosaic(args.big, volume))
    os.environ["UNET_SDK_MEMORY_BUDGET"] = "256MB"  # inherited by the worker subprocess
    try:
        spec = dict(engine="sdk", tile=None, overlap=None, blend=None, batch=None, image=str(image), labels=True,
                    model="isbi2012", once=True)
        small = {"side": args.big, "budget": "256MB", "model": "embedded isbi2012", "output": "labels",
                 "tile": _default_tile_in_subprocess("isbi2012"), **bench_inference._run_worker(spec)}
    finally:
        del os.environ["UNET_SDK_MEMORY_BUDGET"]
    print(f"{args.big}px labels, 256MB budget: {small['seconds']:.1f} s, {small['peak_rss_mb']:.0f} MB peak", flush=True)
    return small


def _default_tile_in_subprocess(model: str | Path) -> list[int]:
    """The default tile a fresh process picks (the budget depends on the memory available then)."""
    code = f"from sdk import Segmenter; print(list(Segmenter({str(model)!r}, device='cpu').tile))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("overhead", "defaults", "memory", "all"), default="all")
    parser.add_argument("--full", action="store_true", help="8192² and 32 x 2048² (default: 4096², 8 x 2048²)")
    parser.add_argument("--no-postprocess", dest="postprocess", action="store_false",
                        help="overhead part: the network's output only (default: the model's watershed boundaries, "
                             "as predict applies them)")
    parser.add_argument("--sides", type=int, nargs="+", help="image sides of the defaults part (default 2048 4096)")
    parser.add_argument("--big", type=int, default=8192, help="side of the small-budget memory run (0 skips)")
    parser.add_argument("--once", action="store_true",
                        help="defaults part: time one call per configuration (first call; default: the second)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "unet-sdk-bench-distributed"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distributed.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # bench_inference's worker subprocesses and the Dask workers import this tree's sdk, not an installed one
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report["machine_start"] = _machine()
    if args.part in ("overhead", "all"):
        report["overhead"] = _overhead(args, work)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if args.part in ("defaults", "all"):
        report["defaults"] = _defaults(args, work)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if args.part in ("memory", "all") and args.big:
        report["small_budget"] = _small_budget(args, work)
    report["machine_end"] = _machine()
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
