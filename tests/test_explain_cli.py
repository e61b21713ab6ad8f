"""``unet-sdk explain`` and the explainable layers in ``unet-sdk info`` (no torch)."""
import json

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
tifffile = pytest.importorskip("tifffile")

from explain_fixtures import marker_model  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.cli.main import main  # noqa: E402
from sdk.io import read_image  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain_cli")
    image = np.zeros((64, 80), np.float32)
    image[16:28, 8:20] = 1.0
    image[16:20, 28:32] = -1.0
    image[40:52, 56:68] = 1.0
    region = np.zeros(image.shape, np.uint8)
    region[40:52, 56:68] = 255
    model = folder / "marker.onnx"
    model.write_bytes(marker_model())
    tifffile.imwrite(folder / "scene.tif", image)
    tifffile.imwrite(folder / "region.tif", region)
    return folder, image, region


def test_writes_map_and_overlay(files, tmp_path, capsys):
    folder, image, _ = files
    out = tmp_path / "map.tif"
    assert main(["explain", str(folder / "scene.tif"), "-m", str(folder / "marker.onnx"), "-o", str(out),
                 "--layer", "context"]) == 0
    expected = Segmenter(str(folder / "marker.onnx"), device="cpu").explain(image, layer="context")
    np.testing.assert_array_equal(read_image(out), expected)  # default class foreground, region its prediction
    overlay = read_image(tmp_path / "map_overlay.png")
    assert overlay.shape == image.shape + (3,) and overlay.dtype == np.uint8
    hot = np.unravel_index(np.argmax(expected), expected.shape)
    assert overlay[hot][2] < overlay[hot][1]  # the hottest pixel is drawn yellow (viridis' top), not grey
    printed = capsys.readouterr().out
    assert "class 1 (marked)" in printed and "layer context" in printed and "144 pixels" in printed


def test_class_region_npy_and_overwrite(files, tmp_path, capsys):
    folder, image, region = files
    out = tmp_path / "plain.npy"
    args = ["explain", str(folder / "scene.tif"), "-m", str(folder / "marker.onnx"), "-o", str(out),
            "--class", "plain", "--region", str(folder / "region.tif"), "--layer", "features"]
    assert main(args) == 0
    expected = Segmenter(str(folder / "marker.onnx"), device="cpu").explain(
        image, target_class=0, region=region > 0, layer="features")
    np.testing.assert_array_equal(np.load(out), expected)
    assert main(args) == 2  # never overwrites unasked
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_errors_are_one_line(files, tmp_path, capsys):
    folder, _, _ = files
    scene, model = str(folder / "scene.tif"), str(folder / "marker.onnx")
    assert main(["explain", scene, "-m", model, "-o", str(tmp_path / "map.png")]) == 2
    assert "suffix" in capsys.readouterr().err
    assert main(["explain", scene, "-m", model, "-o", str(tmp_path / "m.tif"), "--layer", "bottleneck"]) == 2
    assert "context" in capsys.readouterr().err  # lists the layers there are
    assert main(["explain", scene, "-m", model, "-o", str(tmp_path / "m.tif"), "--class", "cell"]) == 2
    assert "plain, marked" in capsys.readouterr().err


def test_info_lists_explainable_layers(files, capsys):
    folder, _, _ = files
    assert main(["info", str(folder / "marker.onnx"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["explainable_layers"]) == ["features", "context", "decision"]
    assert report["explainable_layers"]["context"] == {"channels": 2, "stride": 8.0}
