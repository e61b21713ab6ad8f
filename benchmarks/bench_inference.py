"""Tiled inference: unet-sdk's Segmenter (ONNX Runtime) against MONAI's sliding_window_inference (PyTorch).

The same weights run on both sides: a 2D U-Net (depth 4, base 32, same padding, no batch norm) with
seeded random weights, exported once with ``export.onnx_export.export_onnx`` (softmax included; MONAI
gets the same softmax). Each configuration runs in its own subprocess, so its peak RSS is its own
(``VmHWM``: imports, model and buffers included). Times are end to end from the uint8 image to the
float32 probability map; model loading is not timed. Each worker warms up on a 256² crop (thread pools,
graph setup), then times two calls on the image: the first (``first_seconds``: allocating a new tile
shape's working memory is in it) and the second (``seconds``, the ratios' basis: the steady state of a
program that segments many images).

Configurations (``anchor`` = MONAI, the ratio denominator):
  monai      sliding_window_inference, roi 256, overlap 0.25, gaussian, sw_batch_size 4, torch 2 threads,
             channels_last, inference_mode
  ort_loop   a bare ONNX Runtime loop over MONAI's tiles, outputs discarded: the floor for any tiler
             that computes those tiles (it bounds what "same tiles as MONAI" can gain)
  sdk_same   Segmenter with MONAI's tiles and blending (tile 256, overlap 0.25, gaussian, batch 4)
  sdk_rec    Segmenter at its recommended CPU settings: overlap-tile (blend="none"), tiles up to 1024
             shrunk to fit the image, a 96 px halo (overlap 0.1875: the depth-4 U-Net's receptive
             field, so tiles reproduce the whole-image result), batch 1
  sdk_large  sdk_rec with tiles up to 2048 px and the same 96 px halo (overlap 0.09375): the throughput
             setting where memory allows (a 2048² image is one exact tile; 3-4 GB peak for this network)
  sdk_int8   the static int8 QDQ model from ``export.onnx_export.quantize_int8`` at sdk_large's tiles (its
             1-byte activations keep the peak near sdk_rec's: 1.2 GB at 4096²)
  whole      one ONNX Runtime call on the whole image (the reference for "max diff"; sizes <= --whole-max)

Random weights make a near-constant output (probabilities within ~0.02 of 0.5), so the differences
to the whole image are tiny for every method; with ``--trained MODEL`` (default: the embedded ISBI 2012
model when present) the differences are measured again on a trained network, on ISBI test slices, also for
MONAI's gaussian blending at wider tiles and 50 % overlap (``WIDER_BLENDING``).

Usage: ``nice python benchmarks/bench_inference.py [--quick]``; writes benchmarks/results/inference.json and,
when matplotlib is importable, inference.png (rerun with ``--reuse`` on a finished JSON to redraw only).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"
THREADS = 2

CONFIGS = {
    "monai": dict(engine="monai", roi=256, overlap=0.25, mode="gaussian", batch=4),
    "ort_loop": dict(engine="ort_loop", tile=256, overlap=0.25, batch=4),
    "sdk_same": dict(engine="sdk", tile=256, overlap=0.25, blend="gaussian", batch=4),
    "sdk_rec": dict(engine="sdk", tile=1024, overlap=0.1875, blend="none", batch=1),
    "sdk_large": dict(engine="sdk", tile=2048, overlap=0.09375, blend="none", batch=1),  # the same 96 px halo
    # int8 activations take a quarter of fp32's memory: tiles up to 2048 px (96 px halo) in fp32's 1024-px budget
    "sdk_int8": dict(engine="sdk", tile=2048, overlap=0.09375, blend="none", batch=1, int8=True),
    "whole": dict(engine="whole"),
}
SPEED_ROWS = ("monai", "ort_loop", "sdk_same", "sdk_rec", "sdk_large", "sdk_int8")  # timed per size, tabled, plotted

# MONAI's blending with wider tiles and more overlap (through sdk_same's arithmetic, equal to MONAI's to
# ~2e-7): does any gaussian setting reach 1e-3 of the whole image on a trained network?
WIDER_BLENDING = {
    f"gaussian_{tile}_{overlap}": dict(engine="sdk", tile=tile, overlap=overlap, blend="gaussian", batch=1)
    for tile, overlap in ((256, 0.5), (512, 0.5), (1024, 0.5))
}


# -- worker side (one configuration, one process) ------------------------------------------------------


def _zscore(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32)
    return (x - x.mean()) / max(float(x.std()), 1e-6)


def _worker(spec: dict) -> dict:
    image = np.load(spec["image"], mmap_mode="r")
    engine = spec["engine"]
    labels_only = spec.get("labels", False)
    if engine == "monai":
        import torch
        from monai.inferers import sliding_window_inference

        from export.unet import UNet

        torch.set_num_threads(THREADS)
        net = UNet(**spec["unet"]).eval()
        net.load_state_dict(torch.load(spec["weights"]))
        net = net.to(memory_format=torch.channels_last)

        def predictor(x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(net(x.contiguous(memory_format=torch.channels_last)), dim=1)

        def run(img: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(_zscore(np.asarray(img)))[None, None]
                out = sliding_window_inference(
                    x, (spec["roi"],) * 2, spec["batch"], predictor, overlap=spec["overlap"], mode=spec["mode"]
                )
                return out[0].numpy()

    elif engine == "ort_loop":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        session = ort.InferenceSession(spec["model"], options, providers=["CPUExecutionProvider"])
        tile, step = spec["tile"], int(spec["tile"] * (1 - spec["overlap"]))

        def run(img: np.ndarray) -> np.ndarray:
            x = _zscore(np.asarray(img))
            starts = [sorted({min(i, n - tile) for i in range(0, n - tile + step, step)}) for n in x.shape]
            windows = [x[r : r + tile, c : c + tile] for r in starts[0] for c in starts[1]]
            for first in range(0, len(windows), spec["batch"]):
                session.run(None, {"image": np.stack(windows[first : first + spec["batch"]])[:, None]})
            return np.zeros((0,), np.float32)

    elif engine == "whole":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        session = ort.InferenceSession(spec["model"], options, providers=["CPUExecutionProvider"])

        def run(img: np.ndarray) -> np.ndarray:
            return session.run(None, {"image": _zscore(np.asarray(img))[None, None]})[0][0]

    else:
        from sdk import Segmenter

        seg = Segmenter(
            spec["model"], device="cpu", tile=spec["tile"], overlap=spec["overlap"], blend=spec["blend"],
            batch_size=spec["batch"], threads=THREADS,
        )

        def run(img: np.ndarray) -> np.ndarray:
            return seg.predict(img) if labels_only else seg.predict_proba(img)

    run(np.asarray(image[:256, :256]))  # warm-up: thread pools, first-run graph setup
    start = time.perf_counter()
    result = run(image)
    first = time.perf_counter() - start
    seconds, cpu = first, None
    if not spec.get("once"):
        cpu_start, start = _cpu_seconds(), time.perf_counter()
        result = run(image)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    if spec.get("save"):
        np.save(spec["save"], result)
    return {"seconds": seconds, "first_seconds": first, "cpu_seconds": cpu, "peak_rss_mb": _peak_rss_mb()}


def _cpu_seconds() -> float:
    """User + system time of this process (all threads): less sensitive than wall time to other
    programs on the machine, though not immune (caches, and both runtimes spin-wait a little)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    """This process's peak RSS. Not ``ru_maxrss``: Linux carries that across exec from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best available


# -- parent side -----------------------------------------------------------------------------------------


def _run_worker(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(THREADS)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['engine']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mosaic(side: int, volume: np.ndarray) -> np.ndarray:
    """An ISBI-like test image: slices of the volume tiled to ``side`` x ``side``."""
    n = volume.shape[1]
    reps = -(-side // n)
    rows = [np.concatenate([volume[(r * reps + c) % len(volume)] for c in range(reps)], axis=1) for r in range(reps)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:side, :side])


def _build_models(work: Path) -> dict:
    """The base-32 U-Net (weights, fp32 ONNX, int8 ONNX), cached in ``work``."""
    import torch

    from export.onnx_export import build_metadata, export_onnx, quantize_int8
    from export.unet import UNet
    from sdk.model_metadata import Normalization

    unet = dict(spatial_dims=2, in_channels=1, num_classes=2, depth=4, base_features=32, padding="same", batch_norm=False)
    paths = {"weights": work / "unet32.pt", "fp32": work / "unet32.onnx", "int8": work / "unet32_int8.onnx"}
    if not all(p.exists() for p in paths.values()):
        torch.manual_seed(0)
        net = UNet(**unet).eval()
        torch.save(net.state_dict(), paths["weights"])
        meta = build_metadata(net, class_names=("membrane", "cell"), normalization=Normalization())
        export_onnx(net, paths["fp32"], metadata=meta, check_parity=True, overwrite=True)
        volume = _isbi("train-volume.tif")
        rng = np.random.default_rng(0)
        tiles = []
        for i in range(8):
            y, x = rng.integers(0, volume.shape[1] - 256, 2)
            tiles.append(_zscore(volume[i * 3][y : y + 256, x : x + 256])[None])
        quantize_int8(paths["fp32"], paths["int8"], tiles, overwrite=True)
    return {"unet": unet, **{k: str(v) for k, v in paths.items()}}


def _isbi(name: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(ISBI / name)


def _median_seconds(call, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls after one untimed warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _contention() -> dict:
    """Load and any training run sharing the machine (the figures are only comparable within one run)."""
    training = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if " train" in cmd and "export" in cmd:
                training.append(cmd.strip()[:160])
    return {"loadavg": os.getloadavg(), "training_running": training}


def _diff(a_path: Path, b_path: Path) -> float:
    a, b = np.load(a_path, mmap_mode="r"), np.load(b_path, mmap_mode="r")
    return float(max(np.abs(a[c] - b[c]).max() for c in range(a.shape[0])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="1024 px and a 2048 px memory run (minutes)")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sides (default 2048 4096)")
    parser.add_argument("--big", type=int, help="side of the peak-RSS run (default 8192; 0 skips it)")
    parser.add_argument("--whole-max", type=int, default=2048, help="largest side with a whole-image reference")
    parser.add_argument("--trained", help="a trained .onnx for the accuracy table (default: the embedded model)")
    parser.add_argument("--reuse", help="an earlier inference.json whose finished stages are kept, not rerun")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "unet-sdk-bench"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0

    sizes = args.sizes or ([1024] if args.quick else [2048, 4096])
    big = args.big if args.big is not None else (2048 if args.quick else 8192)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = _build_models(work)
    volume = _isbi("train-volume.tif")
    report = {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": THREADS},
        "model": "2D U-Net depth 4, base 32, same padding, seeded random weights (trained default is base 16)",
        "contention_start": _contention(),
        "configs": CONFIGS,
        "speed": [],
    }
    if args.reuse:  # long runs on a shared machine: keep what an interrupted run already measured
        earlier = json.loads(Path(args.reuse).read_text())
        report.update({k: earlier[k] for k in ("speed", "memory", "trained", "contention_start", "contention_end")
                       if k in earlier})
        report["reused_from"] = args.reuse
    done = {row["side"]: row for row in report["speed"]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every stage: a run cut short still leaves its figures
        report["contention_end"] = _contention()
        out.write_text(json.dumps(report, indent=2) + "\n")

    trained = Path(args.trained or ROOT / "sdk" / "models" / "isbi2012_unet.onnx")
    for i, side in enumerate(sizes):
        if side not in done:
            report["speed"].append(_speed(side, volume, models, work, args.whole_max))
            save()
        if i == 0 and trained.exists() and "trained" not in report:
            report["trained"] = _accuracy(trained, work, min(side, 2048))
            save()
        if i == 0 and big and "memory" not in report:
            # the product's case: the trained model when there is one, else the base-32 network
            report["memory"] = _memory(big, volume, str(trained) if trained.exists() else models["fp32"], work)
            report["memory"]["model"] = _shown(report["memory"]["model"])
            save()
    _print_table(report)
    plotted = _plot(report, out.with_suffix(".png"))
    print(f"wrote {out}" + (f" and {out.with_suffix('.png')}" if plotted else " (matplotlib not importable: no plot)"))
    return 0


def _speed(side: int, volume: np.ndarray, models: dict, work: Path, whole_max: int) -> dict:
    image = work / f"isbi_mosaic_{side}.npy"
    np.save(image, _mosaic(side, volume))
    row: dict = {"side": side}
    names = ["whole"] * (side <= whole_max) + list(SPEED_ROWS)
    for name in names:
        cfg = CONFIGS[name]
        spec = {**cfg, "image": str(image), "save": str(work / f"{name}_{side}.npy"), "unet": models["unet"],
                "weights": models["weights"], "model": models["int8" if cfg.get("int8") else "fp32"]}
        row[name] = _run_worker(spec)
        print(f"{side}px {name}: {row[name]['seconds']:.2f} s (first call {row[name]['first_seconds']:.2f} s, "
              f"{row[name]['cpu_seconds']:.1f} CPU s), {row[name]['peak_rss_mb']:.0f} MB", flush=True)
    for name in names:
        if name in ("whole", "monai"):
            continue
        r, anchor = row[name], row["monai"]
        r["speedup_vs_monai"] = anchor["seconds"] / r["seconds"]
        r["first_call_speedup_vs_monai"] = anchor["first_seconds"] / r["first_seconds"]
        r["cpu_speedup_vs_monai"] = anchor["cpu_seconds"] / r["cpu_seconds"]
        if name == "ort_loop":  # computes, keeps nothing: a time, not a result
            continue
        if side <= whole_max:
            r["max_diff_whole"] = _diff(work / f"{name}_{side}.npy", work / f"whole_{side}.npy")
        r["max_diff_monai"] = _diff(work / f"{name}_{side}.npy", work / f"monai_{side}.npy")
    return row


def _memory(side: int, volume: np.ndarray, model: str, work: Path) -> dict:
    image = work / f"isbi_mosaic_{side}.npy"
    np.save(image, _mosaic(side, volume))
    result = {"side": side, "config": "sdk_rec, labels (uint8 in, uint8 out)", "model": model,
              **_run_worker({**CONFIGS["sdk_rec"], "image": str(image), "labels": True, "model": model, "once": True})}
    print(f"{side}px sdk_rec labels: {result['seconds']:.1f} s, {result['peak_rss_mb']:.0f} MB", flush=True)
    return result


def _accuracy(model: Path, work: Path, side: int) -> dict:
    """Max |p - p_whole| of our two settings on a trained model (ISBI test slices): where random weights
    hide tiling errors, a trained network shows them."""
    image = work / f"isbi_test_mosaic_{side}.npy"
    np.save(image, _mosaic(side, _isbi("test-volume.tif")))
    from sdk import Segmenter

    meta = Segmenter(str(model), device="cpu").metadata
    result = {"model": _shown(model), "side": side,
              "padding": meta.padding, "training": dict(meta.training)}
    ref = work / f"trained_whole_{side}.npy"
    if meta.padding == "same":
        _run_worker({"engine": "whole", "image": str(image), "model": str(model), "save": str(ref)})
    else:  # a valid-padding model: the whole image in one overlap-tile tile is its whole-image result
        _run_worker({"engine": "sdk", "image": str(image), "model": str(model), "save": str(ref),
                     "tile": side + 2 * meta.output_margin + 64, "overlap": 0.0, "blend": "none", "batch": 1})
    for name, cfg in {**{k: CONFIGS[k] for k in ("sdk_same", "sdk_rec")}, **WIDER_BLENDING}.items():
        save = work / f"trained_{name}_{side}.npy"
        _run_worker({**cfg, "image": str(image), "model": str(model), "save": str(save)})
        result[name] = {"max_diff_whole": _diff(save, ref)}
        print(f"trained {name}: max |d| whole {result[name]['max_diff_whole']:.1e}", flush=True)
    return result


def _shown(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (results stay comparable across checkouts)."""
    path = Path(path)
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _print_table(report: dict) -> None:
    print()
    print(f"{'side':>6} {'config':<9} {'time s':>8} {'x MONAI':>8} {'1st s':>8} {'x MONAI':>8} {'CPU s':>8} "
          f"{'x MONAI':>8} {'RSS MB':>8} {'|d| whole':>10} {'|d| MONAI':>10}")
    for row in report["speed"]:
        for name in ("whole",) + SPEED_ROWS:
            if name not in row:
                continue
            r = row[name]
            ratios = [f"{r[key]:.2f}" if key in r else ("1.00" if name == "monai" else "-") for key in
                      ("speedup_vs_monai", "first_call_speedup_vs_monai", "cpu_speedup_vs_monai")]
            dw = f"{r['max_diff_whole']:.1e}" if "max_diff_whole" in r else "n/a"
            dm = f"{r['max_diff_monai']:.1e}" if "max_diff_monai" in r else "-"
            print(f"{row['side']:>6} {name:<9} {r['seconds']:>8.2f} {ratios[0]:>8} {r['first_seconds']:>8.2f} "
                  f"{ratios[1]:>8} {r['cpu_seconds']:>8.1f} {ratios[2]:>8} {r['peak_rss_mb']:>8.0f} {dw:>10} {dm:>10}")
    if "memory" in report:
        m = report["memory"]
        print(f"peak RSS at {m['side']}x{m['side']} ({m['config']}): {m['peak_rss_mb']:.0f} MB in {m['seconds']:.1f} s")
    if "trained" in report:
        t = report["trained"]
        print(f"trained model {t['model']} at {t['side']}px: " + ", ".join(
            f"{k} |d| whole {v['max_diff_whole']:.1e}" for k, v in t.items() if isinstance(v, dict) and "max_diff_whole" in v))
    print(f"contention: start {report['contention_start']}, end {report['contention_end']}")



def _plot(report: dict, path: Path) -> bool:
    """Wall time and peak RSS of each configuration, one panel pair per image side, ratios to MONAI on the bars."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = sorted(report["speed"], key=lambda row: row["side"])
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 2.4 * len(rows) + 0.6), squeeze=False)
    for (time_ax, rss_ax), row in zip(axes, rows):
        names = [name for name in SPEED_ROWS if name in row]
        y = np.arange(len(names))
        colors = ["tab:grey" if name in ("monai", "ort_loop") else "tab:blue" for name in names]
        seconds = [row[name]["seconds"] for name in names]
        time_ax.barh(y, seconds, color=colors)
        for k, name in enumerate(names):
            time_ax.text(seconds[k], k, f" {row[name].get('speedup_vs_monai', 1.0):.2f}x", va="center", fontsize=8)
        time_ax.set_yticks(y, names)
        time_ax.invert_yaxis()
        time_ax.set_xlim(0, max(seconds) * 1.2)
        time_ax.set_xlabel(f"{row['side']}² wall seconds (x MONAI on the bars; lower is better)")
        rss_ax.barh(y, [row[name]["peak_rss_mb"] for name in names], color=colors)
        rss_ax.set_yticks(y, [])
        rss_ax.invert_yaxis()
        rss_ax.set_xlabel(f"{row['side']}² peak RSS MB")
    fig.suptitle(f"{report['model']}, {report['machine']['threads']} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
