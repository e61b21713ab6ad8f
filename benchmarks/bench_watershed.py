"""The seeded watershed (``sdk.instances.seeded_watershed``, the C++ flood) against scikit-image's, and what
the embedded model's post-processing adds to ``Segmenter.predict``.

Input: the embedded ISBI 2012 model's P(cell) on an ISBI mosaic (``--side``, default 4096²), seeds P >= 0.5
(the model's own setting). Timed on one thread, median of ``--repeats`` calls after a warm-up call:

  flood          seeded_watershed(lines=False)
  skimage        skimage.segmentation.watershed(-p, markers), the same flood (outputs compared: equal)
  flood_lines    seeded_watershed(lines=True), what the post-processing runs
  skimage_lines  skimage.segmentation.watershed(..., watershed_line=True) (another line rule: timing only)

and, with 2 threads, ``Segmenter.predict`` with and without the post-processing (the second call): the
post-processing's share of a prediction.

Usage: ``nice python benchmarks/bench_watershed.py [--side 4096] [--repeats 3]``; writes
benchmarks/results/watershed.json (CPU model and load average recorded).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_inference import _cpu_name, _isbi, _median_seconds, _mosaic  # noqa: E402

THREADS = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "watershed.json"))
    args = parser.parse_args()
    from skimage.measure import label
    from skimage.segmentation import watershed

    from sdk import Segmenter
    from sdk.instances import seeded_watershed

    report: dict = {"cpu": _cpu_name(), "cores": os.cpu_count(), "loadavg_start": os.getloadavg(), "side": args.side}
    image = _mosaic(args.side, _isbi("train-volume.tif"))
    with_post = Segmenter("isbi2012", device="cpu", threads=THREADS)
    without = Segmenter("isbi2012", device="cpu", threads=THREADS, postprocess=False)
    threshold = with_post.metadata.postprocessing.seed_threshold
    for name, seg in (("predict_with_postprocessing", with_post), ("predict_without", without)):
        report[name] = _median_seconds(lambda: seg.predict(image), 1)  # the second call (project protocol)
    p = without.predict_proba(image)[without.metadata.foreground_class]
    markers = label(p >= threshold, connectivity=1)
    report["pixels"], report["seed_fraction"] = int(p.size), float((p >= threshold).mean())

    cases = {
        "flood": lambda: seeded_watershed(p, None, seed_threshold=threshold, threads=1),
        "skimage": lambda: watershed(-p, markers, connectivity=1),
        "flood_lines": lambda: seeded_watershed(p, None, seed_threshold=threshold, lines=True, threads=1),
        "skimage_lines": lambda: watershed(-p, markers, connectivity=1, watershed_line=True),
    }
    for name, fn in cases.items():
        report[name] = _median_seconds(fn, args.repeats)
        print(f"{name}: {report[name]:.2f} s", flush=True)
    report["flood_equals_skimage"] = bool(np.array_equal(cases["flood"](), cases["skimage"]()))
    report["speedup_vs_skimage"] = report["skimage"] / report["flood"]
    report["lines_speedup_vs_skimage_lines"] = report["skimage_lines"] / report["flood_lines"]
    report["postprocessing_share_of_predict"] = report["predict_with_postprocessing"] / report["predict_without"] - 1
    report["loadavg_end"] = os.getloadavg()
    print(f"{args.side}²: flood {report['speedup_vs_skimage']:.1f}x scikit-image (equal: {report['flood_equals_skimage']}), "
          f"with lines {report['lines_speedup_vs_skimage_lines']:.1f}x; predict {report['predict_without']:.1f} s, "
          f"+{100 * report['postprocessing_share_of_predict']:.0f} % with the post-processing ({report['cpu']})")
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
