"""OME-Zarr (NGFF) read/write helpers checked against the ome-zarr library's own writer and reader."""
from __future__ import annotations

import json

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402
from ome_zarr.writer import write_image  # noqa: E402

from sdk.calibration import Calibration  # noqa: E402
from sdk.errors import InvalidInputError, OutputExistsError  # noqa: E402
from sdk.ngff import create_ngff, is_ngff, read_ngff  # noqa: E402


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_created_label_image_reads_back_in_ome_zarr(tmp_path, version):
    path = tmp_path / "labels.zarr"
    cal = Calibration("ZYX", (2.0, 0.25, 0.5), ("micrometer",) * 3)
    array = create_ngff(path, (3, 40, 50), np.uint32, calibration=cal, labels=True, version=version,
                        chunks=(1, 16, 16))
    truth = np.random.default_rng(0).integers(0, 5, (3, 40, 50)).astype(np.uint32)
    for z in range(3):  # filled piece by piece, as a tiled prediction does
        array[z, :20] = truth[z, :20]
        array[z, 20:] = truth[z, 20:]
    node = list(Reader(parse_url(str(path)))())[0]
    assert [type(s).__name__ for s in node.specs] == ["Label", "Multiscales"]
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in node.metadata["axes"]} == {"micrometer"}
    assert node.metadata["coordinateTransformations"][0] == [{"type": "scale", "scale": [2.0, 0.25, 0.5]}]
    np.testing.assert_array_equal(np.asarray(node.data[0]), truth)
    assert is_ngff(path)


def test_reads_level0_of_an_ome_zarr_library_pyramid(tmp_path):
    path = tmp_path / "image.zarr"
    image = np.arange(2 * 3 * 64 * 64, dtype=np.uint16).reshape(2, 3, 64, 64)
    write_image(image, zarr.open_group(str(path), mode="w"), axes="czyx", scale_factors=(2,),
                scale={"z": 3.0, "y": 0.125, "x": 0.125},
                axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})
    ngff = read_ngff(path)
    assert ngff.calibration.axes == "CZYX"
    assert ngff.calibration.scale == (1.0, 3.0, 0.125, 0.125)
    assert ngff.calibration.units == (None, "micrometer", "micrometer", "micrometer")
    np.testing.assert_array_equal(np.asarray(ngff.array), image)


def test_multiscale_transformations_compose_with_the_dataset_ones(tmp_path):
    # hand-written NGFF 0.4 with a multiscale-wide scale and translation (spec: dataset's applied first)
    path = tmp_path / "t.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("s0", shape=(8, 8), dtype="u1", chunks=(8, 8))
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "y", "type": "space", "unit": "nanometer"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [4.0, 2.0]}, {"type": "translation", "translation": [1.0, 1.0]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [0.5, 10.0]},
                                      {"type": "translation", "translation": [100.0, 0.0]}],
    }]
    ngff = read_ngff(path)
    assert ngff.calibration.scale == (2.0, 20.0)
    assert ngff.translation == (100.5, 10.0)
    assert ngff.calibration.units == ("nanometer", None)


def test_bioformats2raw_container_opens_its_first_image(tmp_path):
    path = tmp_path / "b2r.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    create_ngff(path / "0", (16, 16), np.uint8)[...] = 9
    assert is_ngff(path)
    assert int(np.asarray(read_ngff(path).array).sum()) == 9 * 256


def test_refusals(tmp_path):
    with pytest.raises(InvalidInputError, match="cannot be written as OME-Zarr"):
        create_ngff(tmp_path / "a.zarr", (4, 3, 8), np.float32, calibration=Calibration.uncalibrated("YXC"))
    with pytest.raises(InvalidInputError, match="label image is integer"):
        create_ngff(tmp_path / "b.zarr", (8, 8), np.float32, labels=True)
    create_ngff(tmp_path / "c.zarr", (8, 8), np.uint8)
    with pytest.raises(OutputExistsError):
        create_ngff(tmp_path / "c.zarr", (8, 8), np.uint8)
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w").attrs["x"] = 1
    assert not is_ngff(plain)
    with pytest.raises(InvalidInputError, match="multiscales"):
        read_ngff(plain)
    bad = tmp_path / "bad.zarr"
    group = zarr.open_group(str(bad), mode="w", zarr_format=2)
    group.create_array("0", shape=(8, 8), dtype="u1", chunks=(8, 8))
    group.attrs["multiscales"] = json.loads('[{"version": "0.4", "axes": ["y", "x"], "datasets": '
                                            '[{"path": "0", "coordinateTransformations": '
                                            '[{"type": "scale", "scale": [1.0]}]}]}]')
    with pytest.raises(InvalidInputError, match="does not have 2 entries"):
        read_ngff(bad)
