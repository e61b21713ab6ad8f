"""Peak memory of Segmenter on images larger than one wants to copy (issue 11, item 10), each case in a
fresh subprocess, this tree against an earlier revision of ``sdk/`` (``git archive``) in the same run.

    python benchmarks/bench_predict_memory.py                     # 16384^2 uint8 memmap, baseline cdb63e1
    python benchmarks/bench_predict_memory.py --size 4096 --baseline cdb63e1 --real-size 1024

Cases (image: a uint8 memmap on disk, labels written into a uint8 memmap ``out=``):

* ``statistics``: the whole-image normalisation statistics alone (``Normalization.statistics``).
* ``predict``: ``Segmenter.predict(image, out=memmap)`` with a per-pixel stand-in network (a 1x1
  convolution and softmax, ``tests/onnx_fixtures.py``), so what is measured is the SDK's own memory
  (statistics, tiles, merging), not the network's activations, which follow the tile in any case.
* ``predict-isbi2012-int8``: the same with the embedded int8 U-Net on a ``--real-size`` image.
* ``threads512``: one 512^2 predict with the embedded fp32 U-Net and ``threads=512`` (issue 11 item 8:
  ORT started 512 spinning threads on 2 cores; now capped at 2 per core), and with the default threads.

Every predict uses ``tile=--tile`` (1024), so both trees run the same tiles.

Figures: the peak of the process's *anonymous* memory (``RssAnon``, sampled every 2 ms: the pages of
the memmaps themselves are file-backed and reclaimable, and would hide the copies) above the memory
before the call, and the wall time. Writes benchmarks/results/predict_memory.json with the CPU and load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "predict_memory.json"
SAMPLE_SECONDS = 0.002


def _rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("needs Linux (/proc/self/status RssAnon)")


class _PeakSampler(threading.Thread):
    """Samples RssAnon until stopped; ``peak`` is the largest value seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self._stop_event = _rss_anon_mb(), threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_anon_mb())
            time.sleep(SAMPLE_SECONDS)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return max(self.peak, _rss_anon_mb())


# -- worker side (a fresh process per case) -------------------------------------------------------------


def _worker(spec: dict) -> dict:
    sys.path.insert(0, spec["root"])
    sys.path.insert(0, str(ROOT / "tests"))
    from sdk import Segmenter

    image = np.load(spec["image"], mmap_mode="r")
    out = np.lib.format.open_memmap(spec["out"], mode="w+", dtype=np.uint8, shape=image.shape)
    if spec["model"] == "pointwise":
        from onnx_fixtures import make_model

        model = make_model("pointwise", seed=0)[0]
    else:
        model = spec["model"]
    segmenter = Segmenter(model, threads=spec["threads"], device="cpu", tile=spec["tile"])
    before = _rss_anon_mb()
    sampler = _PeakSampler()
    sampler.start()
    started = time.perf_counter()
    if spec["case"] == "statistics":
        segmenter.metadata.normalization.statistics(image[None])
    else:
        segmenter.predict(image, out=out)
        out.flush()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    return {"peak_anon_mb_above_start": round(peak - before, 1), "seconds": round(seconds, 2)}


# -- parent side -----------------------------------------------------------------------------------------


def _run(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, cwd=spec["root"],
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['case']} ({spec['root']}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _export_sdk(revision: str, target: Path) -> Path:
    """``sdk/`` as of ``revision`` in ``target`` (the compiled extension is not needed to predict)."""
    archive = subprocess.run(["git", "archive", revision, "sdk"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
         if line.startswith("Model name")),
        platform.processor(),
    )
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=16384, help="side of the uint8 memmap (default 16384)")
    parser.add_argument("--real-size", type=int, default=2048, help="side for the embedded int8 U-Net (0: skip)")
    parser.add_argument(
        "--baseline", default="cdb63e1", help="git revision of sdk/ to compare with (default: the last before bounded statistics)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--skip-threads512", action="store_true", help="skip the slow threads=512 baseline")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-predict-memory-") as scratch:
        scratch = Path(scratch)
        baseline = _export_sdk(args.baseline, scratch / "baseline")
        roots = {"this tree": str(ROOT), f"baseline {args.baseline}": str(baseline)}
        fp32, int8 = str(ROOT / "sdk/models/isbi2012_unet.onnx"), str(ROOT / "sdk/models/isbi2012_unet_int8.onnx")
        cases = [  # (name, what runs, image side, model, threads)
            ("statistics", "statistics", args.size, "pointwise", args.threads),
            ("predict", "predict", args.size, "pointwise", args.threads),
        ]
        if args.real_size:
            cases.append(("predict-isbi2012-int8", "predict", args.real_size, int8, args.threads))
        if not args.skip_threads512:
            cases += [("threads512", "predict", 512, fp32, 512), ("threads-default", "predict", 512, fp32, None)]
        images = {}
        rng = np.random.default_rng(0)
        for side in sorted({side for _, _, side, _, _ in cases}):
            path = scratch / f"image{side}.npy"
            image = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(side, side))
            for row in range(0, side, 1024):  # written in bands: the benchmark itself stays small
                image[row : row + 1024] = rng.integers(0, 256, (min(1024, side - row), side), dtype=np.uint8)
            image.flush()
            del image
            images[side] = str(path)
        report = {"machine": _machine(), "tile": args.tile, "cases": {}}
        for name, case, side, model, threads in cases:
            rows = {}
            for tree, root in roots.items():
                spec = {"root": root, "case": case, "image": images[side], "out": str(scratch / "out.npy"),
                        "model": model, "threads": threads, "tile": args.tile}
                rows[tree] = _run(spec)
                print(f"{name:24s} {side:6d}^2  {tree:24s} peak +{rows[tree]['peak_anon_mb_above_start']:8.1f} MB  "
                      f"{rows[tree]['seconds']:7.2f} s", flush=True)
            new, old = rows["this tree"], rows[f"baseline {args.baseline}"]
            rows["peak_ratio_baseline_over_this"] = round(old["peak_anon_mb_above_start"] / max(new["peak_anon_mb_above_start"], 0.1), 1)
            rows["time_ratio_baseline_over_this"] = round(old["seconds"] / max(new["seconds"], 1e-3), 2)
            report["cases"][f"{name} {side}^2"] = rows
    report["machine"]["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["machine"]))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
