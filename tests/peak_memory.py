"""Resident memory of this process around one call, from Linux's /proc (tests and benchmarks run it in a
fresh subprocess, so that nothing else in the process moves the figures)."""
from __future__ import annotations

import time


def _status(field: str) -> int:
    """A /proc/self/status memory field (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def resident_bytes() -> int:
    return _status("VmRSS")


def measure(fn) -> tuple:
    """(fn(), figures): ``seconds``, ``peak_above_before`` (the highest resident memory during the call
    above the resident memory before it) and ``held_after`` (resident memory after it, above before).
    The peak is VmHWM, reset just before the call (``/proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = resident_bytes()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    figures = {"seconds": seconds, "peak_above_before": _status("VmHWM") - before,
               "held_after": resident_bytes() - before, "before": before}
    return result, figures
