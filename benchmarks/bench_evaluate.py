"""Throughput of sdk.metrics.evaluate on a large label set: serial vs all cores vs a Dask LocalCluster,
and against scikit-image's Rand / VI on the same set.

    python benchmarks/bench_evaluate.py            # 2,000 slices of 512x512 (several minutes on 2 cores)
    python benchmarks/bench_evaluate.py --quick    # 200 slices

The set comes from benchmarks/synthetic.py (Voronoi membranes, perturbed float32 proposals with gaps,
spurious membranes, blur, noise, 8-bit ties). Tessellating is the slow part of the generator, so the
truth slices are the 8 rotations/flips of ``--unique`` tessellations, each rolled by a random offset
(all distinct); every proposal is perturbed with its own seed.

Timed in this run, on the same in-memory set:

* ISBI 2012 scores (warping/Rand/pixel sweeps, Fiji-exact) with ``evaluate(metrics=("isbi2012",))``:
  serial (``workers=1``), all cores (thread pool), and a 2-worker LocalCluster (2 processes x 1 thread);
  the three reports must be identical.
* VI + adapted Rand error with ``evaluate(metrics=("vi", "adapted_rand"))`` (4-connected components of
  truth > 0 and proposal > 0.5, one sparse contingency table for both), serial and all cores, against
  scikit-image (``label(connectivity=1)``, ``variation_of_information``, ``adapted_rand_error``) in a
  serial loop; values must agree to 1e-9.
* Fiji's ISBI sweep of one 512x512 pair, quoted in issue 2 for this machine (6 s; not run here).

Writes benchmarks/results/evaluate.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.synthetic import membrane_truth, perturbed_proposal  # noqa: E402

FIJI_QUOTED_ISBI_512_S = 6.0  # Fiji's ISBI sweep of one 512x512 pair on this machine (issue 2)


def make_set(slices: int, size: int, unique: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(truth uint8 (N, size, size), proposal float32): dihedral variants of `unique` tessellations,
    rolled by random offsets, each with its own perturbed proposal."""
    rng = np.random.default_rng(seed)
    bases = [membrane_truth((size, size), seed=seed + u) for u in range(unique)]
    truth = np.empty((slices, size, size), np.uint8)
    proposal = np.empty((slices, size, size), np.float32)
    for z in range(slices):
        base = bases[z % unique]
        variant = (z // unique) % 8
        t = np.rot90(base, variant % 4)
        t = t.T if variant >= 4 else t
        truth[z] = np.roll(t, tuple(rng.integers(0, size, 2)), axis=(0, 1))
        proposal[z] = perturbed_proposal(truth[z], seed=seed + 100_003 + z)
    return truth, proposal


def timed(label: str, fn):
    """(wall seconds, CPU seconds of this process (not of Dask workers), result)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"  {label}: {seconds:.1f} s wall, {cpu:.1f} s CPU in this process", flush=True)
    return seconds, cpu, result


def skimage_rand_vi(truth: np.ndarray, proposal: np.ndarray) -> list[tuple[float, float, float]]:
    from skimage.measure import label
    from skimage.metrics import adapted_rand_error, variation_of_information

    out = []
    for t, p in zip(truth, proposal):
        a = label(t > 0, connectivity=1)
        b = label(p > 0.5, connectivity=1)
        split, merge = variation_of_information(a, b)
        out.append((float(split), float(merge), float(adapted_rand_error(a, b)[0])))
    return out


def run(args) -> dict:
    from sdk.metrics.evaluate import default_workers, evaluate

    cores = default_workers()
    print(f"generating {args.slices} slices of {args.size}x{args.size} ({args.unique} tessellations) ...",
          flush=True)
    gen_s, _, (truth, proposal) = timed("generation", lambda: make_set(args.slices, args.size, args.unique))
    n = len(truth)
    rows: list[dict] = []
    # untimed warm-up on two slices: imports (scipy, scikit-image) and first-call costs stay out of the figures
    evaluate(truth[:2], proposal[:2], metrics=("isbi2012", "vi", "adapted_rand"), workers=1, progress=False)
    skimage_rand_vi(truth[:2], proposal[:2])

    def add(task, runner, seconds, anchor_s, note="", cpu=None):
        rows.append({"task": task, "runner": runner, "seconds": seconds, "slices_per_s": n / seconds,
                     "speedup_vs_anchor": anchor_s / seconds, "cpu_s": cpu, "note": note})

    print("ISBI 2012 scores:", flush=True)
    isbi = ("isbi2012",)
    runners = {
        "serial": lambda: evaluate(truth, proposal, metrics=isbi, workers=1, progress=False),
        f"{cores} threads": lambda: evaluate(truth, proposal, metrics=isbi, workers=cores, progress=False),
    }
    with contextlib.ExitStack() as stack:
        if not args.no_dask:
            from distributed import Client, LocalCluster

            cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                       dashboard_address=":0"))
            client = stack.enter_context(Client(cluster))
            client.run(lambda: __import__("sdk.metrics.evaluate"))  # warm the workers' imports
            runners["Dask LocalCluster 2x1"] = lambda: evaluate(truth, proposal, metrics=isbi, client=client,
                                                                progress=False)
        # rounds interleave the runners, so that a change in the machine's load hits all of them alike;
        # each runner keeps its best round
        best: dict[str, tuple[float, float, object]] = {}
        for round_ in range(args.rounds):
            for label, runner in runners.items():
                seconds, cpu, report = timed(f"{label} (round {round_ + 1})" if args.rounds > 1 else label, runner)
                if label not in best or seconds < best[label][0]:
                    best[label] = (seconds, cpu, report)
    serial_s, serial_cpu, serial = best["serial"]
    add("isbi2012", "serial (anchor)", serial_s, serial_s, cpu=serial_cpu)
    add("isbi2012", f"{cores} threads", best[f"{cores} threads"][0], serial_s, cpu=best[f"{cores} threads"][1])
    identical = {"threads": best[f"{cores} threads"][2].to_dict() == serial.to_dict()}
    if not args.no_dask:
        add("isbi2012", "Dask LocalCluster (2 processes x 1 thread)", best["Dask LocalCluster 2x1"][0], serial_s,
            "in-memory slices shipped to worker processes; CPU of the workers not counted")
        identical["dask"] = best["Dask LocalCluster 2x1"][2].to_dict() == serial.to_dict()
    add("isbi2012", "Fiji (quoted, not run)", FIJI_QUOTED_ISBI_512_S * n * (args.size / 512) ** 2, serial_s,
        "6 s per 512x512 sweep on this machine (issue 2), scaled by pixels")

    print("VI + adapted Rand:", flush=True)
    label_metrics = ("vi", "adapted_rand")
    sk_s, sk_cpu, sk = timed("scikit-image serial", lambda: skimage_rand_vi(truth, proposal))
    add("vi+adapted_rand", "scikit-image serial (anchor)", sk_s, sk_s, cpu=sk_cpu)
    ours_s, ours_cpu, ours = timed(
        "sdk serial", lambda: evaluate(truth, proposal, metrics=label_metrics, workers=1, progress=False))
    add("vi+adapted_rand", "sdk serial", ours_s, sk_s, cpu=ours_cpu)
    threads_s, threads_cpu, ours_threads = timed(
        f"sdk {cores} threads",
        lambda: evaluate(truth, proposal, metrics=label_metrics, workers=cores, progress=False))
    add("vi+adapted_rand", f"sdk {cores} threads", threads_s, sk_s, cpu=threads_cpu)
    identical["vi_threads"] = ours_threads.to_dict() == ours.to_dict()
    worst = max(
        max(abs(r.scores["vi_split"] - s), abs(r.scores["vi_merge"] - m), abs(r.scores["adapted_rand_error"] - a))
        for r, (s, m, a) in zip(ours.items, sk)
    )

    return {
        "benchmark": "evaluate",
        "slices": n,
        "size": args.size,
        "unique_tessellations": args.unique,
        "isbi_rounds": args.rounds,
        "generation_s": gen_s,
        "cores": cores,
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores (shared with other jobs)",
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg(),
        "reports_identical": identical,
        "max_abs_diff_vs_skimage": worst,
        "pooled_isbi": serial.pooled,
        "mean_vi_adapted_rand": {k: ours.mean[k] for k in ("vi_split", "vi_merge", "adapted_rand_error")},
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 slices instead of 2,000")
    parser.add_argument("--slices", type=int, help="number of slices (default 2000, 200 with --quick)")
    parser.add_argument("--size", type=int, default=512, help="slice side (default 512)")
    parser.add_argument("--unique", type=int, help="tessellations to vary (default 100, 25 with --quick)")
    parser.add_argument("--no-dask", action="store_true", help="skip the LocalCluster run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time the ISBI runners this many times, interleaved, keeping each one's best")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "evaluate.json")
    args = parser.parse_args()
    args.slices = args.slices or (200 if args.quick else 2000)
    args.unique = args.unique or (25 if args.quick else 100)
    result = run(args)

    print(f"\n{result['slices']} slices of {args.size}x{args.size}, {result['cores']} cores "
          f"({result['machine']})")
    print(f"{'task':<16} {'runner':<46} {'seconds':>9} {'slices/s':>9} {'vs anchor':>9} {'CPU s':>7}")
    for row in result["rows"]:
        cpu = "" if row["cpu_s"] is None else f"{row['cpu_s']:.1f}"
        print(f"{row['task']:<16} {row['runner']:<46} {row['seconds']:>9.1f} {row['slices_per_s']:>9.2f} "
              f"{row['speedup_vs_anchor']:>8.2f}x {cpu:>7}")
    print(f"reports identical: {result['reports_identical']}; "
          f"max |difference| vs scikit-image: {result['max_abs_diff_vs_skimage']:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    ok = all(result["reports_identical"].values()) and result["max_abs_diff_vs_skimage"] <= 1e-9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
