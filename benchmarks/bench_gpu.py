"""CUDA throughput: unet-sdk's runtime (ONNX Runtime, CUDA provider, IOBinding) against PyTorch on the same
GPU with the same weights, fp32 and fp16, at 1024² and 2048² tiles.

The network is bench_inference.py's 2D U-Net (depth 4, base 32, same padding, seeded weights), exported
with ``export.onnx_export.export_onnx`` in fp32 and fp16 (softmax included; PyTorch gets the same softmax).
Both sides are timed end to end per tile as a user sees them: a float32 tile from host memory in,
probabilities in host memory out (copies included), after warm-up runs (cuDNN algorithm search, memory
pools); ``per-pixel throughput`` = output pixels per second. The outputs of the two are compared
(max |difference|). Needs an NVIDIA GPU with onnxruntime-gpu and CUDA torch: without them it exits with
status 2 and says why (never a silent CPU run).

Usage: ``python benchmarks/bench_gpu.py [--out benchmarks/results/gpu.json] [--seconds 10]``
(run by benchmarks/gpu_check.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TILES = (1024, 2048)
PRECISIONS = ("fp32", "fp16")
UNET = dict(spatial_dims=2, in_channels=1, num_classes=2, depth=4, base_features=32, padding="same", batch_norm=False)


def _fail(message: str) -> None:
    print(f"bench_gpu: {message}", file=sys.stderr)
    sys.exit(2)


def _gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"unknown ({exc})"


def _models(work: Path):
    import torch

    from export.onnx_export import build_metadata, export_onnx
    from export.unet import UNet
    from sdk.model_metadata import Normalization

    torch.manual_seed(0)
    net = UNet(**UNET).eval()
    meta = build_metadata(net, class_names=("membrane", "cell"), normalization=Normalization(), blend="none")
    paths = {}
    for precision in PRECISIONS:
        paths[precision] = work / f"unet32_{precision}.onnx"
        export_onnx(net, paths[precision], metadata=meta, precision=precision, check_parity=False, overwrite=True)
    return net, paths


def _timed(run, x: np.ndarray, seconds: float) -> tuple[float, np.ndarray]:
    """Seconds per call (median of timed calls after 3 warm-up calls), and the last output."""
    for _ in range(3):
        out = run(x)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.perf_counter()
        out = run(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per configuration")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        _fail("PyTorch is not installed (the reference side needs a CUDA build of torch)")
    if not torch.cuda.is_available():
        _fail(f"torch {torch.__version__} sees no CUDA GPU (a CPU-only build, or no GPU/driver here)")
    from sdk.errors import RuntimeUnavailableError
    from sdk.runtime import Runtime

    work = Path(tempfile.mkdtemp(prefix="unet-sdk-gpu-"))
    net, paths = _models(work)
    report = {
        "machine": {"gpu": _gpu_name(), "cpu": platform.processor() or platform.machine(), "loadavg": os.getloadavg(),
                    "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
        "model": "2D U-Net depth 4, base 32, same padding, seeded weights, softmax included",
        "timing": "median seconds per tile, host float32 in -> host probabilities out, after 3 warm-up calls",
        "rows": [],
    }
    for precision in PRECISIONS:
        try:
            runtime = Runtime(paths[precision], device="cuda:0")
        except RuntimeUnavailableError as exc:
            _fail(f"ONNX Runtime cannot use CUDA: {exc}")
        torch_net = (net.half() if precision == "fp16" else net.float()).cuda().eval()
        dtype = torch.float16 if precision == "fp16" else torch.float32

        def torch_run(x: np.ndarray, torch_net=torch_net, dtype=dtype) -> np.ndarray:
            with torch.inference_mode():
                logits = torch_net(torch.from_numpy(x).cuda().to(dtype))
                return torch.softmax(logits.float(), dim=1).cpu().numpy()

        for tile in TILES:
            x = np.random.default_rng(tile).normal(size=(1, 1, tile, tile)).astype(np.float32)
            ort_seconds, ort_out = _timed(runtime.run, x, args.seconds)
            torch_seconds, torch_out = _timed(torch_run, x, args.seconds)
            row = {
                "precision": precision, "tile": tile,
                "sdk_seconds": ort_seconds, "torch_seconds": torch_seconds,
                "sdk_px_per_s": tile * tile / ort_seconds, "torch_px_per_s": tile * tile / torch_seconds,
                "speedup_vs_torch": torch_seconds / ort_seconds,
                "max_abs_diff": float(np.abs(ort_out - torch_out).max()),
            }
            report["rows"].append(row)
            print(f"{precision} {tile}²: sdk {row['sdk_px_per_s'] / 1e6:.1f} Mpx/s, torch {row['torch_px_per_s'] / 1e6:.1f} "
                  f"Mpx/s, x{row['speedup_vs_torch']:.2f}, max |diff| {row['max_abs_diff']:.1e}", flush=True)
        del runtime
        torch.cuda.empty_cache()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
