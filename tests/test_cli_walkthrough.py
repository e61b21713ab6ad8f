"""The README's chain as a user runs it: `predict --proba` -> `evaluate --plots` -> read the report; and the
probability outputs of every format (TIFF, NPY, zarr, a folder of them) scored as they were written."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
tifffile = pytest.importorskip("tifffile")

from onnx_fixtures import make_model  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.cli.main import main  # noqa: E402
from sdk.metrics import isbi2012  # noqa: E402
from test_evaluate import membrane_stack  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "same.onnx"
    path.write_bytes(make_model("same", seed=5)[0])
    return path


@pytest.fixture
def files(tmp_path):
    truth, proposal = membrane_stack(21, depth=3)
    image = (proposal * 200 + 20).astype(np.uint8)  # something membrane-like for the model to see
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")  # 3 slices, not RGB
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    return tmp_path, image, truth


def test_predict_proba_then_evaluate_with_plots_then_read_the_report(files, model_path, capsys):
    folder, image, truth = files
    assert main(["predict", str(folder / "img.tif"), "-o", str(folder / "pred_proba.tif"), "--proba",
                 "-m", str(model_path), "--no-progress"]) == 0
    rc = main(["evaluate", str(folder / "truth.tif"), str(folder / "pred_proba.tif"), "-o",
               str(folder / "report.json"), "--plots", str(folder / "plots"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((folder / "report.json").read_text())
    assert [item["name"] for item in report["items"]] == ["truth[0]", "truth[1]", "truth[2]"]
    segmenter = Segmenter(model_path)
    foreground = segmenter.predict_proba(image)[segmenter.metadata.foreground_class]
    direct = isbi2012(truth, foreground)  # the library on the same probabilities
    assert report["pooled"]["rand_error"] == pytest.approx(direct.rand_error, abs=1e-12)
    assert report["pooled"]["warping_error"] == pytest.approx(direct.warping_error, abs=1e-12)
    plots = sorted(p.name for p in (folder / "plots").iterdir())
    assert "curves.png" in plots and any(name.startswith("overlay_") for name in plots)


@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_npy_and_zarr_probabilities(files, model_path, capsys, suffix):
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    folder, image, truth = files
    target = folder / f"p{suffix}"
    assert main(["predict", str(folder / "img.tif"), "-o", str(target), "--proba", "-m", str(model_path),
                 "--no-progress"]) == 0
    argv = ["evaluate", str(folder / "truth.tif"), str(target), "-o", str(folder / "r.json"), "--no-progress"]
    if suffix == ".npy":  # NPY holds no record of its classes: name the class
        assert main(argv) == 2
        assert "--channel K" in capsys.readouterr().err and not (folder / "r.json").exists()
        argv += ["--channel", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    expected = isbi2012(truth, Segmenter(model_path).predict_proba(image)[1])
    assert json.loads((folder / "r.json").read_text())["pooled"]["pixel_error"] == pytest.approx(
        expected.pixel_error, abs=1e-12)


def test_a_folder_of_predictions_pairs_with_the_truth_folder(files, model_path, capsys):
    folder, image, truth = files
    (folder / "images").mkdir(), (folder / "truth").mkdir()
    for z in range(2):
        tifffile.imwrite(folder / "images" / f"s{z}.tif", image[z])
        tifffile.imwrite(folder / "truth" / f"s{z}.tif", truth[z])
    assert main(["predict", str(folder / "images"), "-o", str(folder / "pred"), "--proba", "-m", str(model_path),
                 "--no-progress"]) == 0
    assert sorted(p.name for p in (folder / "pred").iterdir()) == ["s0_proba.tif", "s1_proba.tif"]
    rc = main(["evaluate", str(folder / "truth"), str(folder / "pred"), "-o", str(folder / "r.json"),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().out
    assert [i["name"] for i in json.loads((folder / "r.json").read_text())["items"]] == ["s0", "s1"]
    # instance labels pair the same way (s0_instances.tif with s0.tif)
    assert main(["predict", str(folder / "images"), "-o", str(folder / "objects"), "--instances",
                 "-m", str(model_path), "--no-progress"]) == 0
    assert main(["evaluate", str(folder / "truth"), str(folder / "objects"), "--no-progress",
                 "--metrics", "vi"]) == 0


def test_no_report_when_nothing_was_scored(files, capsys):
    folder, _, truth = files
    tifffile.imwrite(folder / "short.tif", truth[:, :-2])  # every slice has the wrong shape
    rc = main(["evaluate", str(folder / "truth.tif"), str(folder / "short.tif"), "-o", str(folder / "r.json"),
               "--csv", str(folder / "r.csv"), "--no-progress"])
    assert rc == 2 and "no report written" in capsys.readouterr().err
    assert not (folder / "r.json").exists() and not (folder / "r.csv").exists()


def test_plots_without_matplotlib_fail_before_scoring(files, monkeypatch, capsys):
    folder, _, truth = files
    tifffile.imwrite(folder / "labels.tif", truth)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    rc = main(["evaluate", str(folder / "truth.tif"), str(folder / "labels.tif"), "-o", str(folder / "r.json"),
               "--plots", str(folder / "plots"), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 2 and "pip install 'unet-sdk[plots]'" in captured.err
    assert "pooled" not in captured.out and not (folder / "r.json").exists()
