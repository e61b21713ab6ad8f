"""Memory and time of the metrics' worst cases (issue 11, items 8 and 9), each in a fresh subprocess.

    python benchmarks/bench_memory.py            # VI on 8192^2 random int64 labels (about 1 GB of inputs)
    python benchmarks/bench_memory.py --size 2048 --reference-size 1024   # a quick run

Cases:

* ``vi``: ``variation_of_information`` on two N x N random int64 label images (every pixel its own label,
  the worst case of the sparse contingency table). Figures: the peak resident memory during the call above
  the memory before it (the inputs already allocated), as a ratio to the inputs' bytes (goal: <= 3); the
  memory still held after the call (goal: no more than the bounded scratch cache) and after
  ``sdk.metrics.release_memory()``; the time.
* ``vi-shuffled``: VI of two shuffled label images 0..n-1 (every pixel its own label again) of a smaller
  size, and scikit-image's ``variation_of_information`` on them, timed and measured in its own subprocess
  (it cannot take labels spread over the int64 range); the two results must agree.
* ``threads``: ``isbi2012`` on a 64 x 64 image with a huge ``threads`` (one workspace per requested thread
  before the cap) and with ``threads=1``.

Peak memory is Linux's VmHWM of the subprocess, reset just before the call (tests/peak_memory.py).
Writes benchmarks/results/memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Runs in the subprocess: argv = (case, size, threads); prints one JSON line.
CHILD = r"""
import json, sys
import numpy as np
from peak_memory import measure, resident_bytes

case, size, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {"case": case, "size": size, "threads": threads}
if case.startswith("vi"):
    rng = np.random.default_rng(0)
    if case == "vi":  # labels spread over the whole int64 range
        a = rng.integers(-2**62, 2**62, size=(size, size), dtype=np.int64)
        b = rng.integers(-2**62, 2**62, size=(size, size), dtype=np.int64)
    else:  # labels 0..n-1 shuffled: scikit-image indexes a sparse matrix by label
        a = rng.permutation(size * size).reshape(size, size)
        b = rng.permutation(size * size).reshape(size, size)
    out["input_bytes"] = a.nbytes + b.nbytes
    if case in ("vi", "vi-shuffled"):
        import sdk.metrics as m
        result, figures = measure(lambda: m.variation_of_information(a, b, threads=threads))
        m.release_memory()
        figures["held_after_release"] = resident_bytes() - figures["before"]
    else:
        from skimage.metrics import variation_of_information
        result, figures = measure(lambda: variation_of_information(a, b))
    out.update(figures, result=[float(x) for x in result])
elif case == "threads":
    import sdk.metrics as m
    truth = np.ones((64, 64), np.uint8)
    proposal = np.full((64, 64), 0.7, np.float32)
    result, figures = measure(lambda: m.isbi2012(truth, proposal, threads=threads))
    out.update(figures, result=[result.warping_error, result.rand_error, result.pixel_error])
print(json.dumps(out))
"""


def run_case(case: str, size: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "1048576")  # figures of what the code holds, not of glibc's heap
    proc = subprocess.run([sys.executable, "-c", CHILD, case, str(size), str(threads)], cwd=ROOT,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"case": case, "size": size, "threads": threads, "error": (proc.stderr or proc.stdout)[-2000:],
                "returncode": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"cpu": model, "load_before": load, "python": platform.python_version()}


def gb(x: float) -> str:
    return f"{x / 2**30:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="side of the VI case (default 8192)")
    parser.add_argument("--reference-size", type=int, default=2048, help="side of the scikit-image comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--huge-threads", type=int, default=65536, help="threads of the isbi2012 case")
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    args = parser.parse_args()
    info = machine()
    print(f"CPU: {info['cpu']}; load {' '.join(info['load_before'])}")
    rows = []

    vi = run_case("vi", args.size, args.threads)
    rows.append(vi)
    if "error" in vi:
        print(f"VI {args.size}^2 failed: {vi['error']}")
    else:
        vi["peak_to_inputs"] = vi["peak_above_before"] / vi["input_bytes"]
        print(f"VI {args.size}^2 random int64, {args.threads} threads: inputs {gb(vi['input_bytes'])}, "
              f"peak +{gb(vi['peak_above_before'])} ({vi['peak_to_inputs']:.2f}x the inputs), "
              f"held after +{gb(vi['held_after'])}, after release_memory +{gb(vi['held_after_release'])}, "
              f"{vi['seconds']:.2f} s")

    ours = run_case("vi-shuffled", args.reference_size, args.threads)
    theirs = run_case("vi-shuffled-skimage", args.reference_size, 1)
    rows += [ours, theirs]
    if "error" not in ours and "error" not in theirs:
        agree = all(abs(x - y) <= 1e-9 * max(1.0, abs(y)) for x, y in zip(ours["result"], theirs["result"]))
        print(f"VI {args.reference_size}^2 shuffled labels 0..n-1: sdk {ours['seconds']:.2f} s, peak +{gb(ours['peak_above_before'])}; "
              f"scikit-image {theirs['seconds']:.2f} s, peak +{gb(theirs['peak_above_before'])}; "
              f"time ratio {theirs['seconds'] / ours['seconds']:.1f}x, memory ratio "
              f"{theirs['peak_above_before'] / max(ours['peak_above_before'], 1):.1f}x; results agree: {agree}")
        ours["agrees_with_skimage"] = agree

    for threads in (args.huge_threads, 1):
        row = run_case("threads", 64, threads)
        rows.append(row)
        if "error" in row:
            print(f"isbi2012 64^2 threads={threads}: failed ({row['error'].strip().splitlines()[-1]})")
        else:
            print(f"isbi2012 64^2 threads={threads}: {row['seconds']:.3f} s, peak +{gb(row['peak_above_before'])}")

    with open("/proc/loadavg") as f:
        info["load_after"] = f.read().split()[:3]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": info, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "rows": rows}, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
