"""Readers and atomic writers of sdk.io."""
import os

import numpy as np
import pytest

from sdk.errors import InvalidInputError, OutputExistsError
from sdk.io import atomic_output, read_image, write_array


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
