"""The ``unet-sdk`` demo / predict / info commands, run in-process through the dispatcher."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
tifffile = pytest.importorskip("tifffile")

from onnx_fixtures import make_model  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.cli.main import main  # noqa: E402
from sdk.io import read_image  # noqa: E402
from sdk.models import sample_image_path  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "valid.onnx"
    path.write_bytes(make_model("valid", seed=31)[0])
    return path


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (45, 70)).astype(np.uint8)
    b = rng.normal(size=(2, 33, 40)).astype(np.float32)  # a stack of two slices
    tifffile.imwrite(tmp_path / "a.tif", a)
    np.save(tmp_path / "b.npy", b)
    return {"a": (tmp_path / "a.tif", a), "b": (tmp_path / "b.npy", b)}


def test_predict_one_file_each_format(tmp_path, model_path, images):
    path, image = images["a"]
    seg = Segmenter(model_path)
    expected_labels, expected_proba = seg.predict(image), seg.predict_proba(image)
    assert main(["predict", str(path), "-o", str(tmp_path / "a_out.tif"), "-m", str(model_path)]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "a_out.tif"), expected_labels)
    assert main(["predict", str(path), "-o", str(tmp_path / "p.npy"), "--proba", "-m", str(model_path)]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected_proba)
    pytest.importorskip("zarr")
    assert main(["predict", str(path), "-o", str(tmp_path / "l.zarr"), "-m", str(model_path)]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "l.zarr"), expected_labels)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_predict_several_inputs_into_a_directory(tmp_path, model_path, images, capsys):
    out = tmp_path / "results"
    argv = ["predict", str(images["a"][0]), str(images["b"][0]), "-o", str(out), "-m", str(model_path),
            "--format", "npy", "--tile", "16", "--overlap", "0.25", "--no-progress"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.npy", "b_labels.npy"]
    seg = Segmenter(model_path)
    np.testing.assert_array_equal(np.load(out / "b_labels.npy"), seg.predict(images["b"][1]))
    assert "b_labels.npy" in capsys.readouterr().out


def test_predict_refuses_to_overwrite_without_force(tmp_path, model_path, images, capsys):
    target = tmp_path / "a_out.tif"
    argv = ["predict", str(images["a"][0]), "-o", str(target), "-m", str(model_path)]
    assert main(argv) == 0
    before = target.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "exist" in err and "--force" in err and "Traceback" not in err
    assert target.read_bytes() == before
    assert main(argv + ["--force", "--tta"]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "cuda"], "device='cuda'"),
        (["--tile", "0"], "tile"),
        (["-m", "missing.onnx"], "does not exist"),
    ],
)
def test_predict_errors_are_one_line_without_traceback(tmp_path, model_path, images, capsys, extra, message):
    if extra[:2] == ["--device", "cuda"] and Segmenter(model_path).device == "cuda":
        pytest.skip("CUDA works here")
    argv = ["predict", str(images["a"][0]), "-o", str(tmp_path / "x.tif"), "-m", str(model_path)] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.tif").exists()


def test_predict_unreadable_input(tmp_path, model_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    assert main(["predict", str(bad), "-o", str(tmp_path / "o.tif"), "-m", str(model_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_info_reports_metadata_and_device(model_path, capsys):
    assert main(["info", str(model_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metadata"]["padding"] == "valid" and report["metadata"]["output_margin"] == 3
    assert "CPUExecutionProvider" in report["providers_available"]
    assert report["auto_device"] in ("cpu", "cuda")
    assert report["defaults"]["blend"] == "none"
    assert main(["info", str(model_path)]) == 0
    assert "device='auto' runs on" in capsys.readouterr().out
    assert main(["info", "isbi2012-int8", "--json"]) == 0  # an embedded model by name
    report = json.loads(capsys.readouterr().out)
    assert report["model"].endswith("isbi2012_unet_int8.onnx")
    assert report["metadata"]["training"]["precision"].startswith("int8")


def test_demo_writes_labels_and_overlay(tmp_path, model_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--model", str(model_path)]) == 0
    printed = capsys.readouterr().out
    assert str((out / "labels.tif").resolve()) in printed and str((out / "overlay.png").resolve()) in printed
    image = read_image(sample_image_path())
    labels = read_image(out / "labels.tif")
    np.testing.assert_array_equal(labels, Segmenter(model_path).predict(image))
    overlay = read_image(out / "overlay.png")
    assert overlay.shape == (512, 512, 3) and overlay.dtype == np.uint8
    background = labels != 1
    # untinted pixels keep their grey value (the sample spans 0..255), tinted ones are orange-shifted
    np.testing.assert_array_equal(overlay[background][:, 0], overlay[background][:, 2])
    assert (overlay[~background][:, 0].astype(int) - overlay[~background][:, 2]).min() > 0
    # the main job twice: the demo replaces its own files, and its folder ignores itself in git
    first = (out / "labels.tif").stat().st_mtime_ns
    assert main(["demo", "-o", str(out), "--model", str(model_path)]) == 0
    assert (out / "labels.tif").stat().st_mtime_ns >= first
    np.testing.assert_array_equal(read_image(out / "labels.tif"), labels)
    assert (out / ".gitignore").read_text().splitlines()[-1] == "*"
    # a folder the demo did not make is not written into without --force
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "labels.tif").write_bytes(b"my own file")
    assert main(["demo", "-o", str(mine), "--model", str(model_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (mine / "labels.tif").read_bytes() == b"my own file"
    assert main(["demo", "-o", str(mine), "--model", str(model_path), "--force"]) == 0


def test_demo_folder_does_not_dirty_a_git_checkout(tmp_path, model_path):
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    assert main(["demo", "-o", str(tmp_path / "unet-sdk-demo"), "--model", str(model_path)]) == 0
    status = subprocess.run([git, "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert status == ""
