"""Segmenter against hostile and unusual input (issue 11 items 3, 6, 8, 10-13; issue 12 items 1, 2, 11, 13-15):
every case is a correct result, checked against an independent reference, or a typed error naming the cause."""
from __future__ import annotations

import logging
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx_fixtures import make_model, pointwise_reference, zscore  # noqa: E402

import sdk  # noqa: E402
from sdk import Segmenter, image_statistics  # noqa: E402
from sdk.errors import InvalidInputError, ModelError, RuntimeUnavailableError  # noqa: E402
from sdk.model_metadata import PREFIX, Normalization  # noqa: E402
from sdk.models import embedded_model_path  # noqa: E402
from sdk.runtime import MAX_THREADS_PER_CORE, default_threads, parse_device  # noqa: E402


@pytest.fixture(scope="module")
def pointwise():
    return make_model("pointwise", seed=5)


@pytest.fixture(scope="module")
def same2d():
    return make_model("same", seed=4)


def _with_props(model: bytes, **props: str) -> bytes:
    proto = onnx.load_from_string(model)
    values = {p.key: p.value for p in proto.metadata_props}
    values.update({PREFIX + k: v for k, v in props.items()})
    del proto.metadata_props[:]
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


# -- item 3: finite images, finite output ---------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e39, 1e300])
def test_huge_and_tiny_finite_images_normalise_like_the_unscaled_image(pointwise, scale):
    # z-score is scale-invariant: any finite scale must give the unscaled image's probabilities
    model, weights = pointwise
    image = np.random.default_rng(0).random((40, 50))
    proba = Segmenter(model).predict_proba(image * scale)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba, pointwise_reference(zscore(image[None]), weights), atol=1e-5)


def test_fixed_normalisation_overflowing_float32_is_a_typed_error():
    model, _ = make_model("pointwise", seed=5, normalization=Normalization(mode="fixed", mean=0.0, std=2.0))
    with pytest.raises(InvalidInputError, match="overflow float32 \\(normalization 'fixed'"):
        Segmenter(model).predict_proba(np.full((8, 8), 1e39))


@pytest.mark.parametrize(
    "normalization, message",
    [
        ('{"mode": "per_image_zscore", "eps": 0}', "eps must be > 0"),
        ('{"mode": "fixed", "mean": NaN}', "mean must be a finite number"),
        ('{"mode": "fixed", "std": Infinity}', "std must be a finite number"),
        ('{"mode": "percentile", "low": 50, "high": 10}', "low < high"),
    ],
)
def test_normalisations_that_cannot_give_finite_values_are_refused_on_load(pointwise, normalization, message):
    with pytest.raises(ModelError, match=message):
        Segmenter(_with_props(pointwise[0], normalization=normalization))


def test_non_finite_network_output_is_a_model_error(pointwise):
    proto = onnx.load_from_string(pointwise[0])
    weight = next(i for i in proto.graph.initializer if i.name == "head_w")
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] = np.inf  # inf * 0-mean inputs: inf - inf = NaN somewhere
    weight.CopyFrom(onnx.numpy_helper.from_array(values, "head_w"))
    with pytest.raises(ModelError, match="NaN or infinite values for a finite input"):
        Segmenter(proto.SerializeToString()).predict_proba(np.random.default_rng(1).random((16, 16)))


# -- item 10: statistics in bounded memory, exact --------------------------------------------------------

DTYPES = ["u1", "i1", "u2", "<i2", ">i2", "i4", ">u4", "i8", "u8", "f2", "f4", ">f4", "f8", "?"]


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)),
    spread=st.sampled_from([1.0, 1e3, 1e9]),
    block=st.sampled_from([1, 7, 64, 1 << 22]),
    q=st.lists(st.floats(0, 100), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_block_statistics_equal_numpy(dtype, shape, spread, block, q, seed):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_statistics, "BLOCK_ELEMENTS", block)  # small blocks: many merges
        _check_statistics(np.dtype(dtype), shape, spread, q, seed)


def _check_statistics(dtype, shape, spread, q, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(0, spread, shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(values, info.min, info.max)
    if dtype.kind == "u":
        values = np.abs(values)
    image = values.astype(dtype)
    reference = image.astype(np.float64).reshape(shape[0], -1)
    mean, std = image_statistics.mean_std(image)
    np.testing.assert_allclose(mean, reference.mean(axis=1), rtol=1e-12, atol=1e-12 * spread)
    np.testing.assert_allclose(std, reference.std(axis=1), rtol=1e-9, atol=1e-9 * spread)
    lows, highs = image_statistics.min_max(image)
    assert np.array_equal(lows, reference.min(axis=1)) and np.array_equal(highs, reference.max(axis=1))
    expected = np.percentile(reference, q, axis=1)
    np.testing.assert_allclose(image_statistics.percentiles(image, q), expected, rtol=1e-14, atol=0)


def test_std_of_a_large_offset_has_no_cancellation():
    # E[x^2] - E[x]^2 loses every digit here; the pairwise merge keeps them
    x = (1e9 + np.random.default_rng(0).normal(0, 1e-3, (1, 300, 300))).astype(np.float64)
    _, std = image_statistics.mean_std(x)
    expected = np.std(x[0] - 1e9)
    assert abs(std[0] - expected) < 1e-6 * expected


def test_statistics_memory_follows_the_block_not_the_image(monkeypatch, tmp_path):
    monkeypatch.setattr(image_statistics, "BLOCK_ELEMENTS", 1 << 14)
    image = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(1, 2048, 2048))
    image[:] = np.random.default_rng(0).integers(0, 256, image.shape, dtype=np.uint8)
    for mode in ("per_image_zscore", "per_image_minmax", "percentile"):
        tracemalloc.start()
        Normalization(mode=mode).statistics(image)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # a float64 copy of the image is 32 MiB; a 16 Ki-element block's float64 work is 128 KiB
        assert peak < 2 * 2**20, (mode, peak)


def test_output_that_cannot_fit_in_memory_is_refused_before_the_work(monkeypatch, pointwise, tmp_path):
    import sdk.sizing

    calls = []
    monkeypatch.setattr(sdk.sizing, "available_memory", lambda: 1000)
    seg = Segmenter(pointwise[0])
    monkeypatch.setattr(seg._runtime, "run", lambda batch: calls.append(batch))
    image = np.zeros((64, 64), np.uint8)
    with pytest.raises(InvalidInputError, match="more than the 0.0 GB of memory available: pass out="):
        seg.predict_proba(image)
    assert not calls
    monkeypatch.undo()
    shape, dtype = seg.output_spec(image.shape, proba=True)
    out = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=dtype, shape=shape)
    assert seg.predict_proba(image, out=out) is out


# -- items 8 and 13 (issue 12): threads and devices ------------------------------------------------------


def test_threads_are_validated_and_capped(pointwise, caplog):
    for bad in (0, -1, 2**33, 1.5, True, "4"):
        with pytest.raises(InvalidInputError, match="threads="):
            Segmenter(pointwise[0], threads=bad)
    cap = MAX_THREADS_PER_CORE * default_threads()
    with caplog.at_level(logging.WARNING, logger="sdk.runtime"):
        seg = Segmenter(pointwise[0], threads=512)
    assert seg._runtime.threads == cap and f"capped at {cap}" in caplog.text
    assert Segmenter(pointwise[0], threads=1)._runtime.threads == 1


@pytest.mark.parametrize(
    "device, expected",
    [("auto", ("auto", 0)), ("cpu", ("cpu", 0)), ("cuda", ("cuda", 0)), ("cuda:0", ("cuda", 0)), ("cuda:3", ("cuda", 3))],
)
def test_device_names_parse(device, expected):
    assert parse_device(device) == expected


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1:2", "cpu:0", "cuda:99999", "CUDA", 0, None])
def test_bad_device_names_are_typed_errors(device):
    with pytest.raises(InvalidInputError, match="'cuda:N'"):
        parse_device(device)


class _RecordingCudaPackage:
    """onnxruntime listing CUDA: records the providers a session asks for, runs it on the CPU."""

    def __init__(self, real):
        self._real, self.requested = real, []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def get_available_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def InferenceSession(self, data, sess_options=None, providers=None):
        self.requested.append(providers)
        return self._real.InferenceSession(data, sess_options=sess_options, providers=["CPUExecutionProvider"])


def test_cuda_n_asks_ort_for_gpu_n(monkeypatch, pointwise):
    fake = _RecordingCudaPackage(onnxruntime)
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    with pytest.raises(RuntimeUnavailableError, match="device='cuda:2'"):
        Segmenter(pointwise[0], device="cuda:2")
    provider, options = fake.requested[-1][0]
    assert provider == "CUDAExecutionProvider" and options["device_id"] == "2"


@pytest.mark.cuda
def test_cuda_0_runs_on_the_gpu(pointwise):
    try:
        seg = Segmenter(pointwise[0], device="cuda:0")
    except RuntimeUnavailableError as exc:
        pytest.skip(f"CUDA is not usable here: {exc}")
    image = np.random.default_rng(0).random((64, 64))
    assert seg.device == "cuda"
    np.testing.assert_allclose(seg.predict_proba(image), Segmenter(pointwise[0], device="cpu").predict_proba(image), atol=1e-5)


# -- item 6: digests ---------------------------------------------------------------------------------------


def _weight_spans(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the shipped model's weights inside its file (found by their raw bytes)."""
    spans = []
    for init in onnx.load_from_string(data).graph.initializer:
        raw = init.raw_data
        start = data.find(raw) if len(raw) >= 64 else -1
        if start >= 0 and data.find(raw, start + 1) < 0:  # located unambiguously
            spans.append((start, start + len(raw)))
    assert sum(b - a for a, b in spans) > len(data) // 2  # most of the file is covered
    return spans


@pytest.mark.parametrize("name", ["isbi2012", "isbi2012-int8"])
def test_shipped_models_verify_and_any_flipped_weight_bit_is_refused(tmp_path, name):
    data = embedded_model_path(name).read_bytes()
    assert Segmenter(name).weights_verified
    spans = _weight_spans(data)
    rng = np.random.default_rng(7)
    for trial in range(12):
        start, stop = spans[rng.integers(len(spans))]
        position = int(rng.integers(start, stop))
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        path = tmp_path / f"flipped{trial}.onnx"
        path.write_bytes(bytes(flipped))
        with pytest.raises(ModelError, match="weights do not match their digest: the file is corrupt"):
            Segmenter(path)


def test_models_without_a_digest_still_load_unverified(pointwise):
    assert not Segmenter(pointwise[0]).weights_verified


def test_a_stamped_digest_is_checked(tmp_path, pointwise):
    pytest.importorskip("torch")  # export/ imports torch
    from export.onnx_export import stamp_model

    path = tmp_path / "m.onnx"
    path.write_bytes(pointwise[0])
    digest = stamp_model(path).weights_sha256
    assert Segmenter(path).weights_verified
    stamped = onnx.load(str(path))
    assert stamped.graph.SerializeToString() == onnx.load_from_string(pointwise[0]).graph.SerializeToString()
    import hashlib

    assert digest == hashlib.sha256(stamped.graph.SerializeToString()).hexdigest()  # the documented definition


# -- item 13: external data ------------------------------------------------------------------------------------


def _save_external(model: bytes, folder, location: str = "weights.bin"):
    proto = onnx.load_from_string(model)
    path = folder / "external.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location, size_threshold=0)
    return path


def test_models_with_external_weights_load_from_their_path(tmp_path, same2d):
    path = _save_external(same2d[0], tmp_path)
    assert (tmp_path / "weights.bin").stat().st_size > 0
    image = np.random.default_rng(3).random((40, 40))
    np.testing.assert_array_equal(Segmenter(path).predict_proba(image), Segmenter(same2d[0]).predict_proba(image))
    with pytest.raises(ModelError, match="load it from its path, not from bytes"):
        Segmenter(path.read_bytes())


def test_external_weights_are_covered_by_the_digest(tmp_path, same2d):
    pytest.importorskip("torch")
    from export.onnx_export import stamp_model

    path = _save_external(same2d[0], tmp_path)
    stamp_model(path)
    assert Segmenter(path).weights_verified
    weights = bytearray((tmp_path / "weights.bin").read_bytes())
    weights[5] ^= 0x10
    (tmp_path / "weights.bin").write_bytes(bytes(weights))
    with pytest.raises(ModelError, match="do not match their digest"):
        Segmenter(path)


def test_external_paths_outside_the_model_folder_are_refused(tmp_path, same2d):
    path = _save_external(same2d[0], tmp_path)
    proto = onnx.load(str(path), load_external_data=False)
    for init in proto.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../../etc/passwd"
    onnx.save_model(proto, str(path))
    with pytest.raises(ModelError, match="outside the model's folder"):
        Segmenter(path)


# -- item 11: hostile metadata ------------------------------------------------------------------------------


class _NoSessions:
    """onnxruntime that fails the test if a session is created: proves the checks come first."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def InferenceSession(self, *args, **kwargs):
        raise AssertionError("an ONNX Runtime session was created for hostile metadata")


@pytest.mark.parametrize(
    "props, message",
    [
        ({"min_input_size": "4096"}, r"min_input_size must be in \[1, 1024\], got 4096"),
        ({"in_channels": "1e9"}, "in_channels must be an integer, got 1000000000.0"),
        ({"in_channels": "1000000000"}, r"in_channels must be in \[1, 1024\]"),
        ({"output_margin": "1000000000"}, r"output_margin must be in \[0, 1024\]"),
        ({"input_size_multiple": "0"}, r"input_size_multiple must be in \[1, 1024\], got 0"),
        ({"input_size_multiple": "1.5"}, "input_size_multiple must be an integer, got 1.5"),
        ({"training": "[" * 100000 + "]" * 100000}, "nests 100000 levels deep"),
        ({"tile_size": "[" + "9" * 5000 + "]"}, "integer of 5000 digits"),
        ({"class_names": '"ab"'}, "class_names must be a list of strings"),
        ({"exporter_version": '"' + "x" * (2 << 20) + '"'}, "characters long"),
        ({"padding": "{broken"}, "not valid JSON"),
    ],
)
def test_hostile_metadata_is_refused_before_any_work(monkeypatch, pointwise, props, message):
    model = _with_props(pointwise[0], **props)
    monkeypatch.setitem(sys.modules, "onnxruntime", _NoSessions(onnxruntime))
    with pytest.raises(ModelError, match=message):
        Segmenter(model)


def test_all_metadata_problems_are_reported_at_once(pointwise):
    model = _with_props(pointwise[0], in_channels="0", padding='"reflect"', tile_overlap="2", blend="7")
    with pytest.raises(ModelError) as info:
        Segmenter(model)
    for fragment in ("in_channels", "padding", "tile_overlap", "blend"):
        assert fragment in str(info.value)


# -- item 12: untyped errors, paths --------------------------------------------------------------------------


def test_ragged_lists_and_strings_are_typed_errors(pointwise):
    seg = Segmenter(pointwise[0])
    with pytest.raises(InvalidInputError, match="not a rectangular array"):
        seg.predict([[1, 2, 3], [4, 5]])
    with pytest.raises(InvalidInputError, match="no such file"):
        seg.predict("missing.tif")
    with pytest.raises(InvalidInputError, match="read it with sdk.io.read_image"):
        seg.predict(np.array([["a"]]))


def test_a_path_is_read_like_the_cli_reads_it(tmp_path, pointwise):
    tifffile = pytest.importorskip("tifffile")
    image = np.random.default_rng(2).integers(0, 255, (30, 41), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", image)
    seg = Segmenter(pointwise[0])
    np.testing.assert_array_equal(seg.predict_proba(tmp_path / "img.tif"), seg.predict_proba(image))
    np.testing.assert_array_equal(seg.predict(str(tmp_path / "img.tif")), seg.predict(image))


# -- issue 12 item 1: colour -----------------------------------------------------------------------------------


def test_rgb_and_rgba_are_read_as_luminance_like_scikit_image(pointwise, caplog):
    rgb2gray = pytest.importorskip("skimage.color").rgb2gray
    model, weights = pointwise
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (33, 47, 4), dtype=np.uint8)
    reference = pointwise_reference(zscore(rgb2gray(rgba[..., :3])[None]), weights)
    seg = Segmenter(model)
    with caplog.at_level(logging.INFO, logger="sdk.segmenter"):
        np.testing.assert_allclose(seg.predict_proba(rgba[..., :3]), reference, atol=1e-5)
    assert "luminance" in caplog.text
    np.testing.assert_allclose(seg.predict_proba(rgba), reference, atol=1e-5)  # alpha ignored
    stack = np.stack([rgba[..., :3], rgba[::-1, :, :3]])
    proba = seg.predict_proba(stack)
    assert proba.shape == (2, 2, 33, 47)
    np.testing.assert_allclose(proba[:, 1], pointwise_reference(zscore(rgb2gray(stack[1])[None]), weights), atol=1e-5)
    # axes= still overrides: (33, 47, 3) read as a stack of 33 images of 47 x 3
    assert seg.predict(rgba[..., :3], axes="NYX").shape == (33, 47, 3)
    with pytest.raises(InvalidInputError, match="2 channel"):
        seg.predict(rgba[..., :2], axes="YXC")


def test_colour_volumes_for_a_3d_model():
    rgb2gray = pytest.importorskip("skimage.color").rgb2gray
    model, weights = make_model("pointwise", spatial_dims=3, seed=9)
    volume = np.random.default_rng(5).random((6, 10, 12, 3)).astype(np.float32)
    proba = Segmenter(model).predict_proba(volume)
    np.testing.assert_allclose(proba, pointwise_reference(zscore(rgb2gray(volume)[None]), weights), atol=1e-5)


# -- issue 12 item 2: tiles too small for the halo ------------------------------------------------------------


def test_default_model_with_a_tile_smaller_than_its_halo_equals_the_whole_image(caplog):
    from sdk.io import read_image
    from sdk.models import sample_image_path

    image = read_image(sample_image_path())[:256, :240]
    whole = Segmenter(tile=1024).predict_proba(image)  # one tile: the whole image
    with caplog.at_level(logging.INFO, logger="sdk.segmenter"):
        small = Segmenter(tile=128)
    assert "smallest that does" in caplog.text and min(small.tile) > 192  # the model's halo: 192 px
    np.testing.assert_allclose(small.predict_proba(image), whole, atol=1e-5)


# -- issue 12 item 11: instances -------------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", ["face", "full"])
def test_instances_are_the_connected_components_of_the_foreground(same2d, connectivity):
    label = pytest.importorskip("skimage.measure").label
    seg = Segmenter(same2d[0])
    image = np.random.default_rng(6).normal(size=(2, 60, 70))  # a stack: slices labelled one by one
    instances = seg.predict_instances(image, connectivity=connectivity)
    assert instances.dtype == np.uint32 and instances.shape == image.shape
    foreground = seg.predict(image) == seg.metadata.foreground_class
    offset = 0
    for got, mask in zip(instances, foreground):
        expected = label(mask, connectivity=1 if connectivity == "face" else 2)
        shifted = np.where(expected > 0, expected + offset, 0)
        np.testing.assert_array_equal(got, shifted)
        offset += expected.max()


def test_split_touching_is_scikit_images_seeded_watershed(same2d):
    segmentation = pytest.importorskip("skimage.segmentation")
    label = pytest.importorskip("skimage.measure").label
    seg = Segmenter(same2d[0])
    image = np.random.default_rng(8).normal(size=(64, 64))
    proba = seg.predict_proba(image)[seg.metadata.foreground_class]
    mask = seg.predict(image) == seg.metadata.foreground_class
    markers = label(mask & (proba >= 0.7), connectivity=1)
    expected = segmentation.watershed(-proba.astype(np.float64), markers, mask=mask, connectivity=1)
    got = seg.predict_instances(image, split_touching=True, seed_threshold=0.7)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(InvalidInputError, match="seed_threshold"):
        seg.predict_instances(image, split_touching=True, seed_threshold=0)


# -- issue 12 item 15 -------------------------------------------------------------------------------------------


def test_dir_lists_the_public_api():
    names = dir(sdk)
    assert {"Segmenter", "metrics", "ModelError", "__version__"} <= set(names)
    assert not {"TYPE_CHECKING", "importlib", "logging", "ModuleType"} & set(names)


def test_info_reports_whether_the_digest_was_checked(tmp_path, capsys, pointwise):
    import json

    from sdk.cli.main import main

    unverified = tmp_path / "plain.onnx"
    unverified.write_bytes(pointwise[0])
    for model, verified in (("isbi2012-int8", True), (str(unverified), False)):
        assert main(["info", model, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["weights_verified"] is verified
    assert main(["info", str(unverified)]) == 0
    assert "weights: not verified" in capsys.readouterr().out


def test_blended_rows_written_in_slabs_are_unchanged(monkeypatch, pointwise):
    from sdk import tiling

    image = np.random.default_rng(9).random((70, 50))
    seg = Segmenter(pointwise[0], tile=16, overlap=0.5, blend="gaussian")
    whole = seg.predict_proba(image)
    monkeypatch.setattr(tiling, "FLUSH_ELEMENTS", 1)  # one row per slab
    np.testing.assert_array_equal(seg.predict_proba(image), whole)
    np.testing.assert_array_equal(seg.predict(image), np.argmax(whole, axis=0))


def test_instances_of_a_single_sigmoid_channel_are_its_label_one_pixels():
    # one class, foreground_class 0: labels_from_proba marks its foreground 1 (p >= 0.5); the napari plugin
    # took label == foreground_class (0), the background, before both paths shared model_instances
    from types import SimpleNamespace

    from sdk.instances import model_instances

    label = pytest.importorskip("skimage.measure").label
    labels = (np.random.default_rng(9).random((3, 40, 50)) > 0.6).astype(np.uint8)
    single = SimpleNamespace(num_classes=1, foreground_class=0, spatial_dims=2)
    got = model_instances(labels, None, single)
    offset = 0
    for plane, expected in zip(got, (label(s == 1, connectivity=1) for s in labels)):
        np.testing.assert_array_equal(plane, np.where(expected > 0, expected + offset, 0))
        offset += expected.max()
    two = SimpleNamespace(num_classes=2, foreground_class=0, spatial_dims=3)  # several classes: the named one
    np.testing.assert_array_equal(model_instances(labels, None, two), label(labels == 0, connectivity=1))
