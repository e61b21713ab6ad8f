"""Segmenter against independent references: ORT on the whole mirror-padded image, numpy, flips."""
from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import require_shared

onnxruntime = pytest.importorskip("onnxruntime")

from onnx_fixtures import make_model, pointwise_reference, zscore  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.errors import InvalidInputError, ModelError, RuntimeUnavailableError  # noqa: E402
from sdk.model_metadata import Normalization  # noqa: E402
from sdk.tiling import plan_tiles  # noqa: E402


@pytest.fixture(scope="module")
def valid2d():
    return make_model("valid", seed=3)


@pytest.fixture(scope="module")
def same2d():
    return make_model("same", seed=4)


@pytest.fixture(scope="module")
def pointwise2d():
    return make_model("pointwise", in_channels=2, num_classes=3, seed=5)


def whole_image(model: bytes, image: np.ndarray, margin: int, multiple: int) -> np.ndarray:
    """Reference: one ORT call on the whole image, mirror-padded by the margin and up to an accepted
    size, cropped back. ``image`` is (C, *spatial), already normalised."""
    pads = [(0, 0)]
    for n in image.shape[1:]:
        total = n + 2 * margin
        pads.append((margin, margin + (-total) % multiple))
    padded = np.pad(image, pads, mode="reflect").astype(np.float32)
    out = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"image": padded[None]})
    return out[0][0][(slice(None),) + tuple(slice(0, n) for n in image.shape[1:])]


# -- exactness -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (101, 30), (9, 200)])
@pytest.mark.parametrize("tile", [8, 16, 30])
def test_overlap_tile_equals_whole_image_for_valid_padding(valid2d, shape, tile):
    model, _ = valid2d
    image = np.random.default_rng(sum(shape)).integers(0, 255, shape).astype(np.uint8)
    seg = Segmenter(model, tile=tile)
    assert seg.blend == "none" and seg.overlap == 0.0
    proba = seg.predict_proba(image)
    reference = whole_image(model, zscore(image[None]), margin=3, multiple=2)
    assert proba.shape == (2,) + shape and proba.dtype == np.float32
    np.testing.assert_allclose(proba, reference, atol=2e-6)
    assert np.array_equal(seg.predict(image), np.argmax(proba, axis=0))


def test_overlap_tile_equals_whole_image_3d():
    model, _ = make_model("valid", spatial_dims=3, features=2, seed=7)
    image = np.random.default_rng(0).random((19, 23, 14)).astype(np.float32)
    proba = Segmenter(model, tile=12).predict_proba(image)
    np.testing.assert_allclose(proba, whole_image(model, zscore(image[None]), 3, 2), atol=2e-6)


def test_same_padding_overlap_tile_with_a_halo_beyond_the_receptive_field_is_exact(same2d):
    # the fixture's receptive field reaches 4 px; tiles of 16 with overlap 0.5 keep centres 4 px in
    model, _ = same2d
    image = np.random.default_rng(1).normal(size=(64, 80))
    reference = whole_image(model, zscore(image[None]), 0, 2)
    exact = Segmenter(model, tile=16, overlap=0.5, blend="none").predict_proba(image)
    np.testing.assert_allclose(exact, reference, atol=2e-6)
    # without a halo, the zero padding at inner tile borders shows
    assert np.abs(Segmenter(model, tile=16, overlap=0.0, blend="none").predict_proba(image) - reference).max() > 1e-2


def test_default_overlap_keeps_the_models_halo_in_pixels_for_other_tile_sizes(caplog):
    # metadata: 16-px tiles sharing half (8 px: a 4-px halo each side, the fixture's receptive field)
    model, _ = make_model("same", seed=4, metadata=dict(tile_size=(16, 16), tile_overlap=0.5, blend="none"))
    image = np.random.default_rng(3).normal(size=(70, 90))
    reference = whole_image(model, zscore(image[None]), 0, 2)
    assert Segmenter(model, tile=16).overlap == 0.5  # at the model's own tile, the model's fraction
    for tile, expected in ((32, 0.25), (48, 8 / 48), (64, 0.125)):
        seg = Segmenter(model, tile=tile)
        assert seg.overlap == pytest.approx(expected)
        np.testing.assert_allclose(seg.predict_proba(image), reference, atol=2e-6)  # still exact
    assert Segmenter(model, tile=32, blend="gaussian").overlap == 0.5  # blending keeps the fraction
    for tile in (1, 8, 9):  # no room for the halo: grown to the smallest tile holding it, with a log line
        with caplog.at_level("INFO", logger="sdk.segmenter"):
            seg = Segmenter(model, tile=tile)
        # 8 px shared + one 2-px pooling step: a 10-px tile keeps 2 px
        assert seg.tile == (10, 10) and seg.overlap == pytest.approx(0.8)
        np.testing.assert_allclose(seg.predict_proba(image), reference, atol=2e-6)
    assert "smallest that does" in caplog.text


def test_same_padding_blending_is_close_to_whole_image(same2d):
    model, _ = same2d
    image = np.random.default_rng(2).normal(size=(96, 96))
    reference = whole_image(model, zscore(image[None]), 0, 2)
    gaussian, constant = (
        np.abs(Segmenter(model, tile=32, overlap=0.5, blend=b).predict_proba(image) - reference)
        for b in ("gaussian", "constant")
    )
    # only pixels near inner tile borders differ, and the gaussian weights play those borders down
    assert np.mean(gaussian) < 0.02 and np.mean(gaussian > 1e-3) < 0.2
    assert np.mean(gaussian) < 0.5 * np.mean(constant) and np.mean(constant) < 0.05
    # a single tile is the whole image: blending must then be exact
    one = Segmenter(model, tile=96, blend="gaussian").predict_proba(image)
    np.testing.assert_allclose(one, reference, atol=2e-6)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 70), st.integers(1, 70)),
    tile=st.integers(1, 40),
    overlap=st.floats(0, 0.9),
    blend=st.sampled_from(["none", "gaussian", "constant"]),
)
def test_pointwise_model_any_tiling_equals_numpy(pointwise2d, shape, tile, overlap, blend):
    """A per-pixel network makes every tiling exact: covers every pixel of odd sizes, any merge."""
    model, weights = pointwise2d
    image = np.random.default_rng(shape[0]).normal(3, 2, (2,) + shape).astype(np.float32)
    seg = Segmenter(model, tile=tile, overlap=overlap, blend=blend, batch_size=3)
    proba = seg.predict_proba(image)
    np.testing.assert_allclose(proba, pointwise_reference(zscore(image), weights), atol=3e-6)


def test_pointwise_3d_blending_equals_numpy():
    model, weights = make_model("pointwise", spatial_dims=3, seed=9)
    image = np.random.default_rng(3).random((21, 30, 17))
    proba = Segmenter(model, tile=(8, 16, 8), overlap=0.25, blend="gaussian").predict_proba(image)
    np.testing.assert_allclose(proba, pointwise_reference(zscore(image[None]), weights), atol=3e-6)


# -- axes, dtypes, normalisation ---------------------------------------------------------------------


def test_stack_of_slices_is_predicted_slice_by_slice(valid2d):
    model, _ = valid2d
    seg = Segmenter(model, tile=16)
    stack = np.random.default_rng(4).integers(0, 4000, (3, 30, 41)).astype(np.uint16)
    labels, proba = seg.predict(stack), seg.predict_proba(stack)
    assert labels.shape == (3, 30, 41) and proba.shape == (2, 3, 30, 41)
    for n in range(3):
        np.testing.assert_array_equal(labels[n], seg.predict(stack[n]))
        np.testing.assert_allclose(proba[:, n], seg.predict_proba(stack[n]), atol=1e-7)
    # a 3D array for a 1-channel 2D model is inferred as a stack; saying so explicitly changes nothing
    np.testing.assert_array_equal(seg.predict(stack, axes="NYX"), labels)


def test_channel_layouts(pointwise2d):
    model, weights = pointwise2d
    seg = Segmenter(model, tile=32)
    cyx = np.random.default_rng(5).random((2, 20, 25))
    expected = pointwise_reference(zscore(cyx), weights)
    np.testing.assert_allclose(seg.predict_proba(cyx), expected, atol=3e-6)
    np.testing.assert_allclose(seg.predict_proba(np.moveaxis(cyx, 0, -1)), expected, atol=3e-6)
    ncyx = np.stack([cyx, cyx[:, ::-1]])
    proba = seg.predict_proba(ncyx)
    assert proba.shape == (3, 2, 20, 25)
    np.testing.assert_allclose(proba[:, 0], expected, atol=3e-6)
    assert seg.predict(cyx).shape == (20, 25)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.int64, np.float16, np.float64, bool])
def test_any_real_dtype_is_normalised_like_float64(pointwise2d, dtype):
    model, weights = pointwise2d
    raw = np.random.default_rng(6).integers(0, 2 if dtype is bool else 100, (2, 17, 19))
    image = raw.astype(dtype)
    proba = Segmenter(model, tile=8).predict_proba(image)
    expected = pointwise_reference(zscore(image.astype(np.float64)), weights)
    np.testing.assert_allclose(proba, expected, atol=1e-5)


def test_normalisation_uses_whole_image_statistics_not_per_tile():
    # percentile normalisation of a gradient: per-tile statistics would give every tile the same range
    model, weights = make_model("pointwise", seed=11, normalization=Normalization(mode="percentile", low=1, high=99))
    image = np.add.outer(np.arange(200.0), np.arange(64.0))
    proba = Segmenter(model, tile=32, blend="none").predict_proba(image)
    lo, hi = np.percentile(image, [1, 99])
    np.testing.assert_allclose(proba, pointwise_reference(((image - lo) / (hi - lo))[None], weights), atol=3e-6)


# -- test-time augmentation --------------------------------------------------------------------------


def test_tta_is_the_mean_over_flipped_predictions(same2d):
    model, _ = same2d
    image = np.random.default_rng(7).normal(size=(32, 48)).astype(np.float32)
    seg = Segmenter(model, tile=64)  # one tile: flipping the tile is flipping the image
    expected = np.mean(
        [
            np.flip(seg.predict_proba(np.flip(image, axes)), [a + 1 for a in axes]) if axes else seg.predict_proba(image)
            for axes in [(), (0,), (1,), (0, 1)]
        ],
        axis=0,
    )
    tta = Segmenter(model, tile=64, tta=True).predict_proba(image)
    np.testing.assert_allclose(tta, expected, atol=2e-6)
    assert np.abs(tta - seg.predict_proba(image)).max() > 1e-3  # the random net is not flip-invariant


# -- outputs, memory ---------------------------------------------------------------------------------


def test_out_memmap_and_zarr(tmp_path, valid2d):
    model, _ = valid2d
    seg = Segmenter(model, tile=16)
    image = np.random.default_rng(8).random((2, 40, 33))
    shape, dtype = seg.output_spec(image.shape, proba=True)
    mm = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=dtype, shape=shape)
    assert seg.predict_proba(image, out=mm) is mm
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), seg.predict_proba(image))
    zarr = pytest.importorskip("zarr")
    z = zarr.open(str(tmp_path / "l.zarr"), mode="w", shape=(2, 40, 33), dtype="u1", chunks=(1, 16, 16))
    seg.predict(image, out=z)
    np.testing.assert_array_equal(z[...], seg.predict(image))
    with pytest.raises(InvalidInputError, match="shape"):
        seg.predict(image, out=np.zeros((40, 33), np.uint8))
    with pytest.raises(InvalidInputError, match="integer"):
        seg.predict(image, out=np.zeros((2, 40, 33), np.float32))


def test_memory_grows_with_the_output_not_per_class():
    # whole-image float32 buffers for 8 classes would take 8 x 4 x 2048 x 256 B = 16.8 MB; streaming
    # needs the uint8 labels (0.5 MB), a band of 64 rows (0.6 MB) and the normalisation statistics'
    # temporary (numpy's std makes one float64 copy of the image: 4.2 MB)
    model, _ = make_model("pointwise", num_classes=8, seed=12)
    image = np.random.default_rng(9).random((2048, 256)).astype(np.float32)
    seg = Segmenter(model, tile=64, overlap=0.25, blend="gaussian")
    seg.predict(image[:64, :64])  # warm-up: ORT's arenas are not what this test measures
    tracemalloc.start()
    labels = seg.predict(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert labels.shape == image.shape
    assert peak < 7e6, f"peak {peak / 1e6:.1f} MB"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from Linux's /proc")
def test_arena_memory_is_released_on_request_and_when_tiles_change_shape():
    # one 1024 x 1024 tile of an 8-class pointwise model: ORT's conv and softmax outputs take 2 x 32 MB
    model, _ = make_model("pointwise", num_classes=8, seed=13)
    seg = Segmenter(model, device="cpu", tile=1024, overlap=0.0, blend="none")
    image = np.random.default_rng(14).random((1024, 1024)).astype(np.float32)
    expected = seg.predict_proba(image)
    held = _rss_mb()
    seg.release_memory()
    assert held - _rss_mb() > 40, "release_memory() left the arena's 64 MB in place"
    np.testing.assert_array_equal(seg.predict_proba(image), expected)  # works as before afterwards
    held = _rss_mb()
    small = seg.predict(image[:64, :64])  # a new tile shape: the arena shrinks before its first run
    assert held - _rss_mb() > 40, "a new tile shape kept the old shape's memory"
    fresh = Segmenter(model, device="cpu", tile=1024, overlap=0.0, blend="none")
    np.testing.assert_array_equal(small, fresh.predict(image[:64, :64]))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="counts Linux page faults")
def test_later_runs_of_a_tile_shape_reuse_the_arena():
    import resource

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    model, _ = make_model("pointwise", num_classes=8, seed=13)
    seg = Segmenter(model, device="cpu", tile=1024, overlap=0.0, blend="none")
    image = np.random.default_rng(15).random((1024, 1024)).astype(np.float32)
    counts = []
    for _ in range(3):
        before = faults()
        seg.predict_proba(image)
        counts.append(faults() - before)
    # the first call maps ORT's 2 x 32 MB of activations and the 32 MB output (~25k pages); later calls
    # of the same shape run in the arena's memory (freeing the arena as the first run ended faulted the
    # activations in again on the second call: half the first call's faults)
    assert counts[0] > 12_000
    assert counts[1] < 0.2 * counts[0] and counts[2] < 0.2 * counts[0], counts


def test_progress_reports_every_tile(valid2d):
    model, _ = valid2d
    calls = []
    Segmenter(model, tile=16, batch_size=2).predict(np.zeros((2, 30, 30)) + np.arange(30), progress=lambda d, t: calls.append((d, t)))
    done, totals = zip(*calls)
    assert len(set(totals)) == 1 and done[-1] == totals[0] and list(done) == sorted(done)


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 10)), "empty"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or infinite"),
        (np.zeros((4, 4), np.complex64), "unsupported image dtype complex64"),
        (np.array([["a", "b"]]), "unsupported image dtype"),
        (np.array([[object(), 1]], dtype=object), "unsupported image dtype object"),
        (np.zeros(10), "does not fit this 2D model"),
        (np.zeros((2, 3, 4, 5, 6)), "does not fit"),
    ],
)
def test_bad_images_raise_typed_errors(valid2d, image, message):
    with pytest.raises(InvalidInputError, match=message):
        Segmenter(valid2d[0]).predict(image)


def test_wrong_channels_and_axes(pointwise2d, valid2d):
    seg = Segmenter(pointwise2d[0])
    with pytest.raises(InvalidInputError, match="model takes 2"):
        seg.predict(np.zeros((3, 10, 10)), axes="CYX")
    with pytest.raises(InvalidInputError, match=r"1 channel\(s\); the model takes 2 \(give a CYX array\)"):
        seg.predict(np.zeros((10, 10)))
    with pytest.raises(InvalidInputError, match="axes='ZYX' is not one of"):
        Segmenter(valid2d[0]).predict(np.zeros((4, 10, 10)), axes="ZYX")
    with pytest.raises(InvalidInputError, match="3 letters"):
        Segmenter(valid2d[0]).predict(np.zeros((10, 10)), axes="NYX")


def test_bad_models_raise_model_error(tmp_path, valid2d):
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        Segmenter(b"this is not a protobuf")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(valid2d[0][: len(valid2d[0]) // 2])
    with pytest.raises(ModelError, match="corrupt.onnx"):
        Segmenter(corrupt)
    with pytest.raises(ModelError, match="does not exist"):
        Segmenter(tmp_path / "missing.onnx")
    onnx = pytest.importorskip("onnx")
    proto = onnx.load_from_string(valid2d[0])
    del proto.metadata_props[:]
    with pytest.raises(ModelError, match="no unet-sdk metadata"):
        Segmenter(proto.SerializeToString())
    # metadata promising sizes the graph refuses (7x7 through a valid 3x3 convolution, a pooling and another)
    lying, _ = make_model("valid", seed=3, metadata={"min_input_size": 7, "input_size_offset": 1})
    with pytest.raises(ModelError, match=r"smallest accepted input \(1, 1, 7, 7\).*size rules"):
        Segmenter(lying)


def test_bad_options(valid2d):
    model = valid2d[0]
    with pytest.raises(InvalidInputError, match="device='tpu' is not one of"):
        Segmenter(model, device="tpu")
    for kwargs, message in [
        (dict(tile=0), "tile"),
        (dict(tile=(16, 16, 16)), "tile"),
        (dict(overlap=1.0), "overlap"),
        (dict(blend="average"), "blend"),
        (dict(batch_size=0), "batch_size"),
        (dict(threads=0), "threads"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            Segmenter(model, **kwargs)


def test_cuda_without_cuda_raises_instead_of_falling_back(valid2d):
    model = valid2d[0]
    auto = Segmenter(model)
    if auto.device == "cuda":
        pytest.skip("CUDA works here; tests/test_cuda.py covers it")
    assert auto.device == "cpu" and auto.providers == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeUnavailableError, match="device='cuda'.*unet-sdk\\[gpu\\]"):
        Segmenter(model, device="cuda")


class _GpuPackageWithoutCuda:
    """onnxruntime-gpu on a machine without CUDA libraries: lists CUDA, silently runs sessions on the CPU."""

    def __init__(self, real):
        self._real = real
        self.requested = []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def get_available_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def InferenceSession(self, data, sess_options=None, providers=None):
        self.requested.append(providers)
        return self._real.InferenceSession(data, sess_options=sess_options, providers=["CPUExecutionProvider"])


def test_listed_but_broken_cuda_is_detected(monkeypatch, valid2d):
    fake = _GpuPackageWithoutCuda(onnxruntime)
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    auto = Segmenter(valid2d[0])
    assert fake.requested[0][0][0] == "CUDAExecutionProvider"  # CUDA was asked for (with options) ...
    assert auto.device == "cpu"  # ... and the fallback was noticed
    with pytest.raises(RuntimeUnavailableError, match="listed but failed to load"):
        Segmenter(valid2d[0], device="cuda")


def test_missing_onnxruntime_names_the_extras(monkeypatch, valid2d):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(RuntimeUnavailableError, match=r"unet-sdk\[cpu\].*unet-sdk\[gpu\]"):
        Segmenter(valid2d[0])


# -- the shipped files and a real U-Net ---------------------------------------------------------------


def test_sample_image_is_slice_0_of_the_isbi_test_volume():
    from sdk.io import read_image
    from sdk.models import sample_image_path

    sample = read_image(sample_image_path())
    assert sample.shape == (512, 512) and sample.dtype == np.uint8
    volume = require_shared("isbi2012", "test-volume.tif")
    np.testing.assert_array_equal(sample, read_image(volume)[0])


def test_default_model_segments_the_sample():
    from sdk.io import read_image
    from sdk.models import sample_image_path

    seg = Segmenter()
    image = read_image(sample_image_path())
    labels = seg.predict(image)
    assert labels.shape == image.shape
    names = [name.lower() for name in seg.metadata.class_names]
    membrane = labels == names.index("membrane")
    # ISBI 2012 ground truth: 17-27 % membrane per slice, membranes dark (mean 85 vs 138 inside cells)
    assert 0.10 < membrane.mean() < 0.40
    assert image[membrane].mean() < image[~membrane].mean() - 20


def test_embedded_models_by_name(tmp_path, monkeypatch, valid2d):
    from sdk.io import read_image
    from sdk.models import EMBEDDED_MODELS, embedded_model_path, sample_image_path

    assert set(EMBEDDED_MODELS) == {"isbi2012", "isbi2012-int8"}
    image = read_image(sample_image_path())
    fp32 = Segmenter("isbi2012")
    int8 = Segmenter("isbi2012-int8")
    assert fp32.metadata == Segmenter().metadata
    assert int8.metadata.training["precision"].startswith("int8")
    assert fp32.metadata.class_names == int8.metadata.class_names
    # the int8 twin labels the slice as the fp32 model does, up to pixels near p = 0.5
    assert np.mean(fp32.predict(image) == int8.predict(image)) > 0.98
    with pytest.raises(ModelError, match="isbi2012-int8"):  # an unknown name lists the embedded ones
        Segmenter("isbi2013")
    with pytest.raises(ModelError, match="no embedded model"):
        embedded_model_path("isbi2013")
    # a file of that name in the working directory wins over the embedded model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "isbi2012").write_bytes(valid2d[0])
    assert Segmenter("isbi2012").metadata == Segmenter(valid2d[0]).metadata


def test_real_unet_valid_padding_tiles_exactly(tmp_path):
    pytest.importorskip("torch")
    from export.onnx_export import build_metadata, export_onnx
    from export.unet import UNet

    net = UNet(2, 1, 2, depth=2, base_features=4, padding="valid", batch_norm=False)
    meta = build_metadata(net, class_names=("a", "b"), normalization=Normalization())
    path = export_onnx(net, tmp_path / "unet.onnx", metadata=meta, check_parity=False)
    seg = Segmenter(path, tile=64)
    image = np.random.default_rng(10).normal(size=(150, 130)).astype(np.float32)
    proba = seg.predict_proba(image)
    m, mult = meta.output_margin, meta.input_size_multiple
    # whole-image reference with the offset rule of a valid U-Net
    pads = [(0, 0)]
    for n in image.shape:
        side = meta.valid_input_size_at_least(n + 2 * m)
        pads.append((m, side - n - m))
    padded = np.pad(zscore(image[None]), pads, mode="reflect").astype(np.float32)
    ref = onnxruntime.InferenceSession(path.read_bytes()).run(None, {"image": padded[None]})[0][0][:, :150, :130]
    assert mult == 4 and len(plan_tiles(image.shape, meta, tile=64, overlap=0, merge="none")) >= 9
    np.testing.assert_allclose(proba, ref, atol=1e-5)


def test_core_function_takes_any_predictor():
    """sliding_window_predict with a numpy predictor (3x3 box mean, valid): tiles == whole image."""
    from types import SimpleNamespace

    from sdk.inference import sliding_window_predict

    def box_mean(batch: np.ndarray) -> np.ndarray:  # (B, 1, n, n) -> (B, 1, n - 2, n - 2)
        h, w = batch.shape[2] - 2, batch.shape[3] - 2
        return sum(batch[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0

    rule = SimpleNamespace(
        input_size_multiple=1, output_margin=1,
        is_valid_input_size=lambda n: n >= 3, valid_input_size_at_least=lambda n: max(n, 3),
    )
    image = np.random.default_rng(12).random((1, 45, 38))
    out = sliding_window_predict(image, box_mean, rule, channels=1, tile=10, overlap=0.0, merge="none",
                                 activation="none", batch_size=4)
    padded = np.pad(image[0], 1, mode="reflect")
    np.testing.assert_allclose(out[0], box_mean(padded[None, None])[0, 0], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31), st.booleans())
def test_labels_from_proba_is_numpys_argmax(classes, seed, with_nan):
    # a coarse grid of values makes ties common: argmax gives the first class, as must the two-class shortcut
    from sdk.inference import label_dtype, labels_from_proba

    rng = np.random.default_rng(seed)
    proba = (rng.integers(0, 4, (classes, 7, 9)) / 3).astype(np.float32)
    if with_nan:
        proba[rng.integers(classes), rng.integers(7), rng.integers(9)] = np.nan
    got = labels_from_proba(proba)
    expected = (proba[0] >= 0.5) if classes == 1 else np.argmax(proba, axis=0)
    assert got.dtype == label_dtype(classes)
    np.testing.assert_array_equal(got, expected.astype(label_dtype(classes)))
