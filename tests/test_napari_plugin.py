"""The npe2 manifest and its reader, labels writer and sample data, used through napari as a user would
(the plugin registered from sdk/napari/napari.yaml); outputs come from the real ``unet-sdk predict``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("napari")
pytest.importorskip("pytestqt")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("zarr", minversion="3")
npe2 = pytest.importorskip("npe2")

from onnx_fixtures import make_model  # noqa: E402

import napari  # noqa: E402

import sdk.napari  # noqa: E402
from sdk import OutputExistsError, Segmenter  # noqa: E402
from sdk.cli.main import main  # noqa: E402
from sdk.io import load_image, read_image  # noqa: E402
from sdk.models import sample_image_path  # noqa: E402
from sdk.napari._evaluate import EvaluateWidget  # noqa: E402
from sdk.napari._explain import ExplainWidget  # noqa: E402
from sdk.napari._segment import SegmentWidget  # noqa: E402

MANIFEST = Path(sdk.napari.__file__).with_name("napari.yaml")


@pytest.fixture
def viewer(make_napari_viewer, npe2pm):
    with npe2pm.tmp_plugin(manifest=str(MANIFEST)):
        yield make_napari_viewer()


def test_manifest_is_valid_and_its_python_names_import():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()
    assert {w.display_name for w in manifest.contributions.widgets} == {"Segment", "Evaluate", "Explain"}


def test_widgets_and_sample_through_napari(viewer):
    for name, cls in (("Segment", SegmentWidget), ("Evaluate", EvaluateWidget), ("Explain", ExplainWidget)):
        _, widget = viewer.window.add_plugin_dock_widget("unet-sdk", name)
        assert isinstance(widget, cls)
    viewer.open_sample("unet-sdk", "isbi2012")
    np.testing.assert_array_equal(viewer.layers["ISBI 2012 test slice 0"].data, read_image(sample_image_path()))


def test_reader_opens_what_unet_sdk_predict_writes(viewer, tmp_path, capsys):
    model = tmp_path / "valid.onnx"
    model.write_bytes(make_model("valid", seed=2)[0])
    stack = np.random.default_rng(0).normal(size=(2, 30, 36)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cells.tif", stack, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"})
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "cells.tif"), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    assert main(["predict", str(tmp_path / "cells.tif"), "-o", str(out), "--model", str(model), "--proba",
                 "--format", "zarr", "--no-progress"]) == 0
    seg = Segmenter(model)

    (labels,) = viewer.open(str(out / "cells_labels.tif"), plugin="unet-sdk")
    assert labels._type_string == "labels"
    np.testing.assert_array_equal(labels.data, seg.predict(stack))
    np.testing.assert_allclose(labels.scale, (2.0, 0.25, 0.25))
    assert labels.metadata["unet_sdk"]["kind"] == "labels"

    layers = viewer.open(str(out / "cells_proba.zarr"), plugin="unet-sdk")
    assert [layer.name for layer in layers] == ["cells_proba P(class0)", "cells_proba P(class1)"]
    assert [layer.visible for layer in layers] == [False, True]  # the foreground class shown
    assert type(layers[1].data).__module__.startswith("dask")  # lazy
    np.testing.assert_allclose(np.asarray(layers[1].data), seg.predict_proba(stack)[1], rtol=0, atol=0)
    np.testing.assert_allclose(layers[1].scale, (2.0, 0.25, 0.25))


def test_files_not_named_like_our_outputs_are_left_to_other_readers(tmp_path):
    from sdk.napari.layer_io import get_reader

    assert get_reader(str(tmp_path / "cells.tif")) is None
    assert get_reader(str(tmp_path / "a_labels.png")) is None
    assert get_reader([str(tmp_path / "a_labels.tif"), str(tmp_path / "b_labels.tif")]) is None
    assert get_reader(str(tmp_path / "a_labels.npy")) is not None


@pytest.mark.parametrize("suffix", [".tif", ".zarr", ".npy"])
def test_labels_writer_keeps_pixel_size_and_never_overwrites(viewer, tmp_path, suffix):
    data = np.random.default_rng(1).integers(0, 40, (3, 20, 24)).astype(np.uint16)
    layer = viewer.add_labels(data, name="objects", scale=(2.0, 0.5, 0.5), metadata={"unet_sdk": {"kind": "instances"}})
    path = tmp_path / f"objects_instances{suffix}"
    napari.save_layers(str(path), [layer], plugin="unet-sdk")
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded.array, data)
    if suffix != ".npy":  # NPY holds no metadata
        assert loaded.calibration.scale == (2.0, 0.5, 0.5)
        assert loaded.record == {"kind": "instances"}
    with pytest.raises(OutputExistsError):
        napari.save_layers(str(path), [layer], plugin="unet-sdk")
    (reopened,) = viewer.open(str(path), plugin="unet-sdk")
    np.testing.assert_array_equal(np.asarray(reopened.data), data)
