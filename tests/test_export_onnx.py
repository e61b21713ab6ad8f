"""ONNX export: ONNX Runtime reproduces PyTorch, metadata round-trips, fp16/int8, bad files fail clearly."""
import hashlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export.onnx_export import (  # noqa: E402
    ParityError,
    build_metadata,
    export_onnx,
    quantize_int8,
    read_metadata,
    verify_parity,
)
from export.unet import UNet  # noqa: E402
from sdk.errors import ModelError, OutputExistsError  # noqa: E402
from sdk.model_metadata import ModelMetadata, Normalization  # noqa: E402


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    model = UNet(**{"depth": 2, "base_features": 4, **kw})
    # non-trivial batch-norm statistics, so folding them into the convolutions is really exercised
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _metadata(model, **kw):
    return build_metadata(model, class_names=("membrane", "cell"), normalization=Normalization(), **kw)


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    return session.run(None, {"image": x})[0]


@pytest.mark.parametrize(
    "spatial_dims,padding,size",
    [(2, "same", (40, 56)), (2, "valid", (52, 60)), (3, "same", (8, 16, 12))],
)
def test_round_trip_equals_torch(tmp_path, spatial_dims, padding, size):
    model = _model(spatial_dims=spatial_dims, padding=padding)
    path = export_onnx(model, tmp_path / "m.onnx", metadata=_metadata(model))
    x = np.random.default_rng(1).standard_normal((3, 1, *size)).astype(np.float32)  # a size the check did not use
    got = _run(path, x)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert not list(tmp_path.glob("*.data"))  # one self-contained file
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[-1] == "width"


def test_metadata_round_trip_and_size_rules(tmp_path):
    model = _model(padding="valid")
    metadata = _metadata(model, tile_size=(148, 148), training={"steps": 3, "held_out": {"rand_error": 0.1}})
    path = export_onnx(model, tmp_path / "m.onnx", metadata=metadata)
    back = read_metadata(path)
    assert back.training == {**metadata.training, "precision": "fp32"}
    graph = onnx.load(str(path)).graph.SerializeToString()
    assert back.weights_sha256 == hashlib.sha256(graph).hexdigest()  # the digest of what was written
    for field in ("spatial_dims", "in_channels", "class_names", "padding", "input_size_multiple",
                  "input_size_offset", "min_input_size", "output_margin", "foreground_class",
                  "normalization", "tile_size", "output_activation"):
        assert getattr(back, field) == getattr(metadata, field), field
    # the stored margin is the real one
    n = back.valid_input_size_at_least(70)
    out = _run(path, np.zeros((1, 1, n, n), np.float32))
    assert out.shape[-1] == n - 2 * back.output_margin == back.output_size(n)


def test_fp16_export_and_overwrite_protection(tmp_path):
    model = _model()
    path = export_onnx(model, tmp_path / "h.onnx", metadata=_metadata(model), precision="fp16")
    proto = onnx.load(str(path))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in proto.graph.initializer)
    assert read_metadata(path).training["precision"] == "fp16"
    x = np.random.default_rng(2).standard_normal((1, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(_run(path, x), expected, atol=5e-3)
    with pytest.raises(OutputExistsError):
        export_onnx(model, path, metadata=_metadata(model))


def test_parity_failure_is_loud(tmp_path):
    a, b = _model(seed=0), _model(seed=1)
    path = export_onnx(a, tmp_path / "a.onnx", metadata=_metadata(a))
    with pytest.raises(ParityError, match="differs from PyTorch"):
        verify_parity(b, path)
    with pytest.raises(ValueError, match="metadata"):
        export_onnx(a, tmp_path / "x.onnx", metadata=_metadata(_model(padding="valid")))
    assert not (tmp_path / "x.onnx").exists()


def test_int8_static_qdq(tmp_path):
    model = _model()
    fp32 = export_onnx(model, tmp_path / "f.onnx", metadata=_metadata(model))
    rng = np.random.default_rng(3)
    calib = [rng.standard_normal((1, 32, 32)).astype(np.float32) for _ in range(8)]
    q = quantize_int8(fp32, tmp_path / "q.onnx", calib)
    proto = onnx.load(str(q))
    ops = {n.op_type for n in proto.graph.node}
    # up-convolutions became quantizable 1x1 convolutions; the probabilities come from a float sigmoid
    assert {"QuantizeLinear", "DequantizeLinear", "Reshape", "Sigmoid"} <= ops
    assert "ConvTranspose" not in ops
    producers = {out: n.op_type for n in proto.graph.node for out in n.output}
    shape_sources = [producers.get(n.input[0]) for n in proto.graph.node if n.op_type == "Shape"]
    assert shape_sources and "DequantizeLinear" not in shape_sources  # shapes read from the int8 tensors
    last = next(n for n in proto.graph.node if "probabilities" in n.output)
    assert last.op_type == "Sigmoid"
    int8_weights = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert int8_weights  # s8 convolution weights
    scales = {i.name: i for i in proto.graph.initializer}
    per_channel = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[0] in {w.name for w in int8_weights} and len(scales[n.input[1]].dims) == 1]
    assert per_channel  # one scale per output channel
    assert read_metadata(q).training["precision"].startswith("int8 static QDQ")
    # each file carries the digest of its own graph (not the fp32 digest it copied its metadata from)
    from sdk import Segmenter

    digests = {read_metadata(p).weights_sha256 for p in (q, fp32)}
    assert len(digests) == 2 and Segmenter(q).weights_verified and Segmenter(fp32).weights_verified
    x = calib[0][None]
    got = _run(q, x)
    diff = np.abs(got - _run(fp32, x)).max()
    assert 0 < diff < 0.15  # quantized, yet close to fp32 on data like the calibration tiles
    assert len(np.unique(got)) > 256  # probabilities not on an 8-bit grid
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("num_classes,last_op", [(2, "Sigmoid"), (3, "Softmax")])
def test_probability_head_equals_softmax(tmp_path, num_classes, last_op):
    """Two classes export as sigmoid of folded logit differences: the same probabilities as softmax."""
    model = _model(num_classes=num_classes)
    meta = build_metadata(model, class_names=[f"c{i}" for i in range(num_classes)], normalization=Normalization())
    path = export_onnx(model, tmp_path / "m.onnx", metadata=meta)
    proto = onnx.load(str(path))
    assert next(n for n in proto.graph.node if "probabilities" in n.output).op_type == last_op
    x = 3 * np.random.default_rng(4).standard_normal((2, 1, 48, 32)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(_run(path, x), expected, atol=2e-6)
    assert model.head.weight.shape[0] == num_classes  # the export folded a copy, not the caller's model


def test_upsampling_as_pixel_shuffle_is_the_same_map(tmp_path):
    from export.onnx_export import upsampling_as_pixel_shuffle

    model = _model(padding="valid")
    path = export_onnx(model, tmp_path / "m.onnx", metadata=_metadata(model))
    proto = onnx.load(str(path))
    rewritten = upsampling_as_pixel_shuffle(proto)
    onnx.checker.check_model(rewritten, full_check=True)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ConvTranspose" not in ops
    shuffles = [n for n in rewritten.graph.node if n.op_type == "Transpose"
                and list(onnx.helper.get_attribute_value(n.attribute[0])) == [0, 1, 3, 2, 4, 5]]
    assert len(shuffles) == model.depth
    used = {name for n in rewritten.graph.node for name in n.input}
    assert all(init.name in used for init in rewritten.graph.initializer)  # old weights dropped
    assert any(n.op_type == "ConvTranspose" for n in proto.graph.node)  # the input is left untouched
    x = np.random.default_rng(5).standard_normal((2, 1, 60, 76)).astype(np.float32)
    session = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(session.run(None, {"image": x})[0], expected, atol=1e-5)
    model3d = _model(spatial_dims=3)
    proto3d = onnx.load(str(export_onnx(model3d, tmp_path / "m3.onnx", metadata=_metadata(model3d))))
    assert [n.op_type for n in upsampling_as_pixel_shuffle(proto3d).graph.node] == [
        n.op_type for n in proto3d.graph.node
    ]  # the shuffle is 2D only: 3D up-convolutions stay


def test_foreign_and_corrupt_models_give_model_error(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    with pytest.raises(ModelError, match="no unet-sdk metadata"):
        read_metadata(foreign)
    with pytest.raises(ModelError):
        ModelMetadata.from_props({"unet_sdk.spatial_dims": "2"})

    model = _model()
    good = export_onnx(model, tmp_path / "good.onnx", metadata=_metadata(model))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    from sdk import Segmenter

    for bad in (foreign, corrupt):
        with pytest.raises(ModelError):
            Segmenter(bad)
    assert Segmenter(good).metadata.num_classes == 2


def test_cli_train_onnx_quantize_evaluate(tmp_path, capsys):
    """The documented commands end to end on a tiny synthetic TIFF stack."""
    import json

    import tifffile
    from scipy import ndimage

    from export.cli import main

    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.standard_normal((6, 48, 48)), (0, 3, 3))
    cells = smooth > 0
    tifffile.imwrite(tmp_path / "img.tif", (cells * 120 + 60 + rng.normal(0, 15, cells.shape)).astype(np.uint8))
    tifffile.imwrite(tmp_path / "lab.tif", (cells * 255).astype(np.uint8))
    data = ["--images", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"), "--val-indices", "4:6"]
    run = tmp_path / "run"
    assert main(["train", *data, "--out", str(run), "--steps", "6", "--epoch-steps", "3", "--tile", "32",
                 "--depth", "2", "--base-features", "4", "--threads", "1", "--class-names", "membrane,cell"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] in (3, 6) and "rand_error" in summary["best"]
    model = tmp_path / "m.onnx"
    assert main(["onnx", str(run / "best.pt"), "-o", str(model), "--tile-size", "48"]) == 0
    meta = read_metadata(model)
    assert meta.class_names == ("membrane", "cell") and meta.tile_size == (48, 48)
    assert meta.normalization.mode == "per_image_zscore"
    assert meta.training["data"]["val_samples"] == "4,5" and meta.training["steps"] == summary["steps"]
    assert main(["onnx", str(run / "best.pt"), "-o", str(model)]) == 2  # exists, no --force
    # post-processing chosen on the held-out slices, in place; the int8 twin keeps it until measured itself
    assert main(["postprocess", str(model), "-o", str(model), *data, "--seed-thresholds", "0.5,0.9", "--force"]) == 0
    chosen = read_metadata(model).postprocessing
    assert set(chosen.selection["candidates"]) == {"none", "watershed 0.5", "watershed 0.9"}
    quantized = tmp_path / "q.onnx"
    assert main(["quantize", str(model), "-o", str(quantized), *data, "--calibration-tiles", "4"]) == 0
    inherited = read_metadata(quantized).postprocessing
    assert inherited.boundaries == chosen.boundaries and inherited.selection == {"fp32_source": chosen.selection}
    assert main(["postprocess", str(quantized), "-o", str(quantized), *data, "--force"]) == 0
    assert "held_out" in read_metadata(quantized).postprocessing.selection
    capsys.readouterr()
    assert main(["evaluate", str(quantized), *data, "--repeats", "1", "--record"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == "4,5" and 0 <= report["rand_error"] <= 1
    recorded = read_metadata(quantized).training["held_out_metrics"]  # --record: the file's own scores
    assert {k: recorded[k] for k in ("warping_error", "rand_error", "pixel_error")} == {
        k: report[k] for k in ("warping_error", "rand_error", "pixel_error")}
    assert "slices 4,5 of img.tif" in recorded["measured_with"]
