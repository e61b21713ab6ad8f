"""`unet-sdk predict` on the files people have: colour, containers, OME-Zarr, folders, calibration, overlays,
output naming, devices/logging flags, interrupted writes (issue 12; issue 11 item 14)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
tifffile = pytest.importorskip("tifffile")

from conftest import TESTS_DIR, subprocess_env  # noqa: E402
from onnx_fixtures import make_model  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.cli.main import build_parser, main  # noqa: E402
from sdk.io import read_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "valid.onnx"
    path.write_bytes(make_model("valid", seed=31)[0])
    return path


@pytest.fixture(scope="module")
def segmenter(model_path):
    return Segmenter(model_path)


def _image(seed, shape=(40, 52)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def predict(*argv):
    return main(["predict", *map(str, argv), "--no-progress"])


# -- 12.1 colour and channels --------------------------------------------------------------------
def _grey(rgb):
    from skimage.color import rgb2gray

    return rgb2gray(rgb[..., :3])


@pytest.mark.parametrize("kind", ["rgb.png", "rgba.png", "rgb.tif"])
def test_colour_files_are_predicted_as_grey(tmp_path, model_path, segmenter, kind):
    from PIL import Image

    rgb = np.stack([_image(1), _image(2), _image(3), np.full((40, 52), 255, np.uint8)], axis=-1)
    if kind == "rgb.png":
        Image.fromarray(rgb[..., :3]).save(tmp_path / kind)
    elif kind == "rgba.png":
        Image.fromarray(rgb, mode="RGBA").save(tmp_path / kind)
    else:
        tifffile.imwrite(tmp_path / kind, rgb[..., :3], photometric="rgb")
    assert predict(tmp_path / kind, "-o", tmp_path / "out.tif", "-m", model_path) == 0
    labels = read_image(tmp_path / "out.tif")
    assert labels.shape == (40, 52)  # not 40 images of 52 x 3 pixels
    # scikit-image's luminance, independent of our conversion; the network is continuous, so the
    # labels agree except where a probability sits at 0.5 within float rounding
    expected = segmenter.predict(_grey(rgb).astype(np.float32))
    assert np.mean(labels == expected) > 0.999


@pytest.mark.parametrize("layout", ["samples", "numpy"])
def test_two_channel_tiff_is_a_channel_axis_not_a_stack(tmp_path, model_path, capsys, layout):
    two = np.stack([_image(4), _image(5)], axis=-1)  # (H, W, 2)
    if layout == "samples":  # two samples per pixel, as microscope software writes them
        tifffile.imwrite(tmp_path / "two.tif", two, photometric="minisblack", planarconfig="contig",
                         extrasamples=["unspecified"])
    else:  # tifffile's default: the numpy array's shape recorded in the file
        tifffile.imwrite(tmp_path / "two.tif", two)
    assert predict(tmp_path / "two.tif", "-o", tmp_path / "o.tif", "-m", model_path) == 2
    assert "channel" in capsys.readouterr().err  # a 1-channel model: a typed error, not 40 strips
    two_channel = tmp_path / "two_channel.onnx"
    two_channel.write_bytes(make_model("valid", in_channels=2, seed=8)[0])
    assert predict(tmp_path / "two.tif", "-o", tmp_path / "o.tif", "-m", two_channel) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "o.tif"),
                                  Segmenter(two_channel).predict(two, axes="YXC"))


# -- 12.3 output names ---------------------------------------------------------------------------
def test_output_suffix_rules(tmp_path, model_path, segmenter, capsys):
    image = _image(6)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "b.tif", image)
    assert predict(tmp_path / "a.tif", "-o", tmp_path / "out.jpg", "-m", model_path) == 2
    err = capsys.readouterr().err
    assert ".jpg" in err and ".tif" in err and ".zarr" in err and not (tmp_path / "out.jpg").exists()
    assert predict(tmp_path / "a.tif", tmp_path / "b.tif", "-o", tmp_path / "two.tif", "-m", model_path) == 2
    assert "names one file" in capsys.readouterr().err and not (tmp_path / "two.tif").exists()
    assert predict(tmp_path / "a.tif", "-o", tmp_path / "pred.png", "-m", model_path) == 0
    assert (tmp_path / "pred.png").is_file()
    np.testing.assert_array_equal(read_image(tmp_path / "pred.png"), segmenter.predict(image))
    assert predict(tmp_path / "a.tif", "-o", tmp_path / "run.v2", "-m", model_path) == 0  # not a file type
    assert (tmp_path / "run.v2" / "a_labels.tif").is_file()
    assert predict(tmp_path / "a.tif", "-o", tmp_path / "p.png", "--proba", "-m", model_path) == 2
    assert "PNG cannot hold probabilities" in capsys.readouterr().err


# -- 12.6 containers and OME-Zarr ----------------------------------------------------------------
def test_npz_key_zarr_array_and_key_option(tmp_path, model_path, segmenter):
    zarr = pytest.importorskip("zarr")
    image, other = _image(7), _image(8)
    np.savez(tmp_path / "multi.npz", img=image, other=other)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("raw", shape=image.shape, dtype=image.dtype)[...] = image
    group.create_array("other", shape=other.shape, dtype=other.dtype)[...] = other
    expected = segmenter.predict(image)
    assert predict(f"{tmp_path}/multi.npz:img", "-o", tmp_path / "n.tif", "-m", model_path) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "n.tif"), expected)
    assert predict(tmp_path / "g.zarr" / "raw", "-o", tmp_path / "z.tif", "-m", model_path) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "z.tif"), expected)
    out = tmp_path / "keyed"
    assert predict(tmp_path / "multi.npz", tmp_path / "g.zarr", "--key", "other", "-o", out, "-m", model_path) == 0
    assert sorted(p.name for p in out.iterdir()) == ["g_other_labels.tif", "multi_other_labels.tif"]
    np.testing.assert_array_equal(read_image(out / "g_other_labels.tif"), segmenter.predict(other))


def test_ome_zarr_in_and_out_keeps_the_scale(tmp_path, model_path, segmenter):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image

    volume = np.stack([_image(9), _image(10), _image(11)])
    source = tmp_path / "vol.ome.zarr"
    write_image(volume, zarr.open_group(str(source), mode="w"), axes="zyx", scale_factors=(2,),
                scale={"z": 0.5, "y": 0.125, "x": 0.25},
                axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})
    out = tmp_path / "out"
    assert predict(source, "-o", out, "--format", "zarr", "-m", model_path) == 0
    target = out / "vol_labels.zarr"  # the stem drops .ome
    node = list(Reader(parse_url(str(target)))())[0]
    np.testing.assert_array_equal(np.asarray(node.data[0]), segmenter.predict(volume))
    assert node.metadata["coordinateTransformations"][0] == [{"type": "scale", "scale": [0.5, 0.125, 0.25]}]
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert {a.get("unit") for a in node.metadata["axes"]} == {"micrometer"}
    assert "Label" in [type(s).__name__ for s in node.specs]  # napari opens it as a labels layer


# -- 12.7 folders, globs, failures ---------------------------------------------------------------
def test_directories_globs_mirroring_and_continue_on_error(tmp_path, model_path, segmenter, capsys):
    for folder, seed in (("a", 12), ("b", 13)):
        (tmp_path / "in" / folder).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "in" / folder / "x.tif", _image(seed))
    (tmp_path / "in" / "a" / "bad.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    rc = predict(tmp_path / "in" / "a", tmp_path / "in" / "b", "-o", out, "-m", model_path)
    captured = capsys.readouterr()
    assert rc == 1
    assert "1 of 3 input(s) failed" in captured.err and "bad.tif" in captured.err
    for folder, seed in (("a", 12), ("b", 13)):  # same names from two folders stay apart
        np.testing.assert_array_equal(read_image(out / folder / "x_labels.tif"), segmenter.predict(_image(seed)))
    assert not (out / "a" / "bad_labels.tif").exists()
    glob_out = tmp_path / "glob_out"
    assert predict(str(tmp_path / "in" / "*" / "x.tif"), "-o", glob_out, "-m", model_path) == 0
    assert sorted(str(p.relative_to(glob_out)) for p in glob_out.rglob("*.tif")) == [
        "a/x_labels.tif", "b/x_labels.tif"]
    assert predict(str(tmp_path / "in" / "*.nothing"), "-o", glob_out, "-m", model_path) == 2
    assert "matches no image files" in capsys.readouterr().err


# -- 12.10 calibration ---------------------------------------------------------------------------
def test_imagej_pixel_size_reaches_labels_and_probabilities(tmp_path, model_path):
    stack = np.stack([_image(14), _image(15)])
    tifffile.imwrite(tmp_path / "vol.tif", stack, imagej=True, resolution=(1 / 0.004, 1 / 0.008),
                     metadata={"axes": "ZYX", "spacing": 0.05, "unit": "micron"})
    assert predict(tmp_path / "vol.tif", "-o", tmp_path / "out", "-m", model_path) == 0
    with tifffile.TiffFile(tmp_path / "out" / "vol_labels.tif") as tif:
        page = tif.pages[0]
        x_num, x_den = page.tags["XResolution"].value
        y_num, y_den = page.tags["YResolution"].value
        assert x_den / x_num == pytest.approx(0.004) and y_den / y_num == pytest.approx(0.008)
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.05)
        assert tif.imagej_metadata["unit"] == "micron"
        assert tif.series[0].axes == "ZYX"
        assert (tif.imagej_metadata["min"], tif.imagej_metadata["max"]) == (0, 1)  # visible in Fiji
    assert predict(tmp_path / "vol.tif", "-o", tmp_path / "p", "--proba", "-m", model_path) == 0
    with tifffile.TiffFile(tmp_path / "p" / "vol_proba.tif") as tif:
        assert tif.series[0].axes == "ZCYX"  # ImageJ's hyperstack order, classes as channels
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.05)
        assert tif.imagej_metadata["Labels"] == ["class0", "class1"] * 2  # Fiji names each channel


def test_ome_tiff_pixel_size_and_stem(tmp_path, model_path):
    tifffile.imwrite(tmp_path / "cells.ome.tif", _image(16), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
                               "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    assert predict(tmp_path / "cells.ome.tif", "-o", tmp_path / "out", "--instances", "-m", model_path) == 0
    target = tmp_path / "out" / "cells_instances.tif"  # not cells.ome_instances.tif
    with tifffile.TiffFile(target) as tif:
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.3) and tif.imagej_metadata["unit"] == "micron"
        lut = np.asarray(tif.imagej_metadata["LUTs"]).reshape(3, 256)  # objects in random colours
        assert (lut[:, 0] == 0).all() and (lut[:, 1:].max(axis=0) > 0).all()


def test_instances_are_scikit_image_components_of_the_foreground(tmp_path, model_path, segmenter):
    from skimage.measure import label

    image = _image(17, (64, 64))
    tifffile.imwrite(tmp_path / "a.tif", image)
    assert predict(tmp_path / "a.tif", "-o", tmp_path / "i.tif", "--instances", "-m", model_path) == 0
    instances = read_image(tmp_path / "i.tif")
    reference = label(segmenter.predict(image) == segmenter.metadata.foreground_class, connectivity=1)
    # the same partition (ids may be numbered differently)
    pairs = set(zip(instances.ravel().tolist(), reference.ravel().tolist()))
    assert len(pairs) == len(np.unique(instances)) == len(np.unique(reference))


# -- 12.12 overlays ------------------------------------------------------------------------------
def test_overlay_png_per_slice(tmp_path, model_path, segmenter):
    from PIL import Image

    stack = np.stack([_image(18), _image(19)])
    tifffile.imwrite(tmp_path / "s.tif", stack)
    assert predict(tmp_path / "s.tif", "-o", tmp_path / "out", "--overlay", "-m", model_path) == 0
    labels = segmenter.predict(stack)
    for z in range(2):
        with Image.open(tmp_path / "out" / f"s_overlay_z{z:04d}.png") as png:
            rgb = np.asarray(png.convert("RGB")).astype(int)
        tinted = rgb[..., 0] != rgb[..., 2]  # grey pixels have R == G == B
        np.testing.assert_array_equal(tinted & (labels[z] == 1), labels[z] == 1)
        assert not tinted[labels[z] != 1].any()


# -- 12.13 devices, verbosity, pipes, extras -----------------------------------------------------
def test_device_and_verbosity_options_parse():
    parser = build_parser()
    args = parser.parse_args(["predict", "a.tif", "-o", "o", "--device", "cuda:1", "-q"])
    assert args.device == "cuda:1" and args.quiet == 1 and args.verbose == 0
    assert parser.parse_args(["info", "-vv"]).verbose == 2
    assert parser.parse_args(["-v", "info"]).verbose == 1
    for bad in ("cuda:x", "gpu", "cuda:-1"):
        with pytest.raises(SystemExit):
            parser.parse_args(["predict", "a.tif", "-o", "o", "--device", bad])


@pytest.mark.cuda
def test_predict_on_cuda_device_zero(tmp_path, model_path):
    if Segmenter(model_path).device != "cuda":
        pytest.skip("no CUDA device")
    tifffile.imwrite(tmp_path / "a.tif", _image(20))
    assert predict(tmp_path / "a.tif", "-o", tmp_path / "o.tif", "--device", "cuda:0", "-m", model_path) == 0


def _run(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=TESTS_DIR, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120, **kw)


def test_info_json_into_a_closed_pipe_ends_quietly(model_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, as `| head` after its lines
    try:
        done = subprocess.run([sys.executable, "-m", "sdk.cli.main", "info", str(model_path), "--json"],
                              cwd=TESTS_DIR, env=subprocess_env(), stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_unet_export_without_the_train_extra_names_it():
    done = _run("""
        import sys
        sys.modules["torch"] = None  # as if the train extra were not installed
        from export.cli import main
        sys.exit(main(["train", "--images", "x.tif", "--labels", "y.tif", "--out", "runs/x"]))
    """)
    assert done.returncode == 2
    assert "pip install 'unet-sdk[train]'" in done.stderr and "Traceback" not in done.stderr


def test_help_has_no_rest_markup_and_every_option_has_help(capsys):
    from export.cli import build_parser as export_parser

    for parser in (build_parser(), export_parser()):
        sub = next(a for a in parser._actions if a.dest == "command")
        for name, subparser in sub.choices.items():
            assert "``" not in subparser.format_help(), name
            for action in subparser._actions:
                assert action.help, f"{parser.prog} {name} {action.option_strings or action.dest}"


# -- issue 11 item 14: interrupted writes, dangling symlinks -------------------------------------
def test_a_killed_write_leaves_a_partial_that_the_next_run_removes(tmp_path, model_path):
    target = tmp_path / "out.npy"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from sdk.atomic import atomic_output
        with atomic_output({str(target)!r}) as tmp:
            tmp.write_bytes(b"x" * 1000)
            print("writing", flush=True)
            time.sleep(60)
    """)], cwd=TESTS_DIR, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    partials = [p for p in tmp_path.iterdir() if p.name != target.name]
    assert len(partials) == 1 and ".unet-sdk-partial-" in partials[0].name and not target.exists()
    tifffile.imwrite(tmp_path / "a.tif", _image(21))
    assert predict(tmp_path / "a.tif", "-o", target, "-m", model_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "out.npy"]


def test_a_dangling_symlink_is_an_existing_output(tmp_path, model_path, capsys):
    tifffile.imwrite(tmp_path / "a.tif", _image(22))
    target = tmp_path / "o.tif"
    os.symlink(tmp_path / "nowhere.tif", target)
    assert predict(tmp_path / "a.tif", "-o", target, "-m", model_path) == 2
    assert "--force" in capsys.readouterr().err and target.is_symlink()
    assert predict(tmp_path / "a.tif", "-o", target, "-m", model_path, "--force") == 0
    assert not target.is_symlink() and read_image(target).shape == (40, 52)


# -- 12.8 running from a source folder without the compiled core ---------------------------------
def test_missing_core_says_what_happened_and_what_to_do(tmp_path):
    import shutil

    shutil.copytree(REPO / "sdk", tmp_path / "sdk", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    done = subprocess.run([sys.executable, "-c", "from sdk.metrics import isbi2012"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode != 0
    assert "non-editable" in done.stderr and "pip install -e" in done.stderr


def test_probability_file_records_its_classes(tmp_path, model_path):
    """Probability outputs say what their channels are (read back with tifffile, not our reader)."""
    tifffile.imwrite(tmp_path / "a.tif", _image(23))
    assert predict(tmp_path / "a.tif", "-o", tmp_path / "p.tif", "--proba", "-m", model_path) == 0
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        record = json.loads(tif.imagej_metadata["Properties"]["unet_sdk"])
    assert record["kind"] == "probabilities" and record["foreground_class"] == 1
    assert record["axes"] == "CYX" and len(record["class_names"]) == 2
