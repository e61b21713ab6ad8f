"""The header-only C++ core builds with plain CMake (no Python) and its C++ tests pass under ctest."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _compiler_available() -> bool:
    return any(shutil.which(c) for c in ("c++", "g++", "clang++"))


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ctest") is None, reason="cmake/ctest not installed")
@pytest.mark.skipif(not _compiler_available(), reason="no C++ compiler installed")
def test_core_builds_and_passes_ctest(tmp_path):
    build = tmp_path / "build"
    run = lambda *cmd: subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)  # noqa: E731
    configure = run("cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release")
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = run("cmake", "--build", str(build), "--parallel", "2")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    tested = run("ctest", "--test-dir", str(build), "--output-on-failure")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "100% tests passed" in tested.stdout
