"""A BioImage Model Zoo package run by unet-sdk and by bioimageio.core: speed and agreement.

The package is the embedded ISBI 2012 U-Net exported with ``export.bioimageio.export_package`` (halo 96 px,
``zero_mean_unit_variance`` per image). The image is a mosaic of ISBI 2012 test slices (``--side``, default
2048²; uint8 -> float32 probabilities, end to end). Engines, each loaded once (load time reported) and then
timed on the same image, interleaved, ``--repeats`` times (best and median reported):

  sdk          ``Segmenter("package.zip")``: the package's own unet-sdk metadata (overlap-tile, 1024-px
               tiles, 96 px halo: exact), 2 ORT threads
  sdk_rdf      ``Segmenter`` on what the rdf alone says (what any zoo package gets: the zoo's
               ``(x - mean) / (std + eps)``, 768-px tiles, the same 96 px halo)
  core         ``bioimageio.core.predict`` without blocking: the input padded by the halo, normalised
               (statistics of the padded image), one ORT call at ORT's default session options
  core_blocks  ``bioimageio.core.predict`` with ``blocksize_parameter`` giving 1024-px input blocks
               (its tiled mode, halo 96)

Agreement: against ``whole``, one ONNX Runtime call on the whole z-scored image (the model's definition):
max |p - p_whole| of the foreground probability and the share of pixels whose class (p >= 0.5) differs,
over the image and away from its border (one halo).

Usage: ``nice python benchmarks/bench_bioimageio.py [--side 2048] [--repeats 3]``;
writes benchmarks/results/bioimageio.json. Name the CPU and the load with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"
THREADS = 2
HALO = 96


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _mosaic(side: int) -> np.ndarray:
    """ISBI 2012 test slices tiled to side x side (uint8)."""
    import tifffile

    volume = tifffile.imread(ISBI / "test-volume.tif")
    n = volume.shape[1]
    reps = -(-side // n)
    rows = [np.concatenate([volume[(r * reps + c) % len(volume)] for c in range(reps)], axis=1) for r in range(reps)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:side, :side])


def _engines(package: Path) -> dict:
    """name -> (load seconds, predict(image) -> foreground probability (H, W) float32)."""
    import bioimageio.core as zoo_core
    from bioimageio.spec import load_model_description

    from sdk import Segmenter
    from sdk.bioimageio import ZooModel, load_package, metadata_from_rdf

    engines = {}
    start = time.perf_counter()
    sdk = Segmenter(str(package), threads=THREADS)
    engines["sdk"] = (time.perf_counter() - start, lambda image: sdk.predict_proba(image)[1])

    start = time.perf_counter()
    zoo = load_package(package)
    from_rdf = ZooModel(zoo.onnx, metadata_from_rdf(zoo.rdf), zoo.source, zoo.name, zoo.rdf)
    sdk_rdf = Segmenter(from_rdf, threads=THREADS)
    engines["sdk_rdf"] = (time.perf_counter() - start, lambda image: sdk_rdf.predict_proba(image)[1])

    start = time.perf_counter()
    descr = load_model_description(package)
    pipeline = zoo_core.create_prediction_pipeline(descr)
    pipeline.load()
    load = time.perf_counter() - start

    def core(image: np.ndarray, **blocking) -> np.ndarray:
        sample = zoo_core.predict(model=pipeline, inputs={"image": image[None, None].astype(np.float32)}, **blocking)
        return sample.members["probabilities"].data.to_numpy()[0, 1]

    engines["core"] = (load, core)
    step, minimum = 16, descr.inputs[0].axes[2].size.min
    engines["core_blocks"] = (load, lambda image: core(image, blocksize_parameter=(1024 - minimum) // step))
    return engines


def _whole(package: Path, image: np.ndarray) -> np.ndarray:
    """The model's definition: one ORT call on the whole z-scored image."""
    from sdk.bioimageio import load_package
    from sdk.runtime import Runtime

    zoo = load_package(package)
    runtime = Runtime(zoo, threads=THREADS)
    x = zoo.metadata.normalization.apply(image[None])[None]
    return runtime.run(x)[0, 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bioimageio.json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

    from export.bioimageio import export_package

    image = _mosaic(args.side)
    report = {
        "cpu": _cpu_name(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "threads": THREADS,
        "loadavg_start": os.getloadavg(),
        "image": f"{args.side}x{args.side} uint8, ISBI 2012 test slices",
        "engines": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        package = export_package(None, Path(scratch) / "isbi2012.zip")
        reference = _whole(package, image)
        engines = _engines(package)
        times = {name: [] for name in engines}
        outputs = {}
        for _ in range(args.repeats):  # interleaved, so a burst of load hits every engine alike
            for name, (_, run) in engines.items():
                start = time.perf_counter()
                outputs[name] = run(image)
                times[name].append(time.perf_counter() - start)
    base = min(times["sdk"])
    for name, (load, _) in engines.items():
        diff = np.abs(outputs[name] - reference)
        report["engines"][name] = {
            "load_seconds": round(load, 3),
            "seconds": [round(t, 3) for t in times[name]],
            "best_seconds": round(min(times[name]), 3),
            "best_over_sdk": round(min(times[name]) / base, 2),
            "median_seconds": round(float(np.median(times[name])), 3),
            "median_over_sdk": round(float(np.median(times[name]) / np.median(times["sdk"])), 2),
            "max_abs_diff_vs_whole": float(diff.max()),
            "mean_abs_diff_vs_whole": float(diff.mean()),
            "class_changed_share": float(np.mean((outputs[name] >= 0.5) != (reference >= 0.5))),
            # away from the border (one halo, 96 px), where padding conventions do not reach
            "max_abs_diff_interior": float(diff[HALO:-HALO, HALO:-HALO].max()),
            "class_changed_share_interior": float(np.mean(
                (outputs[name] >= 0.5)[HALO:-HALO, HALO:-HALO] != (reference >= 0.5)[HALO:-HALO, HALO:-HALO]
            )),
        }
    report["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['cpu']}, {THREADS} threads, load {report['loadavg_start']} -> {report['loadavg_end']}")
    print(f"{'engine':12} {'load s':>7} {'best s':>7} {'x sdk':>6} {'median':>7} {'x sdk':>6} {'max|dp|':>9} "
          f"{'class changed':>13} {'interior':>9}")
    for name, row in report["engines"].items():
        print(
            f"{name:12} {row['load_seconds']:7.2f} {row['best_seconds']:7.2f} {row['best_over_sdk']:6.2f} "
            f"{row['median_seconds']:7.2f} {row['median_over_sdk']:6.2f} "
            f"{row['max_abs_diff_vs_whole']:9.2e} {row['class_changed_share']:13.2e} {row['max_abs_diff_interior']:9.2e}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
