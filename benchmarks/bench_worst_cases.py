"""Worst-case inputs: how sdk's time grows where a naive implementation's would blow up.

    python benchmarks/bench_worst_cases.py                                  # all cases, this checkout's sdk
    python benchmarks/bench_worst_cases.py --baseline ../old-tree           # and an older build, interleaved
    python benchmarks/bench_worst_cases.py --cases serpentine_warp_1024 --rounds 5

Each case is a named entry of CASES: a description, a builder of its inputs (a pure function of the case)
and a run that returns a digest of the answer. Every timing runs in a fresh subprocess that imports the
`sdk` of one tree (this checkout, or --baseline DIR: a tree or a directory holding an `sdk` package, e.g.
a copy of main's with its `_core*.so`), so that two builds are timed in the same session, interleaved
round by round; wall and CPU seconds are both recorded (CPU time is steadier on a shared machine). The
digests of the two builds must agree (results bit-identical) or the run fails. A case whose baseline is
known to be slow gets `baseline_timeout_s`; a baseline run past it is recorded as a lower bound.

Writes benchmarks/results/worst_cases.json (machine, load before/after the run and after each case, per
case: seconds per tree and the ratio baseline / current; cases it did not run are kept from the file) and
prints the ratios.

Cases (tests/adversarial_shapes.py builds the paths):
* serpentine_warp_1024: a 1024^2 serpentine grown one pixel per pass (warping_error, one thread): the
  greedy passes re-walked the whole list each pass, O(n^2) (issue 11: 128 s);
* serpentine_isbi2012_512: the ISBI sweep on a 512^2 serpentine, every warping threshold growing it;
* serpentine_3d_warp_96: the same in 3D (mode="3d", a 96^3 serpentine through every other plane);
* closed_loop_classify_r20_1024 / closed_loop_classify_whole_1024 / _256: a 1-pixel closed loop that
  the proposal erases entirely: every loop pixel is left, and classified by removing it. With the ISBI
  radius (20) each split search is bounded by its window; with radius < 1 (the whole image, as Fiji) a
  search per pixel walked half the loop, O(pixels left x loop length): a 256^2 loop took 13 s, 1024^2
  hours. Now one depth-first search per component answers them all (classify.hpp, WholeImageCuts).
* vi_random_int64_4096: VI of random int64 labels, the contingency table's worst case (its memory, and
  the 8192^2 case: bench_memory.py).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "worst_cases.json"


@dataclass(frozen=True)
class Case:
    description: str
    build: callable  # () -> inputs
    run: callable  # (sdk.metrics, inputs) -> digest (str) of the answer
    baseline_timeout_s: float = 600.0


def _digest(*arrays_or_objects) -> str:
    h = hashlib.sha256()
    for item in arrays_or_objects:
        if isinstance(item, np.ndarray):
            h.update(np.ascontiguousarray(item).tobytes())
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _warp_digest(result) -> str:
    return _digest(result.warped, result.classification, result.counts, result.cluster_counts)


def _serpentine_2d(size: int, low: float = 0.5):
    from adversarial_shapes import growth_pair, serpentine_path

    return growth_pair((size, size), serpentine_path(size, size), low=low)


def _serpentine_3d(size: int):
    from adversarial_shapes import growth_pair, serpentine_path_3d

    return growth_pair((size,) * 3, serpentine_path_3d(size, size, size))


def _random_int64_labels(size: int):
    rng = np.random.default_rng(0)
    return tuple(rng.integers(-2**62, 2**62, size=(size, size), dtype=np.int64) for _ in range(2))


def _closed_loop_pair(size: int):
    from adversarial_shapes import closed_loop

    loop = closed_loop(size)
    return loop, np.zeros(loop.shape, dtype=np.float32)


CASES = {
    "serpentine_warp_1024": Case(
        "warping_error, 1024^2 serpentine grown one pixel per pass (524,799 px), 1 thread",
        lambda: _serpentine_2d(1024),
        lambda m, pair: _warp_digest(m.warping_error(*pair, threads=1)),
        baseline_timeout_s=400.0,
    ),
    "serpentine_isbi2012_512": Case(
        "isbi2012 sweep, 512^2 serpentine grown at all 10 warping thresholds (131,327 px), all cores",
        lambda: _serpentine_2d(512, low=0.9),
        lambda m, pair: _digest([dict(row) for row in m.isbi2012(*pair).table]),
        baseline_timeout_s=200.0,
    ),
    "serpentine_3d_warp_96": Case(
        "warping_error mode='3d', 96^3 serpentine through every other plane (223,247 voxels)",
        lambda: _serpentine_3d(96),
        lambda m, pair: _warp_digest(m.warping_error(*pair, mode="3d")),
        baseline_timeout_s=200.0,
    ),
    "closed_loop_classify_r20_1024": Case(
        "warping_error radius 20, 1024^2 closed 1-px loop erased by the proposal (524,800 px left)",
        lambda: _closed_loop_pair(1024),
        lambda m, pair: _warp_digest(m.warping_error(*pair, radius=20, threads=1)),
    ),
    "closed_loop_classify_whole_256": Case(
        "warping_error radius -1 (whole image), 256^2 closed loop (32,896 px left)",
        lambda: _closed_loop_pair(256),
        lambda m, pair: _warp_digest(m.warping_error(*pair, radius=-1, threads=1)),
        baseline_timeout_s=120.0,
    ),
    "closed_loop_classify_whole_1024": Case(
        "warping_error radius -1 (whole image), 1024^2 closed loop (524,800 px left)",
        lambda: _closed_loop_pair(1024),
        lambda m, pair: _warp_digest(m.warping_error(*pair, radius=-1, threads=1)),
        baseline_timeout_s=60.0,
    ),
    "vi_random_int64_4096": Case(
        "variation_of_information, 4096^2 random int64 labels (every pixel its own label, spread over int64); "
        "memory, and the 8192^2 case: bench_memory.py",
        lambda: _random_int64_labels(4096),
        lambda m, pair: _digest(list(m.variation_of_information(*pair))),
    ),
}


def worker(tree: str, name: str) -> None:
    """Times one case with the sdk of `tree`, prints {"wall_s", "cpu_s", "digest", "sdk"} as JSON."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, tree)
    import sdk.metrics as metrics

    case = CASES[name]
    inputs = case.build()
    wall, cpu = time.perf_counter(), time.process_time()
    digest = case.run(metrics, inputs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "digest": digest, "sdk": metrics.__file__}))


def time_in_subprocess(tree: str, name: str, timeout: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", tree, name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "cpu_s": None, "digest": None, "timed_out_after_s": timeout}
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    done = [r for r in runs if r["wall_s"] is not None]
    if not done:
        return {"timed_out_after_s": runs[0]["timed_out_after_s"], "runs": len(runs)}
    return {
        "wall_s_min": min(r["wall_s"] for r in done),
        "wall_s_median": statistics.median(r["wall_s"] for r in done),
        "cpu_s_min": min(r["cpu_s"] for r in done),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in done),
        "runs": len(done),
        "digest": done[0]["digest"],
    }


def machine() -> dict:
    cpu = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--baseline", help="tree (or directory with an sdk package) of the build to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="timings per tree and case (interleaved)")
    parser.add_argument("--baseline-rounds", type=int, default=1, help="rounds of the baseline (it may be slow)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs=2, metavar=("TREE", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    report = {"machine": machine(), "load_before": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "current_tree": str(ROOT), "baseline_tree": args.baseline, "cases": {}}
    for name in args.cases:
        case = CASES[name]
        current, baseline = [], []
        for round_ in range(max(args.rounds, args.baseline_rounds if args.baseline else 0)):
            if round_ < args.rounds:
                current.append(time_in_subprocess(str(ROOT), name, timeout=600.0))
            if args.baseline and round_ < args.baseline_rounds:
                baseline.append(time_in_subprocess(args.baseline, name, timeout=case.baseline_timeout_s))
        entry = {"description": case.description, "load_after": os.getloadavg(), "current": summarise(current)}
        line = f"{name:34s} current {entry['current']['wall_s_min']:8.3f} s wall {entry['current']['cpu_s_min']:8.3f} s CPU"
        if args.baseline:
            entry["baseline"] = summarise(baseline)
            old = entry["baseline"]
            if "timed_out_after_s" in old:
                entry["speedup_cpu_at_least"] = old["timed_out_after_s"] / entry["current"]["cpu_s_min"]
                line += f" | baseline > {old['timed_out_after_s']:.0f} s: >= {entry['speedup_cpu_at_least']:.0f}x"
            else:
                if old["digest"] != entry["current"]["digest"]:
                    raise SystemExit(f"{name}: results differ between the builds ({old['digest']} != "
                                     f"{entry['current']['digest']})")
                entry["speedup_wall"] = old["wall_s_min"] / entry["current"]["wall_s_min"]
                entry["speedup_cpu"] = old["cpu_s_min"] / entry["current"]["cpu_s_min"]
                line += (f" | baseline {old['wall_s_min']:8.3f} s wall {old['cpu_s_min']:8.3f} s CPU"
                         f" | {entry['speedup_cpu']:.1f}x CPU, results identical")
        report["cases"][name] = entry
        print(line, flush=True)
    report["load_after"] = os.getloadavg()
    print(f"CPU: {report['machine']['cpu']} ({report['machine']['cores']} cores); load before "
          f"{report['load_before'][0]:.2f}, after {report['load_after'][0]:.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.output.exists():  # keep the cases this run did not time (other engineers add theirs)
        previous = json.loads(args.output.read_text())
        report["cases"] = {**previous.get("cases", {}), **report["cases"]}
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(args.output)


if __name__ == "__main__":
    main()
