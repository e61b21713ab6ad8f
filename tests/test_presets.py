"""`--preset isbi2012` finds its data as users expect after a normal install: --data-dir, $UNET_SDK_DATA, the
current folder, and otherwise says where it looked, which files it needs and where to get them (issue 12.4)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("scipy")
tifffile = pytest.importorskip("tifffile")

from conftest import SDK_ROOT  # noqa: E402
from onnx_fixtures import make_model  # noqa: E402


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The packages copied into a folder of their own, as a non-editable install puts them into
    site-packages: away from the source checkout and its ../shared/data."""
    site = tmp_path_factory.mktemp("site-packages")
    for package in ("sdk", "export"):  # from where this session imports them: with the compiled core
        shutil.copytree(SDK_ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    return site


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A stand-in for the ISBI 2012 training stacks: 30 slices with labels 0 / 255."""
    folder = tmp_path_factory.mktemp("data") / "isbi2012"
    folder.mkdir()
    rng = np.random.default_rng(0)
    labels = np.where(rng.random((30, 32, 32)) > 0.3, 255, 0).astype(np.uint8)
    images = (labels * 0.5 + rng.normal(60, 10, labels.shape)).clip(0, 255).astype(np.uint8)
    tifffile.imwrite(folder / "train-volume.tif", images)
    tifffile.imwrite(folder / "train-labels.tif", labels)
    model = folder.parent / "pointwise.onnx"
    model.write_bytes(make_model("pointwise", seed=2)[0])
    return folder, model


def run_export(site: Path, cwd: Path, *args: str, env_data: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "UNET_SDK_DATA"}
    env["PYTHONPATH"] = str(site)
    if env_data is not None:
        env["UNET_SDK_DATA"] = env_data
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def scored(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_installed_copy_finds_the_data_from_another_folder(installed, data, tmp_path):
    folder, model = data  # the lookup order itself is checked in-process below
    args = ["evaluate", str(model), "--preset", "isbi2012", "--repeats", "1"]
    by_env = scored(run_export(installed, tmp_path, *args, env_data=str(folder.parent)))  # $UNET_SDK_DATA/isbi2012
    assert by_env["samples"] == "25-29" and 0.0 <= by_env["rand_error"] <= 1.0


def test_lookup_order(data, tmp_path, monkeypatch):
    from export.data import DATA_ENV, ISBI2012_FILES, find_preset_dir

    folder, _ = data
    other = tmp_path / "other"
    other.mkdir()
    for name in ISBI2012_FILES:
        (other / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(other))
    assert find_preset_dir("isbi2012", ISBI2012_FILES, folder, "") == folder  # --data-dir first
    assert find_preset_dir("isbi2012", ISBI2012_FILES, None, "") == other  # then the environment
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.chdir(folder)
    assert find_preset_dir("isbi2012", ISBI2012_FILES, None, "") == folder  # then the current folder
    monkeypatch.chdir(folder.parent)
    assert find_preset_dir("isbi2012", ISBI2012_FILES, None, "") == folder  # ./isbi2012


def test_missing_data_says_where_it_looked_and_what_to_get(installed, data, tmp_path):
    done = run_export(installed, tmp_path, "evaluate", str(data[1]), "--preset", "isbi2012")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = done.stderr
    for fragment in ("train-volume.tif", "train-labels.tif", str(tmp_path), "UNET_SDK_DATA", "--data-dir",
                     "isbi-2012"):
        assert fragment in message, fragment
