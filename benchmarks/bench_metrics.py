"""Speed of sdk.metrics against the pure-numpy reference, scikit-image and Fiji's quoted timings.

    python benchmarks/bench_metrics.py            # full run (several minutes on 2 cores)
    python benchmarks/bench_metrics.py --quick    # 128^3 instead of 256^3 3D case, one repeat

Every case is timed in this run: sdk.metrics (C++ core, all cores unless --threads; the ISBI stack and the
VI / adapted Rand cases also on one thread, in the note and the *_1thread fields), the slow reference of
tests/reference_warping.py where it finishes in reasonable time, and scikit-image's adapted_rand_error /
variation_of_information on the same label images. Fiji's figures are the ones quoted in issue 2 for this
2-core machine (not run here). Results must agree before a time counts: each case also checks that sdk and
the reference (or scikit-image) give the same answer.

Writes benchmarks/results/metrics.json and, when matplotlib is importable, benchmarks/results/metrics.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the reference lives beside the tests that validate it

import reference_warping as ref  # noqa: E402
from benchmarks.synthetic import membrane_pair, voronoi_labels  # noqa: E402

# Seconds that Fiji's own code takes on this 2-core machine, as quoted in issue 2 (not measured here).
FIJI_QUOTED_S = {
    "warp 512x512, one threshold": 0.7,
    "ISBI sweep 512x512": 6.0,
    "ISBI sweep 30x512x512": 105.0,
    "ISBI sweep 2048x2048": 760.0,
}


# OpenBLAS worker threads spin for ~0.1 s after a BLAS call before they sleep: after scikit-image's calls
# they would take the second core from the next timing (sdk's two threads ran at one thread's speed).
SETTLE_S = 0.3


def timed(fn, repeats: int):
    """(best wall seconds over `repeats` calls, result of the last call), after letting the threads of the
    previous timing go idle."""
    time.sleep(SETTLE_S)
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def same_warp(result, expected) -> bool:
    return (result.mismatches == expected.mismatches
            and all(getattr(result, name) == expected.counts[name] for name in ref.ERROR_NAMES.values()))


def same_scores(s, expected: dict) -> bool:
    rand_ok = (math.isnan(s.rand_error) and math.isnan(expected["rand_error"])) or \
        abs(s.rand_error - expected["rand_error"]) <= 1e-12
    return (abs(s.warping_error - expected["warping_error"]) <= 1e-12 and rand_ok
            and abs(s.pixel_error - expected["pixel_error"]) <= 1e-12)


def run(quick: bool, threads: int | None) -> list[dict]:
    import sdk.metrics as metrics
    from skimage.metrics import adapted_rand_error as sk_are
    from skimage.metrics import variation_of_information as sk_vi

    repeats = 1 if quick else 3
    label_repeats = 1 if quick else 7  # label-image cases take milliseconds: best of more calls, both sides
    sweep_repeats = 1 if quick else 7  # sub-second sweeps: best of 7 calls, as the label cases
    cases: list[dict] = []

    def add(name, pixels, sdk_s, *, reference_s=None, skimage_s=None, agrees=None, note="", sdk_1thread_s=None):
        row = {"case": name, "pixels": int(pixels), "sdk_s": sdk_s, "reference_s": reference_s,
               "skimage_s": skimage_s, "fiji_quoted_s": FIJI_QUOTED_S.get(name),
               "agrees": None if agrees is None else bool(agrees), "note": note, "sdk_1thread_s": sdk_1thread_s}
        row["sdk_mpx_per_s"] = pixels / sdk_s / 1e6
        for key, other in (("vs_reference", reference_s), ("vs_skimage", skimage_s),
                           ("vs_fiji_quoted", row["fiji_quoted_s"])):
            row[key] = other / sdk_s if other else None
        # sdk on one thread (the main figure uses all cores unless --threads): the same anchors
        row["vs_skimage_1thread"] = skimage_s / sdk_1thread_s if skimage_s and sdk_1thread_s else None
        row["vs_fiji_quoted_1thread"] = (row["fiji_quoted_s"] / sdk_1thread_s
                                         if row["fiji_quoted_s"] and sdk_1thread_s else None)
        if sdk_1thread_s:
            anchor = (f", {row['vs_skimage_1thread']:.3g}x skimage" if row["vs_skimage_1thread"] else
                      f", {row['vs_fiji_quoted_1thread']:.3g}x Fiji*" if row["vs_fiji_quoted_1thread"] else "")
            row["note"] = (f"1 thread: {sdk_1thread_s:.3g} s{anchor}" + (f"; {note}" if note else ""))
        cases.append(row)
        print(format_row(row), flush=True)

    print(header(), flush=True)

    # One threshold, 2D.
    for side in (256, 512):
        truth, proposal = membrane_pair((side, side), seed=side)
        sdk_s, got = timed(lambda: metrics.warping_error(truth, proposal, threshold=0.5, threads=threads), repeats)
        ref_s, expected = timed(lambda: ref.warping_error(truth, proposal, threshold=0.5), 1)
        add(f"warp {side}x{side}, one threshold", side * side, sdk_s, reference_s=ref_s,
            agrees=same_warp(got, expected))

    # ISBI 2012 sweeps (10 warping thresholds with classification, 11 Rand and pixel thresholds).
    truth, proposal = membrane_pair((512, 512), seed=512)
    sdk_s, got = timed(lambda: metrics.isbi2012(truth, proposal, threads=threads), sweep_repeats)
    ref_s, expected = timed(lambda: ref.isbi2012(truth, proposal), 1)
    add("ISBI sweep 512x512", truth.size, sdk_s, reference_s=ref_s, agrees=same_scores(got, expected))

    truth, proposal = membrane_pair((30, 512, 512), seed=30)
    sdk_s, _ = timed(lambda: metrics.isbi2012(truth, proposal, threads=threads), sweep_repeats)
    one_s, _ = timed(lambda: metrics.isbi2012(truth, proposal, threads=1), sweep_repeats)
    add("ISBI sweep 30x512x512", truth.size, sdk_s, note="reference skipped (30x the 512x512 sweep)",
        sdk_1thread_s=one_s)
    del truth, proposal

    truth, proposal = membrane_pair((2048, 2048), seed=2048)
    sdk_s, _ = timed(lambda: metrics.isbi2012(truth, proposal, threads=threads), sweep_repeats)
    add("ISBI sweep 2048x2048", truth.size, sdk_s, note="reference too slow for a benchmark run")
    del truth, proposal

    # Native 3D warp: checked against the reference on 64^3, timed alone at full size.
    truth, proposal = membrane_pair((64, 64, 64), kind="volume", cell_size=16, membrane_width=2, seed=64)
    sdk_s, got = timed(lambda: metrics.warping_error(truth, proposal, threshold=0.5, mode="3d", threads=threads),
                       repeats)
    ref_s, (warped, left) = timed(lambda: ref.warp_volume(truth, proposal, 0.5), 1)
    add("3D warp 64^3", truth.size, sdk_s, reference_s=ref_s,
        agrees=bool(got.mismatches == len(left) and np.array_equal(np.asarray(got.warped, dtype=bool), warped)))
    side = 128 if quick else 256
    truth, proposal = membrane_pair((side,) * 3, kind="volume", seed=side)
    sdk_s, got = timed(lambda: metrics.warping_error(truth, proposal, threshold=0.5, mode="3d", threads=threads), 1)
    add(f"3D warp {side}^3", truth.size, sdk_s, note=f"{got.mismatches} voxels left mismatched")
    del truth, proposal

    # Rand / VI / adapted Rand on label images, against scikit-image on the same labels.
    for side, cell in ((512, 32), (2048, 32), (2048, 4)):
        a = voronoi_labels((side, side), cell_size=cell, seed=1)
        b = voronoi_labels((side, side), cell_size=cell, seed=2)
        what = f"{side}x{side}, {int(max(a.max(), b.max()))} labels"
        sdk_s, vi = timed(lambda: metrics.variation_of_information(a, b, threads=threads), label_repeats)
        one_s, _ = timed(lambda: metrics.variation_of_information(a, b, threads=1), label_repeats)
        sk_s, sk_vi_value = timed(lambda: sk_vi(a, b), label_repeats)
        add(f"VI {what}", side * side, sdk_s, skimage_s=sk_s, sdk_1thread_s=one_s,
            agrees=bool(np.allclose(np.asarray(vi, dtype=float), sk_vi_value, rtol=0, atol=1e-12)))
        sdk_s, are = timed(lambda: metrics.adapted_rand_error(a, b, threads=threads), label_repeats)
        one_s, _ = timed(lambda: metrics.adapted_rand_error(a, b, threads=1), label_repeats)
        sk_s, sk_are_value = timed(lambda: sk_are(a, b), label_repeats)
        add(f"adapted Rand {what}", side * side, sdk_s, skimage_s=sk_s, sdk_1thread_s=one_s,
            agrees=abs(are.error - sk_are_value[0]) <= 1e-12)

        def both_from_one_table():
            table = metrics.contingency_table(a, b, threads=threads)
            return metrics.variation_of_information(table=table), metrics.adapted_rand_error(table=table)

        sdk_s, _ = timed(both_from_one_table, label_repeats)
        sk_s, _ = timed(lambda: (sk_vi(a, b), sk_are(a, b)), label_repeats)
        add(f"VI + adapted Rand, one table, {what}", side * side, sdk_s, skimage_s=sk_s)
        rand_s, _ = timed(lambda: metrics.rand_error(a, b, threads=threads), label_repeats)
        add(f"Rand error (ISBI) {what}", side * side, rand_s)
    return cases


def header() -> str:
    return (f"{'case':<56} {'sdk s':>9} {'Mpx/s':>8} {'ref s':>8} {'x ref':>8} {'skimage s':>9} {'x skimage':>9} "
            f"{'Fiji s*':>8} {'x Fiji*':>8}  agrees")


def _fmt(value, width: int) -> str:
    return f"{value:>{width}.3g}" if value is not None else f"{'-':>{width}}"


def format_row(row: dict) -> str:
    return (f"{row['case']:<56} {_fmt(row['sdk_s'], 9)} {_fmt(row['sdk_mpx_per_s'], 8)} {_fmt(row['reference_s'], 8)} "
            f"{_fmt(row['vs_reference'], 8)} {_fmt(row['skimage_s'], 9)} {_fmt(row['vs_skimage'], 9)} "
            f"{_fmt(row['fiji_quoted_s'], 8)} {_fmt(row['vs_fiji_quoted'], 8)}  "
            f"{'-' if row['agrees'] is None else row['agrees']} {row['note']}")


def plot(cases: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [c["case"] for c in cases]
    series = [("sdk.metrics", "sdk_s"), ("numpy reference", "reference_s"), ("scikit-image", "skimage_s"),
              ("Fiji (quoted, not run here)", "fiji_quoted_s")]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
    height = 0.2
    y = np.arange(len(names))
    for k, (label, key) in enumerate(series):
        values = [c[key] if c[key] else np.nan for c in cases]
        ax.barh(y + (k - 1.5) * height, values, height=height, label=label)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale, lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128^3 instead of 256^3 3D case, one repeat")
    parser.add_argument("--threads", type=int, default=None, help="threads for sdk.metrics (default: all cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "metrics.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    cases = run(args.quick, args.threads)
    load_after = os.getloadavg()[0]
    print("* Fiji: timings quoted in issue 2 for this 2-core machine (not run here).")
    print(f"load average (1 min) before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} CPUs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "sdk.metrics vs numpy reference, scikit-image and Fiji (quoted)",
        "quick": args.quick,
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "numpy": np.__version__,
                    "load_average_1min_before_after": [load_before, load_after]},
        "fiji_note": "Fiji (quoted, not run here): figures from issue 2 for this 2-core machine",
        "cases": cases,
    }
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, args.out)
    if plot(cases, args.out.with_suffix(".png")):
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    else:
        print(f"wrote {args.out} (matplotlib not importable: no plot)")
    return 0 if all(c["agrees"] is not False for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
