"""Readers and atomic writers of sdk.io."""
import os
from pathlib import Path

import numpy as np
import pytest

from sdk.errors import InvalidInputError, OutputExistsError
from sdk.atomic import atomic_output
from sdk.io import read_image, write_array


@pytest.mark.parametrize("suffix", [".tif", ".npy", ".png", ".zarr"])
def test_write_then_read_round_trips(tmp_path, suffix):
    rng = np.random.default_rng(1)
    array = rng.integers(0, 255, (3, 20, 30) if suffix != ".png" else (20, 30), dtype=np.uint8)
    path = write_array(tmp_path / f"a{suffix}", array)
    np.testing.assert_array_equal(read_image(path), array)
    assert [p.name for p in tmp_path.iterdir()] == [f"a{suffix}"]  # no temp files left


def test_tiff_stack_whose_last_axis_is_three_stays_a_stack(tmp_path):
    array = np.arange(2 * 5 * 3, dtype=np.uint16).reshape(2, 5, 3)
    np.testing.assert_array_equal(read_image(write_array(tmp_path / "s.tif", array)), array)


def test_refuses_to_overwrite_unless_asked(tmp_path):
    path = write_array(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(OutputExistsError, match="--force"):
        write_array(path, np.ones(3))
    np.testing.assert_array_equal(np.load(path), np.zeros(3))
    write_array(path, np.ones(3), overwrite=True)
    np.testing.assert_array_equal(np.load(path), np.ones(3))


def test_overwrite_replaces_a_zarr_directory(tmp_path):
    path = write_array(tmp_path / "a.zarr", np.zeros((4, 4)))
    write_array(path, np.ones((4, 4)), overwrite=True)
    np.testing.assert_array_equal(read_image(path), np.ones((4, 4)))


def test_failure_while_writing_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash in the middle")
    assert list(tmp_path.iterdir()) == []


def test_npz_key_selection(tmp_path):
    np.savez(tmp_path / "one.npz", x=np.arange(3))
    np.savez(tmp_path / "two.npz", a=np.arange(2), b=np.arange(4))
    np.testing.assert_array_equal(read_image(tmp_path / "one.npz"), np.arange(3))
    np.testing.assert_array_equal(read_image(tmp_path / "two.npz", key="b"), np.arange(4))
    with pytest.raises(InvalidInputError, match="name one with key"):
        read_image(tmp_path / "two.npz")
    with pytest.raises(InvalidInputError, match="no array 'c'"):
        read_image(tmp_path / "two.npz", key="c")


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("missing.tif", None, "no such file"),
        ("corrupt.tif", b"not a tiff at all", "cannot read"),
        ("corrupt.png", b"\x89PNG broken", "cannot read"),
        ("corrupt.npy", b"garbage", "cannot read"),
        ("image.xyz", b"", "unsupported file type"),
    ],
)
def test_unreadable_inputs_raise_invalid_input_naming_the_file(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=fragment) as info:
        read_image(path)
    assert name in str(info.value)


def test_write_rejects_unknown_suffix_and_bad_png_shape(tmp_path):
    with pytest.raises(InvalidInputError, match="cannot write"):
        write_array(tmp_path / "a.xyz", np.zeros(3))
    with pytest.raises(InvalidInputError, match="PNG holds 2D"):
        write_array(tmp_path / "a.png", np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(InvalidInputError, match="does not exist"):
        write_array(tmp_path / "nodir" / "a.npy", np.zeros(3))
    assert sorted(os.listdir(tmp_path)) == []


# -- containers, calibration, partial files --------------------------------------------------------
def test_container_paths_and_output_stems(tmp_path):
    from sdk.io import image_stem, is_image_path, split_image_path

    assert split_image_path("d/multi.npz:img") == (Path("d/multi.npz"), "img")
    assert split_image_path("d/v.zarr/raw/0") == (Path("d/v.zarr"), "raw/0")
    assert split_image_path("d/v.zarr") == (Path("d/v.zarr"), None)
    assert split_image_path("C:/data/a.tif") == (Path("C:/data/a.tif"), None)
    assert is_image_path("multi.npz:img") and is_image_path("v.zarr/raw") and not is_image_path("notes.txt")
    assert image_stem("x/vol.ome.tif") == "vol" and image_stem("m.npz:img") == "m_img"
    assert image_stem("v.ome.zarr/labels/cells") == "v_labels_cells"
    np.savez(tmp_path / "m.npz", img=np.arange(4))
    np.testing.assert_array_equal(read_image(f"{tmp_path}/m.npz:img"), np.arange(4))


def test_imagej_and_ome_calibration_is_read(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from sdk.io import load_image

    tifffile.imwrite(tmp_path / "ij.tif", np.zeros((2, 8, 9), np.uint8), imagej=True, resolution=(4.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 3.0, "unit": "\\u00B5m"})  # ImageJ's escaped µ
    calibration = load_image(tmp_path / "ij.tif").calibration
    assert calibration.axes == "ZYX" and calibration.scale == (3.0, 0.5, 0.25)
    assert calibration.units == ("micrometer",) * 3
    tifffile.imwrite(tmp_path / "o.ome.tif", np.zeros((8, 9), np.uint16), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 65.0, "PhysicalSizeXUnit": "nm"})
    calibration = load_image(tmp_path / "o.ome.tif").calibration
    assert calibration.of("X") == (65.0, "nanometer") and calibration.of("Y") == (1.0, None)


def test_calibrated_writes_read_back_by_tifffile(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from sdk.calibration import Calibration

    calibration = Calibration("ZYX", (0.05, 0.004, 0.004), ("micrometer",) * 3)
    labels = np.arange(2 * 5 * 6, dtype=np.int64).reshape(2, 5, 6)
    write_array(tmp_path / "l.tif", labels, calibration=calibration, labels="instances", record={"k": 1})
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:  # ImageJ: 16-bit, calibrated, same values
        assert tif.is_imagej and tif.series[0].dtype == np.uint16
        np.testing.assert_array_equal(tif.asarray(), labels)
        assert tif.imagej_metadata["spacing"] == 0.05 and tif.imagej_metadata["unit"] == "micron"
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.004)
    big = labels + 70000  # beyond 16 bits: OME-TIFF keeps the type and the pixel size
    write_array(tmp_path / "big.tif", big.astype(np.uint32), calibration=calibration, labels="instances")
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_ome and tif.series[0].dtype == np.uint32
        np.testing.assert_array_equal(tif.asarray(), big)
        assert 'PhysicalSizeX="0.004"' in tif.ome_metadata and 'PhysicalSizeZ="0.05"' in tif.ome_metadata


def test_partials_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    import socket
    import subprocess
    import sys

    from sdk.atomic import PARTIAL_MARK, remove_stale_partials

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = socket.gethostname()
    stale = tmp_path / f".out.npy{PARTIAL_MARK}{host}-{dead}-abc.npy"
    stale_dir = tmp_path / f".b.zarr{PARTIAL_MARK}{host}-{dead}-d.zarr"
    live = tmp_path / f".out.npy{PARTIAL_MARK}{host}-{os.getpid()}-def.npy"  # this process: still writing
    elsewhere = tmp_path / f".out.npy{PARTIAL_MARK}another-host-{dead}-x.npy"  # its pids mean nothing here
    for path in (stale, live, elsewhere):
        path.write_bytes(b"partial")
    (stale_dir / "0").mkdir(parents=True)
    assert sorted(remove_stale_partials(tmp_path)) == sorted([stale, stale_dir])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name])
